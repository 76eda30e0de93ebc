//! Async migration, target side: SLOTSRESTORE-ASYNC, -AUTH, -SELECT, -ACK.
//!
//! Every message is answered with `SLOTSRESTORE-ASYNC-ACK errno msg` (an array of
//! bulk strings, which the source reads as a command). Writes go through
//! `RedisModule_Call` with propagation, so replicas and the AOF receive ordinary
//! commands (DEL, SET, RESTORE, RPUSH, HSET, SADD, ZADD, PEXPIRE, PERSIST) and need no
//! module to replay them.

use std::ffi::c_int;

use crate::rm::{self, Ctx};
use crate::state;

fn ack(ctx: Ctx, errno: i64, msg: &str) -> c_int {
    rm::reply_array(ctx, 3);
    rm::reply_bulk(ctx, b"SLOTSRESTORE-ASYNC-ACK");
    rm::reply_bulk(ctx, errno.to_string().as_bytes());
    rm::reply_bulk(ctx, msg.as_bytes());
    rm::OK
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn key_type(ctx: Ctx, key: &[u8]) -> i32 {
    let ks = rm::Strings::new(ctx, &[key]);
    rm::Key::open_read(ctx, ks.get(0)).key_type()
}

fn key_len(ctx: Ctx, key: &[u8]) -> usize {
    let ks = rm::Strings::new(ctx, &[key]);
    rm::Key::open_read(ctx, ks.get(0)).len()
}

fn run(ctx: Ctx, cmd: &str, args: &[&[u8]]) -> Result<rm::CallReply, String> {
    rm::call(ctx, cmd, "!", args).into_result()
}

/// Sets (ttl > 0) or removes the key's TTL.
fn apply_ttl(ctx: Ctx, key: &[u8], ttl: i64) -> Result<(), String> {
    if ttl != 0 {
        run(ctx, "PEXPIRE", &[key, ttl.to_string().as_bytes()])?;
    } else {
        run(ctx, "PERSIST", &[key])?;
    }
    Ok(())
}

/// SLOTSRESTORE-ASYNC delete|expire|string|object|list|hash|dict|zset key [ttl [hint] args...]
pub fn restore_async(ctx: Ctx, args: &[&[u8]]) -> c_int {
    let db = rm::selected_db(ctx);
    if state::with(|st| st.asyncs.has_job(db)) {
        return ack(ctx, -1, "the specified DB is being migrated");
    }
    let cmd = args.get(1).map(|c| s(c).to_ascii_lowercase()).unwrap_or_default();
    let bad_args = |ctx| ack(ctx, -1, &format!("wrong number of arguments (argc={},cmd={cmd})", args.len()));
    if args.len() < 3 {
        return bad_args(ctx);
    }
    let key = args[2];
    if cmd == "delete" {
        if args.len() != 3 {
            return bad_args(ctx);
        }
        if key_type(ctx, key) == rm::KEYTYPE_EMPTY {
            return ack(ctx, 0, "0");
        }
        return match run(ctx, "DEL", &[key]) {
            Ok(r) => ack(ctx, 0, &r.integer().to_string()),
            Err(e) => ack(ctx, -1, &e),
        };
    }
    if args.len() < 4 {
        return bad_args(ctx);
    }
    let ttl = match parse_i64(args[3]) {
        Some(t) if t >= 0 => t,
        _ => return ack(ctx, -1, &format!("invalid TTL value (TTL={})", s(args[3]))),
    };
    let result: Result<String, String> = match cmd.as_str() {
        "expire" => {
            if args.len() != 4 {
                return bad_args(ctx);
            }
            if key_type(ctx, key) == rm::KEYTYPE_EMPTY {
                return ack(ctx, -1, &format!("the specified key doesn't exist ({})", s(key)));
            }
            apply_ttl(ctx, key, ttl).map(|()| "1".into())
        }
        "string" | "object" => {
            if args.len() != 5 {
                return bad_args(ctx);
            }
            if key_type(ctx, key) != rm::KEYTYPE_EMPTY {
                return ack(ctx, -1, &format!("the specified key already exists ({})", s(key)));
            }
            let r = if cmd == "string" {
                if ttl != 0 {
                    run(ctx, "SET", &[key, args[4], b"PX", ttl.to_string().as_bytes()])
                } else {
                    run(ctx, "SET", &[key, args[4]])
                }
            } else {
                run(ctx, "RESTORE", &[key, ttl.to_string().as_bytes(), args[4]])
            };
            r.map(|_| "1".into())
        }
        "list" | "hash" | "dict" | "zset" => {
            if args.len() < 5 {
                return bad_args(ctx);
            }
            if parse_i64(args[4]).is_none_or(|h| h < 0) {
                return ack(ctx, -1, &format!("invalid Hint value (Hint={})", s(args[4])));
            }
            let elems = &args[5..];
            if (cmd == "hash" || cmd == "zset") && !elems.len().is_multiple_of(2) {
                return bad_args(ctx);
            }
            let (want, write_cmd) = match cmd.as_str() {
                "list" => (rm::KEYTYPE_LIST, "RPUSH"),
                "hash" => (rm::KEYTYPE_HASH, "HSET"),
                "dict" => (rm::KEYTYPE_SET, "SADD"),
                _ => (rm::KEYTYPE_ZSET, "ZADD"),
            };
            let have = key_type(ctx, key);
            if have != rm::KEYTYPE_EMPTY && have != want {
                return ack(ctx, -1, &format!("wrong type (expect={want},got={have})"));
            }
            if have == rm::KEYTYPE_EMPTY && elems.is_empty() {
                return ack(ctx, -1, &format!("the specified key doesn't exist ({})", s(key)));
            }
            let r = if elems.is_empty() {
                Ok(())
            } else if cmd == "zset" {
                // elem, raw 8-byte little-endian score
                let mut owned: Vec<Vec<u8>> = Vec::with_capacity(elems.len());
                for (j, pair) in elems.chunks(2).enumerate() {
                    let Ok(raw) = <[u8; 8]>::try_from(pair[1]) else {
                        return ack(ctx, -1, &format!("invalid zset score ([{j}]), bad raw bits"));
                    };
                    let score = f64::from_bits(u64::from_le_bytes(raw));
                    owned.push(format_score(score).into_bytes());
                    owned.push(pair[0].to_vec());
                }
                let mut zargs: Vec<&[u8]> = vec![key];
                zargs.extend(owned.iter().map(|v| v.as_slice()));
                run(ctx, write_cmd, &zargs).map(|_| ())
            } else {
                let mut wargs: Vec<&[u8]> = vec![key];
                wargs.extend_from_slice(elems);
                run(ctx, write_cmd, &wargs).map(|_| ())
            };
            r.and_then(|()| apply_ttl(ctx, key, ttl)).map(|()| key_len(ctx, key).to_string())
        }
        _ => {
            return ack(ctx, -1, &format!("unknown command (argc={},cmd={cmd})", args.len()));
        }
    };
    match result {
        Ok(msg) => ack(ctx, 0, &msg),
        Err(e) => ack(ctx, -1, &e),
    }
}

/// A score as ZADD reads it back exactly.
fn format_score(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+inf".into() } else { "-inf".into() }
    } else {
        // Rust prints the shortest representation that parses back to the same value.
        format!("{v:?}")
    }
}

/// SLOTSRESTORE-ASYNC-AUTH password: authenticates the connection as the default
/// user when the password is this server's `requirepass`.
pub fn restore_async_auth(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() != 2 {
        return rm::wrong_arity(ctx);
    }
    let Some(pass) = crate::sync::requirepass(ctx) else {
        return ack(ctx, -1, "Client sent AUTH, but no password is set");
    };
    if constant_time_eq(&pass, args[1]) {
        let ok = unsafe {
            rm::api!(RedisModule_AuthenticateClientWithACLUser)(
                ctx,
                c"default".as_ptr(),
                7,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if ok == rm::OK {
            return ack(ctx, 0, "OK");
        }
    }
    ack(ctx, -1, "invalid password")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SLOTSRESTORE-ASYNC-SELECT db
pub fn restore_async_select(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() != 2 {
        return rm::wrong_arity(ctx);
    }
    match parse_i64(args[1]) {
        Some(db) if db >= 0 && (db as usize) < state::ndbs() && rm::select_db(ctx, db as i32) => ack(ctx, 0, "OK"),
        _ => ack(ctx, -1, &format!("invalid DB index ({})", s(args[1]))),
    }
}

/// SLOTSRESTORE-ASYNC-ACK errno msg: acks reach this module's own connections
/// directly, never as a command.
pub fn restore_async_ack(ctx: Ctx, _args: &[&[u8]]) -> c_int {
    rm::reply_error(ctx, "invalid client, permission denied");
    rm::OK
}
