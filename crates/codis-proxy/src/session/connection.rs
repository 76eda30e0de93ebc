//! Commands about the client connection itself, answered by the proxy: AUTH, HELLO
//! (RESP2 or RESP3, per session), CLIENT SETNAME/GETNAME/ID/INFO and RESET.
//! Forwarding them would apply them to a backend connection that many sessions share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use codis_resp::{Encoder, RequestRef};

use super::Session;
use crate::command::{Command, arity_error};
use crate::router::RouteTable;

/// Client ids, unique within this proxy process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

impl Session {
    pub(super) fn auth(&mut self, cmd: &Command, req: &RequestRef<'_>, start: Instant) {
        let (user, password) = match req.argc() {
            2 => (None, req.arg(1)),
            3 => (Some(req.arg(1)), req.arg(2)),
            _ => return self.fail(cmd, start, &arity_error("auth")),
        };
        if self.shared.config.session_auth.is_empty() && user.is_none() {
            return self.fail(cmd, start, "ERR Client sent AUTH, but no password is set");
        }
        match self.check_password(user, password) {
            Ok(()) => {
                self.authorized = true;
                self.reply_now(cmd.id, start, Bytes::from_static(b"+OK\r\n"), false)
            }
            Err(e) => {
                self.authorized = self.shared.config.session_auth.is_empty();
                self.fail(cmd, start, e)
            }
        }
    }

    /// The proxy has one user, `default`, whose password is `session_auth` (any
    /// password when it is empty, as for a Redis without requirepass).
    fn check_password(&self, user: Option<&[u8]>, password: &[u8]) -> Result<(), &'static str> {
        if user.is_some_and(|u| u != b"default") {
            return Err(WRONGPASS);
        }
        let expected = self.shared.config.session_auth.as_bytes();
        if expected.is_empty() || constant_time_eq(password, expected) {
            Ok(())
        } else if user.is_none() {
            Err("ERR invalid password")
        } else {
            Err(WRONGPASS)
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    pub(super) fn hello(&mut self, cmd: &Command, req: &RequestRef<'_>, start: Instant) {
        let mut i = 1;
        let mut resp3 = None;
        if let Some(v) = req.get(1) {
            match std::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(2) => resp3 = Some(false),
                Some(3) => resp3 = Some(true),
                Some(_) => return self.fail(cmd, start, "NOPROTO unsupported protocol version"),
                None => return self.fail(cmd, start, "ERR Protocol version is not an integer or out of range"),
            }
            i = 2;
        }
        let (mut auth, mut name) = (None, None);
        while i < req.argc() {
            let opt = req.arg(i);
            if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < req.argc() {
                auth = Some((req.arg(i + 1), req.arg(i + 2)));
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < req.argc() {
                name = Some(req.arg(i + 1));
                i += 2;
            } else {
                let msg = format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(opt));
                return self.fail(cmd, start, &msg);
            }
        }
        if let Some((user, password)) = auth {
            if let Err(e) = self.check_password(Some(user), password) {
                return self.fail(cmd, start, e);
            }
            self.authorized = true;
        }
        if !self.authorized {
            return self.fail(
                cmd,
                start,
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = name {
            if let Err(e) = valid_name(name) {
                return self.fail(cmd, start, e);
            }
            self.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
        }
        // The reply is in the protocol just chosen, as in Redis.
        if let Some(resp3) = resp3 {
            self.resp3 = resp3;
        }
        let mut out = BytesMut::new();
        if self.resp3 {
            out.put_map_len(7);
        } else {
            out.put_array_len(14);
        }
        for (k, v) in [("server", "redis"), ("version", "7.0.15")] {
            out.put_bulk(k.as_bytes());
            out.put_bulk(v.as_bytes());
        }
        out.put_bulk(b"proto");
        out.put_integer(if self.resp3 { 3 } else { 2 });
        out.put_bulk(b"id");
        out.put_integer(self.id as i64);
        for (k, v) in [("mode", "standalone"), ("role", "master")] {
            out.put_bulk(k.as_bytes());
            out.put_bulk(v.as_bytes());
        }
        out.put_bulk(b"modules");
        out.put_array_len(0);
        self.reply_now(cmd.id, start, out.freeze(), false)
    }

    /// `CLIENT SETNAME | GETNAME | ID | INFO | UNBLOCK`; other subcommands would act on
    /// a shared backend connection or need a view of every proxy, and are refused.
    pub(super) fn client(&mut self, cmd: &'static Command, req: &RequestRef<'_>, start: Instant, table: &RouteTable) {
        let sub = req.arg(1).to_ascii_uppercase();
        let want = match &sub[..] {
            b"SETNAME" => 3,
            b"GETNAME" | b"ID" | b"INFO" => 2,
            b"UNBLOCK" if (3..=4).contains(&req.argc()) => return self.client_unblock(cmd, req, start, table),
            b"UNBLOCK" => return self.fail(cmd, start, &arity_error("client|unblock")),
            _ => {
                let msg = format!(
                    "ERR CLIENT {} is not supported by codis-proxy (it answers CLIENT SETNAME, GETNAME, ID, INFO and UNBLOCK)",
                    String::from_utf8_lossy(&sub)
                );
                return self.fail(cmd, start, &msg);
            }
        };
        if req.argc() != want {
            let name = format!("client|{}", String::from_utf8_lossy(&sub).to_ascii_lowercase());
            return self.fail(cmd, start, &arity_error(&name));
        }
        let mut out = BytesMut::new();
        match &sub[..] {
            b"SETNAME" => {
                let name = req.arg(2);
                if let Err(e) = valid_name(name) {
                    return self.fail(cmd, start, e);
                }
                self.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                out.put_simple(b"OK");
            }
            b"GETNAME" => match &self.name {
                Some(n) => out.put_bulk(n),
                None => out.extend_from_slice(self.nil()),
            },
            b"ID" => out.put_integer(self.id as i64),
            _ => {
                let name = self.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let resp = if self.resp3 { 3 } else { 2 };
                let info = format!("id={} name={name} db={} resp={resp} lib=codis-proxy\n", self.id, self.db);
                out.put_bulk(info.as_bytes());
            }
        }
        self.reply_now(cmd.id, start, out.freeze(), false)
    }

    /// `SLOWLOG GET [count] | LEN | RESET | HELP` on the proxy's own slow log (see
    /// [`crate::slowlog`]); one proxy's, not the servers' (those are in their own).
    pub(super) fn slowlog(&mut self, cmd: &'static Command, req: &RequestRef<'_>, start: Instant) {
        let sub = req.get(1).unwrap_or_default().to_ascii_uppercase();
        let log = &self.shared.slowlog;
        let reply = match (&sub[..], req.argc()) {
            (b"GET", 2) => log.reply(10),
            (b"GET", 3) => match std::str::from_utf8(req.arg(2)).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(n) if n >= -1 => log.reply(n),
                _ => return self.fail(cmd, start, "ERR count should be greater than or equal to -1"),
            },
            (b"LEN", 2) => {
                let mut out = BytesMut::new();
                out.put_integer(log.len() as i64);
                out.freeze()
            }
            (b"RESET", 2) => {
                log.reset();
                Bytes::from_static(b"+OK\r\n")
            }
            (b"HELP", 2) => {
                let mut out = BytesMut::new();
                let lines: [&[u8]; 4] = [
                    b"SLOWLOG GET [<count>] -- the newest entries of codis-proxy's slow log (-1 for all)",
                    b"SLOWLOG LEN -- entries in the log",
                    b"SLOWLOG RESET -- empties the log",
                    b"Requests slower than slowlog_log_slower_than microseconds (proxy.toml) are kept, from request to reply.",
                ];
                out.put_array_len(lines.len());
                for l in lines {
                    out.put_simple(l);
                }
                out.freeze()
            }
            (b"GET" | b"LEN" | b"RESET" | b"HELP", _) => {
                let name = format!("slowlog|{}", String::from_utf8_lossy(&sub).to_ascii_lowercase());
                return self.fail(cmd, start, &arity_error(&name));
            }
            _ => {
                let msg = format!(
                    "ERR unknown subcommand '{}'. Try SLOWLOG HELP.",
                    String::from_utf8_lossy(req.get(1).unwrap_or(b""))
                );
                return self.fail(cmd, start, &msg);
            }
        };
        self.reply_now(cmd.id, start, reply, false)
    }

    /// `RESET`: back to a fresh connection's state (database 0, no name, no
    /// transaction or WATCH, and logged out when the proxy has a password).
    pub(super) fn reset(&mut self, cmd: &Command, req: RequestRef<'_>, start: Instant) {
        let holds = self.multi.is_some() || self.watch.is_some() || !self.private.is_empty();
        if holds && !self.drained_for(&req) {
            return;
        }
        self.reset_exclusive();
        self.reset_pubsub();
        self.db = 0;
        self.resp3 = false;
        self.name = None;
        self.authorized = self.shared.config.session_auth.is_empty();
        self.reply_now(cmd.id, start, Bytes::from_static(b"+RESET\r\n"), false)
    }
}

/// Redis's rule for client names: printable ASCII without spaces.
fn valid_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

/// Compares secrets without revealing the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
