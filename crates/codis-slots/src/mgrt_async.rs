//! Async migration, source side: SLOTSMGRTSLOT-ASYNC, SLOTSMGRTTAGSLOT-ASYNC,
//! SLOTSMGRTONE-ASYNC, SLOTSMGRTTAGONE-ASYNC, SLOTSMGRT-ASYNC-FENCE/-CANCEL/-STATUS.
//!
//! Wire protocol (codis-server 3.2's): per DB one connection to the target; the source
//! sends `SLOTSRESTORE-ASYNC-AUTH pwd` (if it has a password) and
//! `SLOTSRESTORE-ASYNC-SELECT db` once, then per key `SLOTSRESTORE-ASYNC delete key`,
//! then `string key ttl value` or `object key ttl dump-payload`, or, for a collection
//! larger than `maxbulks`, chunks `list|hash|dict|zset key ttl hint elems...` (with a
//! temporary ttl of 3 x timeout) followed by `expire key ttl`. zset scores travel as
//! 8 raw little-endian bytes. The target answers every message with
//! `SLOTSRESTORE-ASYNC-ACK errno msg`.
//!
//! The connection lives in Redis's own event loop (`RedisModule_EventLoopAdd`): its
//! callback only reads acks and writes buffered bytes. Messages are produced in
//! timer callbacks, a bounded amount per tick and only while less than `maxbytes` are
//! unacknowledged, so a key of millions of elements moves while the server keeps
//! answering other clients. The calling client is blocked until every ack arrived;
//! then the moved keys are deleted on the source (propagated to replicas and AOF) and
//! the client gets `[moved, remaining]` (slot forms) or `moved` (key forms).

use std::collections::{HashSet, VecDeque};
use std::ffi::{c_int, c_void};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codis_core::{has_tag, slot_of, tag_crc};
use codis_resp::{Encoder, Limits, RequestParser};

use crate::basic::err;
use crate::rm::{self, Ctx, RStr};
use crate::state;

/// An idle connection is closed after this long.
const IDLE_MS: i64 = 60_000;
/// Work per production tick before yielding to other clients.
const TICK_BUDGET_US: u128 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Prepare,
    Payload,
    Chunked,
    FillTtl,
    Done,
}

impl Stage {
    fn code(self) -> i64 {
        match self {
            Stage::Prepare => 0,
            Stage::Payload => 1,
            Stage::Chunked => 2,
            Stage::FillTtl => 3,
            Stage::Done => 4,
        }
    }
}

/// Progress of one key through the stream.
pub(crate) struct KeyIter {
    key: Vec<u8>,
    stage: Stage,
    kind: i32,
    /// Absolute expiry (ms), if any.
    expire_at: Option<i64>,
    cursor: Option<rm::KeyCursor>,
    lindex: usize,
    zindex: usize,
    chunked_msgs: usize,
    /// The key existed when its turn came.
    existed: bool,
    /// The key vanished or changed type half-way; the target copy was deleted.
    aborted: bool,
}

impl KeyIter {
    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }
    /// The key was sent completely (so it is to be deleted at the source).
    pub(crate) fn moved(&self) -> bool {
        self.stage == Stage::Done && self.existed && !self.aborted
    }
    pub(crate) fn new(key: Vec<u8>) -> Self {
        KeyIter {
            key,
            stage: Stage::Prepare,
            kind: rm::KEYTYPE_EMPTY,
            expire_at: None,
            cursor: None,
            lindex: 0,
            zindex: 0,
            chunked_msgs: 0,
            existed: false,
            aborted: false,
        }
    }
}

/// Where produced messages go: the async connection, or a buffer for the sync path.
pub(crate) trait Sink {
    /// Appends one message (an array of bulk strings) that expects one ack.
    fn message(&mut self, parts: &[&[u8]]);
    /// Bytes that may still be produced before waiting for acks.
    fn room(&self) -> usize;
}

/// Per-batch settings the producer needs.
#[derive(Clone, Copy)]
pub(crate) struct StepParams {
    pub timeout: i64,
    pub maxbulks: usize,
    /// The target is an older server that may not read this server's DUMP payloads
    /// (e.g. codis-server 3.2): collections always go as element chunks.
    pub legacy: bool,
}

/// One batch of keys being moved.
struct Job {
    /// Slot forms reply `[moved, remaining-in-slot]`.
    slot: Option<u16>,
    timeout: i64,
    maxbulks: usize,
    maxbytes: usize,
    keys: HashSet<Vec<u8>>,
    tags: HashSet<u32>,
    queue: VecDeque<KeyIter>,
    removed: Vec<Vec<u8>>,
    chunked: Vec<Vec<u8>>,
    estimate_msgs: usize,
    legacy: bool,
}

impl Job {
    fn contains(&self, key: &[u8]) -> bool {
        self.keys.contains(key) || (has_tag(key) && self.tags.contains(&tag_crc(key)))
    }
}

/// The connection of one DB to its target.
pub struct Conn {
    db: i32,
    host: String,
    port: u16,
    stream: TcpStream,
    fd: i32,
    /// AUTH/SELECT were sent.
    used: bool,
    out: Vec<u8>,
    out_pos: usize,
    write_armed: bool,
    inbuf: BytesMut,
    parser: RequestParser,
    timeout: i64,
    lastuse: i64,
    /// Sizes of the messages awaiting an ack, oldest first.
    sending: VecDeque<usize>,
    unacked: usize,
    job: Option<Job>,
    /// A batch is being prepared (its slot set is being built).
    starting: bool,
    blocked: Vec<rm::BlockedClient>,
    pump_armed: bool,
    /// The target is older than this server (see [`StepParams::legacy`]).
    legacy: bool,
}

impl Sink for Conn {
    fn message(&mut self, parts: &[&[u8]]) {
        Conn::message(self, parts)
    }
    fn room(&self) -> usize {
        let max = self.job.as_ref().map_or(0, |j| j.maxbytes);
        max.saturating_sub(self.unacked).max(1)
    }
}

pub struct AsyncState {
    conns: Vec<Option<Box<Conn>>>,
}

impl AsyncState {
    pub fn new(ndbs: usize) -> Self {
        let mut conns = Vec::with_capacity(ndbs);
        conns.resize_with(ndbs, || None);
        AsyncState { conns }
    }
    /// A migration batch is in progress in `db`.
    pub fn has_job(&self, db: i32) -> bool {
        self.conns.get(db as usize).and_then(|c| c.as_ref()).is_some_and(|c| c.job.is_some() || c.starting)
    }
    /// (connections, batches in progress)
    pub fn counts(&self) -> (usize, usize) {
        let c = self.conns.iter().flatten().count();
        let b = self.conns.iter().flatten().filter(|c| c.job.is_some()).count();
        (c, b)
    }
    /// `key` (or its tag group) is part of the batch in progress in `db`.
    pub fn job_contains(&self, db: i32, key: &[u8]) -> bool {
        self.conns
            .get(db as usize)
            .and_then(|c| c.as_ref())
            .and_then(|c| c.job.as_ref())
            .is_some_and(|j| j.contains(key))
    }
}

// ---------------------------------------------------------------------------------------
// Results handed to blocked clients

enum Outcome {
    Err(String),
    Int(i64),
    Pair(i64, i64),
}

unsafe extern "C" fn outcome_reply(ctx: Ctx, _argv: *mut RStr, _argc: c_int) -> c_int {
    let p = rm::blocked_privdata(ctx) as *const Outcome;
    if p.is_null() {
        rm::reply_error(ctx, "invalid iterator (NULL)");
        return rm::OK;
    }
    match unsafe { &*p } {
        Outcome::Err(e) => rm::reply_error(ctx, e),
        Outcome::Int(n) => rm::reply_int(ctx, *n),
        Outcome::Pair(a, b) => {
            rm::reply_array(ctx, 2);
            rm::reply_int(ctx, *a);
            rm::reply_int(ctx, *b);
        }
    }
    rm::OK
}

unsafe extern "C" fn outcome_free(_ctx: Ctx, data: *mut c_void) {
    if !data.is_null() {
        drop(unsafe { Box::from_raw(data as *mut Outcome) });
    }
}

fn block(ctx: Ctx) -> rm::BlockedClient {
    rm::block_client(ctx, outcome_reply, outcome_free)
}

fn unblock(bc: rm::BlockedClient, o: &Outcome) {
    let copy = match o {
        Outcome::Err(e) => Outcome::Err(e.clone()),
        Outcome::Int(n) => Outcome::Int(*n),
        Outcome::Pair(a, b) => Outcome::Pair(*a, *b),
    };
    rm::unblock_client(bc, Box::into_raw(Box::new(copy)) as *mut c_void);
}

// ---------------------------------------------------------------------------------------
// Connection management

fn take_conn(db: i32) -> Option<Box<Conn>> {
    state::with(|s| s.asyncs.conns.get_mut(db as usize).and_then(|c| c.take()))
}

fn put_conn(conn: Box<Conn>) {
    let db = conn.db as usize;
    state::with(|s| s.asyncs.conns[db] = Some(conn));
}

impl Conn {
    /// Closes the connection, failing every blocked client with `msg`. The batch is
    /// abandoned: its keys stay on the source.
    fn close(&mut self, ctx: Ctx, msg: &str) {
        rm::event_loop_del(self.fd, rm::EL_READABLE | rm::EL_WRITABLE);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let o = Outcome::Err(msg.to_string());
        for bc in self.blocked.drain(..) {
            unblock(bc, &o);
        }
        if self.job.is_some() || self.starting {
            rm::log_warning(
                ctx,
                &format!(
                    "slotsmgrt_async: unlink client {}:{} (DB={}): sending_msgs = {}, ({msg})",
                    self.host,
                    self.port,
                    self.db,
                    self.sending.len()
                ),
            );
        }
        self.job = None;
        self.starting = false;
    }

    /// Writes as much buffered output as the socket takes.
    fn flush(&mut self) -> Result<(), String> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err("interrupted: connection closed".into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("interrupted: write error ({e})")),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.write_armed {
                rm::event_loop_del(self.fd, rm::EL_WRITABLE);
                self.write_armed = false;
            }
        } else if !self.write_armed {
            let data = self.db as usize as *mut c_void;
            if !rm::event_loop_add(self.fd, rm::EL_WRITABLE, on_socket, data) {
                return Err("interrupted: event loop registration failed".into());
            }
            self.write_armed = true;
        }
        Ok(())
    }

    /// Appends one message (an array of bulk strings) awaiting an ack.
    fn message(&mut self, parts: &[&[u8]]) {
        let before = self.out.len();
        self.out.put_array_len(parts.len());
        for p in parts {
            self.out.put_bulk(p);
        }
        let n = self.out.len() - before;
        self.sending.push_back(n);
        self.unacked += n;
    }
}

/// Connects (blocking, at most 100 ms as codis-server does); the caller makes the
/// socket non-blocking when it wants.
pub(crate) fn connect(host: &str, port: u16, timeout: i64) -> Result<TcpStream, String> {
    let wait = Duration::from_millis(timeout.clamp(1, 100) as u64);
    let addrs = (host, port).to_socket_addrs().map_err(|e| format!("resolve {host}: {e}"))?;
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, wait) {
            Ok(s) => {
                s.set_nodelay(true).ok();
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The connection of `db` to `host:port`, reusing the cached one or replacing a
/// connection to another target.
fn get_or_create(ctx: Ctx, db: i32, host: &str, port: u16, timeout: i64) -> Result<(), String> {
    let same = state::with(|s| s.asyncs.conns[db as usize].as_ref().is_some_and(|c| c.host == host && c.port == port));
    if same {
        return Ok(());
    }
    let mut stream = connect(host, port, timeout).map_err(|e| {
        rm::log_warning(ctx, &format!("slotsmgrt_async: create socket {host}:{port} (DB={db}) failed, {e}"));
        format!("create client to {host}:{port} failed")
    })?;
    let legacy = crate::compat::probe_is_legacy(ctx, &mut stream, timeout);
    stream.set_nonblocking(true).map_err(|_| format!("create client to {host}:{port} failed"))?;
    if let Some(mut old) = take_conn(db) {
        old.close(ctx, "interrupted: build new connection");
    }
    let fd = stream.as_raw_fd();
    if !rm::event_loop_add(fd, rm::EL_READABLE, on_socket, db as usize as *mut c_void) {
        return Err(format!("create client to {host}:{port} failed"));
    }
    rm::log_verbose(ctx, &format!("slotsmgrt_async: create client {host}:{port} (DB={db}) OK"));
    put_conn(Box::new(Conn {
        db,
        host: host.to_string(),
        port,
        stream,
        fd,
        used: false,
        out: Vec::new(),
        out_pos: 0,
        write_armed: false,
        inbuf: BytesMut::new(),
        parser: RequestParser::new(Limits::default()),
        timeout,
        lastuse: rm::now_ms(),
        sending: VecDeque::new(),
        unacked: 0,
        job: None,
        starting: false,
        blocked: Vec::new(),
        pump_armed: false,
        legacy,
    }));
    Ok(())
}

/// Event loop callback of a migration socket: reads acks, writes pending output.
unsafe extern "C" fn on_socket(_fd: c_int, data: *mut c_void, mask: c_int) {
    let db = data as usize as i32;
    let ctx = rm::detached_ctx();
    let mut failure: Option<String> = None;
    let mut need_pump = false;
    state::with(|s| {
        let Some(conn) = s.asyncs.conns.get_mut(db as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if mask & rm::EL_WRITABLE != 0
            && let Err(e) = conn.flush()
        {
            failure = Some(e);
            return;
        }
        if mask & rm::EL_READABLE == 0 {
            return;
        }
        let mut buf = [0u8; 65536];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    failure = Some("interrupted: connection closed".into());
                    break;
                }
                Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(format!("interrupted: read error ({e})"));
                    break;
                }
            }
        }
        // Acks are arrays of bulk strings: parse them as requests.
        loop {
            match conn.parser.parse(&mut conn.inbuf) {
                Ok(Some(req)) => {
                    let name = req.get(0).unwrap_or_default();
                    if !name.eq_ignore_ascii_case(b"SLOTSRESTORE-ASYNC-ACK") || req.argc() != 3 {
                        let text: Vec<String> = req.args().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                        failure = Some(format!("target replied: {}", text.join(" ")));
                        break;
                    }
                    let errno = String::from_utf8_lossy(req.arg(1)).into_owned();
                    if errno != "0" {
                        let msg = String::from_utf8_lossy(req.arg(2)).into_owned();
                        rm::log_warning(ctx, &format!("slotsmgrt_async: ack[{errno}] {msg}"));
                        failure = Some(format!("target refused: [{errno}] {msg}"));
                        break;
                    }
                    match conn.sending.pop_front() {
                        Some(n) => conn.unacked -= n,
                        None => {
                            failure = Some("invalid pending messages".into());
                            break;
                        }
                    }
                    conn.lastuse = rm::now_ms();
                    need_pump = conn.job.is_some();
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(format!("interrupted: bad reply from target ({e:?})"));
                    break;
                }
            }
        }
        if failure.is_none() && need_pump {
            let job = conn.job.as_ref().expect("job");
            // More to send, or everything acked.
            need_pump = (!job.queue.is_empty() && conn.unacked < job.maxbytes) || conn.sending.is_empty();
            if need_pump && !conn.pump_armed {
                conn.pump_armed = true;
            } else {
                need_pump = false;
            }
        }
    });
    if let Some(msg) = failure {
        if let Some(mut conn) = take_conn(db) {
            conn.close(ctx, &msg);
        }
        return;
    }
    if need_pump {
        rm::create_timer(ctx, 0, pump_timer, db as usize as *mut c_void);
    }
}

unsafe extern "C" fn pump_timer(ctx: Ctx, data: *mut c_void) {
    let db = data as usize as i32;
    crate::guard_void(ctx, || {
        if let Some(mut conn) = take_conn(db) {
            conn.pump_armed = false;
            pump(ctx, conn, TICK_BUDGET_US, 1);
        }
    });
}

/// Produces messages, sends them, and finishes the batch once everything is acked.
/// Takes the connection out of the state (production calls into Redis, which raises
/// keyspace events) and puts it back (or drops it on failure).
fn pump(ctx: Ctx, mut conn: Box<Conn>, budget_us: u128, atleast: usize) {
    let db = conn.db;
    let orig = rm::selected_db(ctx);
    rm::select_db(ctx, db);
    let result = produce(ctx, &mut conn, budget_us, atleast).and_then(|()| conn.flush());
    if let Err(e) = result {
        conn.close(ctx, &e);
        rm::select_db(ctx, orig);
        return;
    }
    let done = conn.job.as_ref().is_some_and(|j| j.queue.is_empty() && conn.sending.is_empty());
    if done {
        finish(ctx, &mut conn);
    }
    rm::select_db(ctx, orig);
    put_conn(conn);
}

/// All keys of the batch were acked: delete them here (propagating) and reply.
fn finish(ctx: Ctx, conn: &mut Conn) {
    let job = conn.job.take().expect("job");
    let mut moved = 0i64;
    let mut failure = None;
    if !job.removed.is_empty() {
        match crate::basic::delete_keys(ctx, &job.removed, false) {
            Ok(_) => moved += job.removed.len() as i64,
            Err(e) => failure = Some(e),
        }
    }
    if !job.chunked.is_empty() {
        // Big values are freed in the background.
        match crate::basic::delete_keys(ctx, &job.chunked, true) {
            Ok(_) => moved += job.chunked.len() as i64,
            Err(e) => failure = Some(e),
        }
    }
    conn.lastuse = rm::now_ms();
    let o = match (failure, job.slot) {
        (Some(e), _) => Outcome::Err(e),
        (None, None) => Outcome::Int(moved),
        (None, Some(slot)) => {
            let remaining = state::with(|s| s.dbs[conn.db as usize].index.count(slot));
            Outcome::Pair(moved, remaining as i64)
        }
    };
    for bc in conn.blocked.drain(..) {
        unblock(bc, &o);
    }
}

/// Number of messages the value of `key` needs (1, or its number of chunks).
fn estimate(ctx: Ctx, key: &[u8], maxbulks: usize) -> usize {
    let s = rm::Strings::new(ctx, &[key]);
    let k = rm::Key::open_read(ctx, s.get(0));
    chunks_for(k.key_type(), k.len(), maxbulks)
}

fn chunks_for(kind: i32, len: usize, maxbulks: usize) -> usize {
    let bulks = match kind {
        rm::KEYTYPE_EMPTY => return 0,
        rm::KEYTYPE_LIST | rm::KEYTYPE_SET => len,
        rm::KEYTYPE_HASH | rm::KEYTYPE_ZSET => len * 2,
        _ => 0,
    };
    if bulks <= maxbulks { 1 } else { bulks.div_ceil(maxbulks) }
}

fn ttl_of(expire_at: Option<i64>, now: i64) -> i64 {
    match expire_at {
        None => 0,
        Some(at) => (at - now).max(1),
    }
}

/// Produces messages until the budget is used (after at least `atleast`), the window
/// of unacknowledged bytes is full, or the batch has nothing more to send.
fn produce(ctx: Ctx, conn: &mut Conn, budget_us: u128, atleast: usize) -> Result<(), String> {
    let started = Instant::now();
    let mut msgs = 0usize;
    let pass = if conn.used { None } else { crate::sync::requirepass(ctx) };
    loop {
        let (maxbytes, empty) = {
            let job = conn.job.as_mut().expect("job");
            // Retire finished keys.
            while job.queue.front().is_some_and(|k| k.stage == Stage::Done) {
                let it = job.queue.pop_front().unwrap();
                if it.existed && !it.aborted {
                    if it.chunked_msgs > 0 {
                        job.chunked.push(it.key);
                    } else {
                        job.removed.push(it.key);
                    }
                }
            }
            (job.maxbytes, job.queue.is_empty())
        };
        if empty || conn.unacked >= maxbytes {
            return Ok(());
        }
        if msgs >= atleast && started.elapsed().as_micros() >= budget_us {
            return Ok(());
        }
        if !conn.used {
            conn.used = true;
            if let Some(p) = &pass {
                conn.message(&[b"SLOTSRESTORE-ASYNC-AUTH", p]);
                msgs += 1;
            }
            let db = conn.db.to_string();
            conn.message(&[b"SLOTSRESTORE-ASYNC-SELECT", db.as_bytes()]);
            msgs += 1;
        }
        let job = conn.job.as_mut().expect("job");
        let params = StepParams { timeout: job.timeout, maxbulks: job.maxbulks, legacy: job.legacy };
        let mut it = job.queue.pop_front().expect("non-empty queue");
        let r = step(ctx, &params, &mut it, conn);
        conn.job.as_mut().expect("job").queue.push_front(it);
        msgs += r?;
    }
}

/// Advances one key by one message. Returns how many messages it produced.
pub(crate) fn step(ctx: Ctx, p: &StepParams, it: &mut KeyIter, conn: &mut dyn Sink) -> Result<usize, String> {
    let now = rm::now_ms();
    let (timeout, maxbulks) = (p.timeout, p.maxbulks);
    let keystr = rm::Strings::new(ctx, &[&it.key]);
    let key = rm::Key::open_read(ctx, keystr.get(0));
    let kind = key.key_type();
    let mut sent = 0usize;
    match it.stage {
        Stage::Prepare => {
            if kind == rm::KEYTYPE_EMPTY {
                it.stage = Stage::Done;
            } else {
                it.existed = true;
                it.kind = kind;
                it.expire_at = key.ttl().map(|t| now + t);
                conn.message(&[b"SLOTSRESTORE-ASYNC", b"delete", &it.key]);
                sent += 1;
                let n = chunks_for(kind, key.len(), maxbulks);
                let collection =
                    matches!(kind, rm::KEYTYPE_LIST | rm::KEYTYPE_HASH | rm::KEYTYPE_SET | rm::KEYTYPE_ZSET);
                if p.legacy && !collection && kind != rm::KEYTYPE_STRING {
                    return Err(format!(
                        "key '{}' has a type the (older) target cannot restore",
                        String::from_utf8_lossy(&it.key)
                    ));
                }
                if n >= 2 || (p.legacy && collection) {
                    it.stage = Stage::Chunked;
                    it.chunked_msgs = n.max(1);
                } else {
                    it.stage = Stage::Payload;
                }
            }
        }
        _ if kind != it.kind => {
            // Deleted, or replaced by another type, half-way: drop the partial copy on
            // the target and leave the key (if any) on the source for a later batch.
            conn.message(&[b"SLOTSRESTORE-ASYNC", b"delete", &it.key]);
            sent += 1;
            it.aborted = true;
            it.stage = Stage::Done;
        }
        Stage::Payload => {
            let ttl = ttl_of(it.expire_at, now).to_string();
            if kind == rm::KEYTYPE_STRING {
                let v = key.string_value().unwrap_or_default();
                conn.message(&[b"SLOTSRESTORE-ASYNC", b"string", &it.key, ttl.as_bytes(), &v]);
            } else {
                drop(key);
                let dump = rm::call(ctx, "DUMP", "", &[&it.key]).into_result()?;
                if dump.kind() != rm::REPLY_STRING {
                    return Err(format!("cannot dump key '{}'", String::from_utf8_lossy(&it.key)));
                }
                let payload = dump.bytes().to_vec();
                drop(dump);
                conn.message(&[b"SLOTSRESTORE-ASYNC", b"object", &it.key, ttl.as_bytes(), &payload]);
            }
            sent += 1;
            it.stage = Stage::Done;
        }
        Stage::Chunked => {
            let ttl = (timeout * 3).to_string();
            let room = conn.room();
            let mut elems: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0usize;
            let mut more = true;
            let hint = key.len();
            let cmd: &[u8] = match kind {
                rm::KEYTYPE_LIST => {
                    drop(key);
                    let start = it.lindex;
                    let stop = start + maxbulks - 1;
                    let (a, b) = (start.to_string(), stop.to_string());
                    let r = rm::call(ctx, "LRANGE", "", &[&it.key, a.as_bytes(), b.as_bytes()]).into_result()?;
                    let n = r.len();
                    for i in 0..n {
                        elems.push(r.elem(i).bytes().to_vec());
                    }
                    it.lindex += n;
                    if n < maxbulks || it.lindex >= hint {
                        more = false;
                    }
                    b"list"
                }
                _ => {
                    let cursor = it.cursor.get_or_insert_with(rm::KeyCursor::new);
                    let mut loops = (maxbulks * 10).max(100);
                    let zset = kind == rm::KEYTYPE_ZSET;
                    while more && elems.len() < maxbulks && bytes < room && loops > 0 {
                        loops -= 1;
                        more = cursor.step(&key, &mut |f, v| {
                            bytes += f.len();
                            elems.push(f.to_vec());
                            if let Some(v) = v {
                                if zset {
                                    let score: f64 =
                                        std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                                    elems.push(score.to_bits().to_le_bytes().to_vec());
                                    bytes += 8;
                                } else {
                                    bytes += v.len();
                                    elems.push(v.to_vec());
                                }
                            }
                        });
                    }
                    if zset {
                        it.zindex += elems.len() / 2;
                    }
                    match kind {
                        rm::KEYTYPE_HASH => b"hash",
                        rm::KEYTYPE_SET => b"dict",
                        _ => b"zset",
                    }
                }
            };
            let hint_s = hint.to_string();
            let mut parts: Vec<&[u8]> = vec![b"SLOTSRESTORE-ASYNC", cmd, &it.key, ttl.as_bytes(), hint_s.as_bytes()];
            parts.extend(elems.iter().map(|e| e.as_slice()));
            conn.message(&parts);
            sent += 1;
            if !more {
                it.cursor = None;
                it.stage = Stage::FillTtl;
            }
        }
        Stage::FillTtl => {
            let ttl = ttl_of(it.expire_at, now).to_string();
            conn.message(&[b"SLOTSRESTORE-ASYNC", b"expire", &it.key, ttl.as_bytes()]);
            sent += 1;
            it.stage = Stage::Done;
        }
        Stage::Done => {}
    }
    Ok(sent)
}

// ---------------------------------------------------------------------------------------
// Batches

struct Params {
    host: String,
    port: u16,
    timeout: i64,
    maxbulks: usize,
    maxbytes: usize,
}

fn parse_ll(b: &[u8], what: &str, lo: i64, hi: i64) -> Result<i64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| format!("invalid value of {what} ({})", String::from_utf8_lossy(b)))
}

fn parse_params(args: &[&[u8]]) -> Result<Params, String> {
    let host = String::from_utf8_lossy(args[1]).into_owned();
    let port = parse_ll(args[2], "port", 1, 65535)? as u16;
    let mut timeout = parse_ll(args[3], "timeout", 0, i32::MAX as i64)?;
    if timeout == 0 {
        timeout = 30_000;
    }
    let mut maxbulks = parse_ll(args[4], "maxbulks", 0, i32::MAX as i64)?;
    if maxbulks == 0 {
        maxbulks = 200;
    }
    maxbulks = maxbulks.min(512 * 1024);
    let mut maxbytes = parse_ll(args[5], "maxbytes", 0, i32::MAX as i64)?;
    if maxbytes == 0 {
        maxbytes = 512 * 1024;
    }
    maxbytes = maxbytes.min(i32::MAX as i64 / 2);
    Ok(Params { host, port, timeout, maxbulks: maxbulks as usize, maxbytes: maxbytes as usize })
}

/// How the batch is chosen.
enum Pick {
    Keys(Vec<Vec<u8>>),
    Slot { slot: u16, numkeys: usize },
}

fn new_job(p: &Params, slot: Option<u16>) -> Job {
    Job {
        slot,
        timeout: p.timeout,
        maxbulks: p.maxbulks,
        maxbytes: p.maxbytes,
        keys: HashSet::new(),
        tags: HashSet::new(),
        queue: VecDeque::new(),
        removed: Vec::new(),
        chunked: Vec::new(),
        estimate_msgs: 0,
        legacy: false,
    }
}

/// Adds `key` (and, with `usetag`, its tag group from the slot set) to the batch.
fn add_key(ctx: Ctx, db: i32, job: &mut Job, key: &[u8], usetag: bool) {
    if !job.keys.insert(key.to_vec()) {
        return;
    }
    job.queue.push_back(KeyIter::new(key.to_vec()));
    job.estimate_msgs += estimate(ctx, key, job.maxbulks);
    if !has_tag(key) {
        return;
    }
    let crc = tag_crc(key);
    if !job.tags.insert(crc) || !usetag {
        return;
    }
    let group = state::with(|s| {
        s.dbs[db as usize].index.tracked.get(&slot_of(key)).map(|t| t.set.tag_group(crc)).unwrap_or_default()
    });
    for k in group {
        if job.keys.insert(k.clone()) {
            job.estimate_msgs += estimate(ctx, &k, job.maxbulks);
            job.queue.push_back(KeyIter::new(k));
        }
    }
}

/// Chooses the batch (codis-server's rules: for a slot, keys from the slot until the
/// estimated number of messages reaches `numkeys`, never more than twice that unless
/// the batch would otherwise be empty).
fn build_job(ctx: Ctx, db: i32, p: &Params, pick: &Pick, usetag: bool) -> Job {
    match pick {
        Pick::Keys(keys) => {
            let mut job = new_job(p, None);
            for k in keys {
                add_key(ctx, db, &mut job, k, usetag);
            }
            job
        }
        Pick::Slot { slot, numkeys } => {
            let mut job = new_job(p, Some(*slot));
            let candidates: Vec<Vec<u8>> = state::with(|s| {
                let t = &s.dbs[db as usize].index.tracked[slot];
                t.set.iter().take((numkeys * 10).max(100)).map(|k| k.to_vec()).collect()
            });
            for k in candidates {
                if job.estimate_msgs >= *numkeys || job.keys.len() >= *numkeys {
                    break;
                }
                if job.keys.contains(&k) {
                    continue;
                }
                let msgs = estimate(ctx, &k, job.maxbulks);
                if job.estimate_msgs == 0 || job.estimate_msgs + msgs <= numkeys * 2 {
                    add_key(ctx, db, &mut job, &k, usetag);
                }
            }
            job
        }
    }
}

/// Starts the batch on the (already connected) connection of `db`. With `bc` the
/// client is already blocked; otherwise it is blocked here if the batch needs acks.
fn start(ctx: Ctx, db: i32, p: &Params, pick: &Pick, usetag: bool, bc: Option<rm::BlockedClient>) {
    let orig = rm::selected_db(ctx);
    rm::select_db(ctx, db);
    let job = build_job(ctx, db, p, pick, usetag);
    rm::select_db(ctx, orig);
    let Some(mut conn) = take_conn(db) else {
        let o = Outcome::Err("interrupted: connection closed".into());
        match bc {
            Some(bc) => unblock(bc, &o),
            None => rm::reply_error(ctx, "interrupted: connection closed"),
        }
        return;
    };
    conn.starting = false;
    conn.timeout = p.timeout;
    conn.lastuse = rm::now_ms();
    let mut job = job;
    job.legacy = conn.legacy;
    conn.job = Some(job);
    // Like codis-server: the first messages go out right away.
    let orig = rm::selected_db(ctx);
    rm::select_db(ctx, db);
    let first = produce(ctx, &mut conn, 500, 3).and_then(|()| conn.flush());
    rm::select_db(ctx, orig);
    if let Err(e) = first {
        conn.close(ctx, &e);
        match bc {
            Some(bc) => unblock(bc, &Outcome::Err(e)),
            None => rm::reply_error(ctx, &e),
        }
        return;
    }
    if conn.sending.is_empty() {
        // Nothing to move (all keys gone): answer now.
        let bc = match bc {
            Some(bc) => bc,
            None => block(ctx),
        };
        conn.blocked.push(bc);
        rm::select_db(ctx, db);
        finish(ctx, &mut conn);
        rm::select_db(ctx, orig);
        put_conn(conn);
        return;
    }
    let bc = match bc {
        Some(bc) => bc,
        None => block(ctx),
    };
    conn.blocked.push(bc);
    put_conn(conn);
}

/// SLOTSMGRTONE-ASYNC / SLOTSMGRTTAGONE-ASYNC host port timeout maxbulks maxbytes key...
/// SLOTSMGRTSLOT-ASYNC / SLOTSMGRTTAGSLOT-ASYNC host port timeout maxbulks maxbytes slot numkeys
pub fn migrate_async(ctx: Ctx, args: &[&[u8]], usetag: bool, usekey: bool) -> c_int {
    let name = String::from_utf8_lossy(args[0]).to_uppercase();
    if (usekey && args.len() <= 6) || (!usekey && args.len() != 8) {
        return err(ctx, &format!("wrong number of arguments for {name}"));
    }
    let p = match parse_params(args) {
        Ok(p) => p,
        Err(e) => return err(ctx, &e),
    };
    let pick = if usekey {
        Pick::Keys(args[6..].iter().map(|k| k.to_vec()).collect())
    } else {
        let slot = match parse_ll(args[6], "slot", 0, 1023) {
            Ok(v) => v as u16,
            Err(e) => return err(ctx, &e),
        };
        let mut numkeys = match parse_ll(args[7], "numkeys", 0, i32::MAX as i64) {
            Ok(v) => v as usize,
            Err(e) => return err(ctx, &e),
        };
        if numkeys == 0 {
            numkeys = 100;
        }
        Pick::Slot { slot, numkeys }
    };
    let db = rm::selected_db(ctx);
    if state::with(|s| s.asyncs.has_job(db)) {
        return err(ctx, "the specified DB is being migrated");
    }
    if !rm::can_block(ctx) {
        return err(ctx, &format!("{name} cannot run inside MULTI or a script"));
    }
    if let Err(e) = get_or_create(ctx, db, &p.host, p.port, p.timeout) {
        return err(ctx, &e);
    }
    let slots: Vec<u16> = match &pick {
        Pick::Slot { slot, .. } => {
            state::prefetch_window(db, *slot);
            vec![*slot]
        }
        Pick::Keys(keys) if usetag => {
            let mut v: Vec<u16> = keys.iter().filter(|k| has_tag(k)).map(|k| slot_of(k)).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        Pick::Keys(_) => vec![],
    };
    state::with(|s| {
        if let Some(c) = s.asyncs.conns[db as usize].as_mut() {
            c.starting = true;
        }
    });
    let startf: state::Start = Box::new(move |ctx, bc| start(ctx, db, &p, &pick, usetag, Some(bc)));
    match state::block_until_sets(ctx, db, slots, block, startf) {
        Ok(()) => {}
        Err(startf) => {
            // Sets complete (or none needed): start now; `start` blocks the client.
            // `block_until_sets` gave the closure back; run it with a fresh block.
            let bc = block(ctx);
            startf(ctx, bc);
        }
    }
    rm::OK
}

/// SLOTSMGRT-ASYNC-FENCE: waits for the batch in progress (if any); the reply is the
/// batch's own reply, as in codis-server.
pub fn fence(ctx: Ctx, _args: &[&[u8]]) -> c_int {
    let db = rm::selected_db(ctx);
    if !state::with(|s| s.asyncs.has_job(db)) {
        rm::reply_ok(ctx);
        return rm::OK;
    }
    if !rm::can_block(ctx) {
        return err(ctx, "previous operation has not finished (call fence again)");
    }
    let bc = block(ctx);
    state::with(|s| {
        if let Some(c) = s.asyncs.conns[db as usize].as_mut() {
            c.blocked.push(bc);
        }
    });
    rm::OK
}

/// SLOTSMGRT-ASYNC-CANCEL: closes the connection of the selected DB; 1 if there was one.
pub fn cancel(ctx: Ctx, _args: &[&[u8]]) -> c_int {
    let db = rm::selected_db(ctx);
    match take_conn(db) {
        Some(mut c) => {
            c.close(ctx, "interrupted: canceled");
            rm::reply_int(ctx, 1);
        }
        None => rm::reply_int(ctx, 0),
    }
    rm::OK
}

fn kv_bulk(ctx: Ctx, k: &str, v: &[u8]) {
    rm::reply_bulk(ctx, k.as_bytes());
    rm::reply_bulk(ctx, v);
}

fn kv_int(ctx: Ctx, k: &str, v: i64) {
    kv_bulk(ctx, k, v.to_string().as_bytes());
}

/// SLOTSMGRT-ASYNC-STATUS
pub fn status(ctx: Ctx, _args: &[&[u8]]) -> c_int {
    let db = rm::selected_db(ctx);
    let now = rm::now_ms();
    state::with(|s| {
        let Some(c) = s.asyncs.conns[db as usize].as_ref() else {
            rm::reply_null_array(ctx);
            return;
        };
        rm::reply_array(ctx, 18);
        kv_bulk(ctx, "host", c.host.as_bytes());
        kv_int(ctx, "port", c.port as i64);
        kv_int(ctx, "used", c.used as i64);
        kv_int(ctx, "timeout", c.timeout);
        kv_int(ctx, "lastuse", c.lastuse);
        kv_int(ctx, "since_lastuse", now - c.lastuse);
        kv_int(ctx, "sending_msgs", c.sending.len() as i64);
        kv_int(ctx, "blocked_clients", c.blocked.len() as i64);
        rm::reply_bulk(ctx, b"batched_iterator");
        let Some(j) = c.job.as_ref() else {
            rm::reply_null_array(ctx);
            return;
        };
        rm::reply_array(ctx, 16);
        rm::reply_bulk(ctx, b"keys");
        rm::reply_array(ctx, 2);
        rm::reply_bulk(ctx, j.keys.len().to_string().as_bytes());
        rm::reply_array(ctx, j.keys.len());
        for k in &j.keys {
            rm::reply_bulk(ctx, k);
        }
        kv_int(ctx, "timeout", j.timeout);
        kv_int(ctx, "maxbulks", j.maxbulks as i64);
        kv_int(ctx, "maxbytes", j.maxbytes as i64);
        kv_int(ctx, "estimate_msgs", j.estimate_msgs as i64);
        kv_int(ctx, "removed_keys", j.removed.len() as i64);
        kv_int(ctx, "chunked_vals", j.chunked.len() as i64);
        rm::reply_bulk(ctx, b"iterators");
        rm::reply_array(ctx, 2);
        rm::reply_bulk(ctx, j.queue.len().to_string().as_bytes());
        match j.queue.front() {
            None => rm::reply_null_array(ctx),
            Some(it) => {
                rm::reply_array(ctx, 16);
                kv_bulk(ctx, "key", &it.key);
                kv_int(ctx, "val.type", if it.existed { it.kind as i64 } else { -1 });
                kv_int(ctx, "stage", it.stage.code());
                kv_int(ctx, "expire", it.expire_at.unwrap_or(-1));
                kv_int(ctx, "cursor", if it.cursor.is_some() { 1 } else { 0 });
                kv_int(ctx, "lindex", it.lindex as i64);
                kv_int(ctx, "zindex", it.zindex as i64);
                kv_int(ctx, "chunked_msgs", it.chunked_msgs as i64);
            }
        }
    });
    rm::OK
}

/// Housekeeping: fails batches that saw no ack for `timeout`, closes idle connections.
pub fn cleanup(ctx: Ctx, now: i64) {
    let n = state::ndbs();
    for db in 0..n as i32 {
        let why = state::with(|s| {
            let c = s.asyncs.conns[db as usize].as_ref()?;
            if c.pump_armed {
                return None;
            }
            if c.job.is_some() {
                (now - c.lastuse > c.timeout).then_some("interrupted: migration timeout")
            } else if !c.starting && c.blocked.is_empty() {
                (now - c.lastuse > IDLE_MS).then_some("interrupted: idle timeout")
            } else {
                None
            }
        });
        if let Some(why) = why
            && let Some(mut c) = take_conn(db)
        {
            c.close(ctx, why);
        }
    }
}

/// Collects messages for the DUMP helpers.
struct ListSink(Vec<Vec<Vec<u8>>>);

impl Sink for ListSink {
    fn message(&mut self, parts: &[&[u8]]) {
        self.0.push(parts.iter().map(|p| p.to_vec()).collect());
    }
    fn room(&self) -> usize {
        i32::MAX as usize
    }
}

/// SLOTSMGRTONE-ASYNC-DUMP / SLOTSMGRTTAGONE-ASYNC-DUMP timeout maxbulks key...:
/// the restore stream of the keys as an array of messages (a tool helper).
pub fn dump(ctx: Ctx, args: &[&[u8]], usetag: bool) -> c_int {
    let name = String::from_utf8_lossy(args[0]).to_uppercase();
    if args.len() <= 3 {
        return err(ctx, &format!("wrong number of arguments for {name}"));
    }
    let mut timeout = match parse_ll(args[1], "timeout", 0, i32::MAX as i64) {
        Ok(v) => v,
        Err(e) => return err(ctx, &e),
    };
    if timeout == 0 {
        timeout = 30_000;
    }
    let mut maxbulks = match parse_ll(args[2], "maxbulks", 0, i32::MAX as i64) {
        Ok(v) => v as usize,
        Err(e) => return err(ctx, &e),
    };
    if maxbulks == 0 {
        maxbulks = 1000;
    }
    let keys: Vec<Vec<u8>> = args[3..].iter().map(|k| k.to_vec()).collect();
    let db = rm::selected_db(ctx);
    let mut slots: Vec<u16> =
        if usetag { keys.iter().filter(|k| has_tag(k)).map(|k| slot_of(k)).collect() } else { vec![] };
    slots.sort_unstable();
    slots.dedup();
    state::run_with_sets(
        ctx,
        db,
        slots,
        Box::new(move |ctx| {
            let p = Params { host: String::new(), port: 0, timeout, maxbulks, maxbytes: i32::MAX as usize };
            let job = build_job(ctx, db, &p, &Pick::Keys(keys), usetag);
            let params = StepParams { timeout, maxbulks, legacy: false };
            let mut sink = ListSink(Vec::new());
            for mut it in job.queue {
                while !it.is_done() {
                    if let Err(e) = step(ctx, &params, &mut it, &mut sink) {
                        rm::reply_error(ctx, &e);
                        return;
                    }
                }
            }
            rm::reply_array(ctx, sink.0.len());
            for m in &sink.0 {
                rm::reply_array(ctx, m.len());
                for part in m {
                    rm::reply_bulk(ctx, part);
                }
            }
        }),
    )
}
