//! Connections to the redis servers behind the proxy.
//!
//! A [`BackendPool`] stands for one server in one role (master, or replica for reads).
//! It opens connections per database only when a session first uses that database
//! (Codis opened all 16 up front), `parallel` of them per database, each one a
//! pipelined, multiplexed connection driven by its own task (see [`conn`]).
//!
//! Connections speak the protocol of the sessions that use them ([`ConnKey`]), so
//! RESP3 replies pass through untouched; RESP3 connections open only once a session
//! asks for RESP3.
//!
//! A [`PrivateConn`] is one session's own connection, for what holds a connection:
//! blocking commands and transactions. A [`SubLink`] is a subscribed session's
//! connection to one server (see [`pubsub`]).

mod conn;
mod pubsub;

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

pub use pubsub::{LinkEvent, LinkEventKind, LinkOp, SubKind, SubLink};

use crate::io::OutQueue;
use crate::reply::{Inbox, Replies, Tickets};

/// Settings shared by every backend connection of a proxy.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub auth: String,
    pub connect_timeout: Duration,
    pub ping_period: Duration,
    pub recv_timeout: Duration,
    pub send_timeout: Duration,
    pub recv_bufsize: usize,
    pub max_pipeline: usize,
    pub keepalive: Duration,
    pub databases: usize,
    pub primary_parallel: usize,
    pub replica_parallel: usize,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            auth: String::new(),
            connect_timeout: Duration::from_secs(3),
            ping_period: Duration::from_secs(5),
            recv_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            recv_bufsize: 128 << 10,
            max_pipeline: 20480,
            keepalive: Duration::from_secs(75),
            databases: 16,
            primary_parallel: 1,
            replica_parallel: 1,
        }
    }
}

/// Requests on their way to one backend connection: their encoded bytes, in order, and
/// who waits for each reply. A session sends one batch per connection per read, so a
/// pipeline of requests costs one queue operation, not one per request.
pub struct Batch {
    pub out: OutQueue,
    pub replies: Replies,
}

impl Batch {
    /// A batch sized for a typical pipeline, so filling it does not reallocate.
    pub fn new(inbox: Arc<Inbox>) -> Batch {
        Batch { out: OutQueue::with_capacity(2048), replies: Replies::with_capacity(inbox, 32) }
    }

    pub fn push_bytes(&mut self, payload: &Bytes, seq: u64, part: u32, tickets: Tickets) {
        self.out.push(payload);
        self.replies.push(seq, part, tickets);
    }

    pub fn push_slice(&mut self, payload: &[u8], seq: u64, part: u32, tickets: Tickets) {
        self.out.push_slice(payload);
        self.replies.push(seq, part, tickets);
    }

    /// Answers every request of the batch with the same error.
    fn fail(mut self, msg: &str) {
        self.replies.fail_all(msg);
    }
}

/// What a connection is set up for: the database it selected and the protocol it
/// speaks (RESP3 after `HELLO 3`). Sessions of each kind get their own connections,
/// so replies pass through in the form the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnKey {
    pub db: usize,
    pub resp3: bool,
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// State of one connection, visible to sessions (fail fast, replica choice).
struct ConnShared {
    addr: Arc<str>,
    key: ConnKey,
    state: AtomicU8,
    last_error: Mutex<String>,
    /// A private connection: asks its CLIENT ID, and never reconnects.
    private: bool,
    /// The server's id for this connection (private connections), or -1.
    client_id: AtomicI64,
    /// Requests written or about to be, not answered yet (published by the connection
    /// task, which owns the real count, once per loop).
    inflight: AtomicUsize,
    /// Requests taken from sessions, and successful connects, since the start.
    sent: AtomicU64,
    connects: AtomicU64,
}

impl ConnShared {
    fn new(addr: Arc<str>, key: ConnKey, private: bool) -> ConnShared {
        ConnShared {
            addr,
            key,
            state: AtomicU8::new(CONNECTING),
            last_error: Mutex::new(String::new()),
            private,
            client_id: AtomicI64::new(-1),
            inflight: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        }
    }

    /// The error for requests that arrive while the backend cannot be reached.
    fn unavailable(&self) -> String {
        format!(
            "ERR backend {} unavailable: {}; the proxy keeps reconnecting, retry later",
            self.addr,
            self.last_error.lock()
        )
    }
}

/// A cheap handle for queueing batches on one connection.
#[derive(Clone)]
pub struct ConnHandle {
    tx: mpsc::UnboundedSender<Batch>,
    shared: Arc<ConnShared>,
}

impl ConnHandle {
    /// Identity of the connection (to group requests per connection).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The server's CLIENT ID for this connection (private connections, once connected).
    pub fn client_id(&self) -> Option<i64> {
        let id = self.shared.client_id.load(Ordering::Relaxed);
        (id >= 0).then_some(id)
    }

    /// Queues a batch; a backend known to be down answers at once with an error.
    pub fn send(&self, batch: Batch) {
        if batch.replies.is_empty() {
            return;
        }
        if self.shared.state.load(Ordering::Relaxed) == DOWN {
            return batch.fail(&self.shared.unavailable());
        }
        if let Err(mpsc::error::SendError(batch)) = self.tx.send(batch) {
            batch.fail(&self.shared.unavailable());
        }
    }
}

/// One pipelined connection (its task runs in [`conn`]).
pub struct BackendConn {
    handle: ConnHandle,
}

impl BackendConn {
    fn spawn(addr: Arc<str>, key: ConnKey, settings: Arc<BackendSettings>) -> BackendConn {
        Self::spawn_task(addr, key, settings, false).0
    }

    fn spawn_task(
        addr: Arc<str>,
        key: ConnKey,
        settings: Arc<BackendSettings>,
        private: bool,
    ) -> (BackendConn, tokio::task::AbortHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(ConnShared::new(addr, key, private));
        let task = tokio::spawn(conn::run(rx, shared.clone(), settings));
        (BackendConn { handle: ConnHandle { tx, shared } }, task.abort_handle())
    }

    pub fn is_up(&self) -> bool {
        self.handle.shared.state.load(Ordering::Relaxed) == UP
    }

    pub fn handle(&self) -> &ConnHandle {
        &self.handle
    }
}

/// A connection one session owns, for commands that hold a connection: a blocked
/// command would stall a shared one, and WATCH/MULTI state belongs to one client.
/// It has no reply timeout and no health-check PING (a blocked command may wait
/// forever), and it never reconnects: a WATCH or a block must not silently vanish with
/// a reconnect, so once lost, everything sent to it fails and the session opens a new
/// one. Dropping it closes the socket at once, which also releases a blocked command.
pub struct PrivateConn {
    conn: BackendConn,
    task: tokio::task::AbortHandle,
}

impl PrivateConn {
    pub fn open(addr: &str, key: ConnKey, settings: &BackendSettings) -> PrivateConn {
        let settings =
            BackendSettings { recv_timeout: Duration::ZERO, ping_period: Duration::ZERO, ..settings.clone() };
        let (conn, task) = BackendConn::spawn_task(addr.into(), key, Arc::new(settings), true);
        PrivateConn { conn, task }
    }

    pub fn conn(&self) -> &BackendConn {
        &self.conn
    }

    pub fn addr(&self) -> &str {
        &self.conn.handle.shared.addr
    }

    pub fn key(&self) -> ConnKey {
        self.conn.handle.shared.key
    }

    /// Not lost yet (still connecting counts as usable: requests queue meanwhile).
    pub fn is_usable(&self) -> bool {
        self.conn.handle.shared.state.load(Ordering::Relaxed) != DOWN
    }

    /// The server's CLIENT ID for this connection, once connected.
    pub fn client_id(&self) -> Option<i64> {
        let id = self.conn.handle.shared.client_id.load(Ordering::Relaxed);
        (id >= 0).then_some(id)
    }
}

impl Drop for PrivateConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One server in one role, with its connections per worker thread and channel
/// (database and protocol).
pub struct BackendPool {
    addr: Arc<str>,
    parallel: usize,
    databases: usize,
    settings: Arc<BackendSettings>,
    /// Indexed by `(worker * 2 + resp3) * databases + db`; opened on first use by that
    /// worker.
    conns: Box<[OnceLock<Box<[BackendConn]>>]>,
    /// A connected private connection per channel, ready for the next session that
    /// needs one (indexed like `conns`, filled after the first use).
    spares: Box<[Mutex<Option<PrivateConn>>]>,
}

impl BackendPool {
    pub fn new(addr: &str, replica: bool, settings: Arc<BackendSettings>, workers: usize) -> BackendPool {
        let parallel = if replica { settings.replica_parallel } else { settings.primary_parallel }.max(1);
        let databases = settings.databases.max(1);
        let conns = (0..databases * 2 * workers.max(1)).map(|_| OnceLock::new()).collect();
        let spares = (0..databases * 2 * workers.max(1)).map(|_| Mutex::new(None)).collect();
        BackendPool { addr: addr.into(), parallel, databases, settings, conns, spares }
    }

    fn index(&self, key: ConnKey) -> usize {
        let row = crate::worker::current() * 2 + key.resp3 as usize;
        (row * self.databases + key.db) % self.conns.len()
    }

    /// A private connection to this server. A fresh one costs a connect and handshake,
    /// during which another client's command could overtake this session's (a BLPOP
    /// would miss the LPUSH sent right after it), so a connected spare is handed out
    /// when there is one, and a new spare opened for the next caller.
    pub fn private(&self, key: ConnKey) -> PrivateConn {
        let mut spare = self.spares[self.index(key)].lock();
        let ready = spare.take().filter(PrivateConn::is_usable);
        *spare = Some(PrivateConn::open(&self.addr, key, &self.settings));
        ready.unwrap_or_else(|| PrivateConn::open(&self.addr, key, &self.settings))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// This worker's connections for `key`, opened on first use.
    fn conns(&self, key: ConnKey) -> &[BackendConn] {
        self.conns[self.index(key)].get_or_init(|| {
            (0..self.parallel).map(|_| BackendConn::spawn(self.addr.clone(), key, self.settings.clone())).collect()
        })
    }

    /// A connection for `key`, spread by `seed`, preferring one that is up.
    pub fn conn(&self, key: ConnKey, seed: usize) -> &BackendConn {
        let conns = self.conns(key);
        let n = conns.len();
        let first = &conns[seed % n];
        if n == 1 || first.is_up() {
            return first;
        }
        (1..n).map(|i| &conns[(seed + i) % n]).find(|c| c.is_up()).unwrap_or(first)
    }

    /// A connection for `key` only if one is up: a replica read never waits for a
    /// replica connection to open when the master can serve it.
    pub fn conn_if_up(&self, key: ConnKey, seed: usize) -> Option<&BackendConn> {
        let conns = self.conns(key);
        let n = conns.len();
        (0..n).map(|i| &conns[(seed + i) % n]).find(|c| c.is_up())
    }
}

/// A pool's shared connections at one moment, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub addr: String,
    pub replica: bool,
    pub up: usize,
    pub connecting: usize,
    pub down: usize,
    /// Requests sent or queued to be sent, not answered yet.
    pub inflight: usize,
    pub sent: u64,
    pub connects: u64,
}

impl BackendPool {
    /// The state of the connections opened so far (private ones excluded: they come
    /// and go with sessions).
    pub fn stats(&self, replica: bool) -> PoolStats {
        let mut st = PoolStats { addr: self.addr.to_string(), replica, ..Default::default() };
        for conn in self.conns.iter().filter_map(OnceLock::get).flat_map(|c| c.iter()) {
            let sh = &conn.handle.shared;
            match sh.state.load(Ordering::Relaxed) {
                UP => st.up += 1,
                DOWN => st.down += 1,
                _ => st.connecting += 1,
            }
            st.inflight += sh.inflight.load(Ordering::Relaxed);
            st.sent += sh.sent.load(Ordering::Relaxed);
            st.connects += sh.connects.load(Ordering::Relaxed);
        }
        st
    }
}

impl std::fmt::Debug for BackendPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendPool({})", self.addr)
    }
}
