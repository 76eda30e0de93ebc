//! One client connection.
//!
//! A session is one task. It reads requests, routes each one as soon as it is parsed
//! (to a backend connection's queue, or answered locally), and writes replies back in
//! request order as they arrive in its [`Inbox`]. There is no per-request task or
//! channel hop beyond the backend connection's own.
//!
//! Backpressure instead of disconnection: with `session_max_pipeline` requests in
//! flight, or about [`OUT_BACKLOG`] bytes of replies queued for the client and expected
//! for the requests in flight, the session simply stops reading; the kernel's socket
//! buffers then push back on the client, which resumes as soon as replies drain. A
//! client that never reads its replies thus costs a bounded amount of memory, and is
//! not disconnected for it (only `session_send_timeout` drops it).
//!
//! Buffers start small and grow with the traffic; what a burst left behind (a large
//! read buffer, a deep pipeline's queue) is given back on the next one-second tick.

mod connection;
mod dispatch;
mod exclusive;
mod migrate;
mod pending;
mod pubsub;
mod scan;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::{Buf, Bytes, BytesMut};
use codis_resp::{Parsed, Request, RequestParser, RequestRef};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{BackendConn, Batch, ConnHandle, ConnKey, PrivateConn};
use crate::config::Config;
use crate::io::{Conn, OutQueue, read_available};
use crate::proxy::Shared;
use crate::reply::{Body, DISCARD_PART, Inbox, Mail, Tickets, error_reply};
use crate::stats::LocalStats;
use pending::Pending;

/// Requests at least this large are forwarded by reference instead of copied.
const BIG_REQUEST: usize = 16 << 10;
/// Bytes of replies, queued for the client or expected for the requests in flight,
/// beyond which no more requests are read or dispatched.
const OUT_BACKLOG: usize = 4 << 20;
/// First read buffer of a session.
const MIN_RECV: usize = 4 << 10;
/// An emptied read buffer larger than this is released; one holding only a partial
/// request is moved to a buffer of the request's size on the next tick.
const IDLE_RECV_KEEP: usize = 32 << 10;
/// The reply size assumed before a session has seen any (a short reply: `+OK`, a
/// number), counted as one reply in the average.
const FIRST_REPLY_SIZE: usize = 16;
/// Requests a new session may have in flight before any is answered. Each answered
/// request lets one more in (the window doubles per round trip, like TCP's slow start)
/// up to `session_max_pipeline`. Until replies show their size, nothing says how much
/// a burst of requests will bring back: 10,000 pipelined GETs of a 1 MB value would
/// be 10 GB. This bounds that first burst to 64 replies; the average reply size
/// bounds what follows.
const FIRST_WINDOW: usize = 64;
/// About how many recent replies the average reply size is taken over.
const REPLY_WINDOW: usize = 4096;
/// A reply buffer that grew beyond this (a burst) is not kept for reuse.
const MAIL_KEEP: usize = 64 << 10;

/// Serves one client until it quits, errs or the proxy shuts down.
pub async fn serve<C: Conn>(conn: C, shared: Arc<Shared>) {
    let mut session = Session::new(shared);
    if session.shared.slowlog.enabled() {
        session.peer = conn.peer().into();
    }
    session.run(&conn).await;
    session.finish();
}

struct Session {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    parser: RequestParser,
    rbuf: BytesMut,
    /// How much to make room for before a read: starts small and doubles while reads
    /// fill the buffer, up to `session_recv_bufsize`, so idle clients cost little memory.
    recv_chunk: usize,
    recv_max: usize,
    /// A large request was taken out of `rbuf` without copying: what is left of the
    /// buffer may keep the whole allocation alive, whatever its `capacity()` says.
    rbuf_shared: bool,
    out: OutQueue,
    pending: Pending,
    mail: Mail,
    stats: LocalStats,
    max_pipeline: usize,
    /// Average size of this session's recent replies: how many bytes each request in
    /// flight is expected to add to the client's backlog (see [`Self::has_room`]).
    reply_size: usize,
    /// Bytes and count of recent replies, the average's terms (halved now and then, so
    /// that old replies weigh less and less).
    reply_bytes: usize,
    replies: usize,
    /// Requests wait in `rbuf` for room in the pipeline (see [`Self::has_room`]).
    held: bool,
    /// How many requests may be in flight: from [`FIRST_WINDOW`] up to `max_pipeline`.
    window: usize,
    db: usize,
    /// Speaks RESP3 (after `HELLO 3`): its requests go on RESP3 backend connections.
    resp3: bool,
    authorized: bool,
    /// `CLIENT ID`.
    id: u64,
    /// `CLIENT SETNAME`.
    name: Option<Bytes>,
    /// No more requests are read (QUIT, protocol error, failure with break-on-failure).
    closing: bool,
    /// A request held back: until its slot is unlocked, or (with `stall_drain`) until
    /// every earlier request is answered.
    stalled: Option<Request>,
    stall_drain: bool,
    /// A request that runs alone is in flight: nothing more is dispatched until every
    /// request so far is answered (see [`exclusive`]).
    exclusive: bool,
    /// Connections this session owns (blocking commands, transactions).
    private: Vec<PrivateConn>,
    multi: Option<Box<exclusive::Multi>>,
    watch: Option<exclusive::Watch>,
    blocked: Option<Box<exclusive::Blocked>>,
    /// Subscriptions and their links; `Some` exactly while in subscribed mode.
    pubsub: Option<Box<pubsub::PubSub>>,
    changes: watch::Receiver<u64>,
    /// Requests of the current round, per backend connection.
    outbox: Vec<(ConnHandle, Batch)>,
    /// Replies to migration steps waiting to be acted on.
    followups: Vec<pending::Followup>,
    /// Migration steps to resend later (a key was being moved).
    delayed: Vec<(Instant, u64, u32, Box<migrate::Migration>)>,
    seed: usize,
    last_request: Instant,
    /// The client's address, for the slow log (only looked up when the log is on).
    peer: Box<str>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Session {
        let config: &Config = &shared.config;
        let seed = rand_seed();
        Session {
            inbox: Inbox::new(shared.router.gates().clone()),
            parser: RequestParser::new(shared.limits),
            rbuf: BytesMut::new(),
            recv_chunk: MIN_RECV,
            recv_max: Config::clamp_buf(config.session_recv_bufsize),
            rbuf_shared: false,
            out: OutQueue::default(),
            pending: Pending::default(),
            mail: Mail::default(),
            stats: LocalStats::default(),
            max_pipeline: config.session_max_pipeline.max(1) as usize,
            reply_size: FIRST_REPLY_SIZE,
            reply_bytes: FIRST_REPLY_SIZE,
            replies: 1,
            held: false,
            window: FIRST_WINDOW.min(config.session_max_pipeline.max(1) as usize),
            db: 0,
            resp3: false,
            authorized: config.session_auth.is_empty(),
            id: connection::next_id(),
            name: None,
            closing: false,
            stalled: None,
            stall_drain: false,
            exclusive: false,
            private: Vec::new(),
            multi: None,
            watch: None,
            blocked: None,
            pubsub: None,
            changes: shared.router.subscribe(),
            outbox: Vec::new(),
            followups: Vec::new(),
            delayed: Vec::new(),
            seed,
            last_request: Instant::now(),
            peer: Box::default(),
            shared,
        }
    }

    async fn run<C: Conn>(&mut self, conn: &C) {
        let idle_timeout = self.shared.config.session_recv_timeout.duration();
        let send_timeout = self.shared.config.session_send_timeout.duration();
        let tick = Duration::from_secs(1);
        let mut write_stalled: Option<Instant> = None;
        let mut shutdown_rx = self.shared.shutdown.subscribe();
        let shutdown = shutdown_rx.wait_for(|&closed| closed);
        // Long-lived futures: created once, not once per loop turn.
        tokio::pin!(shutdown);
        let timer = tokio::time::sleep(tick);
        tokio::pin!(timer);
        // Delayed migration steps (a key was being moved); armed only when needed.
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut retry_at: Option<Instant> = None;
        let mut eof = false;
        loop {
            self.collect();
            if !self.out.is_empty() {
                match self.out.write_to(conn) {
                    Ok(n) if n > 0 => write_stalled = None,
                    Ok(_) => {}
                    Err(_) => return,
                }
                if !self.out.is_empty() && write_stalled.is_none() {
                    write_stalled = Some(Instant::now());
                }
            }
            if self.held && self.has_room() {
                // Replies drained: requests already read can go on.
                self.process_input();
                continue;
            }
            if (self.closing || eof) && self.pending.is_empty() && self.out.is_empty() && self.stalled.is_none() {
                return;
            }
            if eof && self.blocked.is_some() {
                // The client left while blocked: drop the connection, which releases
                // the command on its server before it can take anything.
                return;
            }
            // Read more only while the pipeline has room and the client keeps up with
            // the replies already waiting for it.
            let can_read = !self.closing
                && !eof
                && ((!self.exclusive && self.stalled.is_none() && !self.held && self.has_room())
                    // While blocked, read on (into the buffer, up to its size) to see
                    // the client hang up, as Redis does for a blocked client.
                    || (self.blocked.is_some() && self.rbuf.len() < self.recv_max));
            let next_retry = self.next_delayed().into_iter().chain(self.waiting_blocked_deadline()).min();
            if next_retry.is_some() && next_retry != retry_at {
                retry.as_mut().reset(next_retry.unwrap_or_else(Instant::now));
            }
            retry_at = next_retry;
            tokio::select! {
                biased;
                _ = self.inbox.ready() => {}
                _ = &mut retry, if retry_at.is_some() => {
                    retry_at = None;
                    self.run_delayed();
                    self.expire_waiting_blocked();
                }
                r = conn.readable(), if can_read => {
                    if r.is_err() {
                        return;
                    }
                    match read_available(conn, &mut self.rbuf, self.recv_chunk) {
                        Ok(0) => eof = true,
                        Ok(n) => {
                            if n >= self.recv_chunk / 2 {
                                self.recv_chunk = (self.recv_chunk * 2).min(self.recv_max);
                            } else if n < self.recv_chunk / 16 {
                                // A trickle: do not keep making room for a burst.
                                self.recv_chunk = (self.recv_chunk / 2).max(MIN_RECV);
                            }
                            self.last_request = Instant::now();
                            self.process_input();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                r = conn.writable(), if !self.out.is_empty() => {
                    if r.is_err() {
                        return;
                    }
                }
                ev = pubsub::next_event(&mut self.pubsub), if self.pubsub.is_some() && self.out.len() < OUT_BACKLOG => {
                    if let Some(ev) = ev {
                        self.link_events(ev);
                    }
                }
                r = self.changes.changed(), if self.stalled.is_some() || self.blocked.is_some() || self.pubsub.is_some() => {
                    if r.is_err() {
                        return;
                    }
                    if self.blocked.is_some() || self.pubsub.is_some() {
                        let router = self.shared.router.clone();
                        let (round, table) = router.begin_round();
                        self.blocked_route_changed(&table);
                        self.pubsub_route_changed(&table);
                        drop((round, table));
                    }
                    if !self.stall_drain {
                        self.resume_stalled();
                    }
                }
                _ = &mut shutdown => return,
                _ = &mut timer => {
                    let now = Instant::now();
                    timer.as_mut().reset(now + tick);
                    self.stats.flush(&self.shared.stats, now.into_std(), false);
                    self.shrink_buffers();
                    if let Some(since) = write_stalled
                        && !send_timeout.is_zero()
                        && now - since >= send_timeout
                    {
                        tracing::info!("session closed: client did not read replies for {send_timeout:?}");
                        return;
                    }
                    // Subscribers are exempt, as in Redis: they may listen quietly for long.
                    if !idle_timeout.is_zero()
                        && self.pending.is_empty()
                        && self.pubsub.is_none()
                        && now - self.last_request >= idle_timeout
                    {
                        tracing::info!("session closed: idle for {idle_timeout:?}");
                        return;
                    }
                }
            }
        }
    }

    /// Dispatches the held request again (its slot changed, or the pipeline drained).
    fn resume_stalled(&mut self) {
        if let Some(req) = self.stalled.take() {
            self.stall_drain = false;
            let router = self.shared.router.clone();
            let (round, table) = router.begin_round();
            self.dispatch_request(req.as_ref(), StdInstant::now(), &table);
            drop((round, table));
            self.process_input();
        }
    }

    /// Moves arrived replies into place and queues every reply that is next in order.
    fn collect(&mut self) {
        self.inbox.take(&mut self.mail);
        let mut now = None;
        let (pending_before, out_before) = (self.pending.len(), self.out.len());
        if !self.mail.items.is_empty() {
            // Take the buffer whole when it grew large (a burst of replies), so that
            // what is left of it does not keep the allocation alive.
            let data = if self.mail.data.capacity() > MAIL_KEEP {
                std::mem::take(&mut self.mail.data)
            } else {
                self.mail.data.split()
            }
            .freeze();
            let mut items = std::mem::take(&mut self.mail.items);
            for d in items.drain(..) {
                if d.part == DISCARD_PART {
                    continue;
                }
                if self.blocked.as_ref().is_some_and(|b| b.seq == d.seq) {
                    let bytes = match &d.body {
                        Body::Copied { start, end } => &data[*start as usize..*end as usize],
                        Body::Shared(b) => &b[..],
                    };
                    if self.blocked_reply(bytes) {
                        continue;
                    }
                }
                match d.body {
                    Body::Copied { start, end } => {
                        let bytes = &data[start as usize..end as usize];
                        // The common case: the reply the client waits for next goes
                        // straight to the client without being stored.
                        if let Some(entry) = self.pending.take_front_if_waiting(d.seq) {
                            let now = *now.get_or_insert_with(StdInstant::now);
                            let redis_error = !d.proxy_error && bytes.first() == Some(&b'-');
                            let elapsed = now.saturating_duration_since(entry.start);
                            self.stats.record(entry.cmd, elapsed, d.proxy_error, redis_error);
                            self.log_if_slow(&entry, elapsed);
                            self.out.push_slice(bytes);
                        } else {
                            let reply = data.slice(start as usize..end as usize);
                            if let Some(f) = self.pending.deliver(d.seq, d.part, reply, d.proxy_error) {
                                self.followups.push(f);
                            }
                        }
                    }
                    Body::Shared(reply) => {
                        if let Some(f) = self.pending.deliver(d.seq, d.part, reply, d.proxy_error) {
                            self.followups.push(f);
                        }
                    }
                }
                self.drain_ready(&mut now);
            }
            self.mail.items = items;
        }
        self.run_followups();
        self.drain_ready(&mut now);
        let answered = pending_before.saturating_sub(self.pending.len());
        if answered > 0 {
            self.window = (self.window + answered).min(self.max_pipeline);
            self.reply_bytes += self.out.len().saturating_sub(out_before);
            self.replies += answered;
            if self.replies >= REPLY_WINDOW {
                self.reply_bytes /= 2;
                self.replies /= 2;
            }
            self.reply_size = (self.reply_bytes / self.replies).max(1);
        }
        if self.pending.is_empty() && (self.exclusive || self.stall_drain) {
            // Everything so far is answered: what waited for that can go on.
            self.exclusive = false;
            if self.stall_drain {
                self.resume_stalled();
            } else {
                self.process_input();
            }
        }
    }

    fn log_if_slow(&self, entry: &pending::Entry, elapsed: std::time::Duration) {
        if self.shared.slowlog.is_slow(elapsed) {
            self.shared.slowlog.push(&entry.summary, elapsed, &self.peer, self.name.as_ref());
        }
    }

    /// Whether another request may be dispatched: fewer in flight than the window
    /// (`session_max_pipeline` once the session is past its first round trips, see
    /// [`FIRST_WINDOW`]), and the replies queued for the client plus those the requests
    /// in flight are expected to bring (at the session's recent average reply size)
    /// under [`OUT_BACKLOG`]. Counting only requests would let a client that does not
    /// read pile up `session_max_pipeline` large replies (10,000 GETs of a 1 KB value
    /// buffered 10 MB); counting only what is queued would notice too late, once the
    /// replies of everything in flight had arrived. With nothing in flight there is
    /// always room, so a single request is never held back.
    fn has_room(&self) -> bool {
        let in_flight = self.pending.len();
        in_flight < self.window && self.out.len() + in_flight * self.reply_size < OUT_BACKLOG
    }

    /// Gives back what a burst left behind, once a second: a large read buffer holding
    /// only the start of a request (a slow client after a big request), and the queue
    /// of a deep pipeline. Idle buffers then cost what an idle session needs.
    fn shrink_buffers(&mut self) {
        if self.rbuf.len() <= MIN_RECV && (self.rbuf_shared || self.rbuf.capacity() > IDLE_RECV_KEEP) {
            self.rbuf = if self.rbuf.is_empty() { BytesMut::new() } else { BytesMut::from(&self.rbuf[..]) };
            self.rbuf_shared = false;
        }
        self.pending.shrink();
    }

    /// Writes out every answered request at the front of the pipeline.
    fn drain_ready(&mut self, now: &mut Option<StdInstant>) {
        while let Some((entry, reply, proxy_error)) = self.pending.pop_ready() {
            let now = *now.get_or_insert_with(StdInstant::now);
            let redis_error = !proxy_error && reply.first() == Some(&b'-');
            let elapsed = now.saturating_duration_since(entry.start);
            self.stats.record(entry.cmd, elapsed, proxy_error, redis_error);
            self.log_if_slow(&entry, elapsed);
            self.out.push(&reply);
        }
    }

    /// Parses and dispatches buffered requests while the pipeline has room, then sends
    /// what was queued for each backend connection as one batch.
    fn process_input(&mut self) {
        let now = StdInstant::now();
        // One snapshot of the slot table for the whole round.
        let router = self.shared.router.clone();
        let (round, table) = router.begin_round();
        // Requests are dispatched straight from the read buffer (taken out of `self`
        // for the round so they can be borrowed while the session is updated).
        let mut buf = std::mem::take(&mut self.rbuf);
        self.held = false;
        while !self.closing && !self.exclusive && self.stalled.is_none() {
            if !self.has_room() {
                self.held = !buf.is_empty();
                break;
            }
            match self.parser.next(&mut buf) {
                Ok(Some(Parsed::Frame(frame))) if frame.len() >= BIG_REQUEST => {
                    let req = frame.split_from(&mut buf);
                    self.rbuf_shared = true;
                    self.dispatch_request(req.as_ref(), now, &table);
                }
                Ok(Some(Parsed::Frame(frame))) => {
                    self.dispatch_request(frame.view(&buf), now, &table);
                    buf.advance(frame.len());
                }
                Ok(Some(Parsed::Owned(req))) => self.dispatch_request(req.as_ref(), now, &table),
                Ok(None) => break,
                Err(e) => {
                    tracing::info!("session closed: {e}");
                    self.reply_now(crate::command::UNKNOWN.id, now, error_reply(&format!("ERR {e}")), true);
                    self.closing = true;
                    buf = BytesMut::new();
                }
            }
        }
        drop((round, table));
        self.rbuf = buf;
        if self.rbuf.is_empty() && (self.rbuf_shared || self.rbuf.capacity() > IDLE_RECV_KEEP) {
            self.rbuf = BytesMut::new();
            self.rbuf_shared = false;
            self.recv_chunk = MIN_RECV;
        }
        self.flush_outbox();
    }

    /// Which backend connections serve this session: its database and protocol.
    fn key(&self) -> ConnKey {
        ConnKey { db: self.db, resp3: self.resp3 }
    }

    /// A null in the session's protocol.
    fn nil(&self) -> &'static [u8] {
        if self.resp3 { b"_\r\n" } else { b"$-1\r\n" }
    }

    /// A null array (RESP2's `*-1`) in the session's protocol.
    fn nil_array(&self) -> &'static [u8] {
        if self.resp3 { b"_\r\n" } else { b"*-1\r\n" }
    }

    /// Queues a request for `conn`; sent with the others of this round by [`Self::flush_outbox`].
    /// Small requests are copied into the batch; large ones are passed by reference.
    fn queue(&mut self, conn: &BackendConn, req: RequestRef<'_>, seq: u64, part: u32, tickets: Tickets) {
        let batch = self.batch_for(conn);
        match req.shared() {
            Some(b) => batch.push_bytes(b, seq, part, tickets),
            None => batch.push_slice(req.raw(), seq, part, tickets),
        }
    }

    fn queue_bytes(&mut self, conn: &BackendConn, payload: &Bytes, seq: u64, part: u32, tickets: Tickets) {
        self.batch_for(conn).push_bytes(payload, seq, part, tickets);
    }

    fn batch_for(&mut self, conn: &BackendConn) -> &mut Batch {
        let id = conn.handle().id();
        let i = match self.outbox.iter().position(|(h, _)| h.id() == id) {
            Some(i) => i,
            None => {
                self.outbox.push((conn.handle().clone(), Batch::new(self.inbox.clone())));
                self.outbox.len() - 1
            }
        };
        &mut self.outbox[i].1
    }

    fn flush_outbox(&mut self) {
        for (handle, batch) in self.outbox.drain(..) {
            handle.send(batch);
        }
    }

    /// Queues a reply the proxy produced itself.
    fn reply_now(&mut self, cmd: u16, start: StdInstant, reply: Bytes, proxy_error: bool) {
        self.pending.push(cmd, start, pending::State::Ready { reply, proxy_error });
        if proxy_error && self.shared.config.session_break_on_failure {
            self.closing = true;
        }
    }

    fn finish(&mut self) {
        self.stats.flush(&self.shared.stats, StdInstant::now(), true);
    }
}

fn rand_seed() -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish() as usize
}
