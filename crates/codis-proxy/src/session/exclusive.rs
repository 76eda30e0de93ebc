//! Commands that need a connection of their own: blocking commands, WAIT, and
//! transactions (MULTI/EXEC/DISCARD/WATCH/UNWATCH).
//!
//! They run on the session's [`PrivateConn`]s, one per server it needs, and they run
//! alone: such a request is held until every earlier request of the session has been
//! answered, and nothing after it is sent until it is answered itself. A private
//! connection does not share the order of the shared ones, so without this a `SET k`
//! pipelined before `MULTI; INCR k; EXEC` could run after it. It is also Redis's own
//! semantics for a blocked client, which reads nothing more until it is served.
//!
//! Transactions: the proxy queues MULTI's commands itself (answering `QUEUED`), checks
//! that every key is served by one group (else `CROSSSLOT`, and EXEC then answers
//! `EXECABORT` as Redis does), and at EXEC sends MULTI, the commands and EXEC to that
//! group's master in one batch. A slot of the transaction that is migrating makes EXEC
//! answer `TRYAGAIN` without running anything, rather than split the transaction.
//!
//! A blocked command whose slot starts to move is released on its server with
//! `CLIENT UNBLOCK ... TIMEOUT` and issued again, with the time it has left, where the
//! slot's keys are once the move is done, so it neither waits on a server that no longer
//! receives the pushes nor loses an element that server already handed over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use codis_core::slot_of;
use codis_resp::{Request, RequestRef};

use super::Session;
use super::dispatch::{Target, not_ready};
use super::pending::{Split, State};
use crate::backend::{BackendConn, BackendPool, PrivateConn};
use crate::command::{Command, Handler, Merge};
use crate::command::{arity_error, resolve_spec};
use crate::reply::{DISCARD_PART, Tickets};
use crate::router::RouteTable;

/// A MULTI being queued by the proxy.
pub(super) struct Multi {
    queued: Vec<Request>,
    /// The group every key so far is served by.
    pool: Option<Arc<BackendPool>>,
    slots: Vec<u16>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    failed: bool,
}

/// WATCH in effect on a private connection.
pub(super) struct Watch {
    pool: Arc<BackendPool>,
    slots: Vec<u16>,
    /// The connection that holds the WATCH; if it is gone, so is the WATCH.
    conn: usize,
}

/// A blocking command in flight.
pub(super) struct Blocked {
    pub seq: u64,
    cmd: &'static Command,
    req: Request,
    slot: u16,
    /// The slot's route epoch when the command was sent.
    epoch: u32,
    addr: String,
    /// When the client's timeout runs out (`None`: never).
    deadline: Option<Instant>,
    /// CLIENT UNBLOCK was sent: a nil reply means "issue it again".
    unblocking: bool,
    /// Released, waiting for the slot's move to finish before it is issued again.
    waiting_route: bool,
}

impl Session {
    /// The session's own connection to `pool`'s server in the current database and
    /// protocol.
    fn private_conn(&mut self, pool: &BackendPool) -> &BackendConn {
        self.private.retain(PrivateConn::is_usable);
        let key = self.key();
        let i = match self.private.iter().position(|p| p.addr() == pool.addr() && p.key() == key) {
            Some(i) => i,
            None => {
                self.private.push(pool.private(key));
                self.private.len() - 1
            }
        };
        self.private[i].conn()
    }

    /// True if every earlier request is answered; otherwise holds `req` back until
    /// they are (see the module header).
    pub(super) fn drained_for(&mut self, req: &RequestRef<'_>) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        self.stalled = Some(req.to_owned());
        self.stall_drain = true;
        false
    }

    pub(super) fn send_private(&mut self, pool: &BackendPool, payload: &[u8], seq: u64, part: u32, tickets: Tickets) {
        let conn = self.private_conn(pool).handle().clone();
        let mut batch = crate::backend::Batch::new(self.inbox.clone());
        batch.push_slice(payload, seq, part, tickets);
        conn.send(batch);
    }

    /// BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, and
    /// XREAD/XREADGROUP with BLOCK.
    pub(super) fn blocking(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        let slot = match self.key_target(cmd, &req, table) {
            Ok(Target::Slot(slot, Some(_))) => slot,
            // No key found: the arguments are wrong (BZMPOP 0 0 ..., XREAD BLOCK 0 x),
            // and any server answers with Redis's own error without blocking. Sent
            // directly: `forward` would hand an XREAD ... BLOCK back here, and the two
            // would call each other until the stack overflowed (found by a fuzz helper).
            Ok(target) => return self.send_to(cmd, target, req, start, table),
            Err(e) => return self.fail(cmd, start, &e),
        };
        let deadline = match block_timeout(cmd, &req) {
            Ok(t) => t.map(|t| start + t),
            Err(e) => return self.fail(cmd, start, &e),
        };
        if !self.drained_for(&req) {
            return;
        }
        let seq = self.pending.push(cmd.id, start, State::Waiting);
        let blocked = Blocked {
            seq,
            cmd,
            req: req.to_owned(),
            slot,
            epoch: 0,
            addr: String::new(),
            deadline,
            unblocking: false,
            waiting_route: false,
        };
        self.exclusive = true;
        self.blocked = Some(Box::new(blocked));
        self.issue_blocked(table);
    }

    /// Sends the blocked command to its slot's owner, unless the slot is moving (then
    /// it waits for the next routing change).
    fn issue_blocked(&mut self, table: &RouteTable) {
        let Some(mut b) = self.blocked.take() else { return };
        let route = &table.slots[b.slot as usize];
        if route.locked() || route.migrate_from.is_some() {
            b.waiting_route = true;
            self.blocked = Some(b);
            return;
        }
        let Some(pool) = route.backend.clone() else {
            let _ = self.pending.deliver(b.seq, 0, crate::reply::error_reply(&not_ready(b.slot)), true);
            return;
        };
        let req = match b.deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            // Issued again: with the time the client has left.
            Some(left) if b.epoch != 0 => with_timeout(b.cmd, &b.req, left.max(Duration::from_millis(1))),
            _ => b.req.clone(),
        };
        b.epoch = route.epoch;
        b.addr = pool.addr().to_string();
        b.unblocking = false;
        b.waiting_route = false;
        // No slot ticket: a command blocked for minutes must not hold up a routing change.
        self.send_private(&pool, req.raw(), b.seq, 0, Tickets::None);
        let handle = self.private_conn(&pool).handle().clone();
        self.shared.blocked.lock().insert(self.id, handle);
        self.blocked = Some(b);
    }

    /// When a blocked command that waits for its slot's move to finish times out.
    pub(super) fn waiting_blocked_deadline(&self) -> Option<tokio::time::Instant> {
        let b = self.blocked.as_ref().filter(|b| b.waiting_route)?;
        b.deadline.map(tokio::time::Instant::from_std)
    }

    /// Answers a blocked command whose time ran out while it waited for its slot's
    /// move to finish (no server holds it, so none would time it out).
    pub(super) fn expire_waiting_blocked(&mut self) {
        if self.waiting_blocked_deadline().is_none_or(|d| d > tokio::time::Instant::now()) {
            return;
        }
        let Some(b) = self.blocked.take() else { return };
        self.shared.blocked.lock().remove(&self.id);
        let nil = if matches!(b.cmd.name, "BLMOVE" | "BRPOPLPUSH") { self.nil() } else { self.nil_array() };
        let _ = self.pending.deliver(b.seq, 0, Bytes::from_static(nil), true);
    }

    /// After a routing change: release a blocked command whose slot moved, or issue
    /// again one that waited for the move to finish.
    pub(super) fn blocked_route_changed(&mut self, table: &RouteTable) {
        let key = self.key();
        let Some(b) = self.blocked.as_mut() else { return };
        if b.waiting_route {
            return self.issue_blocked(table);
        }
        if b.unblocking || table.slots[b.slot as usize].epoch == b.epoch {
            return;
        }
        let conn = self.private.iter().find(|p| p.addr() == b.addr && p.key() == key);
        let (Some(id), Some(pool)) =
            (conn.and_then(PrivateConn::client_id), self.shared.router.pool_by_addr(b.addr.as_bytes()))
        else {
            return;
        };
        b.unblocking = true;
        let unblock = Request::from_args([&b"CLIENT"[..], b"UNBLOCK", id.to_string().as_bytes(), b"TIMEOUT"]);
        let conn = pool.conn(self.key(), self.seed);
        self.queue(conn, unblock.as_ref(), 0, DISCARD_PART, Tickets::None);
        self.flush_outbox();
    }

    /// A reply to the blocked command: true if it was released by the proxy and is
    /// issued again instead of answered.
    pub(super) fn blocked_reply(&mut self, reply: &[u8]) -> bool {
        let Some(b) = self.blocked.as_ref() else { return false };
        let timed_out = matches!(reply, b"*-1\r\n" | b"$-1\r\n" | b"_\r\n");
        let time_left = b.deadline.is_none_or(|d| d > Instant::now());
        if b.unblocking && timed_out && time_left {
            let router = self.shared.router.clone();
            let table = router.load_full();
            self.issue_blocked(&table);
            return true;
        }
        self.blocked = None;
        self.shared.blocked.lock().remove(&self.id);
        false
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]` for a session of this proxy: passed to the
    /// server its command waits on, with that connection's id there.
    pub(super) fn client_unblock(
        &mut self,
        cmd: &'static Command,
        req: &RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        let Some(id) = std::str::from_utf8(req.arg(2)).ok().and_then(|s| s.parse::<u64>().ok()) else {
            return self.fail(cmd, start, "ERR value is not an integer or out of range");
        };
        let mode: &[u8] = match req.get(3) {
            None => b"TIMEOUT",
            Some(m) if m.eq_ignore_ascii_case(b"TIMEOUT") => b"TIMEOUT",
            Some(m) if m.eq_ignore_ascii_case(b"ERROR") => b"ERROR",
            Some(_) => return self.fail(cmd, start, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
        };
        let waiting = self.shared.blocked.lock().get(&id).cloned();
        let target =
            waiting.and_then(|h| Some((h.client_id()?, self.shared.router.pool_by_addr(h.addr().as_bytes())?)));
        let Some((backend_id, pool)) = target else {
            return self.reply_now(cmd.id, start, Bytes::from_static(b":0\r\n"), false);
        };
        let unblock = Request::from_args([&b"CLIENT"[..], b"UNBLOCK", backend_id.to_string().as_bytes(), mode]);
        self.send_to(cmd, Target::Pool(pool), unblock.as_ref(), start, table)
    }

    /// `WAIT numreplicas timeout`: on every group's master, after a write on this
    /// session's own connection that follows everything the session wrote (a PUBLISH
    /// no one listens to), so the replicas' acknowledgements cover those writes. The
    /// reply is the smallest count over the groups.
    pub(super) fn wait(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        if block_timeout(cmd, &req).is_err() || req.arg(1).iter().any(|b| !b.is_ascii_digit()) {
            return self.fail(cmd, start, "ERR value is out of range, must be positive");
        }
        let groups = table.groups.clone();
        if groups.is_empty() {
            return self.fail(cmd, start, "ERR no slot has a backend yet; assign slots to groups first");
        }
        if !self.drained_for(&req) {
            return;
        }
        let n = groups.len();
        let state = if n == 1 { State::Waiting } else { State::Split(Box::new(Split::new(Merge::Min, n, Vec::new()))) };
        let seq = self.pending.push(cmd.id, start, state);
        let mark = Request::from_args([&b"PUBLISH"[..], b"__codis_rs_wait__", b""]);
        for (i, pool) in groups.iter().enumerate() {
            let conn = self.private_conn(pool).handle().clone();
            let mut batch = crate::backend::Batch::new(self.inbox.clone());
            batch.push_slice(mark.raw(), seq, DISCARD_PART, Tickets::None);
            batch.push_slice(req.raw(), seq, i as u32, Tickets::None);
            conn.send(batch);
        }
        self.exclusive = true;
    }

    pub(super) fn multi(&mut self, cmd: &Command, start: Instant) {
        if self.multi.is_some() {
            return self.fail(cmd, start, "ERR MULTI calls can not be nested");
        }
        let pool = self.watch.as_ref().map(|w| w.pool.clone());
        self.multi = Some(Box::new(Multi { queued: Vec::new(), pool, slots: Vec::new(), failed: false }));
        self.reply_now(cmd.id, start, Bytes::from_static(b"+OK\r\n"), false)
    }

    /// A command between MULTI and EXEC: checked and queued by the proxy.
    pub(super) fn queue_in_multi(
        &mut self,
        cmd: &'static Command,
        req: RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        if let Err(e) = self.check_queued(cmd, &req, table) {
            if let Some(m) = self.multi.as_mut() {
                m.failed = true;
            }
            return self.fail(cmd, start, &e);
        }
        if let Some(m) = self.multi.as_mut() {
            m.queued.push(req.to_owned());
        }
        self.reply_now(cmd.id, start, Bytes::from_static(b"+QUEUED\r\n"), false)
    }

    fn check_queued(&mut self, cmd: &'static Command, req: &RequestRef<'_>, table: &RouteTable) -> Result<(), String> {
        if cmd.is_not_allowed() {
            let name = String::from_utf8_lossy(req.arg(0)).to_ascii_uppercase();
            return Err(format!("ERR handle request, command '{name}' is not allowed"));
        }
        if let Some(spec) = cmd.spec
            && !spec.arity_ok(req.argc())
        {
            return Err(arity_error(spec.name));
        }
        match cmd.handler {
            Handler::Forward | Handler::Split(_) | Handler::Blocking | Handler::Ping | Handler::Echo => {}
            _ => return Err(format!("ERR {} inside MULTI is not supported by codis-proxy", cmd.name)),
        }
        let mut slots = Vec::new();
        match (cmd.handler, resolve_spec(cmd, req)) {
            (Handler::Ping | Handler::Echo, _) => {}
            (_, Some(spec)) => spec.for_each_key(req.argc(), |i| req.get(i), |i| slots.push(slot_of(req.arg(i)))),
            (_, None) if cmd.spec.is_none() && req.argc() > 1 => slots.push(slot_of(req.arg(1))),
            _ => {}
        }
        let Some(m) = self.multi.as_mut() else { return Ok(()) };
        for slot in slots {
            let Some(backend) = &table.slots[slot as usize].backend else { return Err(not_ready(slot)) };
            match &m.pool {
                Some(p) if !Arc::ptr_eq(p, backend) => {
                    return Err(format!(
                        "CROSSSLOT Keys in request don't hash to the same group as the transaction's other keys ('{}'); \
                         give them a common hash tag such as {{user1000}}",
                        cmd.name
                    ));
                }
                Some(_) => {}
                None => m.pool = Some(backend.clone()),
            }
            if !m.slots.contains(&slot) {
                m.slots.push(slot);
            }
        }
        Ok(())
    }

    pub(super) fn exec(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        if self.multi.is_none() {
            return self.fail(cmd, start, "ERR EXEC without MULTI");
        }
        if !self.drained_for(&req) {
            return;
        }
        let m = self.multi.take().expect("checked above");
        let watch = self.watch.take();
        if m.failed {
            self.unwatch_quietly(watch.as_ref());
            return self.reply_now(
                cmd.id,
                start,
                Bytes::from_static(b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
                false,
            );
        }
        let pool = match m.pool.clone().or_else(|| watch.as_ref().map(|w| w.pool.clone())) {
            Some(p) => p,
            None => match self.any_slot(table).and_then(|s| table.slots[s as usize].backend.clone()) {
                Some(p) => p,
                None => return self.fail(cmd, start, "ERR no slot has a backend yet; assign slots to groups first"),
            },
        };
        let slots: Vec<u16> = m.slots.iter().chain(watch.iter().flat_map(|w| w.slots.iter())).copied().collect();
        for &slot in &slots {
            let route = &table.slots[slot as usize];
            let moved = route.backend.as_ref().is_none_or(|b| !Arc::ptr_eq(b, &pool));
            if route.locked() || route.migrate_from.is_some() || moved {
                self.unwatch_quietly(watch.as_ref());
                let msg = format!("TRYAGAIN slot {slot} is migrating; the transaction was not run, run it again");
                return self.fail(cmd, start, &msg);
            }
        }
        if let Some(w) = &watch {
            // The WATCH went with its connection: the transaction must not run unwatched.
            let conn = self.private.iter().find(|p| p.addr() == w.pool.addr() && p.key() == self.key());
            if conn.is_none_or(|c| !c.is_usable() || c.conn().handle().id() != w.conn) {
                return self.reply_now(cmd.id, start, Bytes::from_static(self.nil_array()), false);
            }
        }
        let router = &self.shared.router;
        let mut tickets: Vec<(u16, u8)> = Vec::new();
        for &slot in &slots {
            if !tickets.iter().any(|t| t.0 == slot) {
                let t = router.enter(table, slot);
                tickets.push((t.slot, t.parity));
            }
        }
        let seq = self.pending.push(cmd.id, start, State::Waiting);
        let conn = self.private_conn(&pool).handle().clone();
        let mut batch = crate::backend::Batch::new(self.inbox.clone());
        batch.push_slice(b"*1\r\n$5\r\nMULTI\r\n", seq, DISCARD_PART, Tickets::None);
        for q in &m.queued {
            batch.push_slice(q.raw(), seq, DISCARD_PART, Tickets::None);
        }
        batch.push_slice(req.raw(), seq, 0, Tickets::Many(tickets.into_boxed_slice()));
        conn.send(batch);
        self.exclusive = true;
    }

    pub(super) fn discard(&mut self, cmd: &Command, start: Instant) {
        if self.multi.take().is_none() {
            return self.fail(cmd, start, "ERR DISCARD without MULTI");
        }
        let watch = self.watch.take();
        self.unwatch_quietly(watch.as_ref());
        self.reply_now(cmd.id, start, Bytes::from_static(b"+OK\r\n"), false)
    }

    /// Drops a WATCH on its connection without a reply to wait for.
    fn unwatch_quietly(&mut self, watch: Option<&Watch>) {
        if let Some(w) = watch {
            self.send_private(&w.pool.clone(), b"*1\r\n$7\r\nUNWATCH\r\n", 0, DISCARD_PART, Tickets::None);
        }
    }

    pub(super) fn watch(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        if self.multi.is_some() {
            return self.fail(cmd, start, "ERR WATCH inside MULTI is not allowed");
        }
        let mut slots = Vec::new();
        for i in 1..req.argc() {
            let slot = slot_of(req.arg(i));
            if !slots.contains(&slot) {
                slots.push(slot);
            }
        }
        let mut pool = self.watch.as_ref().map(|w| w.pool.clone());
        for &slot in &slots {
            let route = &table.slots[slot as usize];
            let Some(backend) = &route.backend else { return self.fail(cmd, start, &not_ready(slot)) };
            if route.locked() || route.migrate_from.is_some() {
                let msg = format!("TRYAGAIN slot {slot} is migrating; WATCH again in a moment");
                return self.fail(cmd, start, &msg);
            }
            match &pool {
                Some(p) if !Arc::ptr_eq(p, backend) => {
                    return self.fail(
                        cmd,
                        start,
                        "CROSSSLOT Keys in request don't hash to the same group as the keys already watched; \
                         give them a common hash tag such as {user1000}",
                    );
                }
                Some(_) => {}
                None => pool = Some(backend.clone()),
            }
        }
        let pool = pool.expect("WATCH has at least one key");
        if !self.drained_for(&req) {
            return;
        }
        let seq = self.pending.push(cmd.id, start, State::Waiting);
        self.send_private(&pool, req.raw(), seq, 0, Tickets::None);
        let conn = self.private_conn(&pool).handle().id();
        match self.watch.as_mut() {
            Some(w) => w.slots.extend(slots.into_iter().filter(|s| !w.slots.contains(s)).collect::<Vec<_>>()),
            None => self.watch = Some(Watch { pool, slots, conn }),
        }
        self.exclusive = true;
    }

    pub(super) fn unwatch(&mut self, cmd: &Command, req: RequestRef<'_>, start: Instant) {
        let Some(pool) = self.watch.as_ref().map(|w| w.pool.clone()) else {
            return self.reply_now(cmd.id, start, Bytes::from_static(b"+OK\r\n"), false);
        };
        if !self.drained_for(&req) {
            return;
        }
        self.watch = None;
        let seq = self.pending.push(cmd.id, start, State::Waiting);
        self.send_private(&pool, req.raw(), seq, 0, Tickets::None);
        self.exclusive = true;
    }

    /// RESET's part: no transaction, no WATCH, no connections of its own.
    pub(super) fn reset_exclusive(&mut self) {
        self.multi = None;
        self.watch = None;
        self.private.clear();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.blocked.is_some() {
            self.shared.blocked.lock().remove(&self.id);
        }
    }
}

/// Which argument holds a blocking command's timeout, and in what unit.
fn timeout_arg(cmd: &Command, req: &RequestRef<'_>) -> Option<(usize, bool)> {
    let last = req.argc() - 1;
    match cmd.name {
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BRPOPLPUSH" | "BLMOVE" => Some((last, false)),
        "BLMPOP" | "BZMPOP" => Some((1, false)),
        "WAIT" => Some((2, true)),
        "XREAD" | "XREADGROUP" => {
            (1..req.argc()).find(|&i| req.arg(i).eq_ignore_ascii_case(b"BLOCK")).map(|i| (i + 1, true))
        }
        _ => None,
    }
}

/// The client's timeout (`None` for 0, which waits forever); a clear error for a bad one.
fn block_timeout(cmd: &Command, req: &RequestRef<'_>) -> Result<Option<Duration>, String> {
    let Some((i, millis)) = timeout_arg(cmd, req) else { return Ok(None) };
    let text = std::str::from_utf8(req.get(i).unwrap_or_default()).unwrap_or("");
    let secs = if millis {
        text.parse::<i64>().ok().map(|ms| ms as f64 / 1000.0)
    } else {
        text.parse::<f64>().ok().filter(|s| s.is_finite())
    };
    match secs {
        Some(s) if s < 0.0 => Err("ERR timeout is negative".into()),
        Some(0.0) => Ok(None),
        Some(s) => Ok(Some(Duration::from_secs_f64(s))),
        None if millis => Err("ERR timeout is not an integer or out of range".into()),
        None => Err("ERR timeout is not a float or out of range".into()),
    }
}

/// `req` with its timeout replaced by `left`.
fn with_timeout(cmd: &Command, req: &Request, left: Duration) -> Request {
    let r = req.as_ref();
    let Some((i, millis)) = timeout_arg(cmd, &r) else { return req.clone() };
    let value = if millis { left.as_millis().max(1).to_string() } else { format!("{:.3}", left.as_secs_f64()) };
    let args: Vec<&[u8]> = (0..r.argc()).map(|j| if j == i { value.as_bytes() } else { r.arg(j) }).collect();
    Request::from_args(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn req(args: &[&str]) -> Request {
        Request::from_args(args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn timeouts_are_found_and_rewritten() {
        let cases: &[(&[&str], Option<Duration>)] = &[
            (&["BLPOP", "a", "b", "1.5"], Some(Duration::from_millis(1500))),
            (&["BLPOP", "a", "0"], None),
            (&["BLMPOP", "2", "1", "a", "LEFT"], Some(Duration::from_secs(2))),
            (&["XREAD", "COUNT", "1", "BLOCK", "250", "STREAMS", "s", "$"], Some(Duration::from_millis(250))),
            (&["WAIT", "1", "100"], Some(Duration::from_millis(100))),
        ];
        for (args, want) in cases {
            let r = req(args);
            let cmd = lookup(args[0].as_bytes());
            assert_eq!(block_timeout(cmd, &r.as_ref()).unwrap(), *want, "{args:?}");
        }
        let cmd = lookup(b"BLPOP");
        assert!(block_timeout(cmd, &req(&["BLPOP", "a", "x"]).as_ref()).unwrap_err().contains("not a float"));
        assert_eq!(block_timeout(cmd, &req(&["BLPOP", "a", "-1"]).as_ref()), Err("ERR timeout is negative".into()));
        let again = with_timeout(cmd, &req(&["BLPOP", "a", "9"]), Duration::from_millis(2500));
        assert_eq!(again.raw(), req(&["BLPOP", "a", "2.500"]).raw());
        let x = lookup(b"XREAD");
        let again = with_timeout(x, &req(&["XREAD", "BLOCK", "900", "STREAMS", "s", "$"]), Duration::from_millis(40));
        assert_eq!(again.raw(), req(&["XREAD", "BLOCK", "40", "STREAMS", "s", "$"]).raw());
    }
}
