//! Pub/sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs, PUBLISH, SPUBLISH
//! and PUBSUB.
//!
//! A channel lives on the group its slot names (hashed like a key, hash tags included),
//! so PUBLISH goes to that group's master like a keyed command. A subscribed session
//! gets a [`SubLink`] per server it needs: the owner of each of its channels, and every
//! group master when it has patterns (a pattern can match a channel anywhere; a
//! message is published on one group only, so it is never delivered twice).
//!
//! The client sees what one Redis would send: the proxy keeps the session's
//! subscriptions itself and writes the confirmations with the session's own counts,
//! one per name, in order. A (un)subscribe is answered once every server involved has
//! confirmed it, so a message published after the client saw a subscribe confirmed
//! reaches it, and a PUBLISH after an unsubscribe no longer counts it. It runs alone
//! (like the commands of [`super::exclusive`]), and messages that arrive meanwhile wait
//! until its reply is written. Messages are forwarded as the servers send them, only
//! for names the session is still subscribed to (as RESP3 pushes to a RESP3 client).
//!
//! Links resubscribe by themselves after a reconnect; when the routing changes (a slot
//! moved, a group got a new master) the session moves each affected subscription to
//! its new server. A message published while that happens may be missed, as with any
//! Redis subscriber that reconnects. A link that is down confirms nothing: what waits
//! for it is answered, and made real when the link is back. In RESP2 a subscribed
//! session accepts only what Redis accepts in that mode. Sessions that never subscribe
//! pay nothing for this.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use codis_core::slot_of;
use codis_resp::{Encoder, ReplyScanner, ReplyView, RequestRef};
use tokio::sync::mpsc;

use super::Session;
use super::dispatch::{Target, encode_args, not_ready};
use super::pending::{Split, State};
use crate::backend::{BackendPool, BackendSettings, LinkEvent, LinkEventKind, LinkOp, SubKind, SubLink};
use crate::command::{Command, Handler, Merge};
use crate::reply::Tickets;
use crate::router::RouteTable;

/// Chunks of frames a session's links may have queued before they wait for it.
const EVENT_QUEUE: usize = 64;

/// One subscribed channel (or shard channel).
struct Sub {
    slot: u16,
    /// The link it is subscribed on (`None` while its slot has no backend).
    link: Option<u64>,
}

struct Link {
    link: SubLink,
    /// Channels and shard channels subscribed on it.
    refs: usize,
    /// Every pattern is subscribed on it.
    patterns: bool,
}

/// The session's links, one per server.
struct Links {
    list: Vec<Link>,
    next_id: u64,
    events: mpsc::Sender<LinkEvent>,
}

impl Links {
    fn get(&self, id: u64) -> Option<&Link> {
        self.list.iter().find(|l| l.link.id() == id)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Link> {
        self.list.iter_mut().find(|l| l.link.id() == id)
    }

    /// The link to `addr`, opened if there is none yet.
    fn to(&mut self, addr: &str, settings: &BackendSettings) -> &mut Link {
        let i = match self.list.iter().position(|l| l.link.addr() == addr) {
            Some(i) => i,
            None => {
                self.next_id += 1;
                let link = SubLink::open(addr, self.next_id, settings, self.events.clone());
                self.list.push(Link { link, refs: 0, patterns: false });
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    /// Closes the links nothing is subscribed on any more.
    fn close_unused(&mut self) {
        self.list.retain(|l| l.refs > 0 || l.patterns);
    }
}

/// Commands for the links, gathered per link, direction and kind, in order.
#[derive(Default)]
struct Ops(Vec<(u64, bool, SubKind, Vec<Bytes>)>);

impl Ops {
    fn push(&mut self, link: u64, subscribe: bool, kind: SubKind, name: Bytes) {
        match self.0.iter_mut().find(|o| o.0 == link && o.1 == subscribe && o.2 == kind) {
            Some(o) => o.3.push(name),
            None => self.0.push((link, subscribe, kind, vec![name])),
        }
    }

    /// The confirmations to wait for: every name `wanted` accepts.
    fn waits(&self, wanted: impl Fn(SubKind, &[u8]) -> bool) -> HashSet<(SubKind, bool, Bytes, u64)> {
        let mut waits = HashSet::new();
        for (id, subscribe, kind, names) in &self.0 {
            for n in names.iter().filter(|n| wanted(*kind, n)) {
                waits.insert((*kind, *subscribe, n.clone(), *id));
            }
        }
        waits
    }

    fn send(self, links: &Links) {
        for (id, subscribe, kind, names) in self.0 {
            if let Some(l) = links.get(id) {
                l.link.send(if subscribe { LinkOp::Subscribe(kind, names) } else { LinkOp::Unsubscribe(kind, names) });
            }
        }
    }
}

/// A (un)subscribe command waiting for its servers' confirmations.
struct Inflight {
    seq: u64,
    reply: Bytes,
    /// (kind, subscribe, name, link) not confirmed yet.
    waits: HashSet<(SubKind, bool, Bytes, u64)>,
    /// What the command added, taken back if a server refuses it.
    added: Vec<(SubKind, Bytes)>,
}

/// A subscribed session's pub/sub state.
pub(super) struct PubSub {
    channels: HashMap<Bytes, Sub>,
    shard: HashMap<Bytes, Sub>,
    /// In subscription order, as Redis keeps them.
    patterns: Vec<Bytes>,
    links: Links,
    events: mpsc::Receiver<LinkEvent>,
    inflight: Option<Inflight>,
    /// Messages that arrived while `inflight` waited: written after its reply.
    held: Vec<Bytes>,
}

impl PubSub {
    fn new() -> PubSub {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        PubSub {
            channels: HashMap::new(),
            shard: HashMap::new(),
            patterns: Vec::new(),
            links: Links { list: Vec::new(), next_id: 0, events: tx },
            events: rx,
            inflight: None,
            held: Vec::new(),
        }
    }

    /// The count Redis puts in a confirmation of `kind`.
    fn count(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::Channel | SubKind::Pattern => self.channels.len() + self.patterns.len(),
            SubKind::Shard => self.shard.len(),
        }
    }

    fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    fn map(&mut self, kind: SubKind) -> &mut HashMap<Bytes, Sub> {
        if kind == SubKind::Shard { &mut self.shard } else { &mut self.channels }
    }

    /// Subscribes `sub` on its slot's owner, moving it off a link that no longer is.
    fn place(
        links: &mut Links,
        ops: &mut Ops,
        settings: &BackendSettings,
        table: &RouteTable,
        kind: SubKind,
        name: &Bytes,
        sub: &mut Sub,
    ) {
        let want = owner(table, sub.slot);
        let have = sub.link.and_then(|id| links.get(id)).map(|l| l.link.addr());
        if want == have {
            return;
        }
        if let Some(l) = sub.link.and_then(|id| links.get_mut(id)) {
            l.refs -= 1;
            ops.push(l.link.id(), false, kind, name.clone());
        }
        sub.link = want.map(|addr| {
            let l = links.to(addr, settings);
            l.refs += 1;
            ops.push(l.link.id(), true, kind, name.clone());
            l.link.id()
        });
    }

    /// Puts every pattern on every group master, and off servers that are not one.
    fn place_patterns(&mut self, ops: &mut Ops, settings: &BackendSettings, table: &RouteTable) {
        let masters: Vec<&str> =
            if self.patterns.is_empty() { Vec::new() } else { table.groups.iter().map(|p| p.addr()).collect() };
        for l in self.links.list.iter_mut().filter(|l| l.patterns && !masters.contains(&l.link.addr())) {
            l.patterns = false;
            for p in &self.patterns {
                ops.push(l.link.id(), false, SubKind::Pattern, p.clone());
            }
        }
        for addr in masters {
            let l = self.links.to(addr, settings);
            if !l.patterns {
                l.patterns = true;
                for p in &self.patterns {
                    ops.push(l.link.id(), true, SubKind::Pattern, p.clone());
                }
            }
        }
    }

    /// Drops one subscription; false if there was none.
    fn remove(&mut self, ops: &mut Ops, kind: SubKind, name: &[u8]) -> bool {
        if kind == SubKind::Pattern {
            let Some(i) = self.patterns.iter().position(|p| p == name) else { return false };
            let p = self.patterns.remove(i);
            for l in self.links.list.iter().filter(|l| l.patterns) {
                ops.push(l.link.id(), false, kind, p.clone());
            }
            if self.patterns.is_empty() {
                self.links.list.iter_mut().for_each(|l| l.patterns = false);
            }
            return true;
        }
        let Some((name, sub)) = self.map(kind).remove_entry(name) else { return false };
        if let Some(l) = sub.link.and_then(|id| self.links.get_mut(id)) {
            l.refs -= 1;
            ops.push(l.link.id(), false, kind, name);
        }
        true
    }
}

/// The master that owns `slot`.
fn owner(table: &RouteTable, slot: u16) -> Option<&str> {
    table.slots[slot as usize].backend.as_ref().map(|p| p.addr())
}

/// A (un)subscribe confirmation: an array in RESP2, a push in RESP3.
fn confirmation(out: &mut BytesMut, resp3: bool, what: &[u8], name: Option<&[u8]>, count: usize) {
    out.put_line(if resp3 { b'>' } else { b'*' }, 3);
    out.put_bulk(what);
    match (name, resp3) {
        (Some(n), _) => out.put_bulk(n),
        (None, true) => out.extend_from_slice(b"_\r\n"),
        (None, false) => out.put_nil(),
    }
    out.put_integer(count as i64);
}

fn reply_name(kind: SubKind, subscribe: bool) -> &'static [u8] {
    match (kind, subscribe) {
        (SubKind::Channel, true) => b"subscribe",
        (SubKind::Pattern, true) => b"psubscribe",
        (SubKind::Shard, true) => b"ssubscribe",
        (SubKind::Channel, false) => b"unsubscribe",
        (SubKind::Pattern, false) => b"punsubscribe",
        (SubKind::Shard, false) => b"sunsubscribe",
    }
}

/// The kind and first name of a frame from a link (`*<n> $<kind> $<name> ...`), read
/// in place: this runs for every message.
fn kind_and_name(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    fn bulk<'a>(frame: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
        if frame.get(*pos) != Some(&b'$') {
            return None;
        }
        let nl = *pos + frame.get(*pos..)?.iter().position(|&b| b == b'\n')?;
        let len: usize = std::str::from_utf8(frame.get(*pos + 1..nl.checked_sub(1)?)?).ok()?.parse().ok()?;
        let data = frame.get(nl + 1..nl + 1 + len)?;
        *pos = nl + 1 + len + 2;
        Some(data)
    }
    if frame.first() != Some(&b'*') {
        return None;
    }
    let mut pos = frame.iter().position(|&b| b == b'\n')? + 1;
    let kind = bulk(frame, &mut pos)?;
    let name = bulk(frame, &mut pos)?;
    Some((kind, name))
}

/// A RESP2 message (`*3`/`*4` array) as the RESP3 push Redis sends in its place.
fn as_push(frame: &Bytes) -> Bytes {
    let mut push = BytesMut::from(&frame[..]);
    push[0] = b'>';
    push.freeze()
}

/// Redis Cluster's rule for shard channels: one command, one slot.
fn shard_slot_error(req: &RequestRef<'_>) -> Option<String> {
    let first = slot_of(req.get(1)?);
    req.args().skip(2).any(|c| slot_of(c) != first).then(|| {
        format!(
            "CROSSSLOT Keys in request don't hash to the same slot ('{}'); shard channels of one command must \
             share a slot: give them a common hash tag such as {{user1000}}",
            String::from_utf8_lossy(req.arg(0)).to_ascii_uppercase()
        )
    })
}

/// Resolves to the next link event of a subscribed session (never, for others).
pub(super) async fn next_event(ps: &mut Option<Box<PubSub>>) -> Option<LinkEvent> {
    match ps {
        Some(ps) => ps.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Whether the session is in subscribed mode (RESP2: only a few commands allowed).
    pub(super) fn subscribed(&self) -> bool {
        self.pubsub.is_some()
    }

    /// Redis's refusal of a command in subscribed mode; `None` if it is allowed.
    pub(super) fn subscribed_refusal(cmd: &Command, req: &RequestRef<'_>) -> Option<String> {
        if matches!(
            cmd.handler,
            Handler::Subscribe(_) | Handler::Unsubscribe(_) | Handler::Ping | Handler::Quit | Handler::Reset
        ) {
            return None;
        }
        let mut name = String::from_utf8_lossy(req.arg(0)).to_ascii_lowercase();
        if let (Some(spec), Some(sub)) = (cmd.spec, req.get(1))
            && let Some(sub) = spec.subcommand(sub)
        {
            name = format!("{name}|{}", sub.name.to_ascii_lowercase());
        }
        Some(format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))
    }

    /// PING in subscribed mode answers like a message: `pong` and the argument.
    pub(super) fn subscribed_ping(&mut self, cmd: &Command, req: &RequestRef<'_>, start: Instant) {
        let mut out = BytesMut::new();
        out.put_array_len(2);
        out.put_bulk(b"pong");
        out.put_bulk(req.get(1).unwrap_or_default());
        self.reply_now(cmd.id, start, out.freeze(), false)
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE.
    pub(super) fn subscribe(
        &mut self,
        cmd: &'static Command,
        kind: SubKind,
        req: RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        if kind == SubKind::Shard
            && let Some(e) = shard_slot_error(&req)
        {
            return self.fail(cmd, start, &e);
        }
        if !self.drained_for(&req) {
            return;
        }
        let settings = self.shared.router.settings().clone();
        let resp3 = self.resp3;
        let ps = self.pubsub.get_or_insert_with(|| Box::new(PubSub::new()));
        let mut ops = Ops::default();
        let mut added: Vec<(SubKind, Bytes)> = Vec::new();
        let mut out = BytesMut::new();
        for name in req.args().skip(1) {
            match kind {
                SubKind::Pattern => {
                    if !ps.patterns.iter().any(|p| p == name) {
                        let p = Bytes::copy_from_slice(name);
                        for l in ps.links.list.iter().filter(|l| l.patterns) {
                            ops.push(l.link.id(), true, kind, p.clone());
                        }
                        ps.patterns.push(p.clone());
                        added.push((kind, p));
                        ps.place_patterns(&mut ops, &settings, table);
                    }
                }
                _ => {
                    if !ps.map(kind).contains_key(name) {
                        let name = Bytes::copy_from_slice(name);
                        let mut sub = Sub { slot: slot_of(&name), link: None };
                        PubSub::place(&mut ps.links, &mut ops, &settings, table, kind, &name, &mut sub);
                        ps.map(kind).insert(name.clone(), sub);
                        added.push((kind, name));
                    }
                }
            }
            confirmation(&mut out, resp3, reply_name(kind, true), Some(name), ps.count(kind));
        }
        // Wait for the servers to confirm what this command added.
        let new: HashSet<&[u8]> = added.iter().map(|(_, n)| &n[..]).collect();
        let waits = ops.waits(|_, n| new.contains(n));
        drop(new);
        ops.send(&ps.links);
        self.await_links(cmd, start, out.freeze(), waits, added);
    }

    /// Answers a (un)subscribe with `reply` once the servers confirmed `waits`; until
    /// then nothing else of the session runs.
    fn await_links(
        &mut self,
        cmd: &Command,
        start: Instant,
        reply: Bytes,
        waits: HashSet<(SubKind, bool, Bytes, u64)>,
        added: Vec<(SubKind, Bytes)>,
    ) {
        if waits.is_empty() {
            self.reply_now(cmd.id, start, reply, false);
            return self.leave_if_unsubscribed();
        }
        let seq = self.pending.push(cmd.id, start, State::Waiting);
        if let Some(ps) = self.pubsub.as_mut() {
            ps.inflight = Some(Inflight { seq, reply, waits, added });
        }
        self.exclusive = true;
    }

    /// Out of subscribed mode once nothing is left: the links go.
    fn leave_if_unsubscribed(&mut self) {
        if let Some(ps) = self.pubsub.as_mut() {
            ps.links.close_unused();
            if ps.total() == 0 {
                self.pubsub = None;
            }
        }
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: messages for the names dropped are not
    /// forwarded any more; answered once the servers confirmed, so that a PUBLISH
    /// after the reply no longer counts the session.
    pub(super) fn unsubscribe(&mut self, cmd: &'static Command, kind: SubKind, req: RequestRef<'_>, start: Instant) {
        if kind == SubKind::Shard
            && let Some(e) = shard_slot_error(&req)
        {
            return self.fail(cmd, start, &e);
        }
        let what = reply_name(kind, false);
        let resp3 = self.resp3;
        let mut out = BytesMut::new();
        if self.pubsub.is_some() && !self.drained_for(&req) {
            return;
        }
        let Some(ps) = self.pubsub.as_mut() else {
            // Not subscribed to anything: Redis still answers for each name.
            match req.argc() {
                1 => confirmation(&mut out, resp3, what, None, 0),
                _ => req.args().skip(1).for_each(|n| confirmation(&mut out, resp3, what, Some(n), 0)),
            }
            return self.reply_now(cmd.id, start, out.freeze(), false);
        };
        let names: Vec<Bytes> = match (req.argc(), kind) {
            (1, SubKind::Pattern) => ps.patterns.clone(),
            (1, _) => ps.map(kind).keys().cloned().collect(),
            _ => req.args().skip(1).map(Bytes::copy_from_slice).collect(),
        };
        let mut ops = Ops::default();
        for name in &names {
            ps.remove(&mut ops, kind, name);
            confirmation(&mut out, resp3, what, Some(name), ps.count(kind));
        }
        if names.is_empty() {
            confirmation(&mut out, resp3, what, None, ps.count(kind));
        }
        let waits = ops.waits(|_, _| true);
        ops.send(&ps.links);
        self.await_links(cmd, start, out.freeze(), waits, Vec::new());
    }

    /// PUBLISH and SPUBLISH: to the master of the channel's slot.
    pub(super) fn publish(&mut self, cmd: &'static Command, req: RequestRef<'_>, start: Instant, table: &RouteTable) {
        let slot = slot_of(req.arg(1));
        self.send_to(cmd, Target::Slot(slot, None), req, start, table)
    }

    /// `PUBSUB NUMSUB|SHARDNUMSUB channel...`: each channel asked of its owner, the
    /// answers put back in order. Other subcommands go to every group master.
    pub(super) fn pubsub_command(
        &mut self,
        cmd: &'static Command,
        req: RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        let sub = req.arg(1);
        if !(sub.eq_ignore_ascii_case(b"NUMSUB") || sub.eq_ignore_ascii_case(b"SHARDNUMSUB")) {
            return self.broadcast(cmd, req, start, table);
        }
        if req.argc() == 2 {
            return self.reply_now(cmd.id, start, Bytes::from_static(b"*0\r\n"), false);
        }
        // Channels grouped by owner, in order of first appearance; each channel's two
        // reply elements are found by (part, position).
        let mut parts: Vec<(Arc<BackendPool>, Vec<usize>)> = Vec::new();
        let mut positions = Vec::with_capacity(2 * (req.argc() - 2));
        for i in 2..req.argc() {
            let slot = slot_of(req.arg(i));
            let Some(pool) = table.slots[slot as usize].backend.clone() else {
                return self.fail(cmd, start, &not_ready(slot));
            };
            let p = match parts.iter().position(|(p, _)| Arc::ptr_eq(p, &pool)) {
                Some(p) => p,
                None => {
                    parts.push((pool, Vec::new()));
                    parts.len() - 1
                }
            };
            let j = parts[p].1.len() as u32;
            positions.push((p as u32, 2 * j));
            positions.push((p as u32, 2 * j + 1));
            parts[p].1.push(i);
        }
        self.seed = self.seed.wrapping_add(1);
        let single = parts.len() == 1;
        let state = if single {
            State::Waiting
        } else {
            State::Split(Box::new(Split::new(Merge::Mget, parts.len(), positions)))
        };
        let seq = self.pending.push(cmd.id, start, state);
        for (i, (pool, args)) in parts.iter().enumerate() {
            let conn = pool.conn(self.key(), self.seed);
            if single {
                self.queue(conn, req, seq, 0, Tickets::None);
            } else {
                let payload = encode_args(
                    [req.arg(0), req.arg(1)].into_iter().chain(args.iter().map(|&a| req.arg(a))),
                    2 + args.len(),
                );
                self.queue_bytes(conn, &payload, seq, i as u32, Tickets::None);
            }
        }
    }

    /// What a link reported (and whatever else is already queued).
    pub(super) fn link_events(&mut self, first: LinkEvent) {
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            let known = self.pubsub.as_ref().is_some_and(|ps| ps.links.get(ev.link).is_some());
            if known {
                match ev.kind {
                    LinkEventKind::Frames(frames) => self.link_frames(ev.link, &frames),
                    LinkEventKind::Down(_) => self.link_down(ev.link),
                }
            }
            if self.out.len() < super::OUT_BACKLOG {
                next = self.pubsub.as_mut().and_then(|ps| ps.events.try_recv().ok());
            }
        }
    }

    fn link_frames(&mut self, link: u64, frames: &Bytes) {
        let mut scanner = ReplyScanner::default();
        let mut pos = 0;
        while let Ok(Some(len)) = scanner.scan(&frames[pos..]) {
            self.link_frame(link, frames.slice(pos..pos + len));
            pos += len;
        }
    }

    fn link_frame(&mut self, link: u64, frame: Bytes) {
        let Some(ps) = self.pubsub.as_mut() else { return };
        if ReplyView::error_text(&frame).is_some() {
            // A server refused a subscription of the command waiting for it.
            if ps.inflight.as_ref().is_some_and(|inf| inf.waits.iter().any(|w| w.3 == link)) {
                return self.finish_inflight(Some(frame));
            }
            tracing::warn!(reply = %String::from_utf8_lossy(&frame), "pub/sub link error");
            return;
        }
        let Some((what, name)) = kind_and_name(&frame) else { return };
        let confirms = match what {
            b"subscribe" => Some((SubKind::Channel, true)),
            b"psubscribe" => Some((SubKind::Pattern, true)),
            b"ssubscribe" => Some((SubKind::Shard, true)),
            b"unsubscribe" => Some((SubKind::Channel, false)),
            b"punsubscribe" => Some((SubKind::Pattern, false)),
            b"sunsubscribe" => Some((SubKind::Shard, false)),
            _ => None,
        };
        if let Some((kind, subscribe)) = confirms {
            if ps.confirm(kind, subscribe, name, link) {
                self.finish_inflight(None);
            }
            return;
        }
        let forward = match what {
            b"message" => ps.channels.contains_key(name),
            b"pmessage" => ps.patterns.iter().any(|p| p == name),
            b"smessage" => ps.shard.contains_key(name),
            _ => false,
        };
        if forward {
            // Links speak RESP2: a RESP3 client gets the message as a push.
            if ps.inflight.is_some() {
                ps.held.push(if self.resp3 { as_push(&frame) } else { frame });
            } else if self.resp3 {
                self.out.push_slice(b">");
                self.out.push(&frame.slice(1..));
            } else {
                self.out.push(&frame);
            }
        }
    }

    /// A link lost its connection: the waiting command does not wait for it (its
    /// subscriptions are made again when the link is back).
    fn link_down(&mut self, link: u64) {
        let Some(inf) = self.pubsub.as_mut().and_then(|ps| ps.inflight.as_mut()) else { return };
        inf.waits.retain(|w| w.3 != link);
        if inf.waits.is_empty() {
            self.finish_inflight(None);
        }
    }

    /// Answers the waiting subscribe (with `error`: takes back what it added), then
    /// writes the messages held meanwhile.
    fn finish_inflight(&mut self, error: Option<Bytes>) {
        let Some(ps) = self.pubsub.as_mut() else { return };
        let Some(inf) = ps.inflight.take() else { return };
        let held = std::mem::take(&mut ps.held);
        let reply = match error {
            None => inf.reply,
            Some(e) => {
                let mut ops = Ops::default();
                for (kind, name) in &inf.added {
                    ps.remove(&mut ops, *kind, name);
                }
                ops.send(&ps.links);
                e
            }
        };
        let _ = self.pending.deliver(inf.seq, 0, reply, false);
        self.drain_ready(&mut None);
        for m in &held {
            self.out.push(m);
        }
        self.leave_if_unsubscribed();
    }

    /// After a routing change: every subscription to the server that now owns it.
    pub(super) fn pubsub_route_changed(&mut self, table: &RouteTable) {
        let settings = self.shared.router.settings().clone();
        let Some(ps) = self.pubsub.as_mut() else { return };
        let mut ops = Ops::default();
        for (kind, map) in [(SubKind::Channel, &mut ps.channels), (SubKind::Shard, &mut ps.shard)] {
            for (name, sub) in map.iter_mut() {
                PubSub::place(&mut ps.links, &mut ops, &settings, table, kind, name, sub);
            }
        }
        ps.place_patterns(&mut ops, &settings, table);
        ops.send(&ps.links);
        ps.links.close_unused();
        // A closed link confirms nothing more: the waiting command does not wait for it.
        if let Some(inf) = ps.inflight.as_mut() {
            inf.waits.retain(|w| ps.links.get(w.3).is_some());
            if inf.waits.is_empty() {
                self.finish_inflight(None);
            }
        }
    }

    /// RESET and disconnect: no subscriptions, no links.
    pub(super) fn reset_pubsub(&mut self) {
        self.pubsub = None;
    }
}

impl PubSub {
    /// A server confirmed a subscription: true when the waiting command has all it needs.
    fn confirm(&mut self, kind: SubKind, subscribe: bool, name: &[u8], link: u64) -> bool {
        let Some(inf) = self.inflight.as_mut() else { return false };
        inf.waits.remove(&(kind, subscribe, Bytes::copy_from_slice(name), link));
        inf.waits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_from_links_are_read_in_place() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        assert_eq!(kind_and_name(msg), Some((&b"message"[..], &b"ch"[..])));
        let pmsg = b"*4\r\n$8\r\npmessage\r\n$0\r\n\r\n$1\r\nc\r\n$1\r\nm\r\n";
        assert_eq!(kind_and_name(pmsg), Some((&b"pmessage"[..], &b""[..])));
        assert_eq!(kind_and_name(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"), None);
        assert_eq!(kind_and_name(b"+PONG\r\n"), None);
        assert_eq!(kind_and_name(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"), Some((&b"pong"[..], &b""[..])));
        assert_eq!(&as_push(&Bytes::from_static(msg))[..2], b">3");
    }
}
