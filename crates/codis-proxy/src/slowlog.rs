//! The proxy's slow log: requests that took longer than `slowlog_log_slower_than`
//! microseconds from arrival to reply, the newest `slowlog_max_len` kept, shown by
//! `SLOWLOG GET` in the shape of Redis's reply (so redis-cli and client libraries
//! read it). The time is what the client saw through the proxy: queueing behind its
//! own pipeline, the backend, a migration step.
//!
//! A request only learns that it is slow when its reply comes, so every request keeps
//! a [`Summary`] of itself: the command and its first argument, truncated, in a fixed
//! array, so that remembering it costs a copy and no allocation.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codis_resp::{Encoder, RequestRef};
use parking_lot::Mutex;

/// Bytes of the command name and of the first argument a summary keeps.
const NAME_BYTES: usize = 20;
const ARG_BYTES: usize = 40;

/// The start of a request, kept while it is in flight.
#[derive(Clone, Copy)]
pub struct Summary {
    argc: u32,
    name_len: u8,
    arg_len: u8,
    /// The first argument's real length (it may be longer than what is kept).
    arg_total: u32,
    name: [u8; NAME_BYTES],
    arg: [u8; ARG_BYTES],
}

impl Default for Summary {
    fn default() -> Self {
        Summary { argc: 0, name_len: 0, arg_len: 0, arg_total: 0, name: [0; NAME_BYTES], arg: [0; ARG_BYTES] }
    }
}

impl Summary {
    pub fn of(req: &RequestRef<'_>) -> Summary {
        let mut s = Summary { argc: req.argc() as u32, ..Default::default() };
        let name = req.arg(0);
        s.name_len = name.len().min(NAME_BYTES) as u8;
        s.name[..s.name_len as usize].copy_from_slice(&name[..s.name_len as usize]);
        if let Some(arg) = req.get(1) {
            s.arg_total = arg.len() as u32;
            s.arg_len = arg.len().min(ARG_BYTES) as u8;
            s.arg[..s.arg_len as usize].copy_from_slice(&arg[..s.arg_len as usize]);
        }
        s
    }

    /// The arguments as the slow log shows them, with Redis's markers for what was cut.
    fn args(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(3);
        if self.argc == 0 {
            return out;
        }
        out.push(Bytes::copy_from_slice(&self.name[..self.name_len as usize]));
        if self.argc >= 2 {
            let mut arg = self.arg[..self.arg_len as usize].to_vec();
            if self.arg_total > self.arg_len as u32 {
                arg.extend_from_slice(format!("... ({} more bytes)", self.arg_total - self.arg_len as u32).as_bytes());
            }
            out.push(arg.into());
        }
        if self.argc > 2 {
            out.push(format!("... ({} more arguments)", self.argc - 2).into_bytes().into());
        }
        out
    }
}

struct Entry {
    id: u64,
    unix_secs: i64,
    micros: i64,
    args: Vec<Bytes>,
    client: Bytes,
    name: Bytes,
}

pub struct SlowLog {
    /// Microseconds; negative disables the log.
    threshold_us: i64,
    max_len: usize,
    inner: Mutex<(u64, VecDeque<Entry>)>,
}

impl SlowLog {
    pub fn new(threshold_us: i64, max_len: usize) -> SlowLog {
        SlowLog { threshold_us, max_len, inner: Mutex::new((0, VecDeque::new())) }
    }

    /// Whether requests need a [`Summary`] at all.
    pub fn enabled(&self) -> bool {
        self.threshold_us >= 0 && self.max_len > 0
    }

    /// Whether a request that took `elapsed` belongs in the log.
    pub fn is_slow(&self, elapsed: Duration) -> bool {
        self.enabled() && elapsed.as_micros() as i64 >= self.threshold_us
    }

    pub fn push(&self, summary: &Summary, elapsed: Duration, client: &str, name: Option<&Bytes>) {
        let entry = Entry {
            id: 0,
            unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            micros: elapsed.as_micros() as i64,
            args: summary.args(),
            client: Bytes::copy_from_slice(client.as_bytes()),
            name: name.cloned().unwrap_or_default(),
        };
        let mut inner = self.inner.lock();
        let (next, entries) = &mut *inner;
        entries.push_front(Entry { id: *next, ..entry });
        *next += 1;
        entries.truncate(self.max_len);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.inner.lock().1.clear();
    }

    /// `SLOWLOG GET` reply: the newest `count` entries (all with a negative count).
    pub fn reply(&self, count: i64) -> Bytes {
        let inner = self.inner.lock();
        let n = if count < 0 { inner.1.len() } else { (count as usize).min(inner.1.len()) };
        let mut out = BytesMut::new();
        out.put_array_len(n);
        for e in inner.1.iter().take(n) {
            out.put_array_len(6);
            out.put_integer(e.id as i64);
            out.put_integer(e.unix_secs);
            out.put_integer(e.micros);
            out.put_array_len(e.args.len());
            for a in &e.args {
                out.put_bulk(a);
            }
            out.put_bulk(&e.client);
            out.put_bulk(&e.name);
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_resp::Request;

    #[test]
    fn summaries_cut_long_requests_as_redis_does() {
        let long = "k".repeat(100);
        let req = Request::from_args(["SET", long.as_str(), "v", "EX", "10"]);
        let s = Summary::of(&req.as_ref());
        let args = s.args();
        assert_eq!(args[0], "SET");
        assert_eq!(args[1], format!("{}... (60 more bytes)", "k".repeat(40)));
        assert_eq!(args[2], "... (3 more arguments)");
        let ping = Summary::of(&Request::from_args(["PING"]).as_ref());
        assert_eq!(ping.args(), vec![Bytes::from("PING")]);
    }

    #[test]
    fn keeps_the_newest_entries_newest_first() {
        let log = SlowLog::new(0, 2);
        for key in ["a", "b", "c"] {
            let s = Summary::of(&Request::from_args(["GET", key]).as_ref());
            log.push(&s, Duration::from_millis(20), "127.0.0.1:1", None);
        }
        assert_eq!(log.len(), 2);
        let reply = String::from_utf8(log.reply(-1).to_vec()).unwrap();
        let (c, b) = (reply.find("$1\r\nc\r\n").unwrap(), reply.find("$1\r\nb\r\n").unwrap());
        assert!(c < b, "newest first: {reply:?}");
        assert!(reply.starts_with("*2\r\n*6\r\n:2\r\n"), "ids count from 0: {reply:?}");
        assert!(log.is_slow(Duration::ZERO));
        assert!(!SlowLog::new(-1, 10).is_slow(Duration::from_secs(1)));
        log.reset();
        assert!(log.is_empty());
    }
}
