//! Migrating to an older server (codis-server 3.2, or an older Redis with this module).
//!
//! A DUMP payload of Redis 7 (RDB version 10) does not load on codis-server 3.2
//! (RDB version 7), so neither `MIGRATE` nor the async stream's `object` messages can
//! carry collections there. The element-wise messages of the async protocol
//! (`string`, and `list`/`hash`/`dict`/`zset` chunks) are format-neutral, so toward an
//! older target both the async path and the sync commands send those instead.
//! "Older" is decided by the target's `INFO server` `redis_version`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use codis_resp::{Encoder, Limits, RequestParser};

use crate::mgrt_async::{KeyIter, Sink, StepParams, step};
use crate::rm::{self, Ctx};

/// This server's (major, minor).
fn own_version() -> (u32, u32) {
    let v = rm::server_version();
    ((v >> 16) & 0xff, (v >> 8) & 0xff)
}

fn parse_version(info: &str) -> Option<(u32, u32)> {
    let v = info.lines().find_map(|l| l.strip_prefix("redis_version:"))?.trim();
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Reads one reply line (`+`, `-`, `:`) or bulk string from a blocking socket.
fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..pos].to_vec();
            if line.first() == Some(&b'$') {
                let n: i64 = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
                if n < 0 {
                    buf.drain(..pos + 2);
                    return Some(Vec::new());
                }
                let need = pos + 2 + n as usize + 2;
                if buf.len() >= need {
                    let body = buf[pos + 2..pos + 2 + n as usize].to_vec();
                    buf.drain(..need);
                    return Some(body);
                }
            } else {
                buf.drain(..pos + 2);
                return Some(line);
            }
        }
        let mut tmp = [0u8; 16384];
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Asks the freshly connected (blocking) target for its version; true when it is
/// older than this server. Any failure counts as "not older".
pub fn probe_is_legacy(ctx: Ctx, s: &mut TcpStream, timeout: i64) -> bool {
    let t = Duration::from_millis(timeout.clamp(10, 1000) as u64);
    s.set_read_timeout(Some(t)).ok();
    s.set_write_timeout(Some(t)).ok();
    let pass = crate::sync::requirepass(ctx);
    let mut req: Vec<u8> = Vec::new();
    if let Some(p) = &pass {
        req.put_array_len(2);
        req.put_bulk(b"AUTH");
        req.put_bulk(p);
    }
    req.put_array_len(2);
    req.put_bulk(b"INFO");
    req.put_bulk(b"server");
    let result = (|| {
        s.write_all(&req).ok()?;
        let mut buf = Vec::new();
        if pass.is_some() {
            read_reply(s, &mut buf)?;
        }
        let info = read_reply(s, &mut buf)?;
        parse_version(&String::from_utf8_lossy(&info))
    })();
    s.set_read_timeout(None).ok();
    s.set_write_timeout(None).ok();
    match result {
        Some(v) => {
            let legacy = v < own_version();
            if legacy {
                rm::log_verbose(
                    ctx,
                    &format!("slotsmgrt: target is Redis {}.{}: sending collections element-wise", v.0, v.1),
                );
            }
            legacy
        }
        None => false,
    }
}

struct Cached {
    legacy: bool,
    at: i64,
}

struct Cache(RefCell<Option<HashMap<(String, u16), Cached>>>);
// SAFETY: main thread only.
unsafe impl Sync for Cache {}
static CACHE: Cache = Cache(RefCell::new(None));

/// Whether `host:port` is an older server (probed at most once a minute).
pub fn target_is_legacy(ctx: Ctx, host: &str, port: u16, timeout: i64) -> Result<bool, String> {
    let now = rm::now_ms();
    let key = (host.to_string(), port);
    if let Some(c) = CACHE.0.borrow().as_ref().and_then(|m| m.get(&key))
        && now - c.at < 60_000
    {
        return Ok(c.legacy);
    }
    let mut s = crate::mgrt_async::connect(host, port, timeout)
        .map_err(|e| format!("IOERR error or timeout connecting to the client ({e})"))?;
    let legacy = probe_is_legacy(ctx, &mut s, timeout);
    CACHE.0.borrow_mut().get_or_insert_with(HashMap::new).insert(key, Cached { legacy, at: now });
    Ok(legacy)
}

struct VecSink {
    out: Vec<u8>,
    msgs: usize,
}

impl Sink for VecSink {
    fn message(&mut self, parts: &[&[u8]]) {
        self.out.put_array_len(parts.len());
        for p in parts {
            self.out.put_bulk(p);
        }
        self.msgs += 1;
    }
    fn room(&self) -> usize {
        64 << 20
    }
}

/// The sync commands toward an older target: the keys go as async-protocol messages
/// over a blocking connection (the server waits, as codis-server does), then are
/// deleted here. Returns how many keys moved.
pub fn sync_stream(ctx: Ctx, host: &str, port: u16, timeout: i64, keys: &[Vec<u8>]) -> Result<i64, String> {
    let mut s = crate::mgrt_async::connect(host, port, timeout)
        .map_err(|e| format!("IOERR error or timeout connecting to the client ({e})"))?;
    let t = Duration::from_millis(timeout.max(1) as u64);
    s.set_read_timeout(Some(t)).ok();
    s.set_write_timeout(Some(t)).ok();
    let mut sink = VecSink { out: Vec::new(), msgs: 0 };
    if let Some(p) = crate::sync::requirepass(ctx) {
        sink.message(&[b"SLOTSRESTORE-ASYNC-AUTH", &p]);
    }
    let db = rm::selected_db(ctx).to_string();
    sink.message(&[b"SLOTSRESTORE-ASYNC-SELECT", db.as_bytes()]);
    let params = StepParams { timeout, maxbulks: 1000, legacy: true };
    let mut moved: Vec<Vec<u8>> = Vec::new();
    for k in keys {
        let mut it = KeyIter::new(k.clone());
        while !it.is_done() {
            step(ctx, &params, &mut it, &mut sink)?;
        }
        if it.moved() {
            moved.push(k.clone());
        }
    }
    s.write_all(&sink.out).map_err(|_| "IOERR error or timeout writing to target".to_string())?;
    let mut parser = RequestParser::new(Limits::default());
    let mut inbuf = BytesMut::new();
    let mut acks = 0;
    while acks < sink.msgs {
        match parser.parse(&mut inbuf) {
            Ok(Some(req)) => {
                if req.argc() != 3 || !req.arg(0).eq_ignore_ascii_case(b"SLOTSRESTORE-ASYNC-ACK") {
                    let text: Vec<String> = req.args().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                    return Err(format!("error on slotsrestore, target replied: {}", text.join(" ")));
                }
                if req.arg(1) != b"0" {
                    return Err(format!(
                        "error on slotsrestore, migration failed: {}",
                        String::from_utf8_lossy(req.arg(2))
                    ));
                }
                acks += 1;
            }
            Ok(None) => {
                let mut tmp = [0u8; 16384];
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => {
                        return Err("IOERR error or timeout reading from target".into());
                    }
                    Ok(n) => inbuf.extend_from_slice(&tmp[..n]),
                }
            }
            Err(e) => return Err(format!("error on slotsrestore, bad reply ({e:?})")),
        }
    }
    if moved.is_empty() {
        return Ok(0);
    }
    crate::basic::delete_keys(ctx, &moved, false)?;
    Ok(moved.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("# Server\r\nredis_version:3.2.11\r\n"), Some((3, 2)));
        assert_eq!(parse_version("redis_version:7.0.15\r\nx:y"), Some((7, 0)));
        assert_eq!(parse_version("nothing"), None);
        assert!((3, 2) < (7, 0) && (6, 2) < (7, 0) && (7, 0) >= (7, 0));
    }
}
