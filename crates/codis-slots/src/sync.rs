//! Synchronous migration: SLOTSMGRTSLOT, SLOTSMGRTONE, SLOTSMGRTTAGSLOT,
//! SLOTSMGRTTAGONE, and the target side SLOTSRESTORE.
//!
//! Keys are moved with the server's own `MIGRATE ... REPLACE KEYS`, called with
//! propagation on: the source's deletions reach its replicas and AOF as `DEL`, and the
//! target restores with `RESTORE ... REPLACE` (what codis-server's SLOTSRESTORE does).
//! Like codis-server, the server is busy for the whole transfer; the async family is
//! the non-blocking path.

use std::ffi::c_int;

use codis_core::{has_tag, slot_of, tag_crc};

use crate::basic::{err, parse_int, parse_slot};
use crate::rm::{self, Ctx};
use crate::state;

/// Codis's `parse_timeout`: ms, 0 meaning 100.
fn parse_timeout(b: &[u8]) -> Result<i64, String> {
    let v = parse_int(b)?;
    if v < 0 {
        return Err(format!("invalid timeout = {v}"));
    }
    Ok(if v == 0 { 100 } else { v })
}

/// The server's own password (sent to the target, as codis-server does).
pub fn requirepass(ctx: Ctx) -> Option<Vec<u8>> {
    let r = rm::call(ctx, "CONFIG", "", &[b"GET", b"requirepass"]).into_result().ok()?;
    if r.len() < 2 {
        return None;
    }
    let v = r.elem(1).bytes().to_vec();
    (!v.is_empty()).then_some(v)
}

fn key_exists(ctx: Ctx, key: &[u8]) -> bool {
    let s = rm::Strings::new(ctx, &[key]);
    rm::Key::open_read(ctx, s.get(0)).key_type() != rm::KEYTYPE_EMPTY
}

/// Moves `keys` (those that exist) of the selected DB to `host:port`. Returns how
/// many were moved.
pub fn migrate_keys(ctx: Ctx, host: &[u8], port: &[u8], timeout: i64, keys: &[Vec<u8>]) -> Result<i64, String> {
    let present: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).filter(|k| key_exists(ctx, k)).collect();
    if present.is_empty() {
        return Ok(0);
    }
    let host_s = String::from_utf8_lossy(host).into_owned();
    let port_n: u16 =
        std::str::from_utf8(port).ok().and_then(|p| p.parse().ok()).ok_or_else(|| "invalid port".to_string())?;
    if crate::compat::target_is_legacy(ctx, &host_s, port_n, timeout)? {
        let owned: Vec<Vec<u8>> = present.iter().map(|k| k.to_vec()).collect();
        return crate::compat::sync_stream(ctx, &host_s, port_n, timeout, &owned);
    }
    let db = rm::selected_db(ctx).to_string();
    let timeout = timeout.to_string();
    let pass = requirepass(ctx);
    let mut args: Vec<&[u8]> = vec![host, port, b"", db.as_bytes(), timeout.as_bytes(), b"REPLACE"];
    if let Some(p) = &pass {
        args.push(b"AUTH");
        args.push(p);
    }
    args.push(b"KEYS");
    args.extend(present.iter().copied());
    match rm::call(ctx, "MIGRATE", "!", &args).into_result() {
        Ok(_) => Ok(present.len() as i64),
        Err(e) => {
            rm::log_warning(
                ctx,
                &format!(
                    "slotsmgrt: migrating {} key(s) to {}:{} failed: {e}",
                    present.len(),
                    String::from_utf8_lossy(host),
                    String::from_utf8_lossy(port)
                ),
            );
            Err(e)
        }
    }
}

struct Target {
    host: Vec<u8>,
    port: Vec<u8>,
    timeout: i64,
}

fn parse_target(args: &[&[u8]]) -> Result<Target, String> {
    let port = parse_int(args[2])?;
    if !(1..65536).contains(&port) {
        return Err(format!("invalid port = {port}"));
    }
    Ok(Target { host: args[1].to_vec(), port: args[2].to_vec(), timeout: parse_timeout(args[3])? })
}

/// SLOTSMGRTSLOT / SLOTSMGRTTAGSLOT host port timeout slot [numkeys]
///
/// Codis moves one key (or one tag group) per call and replies `[moved, remaining]`.
/// The optional `numkeys` (an extension) moves keys/groups until at least that many
/// keys went in one `MIGRATE`, for callers that want fewer round trips.
pub fn slotsmgrtslot(ctx: Ctx, args: &[&[u8]], usetag: bool) -> c_int {
    if args.len() != 5 && args.len() != 6 {
        return rm::wrong_arity(ctx);
    }
    let t = match parse_target(args) {
        Ok(t) => t,
        Err(e) => return err(ctx, &e),
    };
    let slot = match parse_slot(args[4]) {
        Ok(s) => s,
        Err(e) => return err(ctx, &e),
    };
    let numkeys = if args.len() == 6 {
        match parse_int(args[5]) {
            Ok(v) if v >= 0 => v.max(1) as usize,
            Ok(v) => return err(ctx, &format!("invalid numkeys = {v}")),
            Err(e) => return err(ctx, &e),
        }
    } else {
        1
    };
    let db = rm::selected_db(ctx);
    state::prefetch_window(db, slot);
    state::run_with_sets(
        ctx,
        db,
        vec![slot],
        Box::new(move |ctx| {
            let keys: Vec<Vec<u8>> = state::with(|s| {
                let set = &s.dbs[db as usize].index.tracked[&slot].set;
                let mut out: Vec<Vec<u8>> = Vec::new();
                let mut chosen: std::collections::HashSet<Vec<u8>> = Default::default();
                for k in set.iter() {
                    if out.len() >= numkeys {
                        break;
                    }
                    if chosen.contains(k) {
                        continue;
                    }
                    if usetag && has_tag(k) {
                        for g in set.tag_group(tag_crc(k)) {
                            if chosen.insert(g.clone()) {
                                out.push(g);
                            }
                        }
                    } else {
                        chosen.insert(k.to_vec());
                        out.push(k.to_vec());
                    }
                }
                out
            });
            let moved = if keys.is_empty() {
                0
            } else {
                match migrate_keys(ctx, &t.host, &t.port, t.timeout, &keys) {
                    Ok(n) => n,
                    Err(e) => {
                        rm::reply_error(ctx, &e);
                        return;
                    }
                }
            };
            let remaining = state::with(|s| s.dbs[db as usize].index.count(slot));
            rm::reply_array(ctx, 2);
            rm::reply_int(ctx, moved);
            rm::reply_int(ctx, remaining as i64);
        }),
    )
}

/// SLOTSMGRTONE host port timeout key
pub fn slotsmgrtone(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() != 5 {
        return rm::wrong_arity(ctx);
    }
    let t = match parse_target(args) {
        Ok(t) => t,
        Err(e) => return err(ctx, &e),
    };
    match migrate_keys(ctx, &t.host, &t.port, t.timeout, &[args[4].to_vec()]) {
        Ok(n) => rm::reply_int(ctx, n),
        Err(e) => rm::reply_error(ctx, &e),
    }
    rm::OK
}

/// SLOTSMGRTTAGONE host port timeout key: the key and every tagged key with the same
/// tag crc.
pub fn slotsmgrttagone(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() != 5 {
        return rm::wrong_arity(ctx);
    }
    let t = match parse_target(args) {
        Ok(t) => t,
        Err(e) => return err(ctx, &e),
    };
    let key = args[4].to_vec();
    if !has_tag(&key) {
        return slotsmgrtone(ctx, args);
    }
    let db = rm::selected_db(ctx);
    let slot = slot_of(&key);
    state::run_with_sets(
        ctx,
        db,
        vec![slot],
        Box::new(move |ctx| {
            let group = state::with(|s| s.dbs[db as usize].index.tracked[&slot].set.tag_group(tag_crc(&key)));
            match migrate_keys(ctx, &t.host, &t.port, t.timeout, &group) {
                Ok(n) => rm::reply_int(ctx, n),
                Err(e) => rm::reply_error(ctx, &e),
            }
        }),
    )
}

/// SLOTSRESTORE key ttlms payload [key ttlms payload ...]: restores (replacing) every
/// key; a DUMP payload of any RDB version this server reads is accepted.
pub fn slotsrestore(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() < 4 || !(args.len() - 1).is_multiple_of(3) {
        return err(ctx, "wrong number of arguments for 'slotsrestore' command");
    }
    let mut triples = Vec::new();
    for c in args[1..].chunks(3) {
        let ttl: i64 = match std::str::from_utf8(c[1]).ok().and_then(|s| s.parse().ok()) {
            Some(v) => v,
            None => return err(ctx, "value is not an integer or out of range"),
        };
        if ttl < 0 {
            return err(ctx, "invalid ttl value, must be >= 0");
        }
        triples.push((c[0], ttl, c[2]));
    }
    for (key, ttl, payload) in triples {
        if key_exists(ctx, key) {
            rm::log_verbose(
                ctx,
                &format!(
                    "slotsrestore: slot = {}, key = '{}' already exists",
                    slot_of(key),
                    String::from_utf8_lossy(key)
                ),
            );
        }
        let ttl_s = ttl.to_string();
        let r = rm::call(ctx, "RESTORE", "!", &[key, ttl_s.as_bytes(), payload, b"REPLACE"]);
        if let Err(e) = r.into_result() {
            return err(ctx, &e);
        }
    }
    rm::reply_ok(ctx);
    rm::OK
}
