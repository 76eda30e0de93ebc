//! What a session does with each request: answer it, forward it, or split it.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use codis_core::{MAX_SLOT_NUM, slot_of};
use codis_resp::{Encoder, Request, RequestRef};

use super::Session;
use super::migrate::Migration;
use super::pending::{Split, State};
use crate::backend::{BackendConn, BackendPool, ConnKey};
use crate::command::{self, Command, Handler, Refusal, SplitKind, arity_error, resolve_spec};
use crate::reply::{Tickets, error_reply};
use crate::router::{RouteTable, SlotRoute};

const OK: &[u8] = b"+OK\r\n";

/// Where a forwarded request goes.
pub(super) enum Target {
    /// The slot's owner; the key argument (if any) decides where a migrating slot's
    /// request runs.
    Slot(u16, Option<usize>),
    Pool(Arc<BackendPool>),
}

impl Session {
    pub(super) fn dispatch_request(&mut self, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        if self.shared.slowlog.enabled() {
            self.pending.summary = crate::slowlog::Summary::of(&req);
        }
        let cmd = command::lookup(req.arg(0));
        if cmd.is_not_allowed() && matches!(cmd.name, "POST" | "HOST:") {
            // An HTTP request sent to the RESP port (a cross-protocol attack): hang up,
            // as Redis does, instead of answering every header line. Before the
            // password check, as in Redis: such a client never authenticates.
            self.closing = true;
            return self.fail(cmd, start, &Refusal::Http.to_string());
        }
        if !self.authorized && !matches!(cmd.handler, Handler::Auth | Handler::Quit | Handler::Hello | Handler::Reset) {
            return self.reply_static(cmd, start, b"-NOAUTH Authentication required.\r\n");
        }
        if self.pubsub.is_some()
            && !self.resp3
            && let Some(e) = Self::subscribed_refusal(cmd, &req)
        {
            return self.reply_now(cmd.id, start, error_reply(&e), false);
        }
        if self.multi.is_some()
            && !matches!(
                cmd.handler,
                Handler::Exec | Handler::Discard | Handler::Multi | Handler::Watch | Handler::Quit | Handler::Reset
            )
        {
            return self.queue_in_multi(cmd, req, start, table);
        }
        if let Some(r) = command::refusal(cmd, &req) {
            return self.fail(cmd, start, &r.to_string());
        }
        match cmd.handler {
            Handler::Forward => self.forward(cmd, req, start, table),
            Handler::Split(kind) => self.split(cmd, kind, req, start, table),
            Handler::Ping if self.subscribed() && !self.resp3 => self.subscribed_ping(cmd, &req, start),
            Handler::Ping => match req.argc() {
                1 => self.reply_static(cmd, start, b"+PONG\r\n"),
                _ => match self.shared.router.pool_by_addr(req.arg(1)) {
                    Some(pool) => {
                        let ping = Request::from_args([req.arg(0)]);
                        self.send_to(cmd, Target::Pool(pool), ping.as_ref(), start, table)
                    }
                    None => self.reply_bulk(cmd, start, req.arg(1)),
                },
            },
            Handler::Echo => self.reply_bulk(cmd, start, req.arg(1)),
            Handler::Quit => {
                self.closing = true;
                self.reply_static(cmd, start, OK)
            }
            Handler::Auth => self.auth(cmd, &req, start),
            Handler::Select => self.select(cmd, &req, start),
            Handler::Info => self.info(cmd, req, start, table),
            Handler::SlotsHashKey => {
                let mut out = BytesMut::new();
                out.put_array_len(req.argc() - 1);
                for key in req.args().skip(1) {
                    out.put_integer(slot_of(key) as i64);
                }
                self.reply_now(cmd.id, start, out.freeze(), false)
            }
            Handler::SlotsMapping => self.slots_mapping(cmd, &req, start, table),
            Handler::SlotsInfo => match req.argc() {
                2 => match self.shared.router.pool_by_addr(req.arg(1)) {
                    Some(pool) => {
                        let info = Request::from_args([req.arg(0)]);
                        self.send_to(cmd, Target::Pool(pool), info.as_ref(), start, table)
                    }
                    None => self.fail(cmd, start, &unknown_backend(req.arg(1))),
                },
                _ => self.fail(
                    cmd,
                    start,
                    "ERR wrong number of arguments for 'SLOTSINFO' command (usage: SLOTSINFO <backend addr>)",
                ),
            },
            Handler::Broadcast => self.broadcast(cmd, req, start, table),
            Handler::Scan => self.scan(cmd, req, start, table),
            Handler::Client => self.client(cmd, &req, start, table),
            Handler::Slowlog => self.slowlog(cmd, &req, start),
            Handler::Hello => self.hello(cmd, &req, start),
            Handler::Reset => self.reset(cmd, req, start),
            Handler::Blocking => self.blocking(cmd, req, start, table),
            Handler::Wait => self.wait(cmd, req, start, table),
            Handler::Multi => self.multi(cmd, start),
            Handler::Exec => self.exec(cmd, req, start, table),
            Handler::Discard => self.discard(cmd, start),
            Handler::Watch => self.watch(cmd, req, start, table),
            Handler::Unwatch => self.unwatch(cmd, req, start),
            Handler::Subscribe(kind) => self.subscribe(cmd, kind, req, start, table),
            Handler::Unsubscribe(kind) => self.unsubscribe(cmd, kind, req, start),
            Handler::Publish => self.publish(cmd, req, start, table),
            Handler::Pubsub => self.pubsub_command(cmd, req, start, table),
            Handler::SlotsScan => match parse_slot(req.get(1)) {
                Ok(slot) => self.send_to(cmd, Target::Slot(slot, None), req, start, table),
                Err(e) => self.fail(cmd, start, &e),
            },
        }
    }

    fn reply_static(&mut self, cmd: &Command, start: Instant, reply: &'static [u8]) {
        self.reply_now(cmd.id, start, Bytes::from_static(reply), false)
    }

    fn reply_bulk(&mut self, cmd: &Command, start: Instant, data: &[u8]) {
        let mut out = BytesMut::with_capacity(data.len() + 16);
        out.put_bulk(data);
        self.reply_now(cmd.id, start, out.freeze(), false)
    }

    /// An error made by the proxy (counted as a failure).
    pub(super) fn fail(&mut self, cmd: &Command, start: Instant, msg: &str) {
        self.reply_now(cmd.id, start, error_reply(msg), true)
    }

    fn select(&mut self, cmd: &Command, req: &RequestRef<'_>, start: Instant) {
        let databases = self.shared.config.backend_number_databases;
        match std::str::from_utf8(req.arg(1)).ok().and_then(|s| s.parse::<i64>().ok()) {
            None => self.fail(cmd, start, "ERR invalid DB index"),
            Some(db) if db < 0 || db >= databases => {
                self.fail(cmd, start, &format!("ERR invalid DB index, only accept DB [0,{databases})"))
            }
            Some(db) => {
                self.db = db as usize;
                self.reply_static(cmd, start, OK)
            }
        }
    }

    fn info(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        // `INFO <backend addr> [section]` asks that backend, as in Codis.
        if let Some(pool) = req.get(1).and_then(|a| self.shared.router.pool_by_addr(a)) {
            let args: Vec<&[u8]> = std::iter::once(req.arg(0)).chain(req.args().skip(2)).collect();
            let info = Request::from_args(args);
            return self.send_to(cmd, Target::Pool(pool), info.as_ref(), start, table);
        }
        let section = Bytes::from(self.shared.info_section());
        let only_proxy = req.argc() == 2 && req.arg(1).eq_ignore_ascii_case(b"proxy");
        match (only_proxy, self.any_slot(table)) {
            (false, Some(slot)) => {
                self.send_with_state(cmd, Target::Slot(slot, None), req, start, State::Info(section), table)
            }
            _ => {
                let mut out = BytesMut::new();
                out.put_bulk(&section);
                self.reply_now(cmd.id, start, out.freeze(), false)
            }
        }
    }

    fn slots_mapping(&mut self, cmd: &Command, req: &RequestRef<'_>, start: Instant, table: &RouteTable) {
        fn put_slot(out: &mut BytesMut, route: &SlotRoute) {
            let m = &route.model;
            out.put_array_len(4);
            out.put_bulk(m.id.to_string().as_bytes());
            out.put_bulk(m.backend_addr.as_bytes());
            out.put_bulk(m.migrate_from.as_bytes());
            out.put_array_len(m.replica_groups.len());
            for g in &m.replica_groups {
                out.put_array_len(g.len());
                for a in g {
                    out.put_bulk(a.as_bytes());
                }
            }
        }
        let mut out = BytesMut::new();
        match req.argc() {
            1 => {
                out.put_array_len(MAX_SLOT_NUM);
                for route in table.slots.iter() {
                    put_slot(&mut out, route);
                }
            }
            2 => match parse_slot(req.get(1)) {
                Ok(slot) => put_slot(&mut out, &table.slots[slot as usize]),
                Err(e) => return self.fail(cmd, start, &e),
            },
            _ => return self.fail(cmd, start, &arity_error("slotsmapping")),
        }
        self.reply_now(cmd.id, start, out.freeze(), false)
    }

    /// A slot that has a backend, starting from a per-session pseudo-random point, for
    /// commands without keys.
    pub(super) fn any_slot(&mut self, table: &RouteTable) -> Option<u16> {
        self.seed = self.seed.wrapping_add(1);
        let from = self.seed.wrapping_mul(0x9E37_79B9) % MAX_SLOT_NUM;
        (0..MAX_SLOT_NUM)
            .map(|i| (from + i) % MAX_SLOT_NUM)
            .find(|&s| table.slots[s].backend.is_some())
            .map(|s| s as u16)
    }

    /// Routes a command by its keys: all of them must be served by one group.
    pub(super) fn forward(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        if matches!(cmd.name, "XREAD" | "XREADGROUP") && req.args().any(|a| a.eq_ignore_ascii_case(b"BLOCK")) {
            return self.blocking(cmd, req, start, table);
        }
        match self.key_target(cmd, &req, table) {
            Ok(target) => self.send_to(cmd, target, req, start, table),
            Err(e) => self.fail(cmd, start, &e),
        }
    }

    /// Where a command's keys say it goes: the first key's slot (all keys must be
    /// served by one group), or any slot for a command without keys.
    pub(super) fn key_target(
        &mut self,
        cmd: &'static Command,
        req: &RequestRef<'_>,
        table: &RouteTable,
    ) -> Result<Target, String> {
        let mut first: Option<(u16, usize)> = None;
        let mut cross = false;
        let mut check = |arg: usize| {
            let slot = slot_of(req.arg(arg));
            match first {
                None => first = Some((slot, arg)),
                Some((f, _)) => cross |= !same_group(&table.slots[f as usize], &table.slots[slot as usize]),
            }
        };
        match resolve_spec(cmd, req) {
            Some(spec) => spec.for_each_key(req.argc(), |i| req.get(i), check),
            // Unknown to the table: routed by the first argument, as Codis does.
            None if cmd.spec.is_none() && req.argc() > 1 => check(1),
            None => {}
        }
        if cross {
            return Err(format!(
                "CROSSSLOT Keys in request don't hash to the same group ('{}'); give them a common hash tag such as {{user1000}}",
                cmd.name
            ));
        }
        match first {
            Some((slot, arg)) => Ok(Target::Slot(slot, Some(arg))),
            None => match self.any_slot(table) {
                Some(slot) => Ok(Target::Slot(slot, None)),
                None => Err("ERR no slot has a backend yet; assign slots to groups first".to_string()),
            },
        }
    }

    pub(super) fn send_to(
        &mut self,
        cmd: &'static Command,
        target: Target,
        req: RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        self.send_with_state(cmd, target, req, start, State::Waiting, table)
    }

    /// Sends one request and records its pending entry. A request for a locked slot is
    /// held back (with everything after it) until the slot is unlocked.
    fn send_with_state(
        &mut self,
        cmd: &'static Command,
        target: Target,
        req: RequestRef<'_>,
        start: Instant,
        state: State,
        table: &RouteTable,
    ) {
        self.seed = self.seed.wrapping_add(1);
        let (slot, key) = match target {
            Target::Pool(pool) => {
                let seq = self.pending.push(cmd.id, start, state);
                let conn = pool.conn(self.key(), self.seed);
                self.queue(conn, req, seq, 0, Tickets::None);
                return;
            }
            Target::Slot(slot, key) => (slot, key),
        };
        let route = &table.slots[slot as usize];
        if route.locked() {
            self.stalled = Some(req.to_owned());
            return;
        }
        if route.backend.is_none() {
            return self.fail(cmd, start, &not_ready(slot));
        }
        if let (Some(_), Some(arg)) = (&route.migrate_from, key) {
            // The first key decides; every key of the command in this slot moves with it.
            let mut keys = vec![Bytes::copy_from_slice(req.arg(arg))];
            if let Some(spec) = resolve_spec(cmd, &req) {
                spec.for_each_key(
                    req.argc(),
                    |i| req.get(i),
                    |i| {
                        let k = req.arg(i);
                        if slot_of(k) == slot && !keys.iter().any(|x| &x[..] == k) {
                            keys.push(Bytes::copy_from_slice(k));
                        }
                    },
                );
            }
            let seq = self.pending.push(cmd.id, start, state);
            let m = Migration::new(req.to_owned(), keys, slot);
            return self.start_migration(table, seq, 0, m);
        }
        let ticket = self.shared.router.enter(table, slot);
        let seq = self.pending.push(cmd.id, start, state);
        let conn = pick_conn(route, cmd, self.key(), self.seed, self.shared.config.backend_primary_only);
        self.queue(conn, req, seq, 0, Tickets::One(ticket.slot, ticket.parity));
    }

    /// Splits a multi-key command into one sub-request per backend and merges the replies.
    fn split(
        &mut self,
        cmd: &'static Command,
        kind: SplitKind,
        req: RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        let stride = kind.stride();
        if !(req.argc() - 1).is_multiple_of(stride) {
            return self.fail(cmd, start, &arity_error(cmd.name));
        }
        let nkeys = (req.argc() - 1) / stride;
        // Group the keys by backend, in order of first appearance.
        let mut parts: Vec<Part> = Vec::new();
        let mut positions: Vec<(u32, u32)> = Vec::with_capacity(if kind == SplitKind::Mget { nkeys } else { 0 });
        for k in 0..nkeys {
            let arg = 1 + k * stride;
            let slot = slot_of(req.arg(arg));
            let route = &table.slots[slot as usize];
            if route.locked() {
                self.stalled = Some(req.to_owned());
                return;
            }
            let Some(backend) = &route.backend else {
                return self.fail(cmd, start, &not_ready(slot));
            };
            // Keys of a migrating slot go alone, each through the migration steps.
            let migrating = route.migrate_from.is_some();
            let p = match parts.iter().position(|p| !migrating && !p.migrating && Arc::ptr_eq(&p.backend, backend)) {
                Some(p) => p,
                None => {
                    parts.push(Part {
                        backend: backend.clone(),
                        first_slot: slot,
                        migrating,
                        args: Vec::new(),
                        slots: Vec::new(),
                    });
                    parts.len() - 1
                }
            };
            let part = &mut parts[p];
            if kind == SplitKind::Mget {
                positions.push((p as u32, part.args.len() as u32));
            }
            part.args.push(arg);
            if !part.slots.contains(&slot) {
                part.slots.push(slot);
            }
        }
        let router = &self.shared.router;
        let tickets: Vec<Vec<(u16, u8)>> = parts
            .iter()
            .map(|part| match part.migrating {
                // Migration steps count themselves in when they are sent.
                true => Vec::new(),
                false => part.slots.iter().map(|&slot| router.enter(table, slot)).map(|t| (t.slot, t.parity)).collect(),
            })
            .collect();
        self.seed = self.seed.wrapping_add(1);
        let single = parts.len() == 1;
        let state = if single {
            State::Waiting
        } else {
            State::Split(Box::new(Split::new(kind.merge(), parts.len(), positions)))
        };
        let seq = self.pending.push(cmd.id, start, state);
        let primary_only = self.shared.config.backend_primary_only;
        for (i, (part, t)) in parts.iter().zip(tickets).enumerate() {
            if part.migrating {
                let sub = if single {
                    req.to_owned()
                } else {
                    let arg = part.args[0];
                    let args: Vec<&[u8]> =
                        std::iter::once(req.arg(0)).chain((arg..arg + stride).map(|j| req.arg(j))).collect();
                    Request::from_args(args)
                };
                let m = Migration::new(sub, vec![Bytes::copy_from_slice(req.arg(part.args[0]))], part.first_slot);
                self.start_migration(table, seq, i as u32, m);
                continue;
            }
            let tickets = if t.len() == 1 { Tickets::One(t[0].0, t[0].1) } else { Tickets::Many(t.into_boxed_slice()) };
            let route = &table.slots[part.first_slot as usize];
            let conn = pick_conn(route, cmd, self.key(), self.seed, primary_only);
            if single {
                // Everything on one backend: forward the client's bytes untouched.
                self.queue(conn, req, seq, i as u32, tickets);
            } else {
                let args = std::iter::once(req.arg(0))
                    .chain(part.args.iter().flat_map(|&a| (a..a + stride).map(|j| req.arg(j))));
                let payload = encode_args(args, 1 + part.args.len() * stride);
                self.queue_bytes(conn, &payload, seq, i as u32, tickets);
            }
        }
    }
}

/// The keys of a split command that one backend serves.
struct Part {
    backend: Arc<BackendPool>,
    first_slot: u16,
    /// A key of a migrating slot, sent on its own through the migration steps.
    migrating: bool,
    /// Argument index of each key (its value follows for `MSET`).
    args: Vec<usize>,
    slots: Vec<u16>,
}

pub(super) fn encode_args<'a>(args: impl Iterator<Item = &'a [u8]>, count: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + count * 24);
    out.put_array_len(count);
    for a in args {
        out.put_bulk(a);
    }
    out.freeze()
}

/// Whether two slots are served by the same backend (and are not mid-migration apart).
pub(super) fn same_group(a: &SlotRoute, b: &SlotRoute) -> bool {
    let eq = |x: &Option<Arc<BackendPool>>, y: &Option<Arc<BackendPool>>| match (x, y) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    };
    eq(&a.backend, &b.backend) && eq(&a.migrate_from, &b.migrate_from)
}

/// The connection for a request on `route`: a replica for reads when the slot has
/// replica groups and one of them is connected (best tier first), else the master.
fn pick_conn<'a>(
    route: &'a SlotRoute,
    cmd: &Command,
    key: ConnKey,
    seed: usize,
    primary_only: bool,
) -> &'a BackendConn {
    let master = route.backend.as_ref().expect("caller checked the slot has a backend");
    if !primary_only && cmd.is_read_only() && !cmd.is_master_only() && route.migrate_from.is_none() {
        for tier in route.replicas.iter() {
            let n = tier.len();
            for i in 0..n {
                if let Some(conn) = tier[(seed + i) % n].conn_if_up(key, seed) {
                    return conn;
                }
            }
        }
    }
    master.conn(key, seed)
}

pub(super) fn not_ready(slot: u16) -> String {
    format!("ERR slot {slot} is not ready, may be offline (assign it to a group)")
}

fn unknown_backend(addr: &[u8]) -> String {
    format!("ERR backend server '{}' not found", String::from_utf8_lossy(addr))
}

fn parse_slot(arg: Option<&[u8]>) -> Result<u16, String> {
    let Some(arg) = arg else {
        return Err("ERR missing slot number".into());
    };
    let text = String::from_utf8_lossy(arg);
    match text.parse::<i64>() {
        Ok(n) if (0..MAX_SLOT_NUM as i64).contains(&n) => Ok(n as u16),
        Ok(_) => Err(format!("ERR parse slotnum '{text}' failed, out of range")),
        Err(e) => Err(format!("ERR parse slotnum '{text}' failed, {e}")),
    }
}
