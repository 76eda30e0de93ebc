//! A subscribed session's own connection to one server (a "link").
//!
//! Replies on a subscribed connection are not one per request: the server pushes
//! messages whenever they are published. So a link is not a pipelined [`super::BackendConn`]
//! but a task that writes the session's (P|S)(UN)SUBSCRIBE commands and hands every
//! frame it reads back to the session, in order, in chunks of whole frames.
//!
//! The link keeps the set of what it is subscribed to. When the connection is lost
//! (backend restart, network) it reports it, reconnects with the same backoff as the
//! shared connections and subscribes to the whole set again, so the session's client
//! keeps receiving without noticing. It speaks RESP2 whatever the client speaks (the
//! session turns messages into RESP3 pushes for a RESP3 client) and selects no
//! database: pub/sub is global to a server.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codis_resp::{Encoder, ReplyScanner};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::conn::{backoff, connect};
use super::{BackendSettings, ConnShared};
use crate::io::{OutQueue, read_available};

/// The three pub/sub namespaces of Redis 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubKind {
    Channel,
    Pattern,
    Shard,
}

impl SubKind {
    pub fn subscribe(self) -> &'static [u8] {
        match self {
            SubKind::Channel => b"SUBSCRIBE",
            SubKind::Pattern => b"PSUBSCRIBE",
            SubKind::Shard => b"SSUBSCRIBE",
        }
    }

    pub fn unsubscribe(self) -> &'static [u8] {
        match self {
            SubKind::Channel => b"UNSUBSCRIBE",
            SubKind::Pattern => b"PUNSUBSCRIBE",
            SubKind::Shard => b"SUNSUBSCRIBE",
        }
    }
}

/// A change the session asks of a link. Names are never empty lists: an empty
/// UNSUBSCRIBE would mean "everything" to the server.
pub enum LinkOp {
    Subscribe(SubKind, Vec<Bytes>),
    Unsubscribe(SubKind, Vec<Bytes>),
}

/// What a link reports to its session.
pub enum LinkEventKind {
    /// Whole frames the server sent (confirmations and messages), in order.
    Frames(Bytes),
    /// The connection is down (it reconnects and resubscribes by itself).
    Down(String),
}

pub struct LinkEvent {
    pub link: u64,
    pub kind: LinkEventKind,
}

/// The session's handle on one link; dropping it closes the connection.
pub struct SubLink {
    id: u64,
    addr: Arc<str>,
    tx: mpsc::UnboundedSender<LinkOp>,
    task: tokio::task::AbortHandle,
}

impl SubLink {
    pub fn open(addr: &str, id: u64, settings: &BackendSettings, events: mpsc::Sender<LinkEvent>) -> SubLink {
        let addr: Arc<str> = addr.into();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(addr.clone(), id, Arc::new(settings.clone()), rx, events));
        SubLink { id, addr, tx, task: task.abort_handle() }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn send(&self, op: LinkOp) {
        let empty = match &op {
            LinkOp::Subscribe(_, names) | LinkOp::Unsubscribe(_, names) => names.is_empty(),
        };
        if !empty {
            // Fails only if the task is gone, which happens only once the handle is dropped.
            let _ = self.tx.send(op);
        }
    }
}

impl Drop for SubLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the link is subscribed to, to subscribe again after a reconnect.
#[derive(Default)]
struct Subscriptions {
    sets: [HashSet<Bytes>; 3],
}

impl Subscriptions {
    fn set(&mut self, kind: SubKind) -> &mut HashSet<Bytes> {
        &mut self.sets[kind as usize]
    }

    fn apply(&mut self, op: &LinkOp) {
        match op {
            LinkOp::Subscribe(kind, names) => self.set(*kind).extend(names.iter().cloned()),
            LinkOp::Unsubscribe(kind, names) => {
                let set = self.set(*kind);
                names.iter().for_each(|n| {
                    set.remove(n);
                })
            }
        }
    }
}

fn encode(cmd: &[u8], names: impl ExactSizeIterator<Item = impl AsRef<[u8]>>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_array_len(names.len() + 1);
    out.put_bulk(cmd);
    for n in names {
        out.put_bulk(n.as_ref());
    }
    out.freeze()
}

fn encode_op(op: &LinkOp) -> Bytes {
    match op {
        LinkOp::Subscribe(kind, names) => encode(kind.subscribe(), names.iter()),
        LinkOp::Unsubscribe(kind, names) => encode(kind.unsubscribe(), names.iter()),
    }
}

async fn run(
    addr: Arc<str>,
    id: u64,
    settings: Arc<BackendSettings>,
    mut ops: mpsc::UnboundedReceiver<LinkOp>,
    events: mpsc::Sender<LinkEvent>,
) {
    // Only AUTH in the handshake: no SELECT (pub/sub ignores databases) and no CLIENT ID.
    let shared = ConnShared::new(addr.clone(), super::ConnKey { db: 0, resp3: false }, false);
    let mut subs = Subscriptions::default();
    let mut failures = 0u32;
    loop {
        let err = match connect(&shared, &settings).await {
            Ok(stream) => {
                failures = 0;
                tracing::debug!(addr = %addr, "pub/sub link connected");
                match serve(&stream, id, &settings, &mut ops, &events, &mut subs).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        failures += 1;
        tracing::info!(addr = %addr, error = %err, "pub/sub link down; resubscribing when it is back");
        if events.send(LinkEvent { link: id, kind: LinkEventKind::Down(err.clone()) }).await.is_err() {
            return;
        }
        let retry_at = Instant::now() + backoff(failures);
        loop {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => {
                        // Taken note of, to be applied on reconnect; said again so the
                        // session does not wait for a confirmation that cannot come.
                        subs.apply(&op);
                        if events.send(LinkEvent { link: id, kind: LinkEventKind::Down(err.clone()) }).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = sleep_until(retry_at) => break,
            }
        }
    }
}

/// Runs one connection: `Ok` when the session is gone, `Err` when the connection is.
async fn serve(
    stream: &TcpStream,
    id: u64,
    settings: &BackendSettings,
    ops: &mut mpsc::UnboundedReceiver<LinkOp>,
    events: &mpsc::Sender<LinkEvent>,
    subs: &mut Subscriptions,
) -> Result<(), String> {
    let mut out = OutQueue::default();
    for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
        let set = subs.set(kind);
        if !set.is_empty() {
            out.push(&encode(kind.subscribe(), set.iter()));
        }
    }
    let mut rbuf = BytesMut::with_capacity(16 << 10);
    let mut scanner = ReplyScanner::default();
    // A silent server is probed with PING (answered even in subscribed mode) and given
    // up on when the probe stays unanswered.
    let period = if settings.ping_period.is_zero() { Duration::from_secs(5) } else { settings.ping_period };
    let patience = if settings.recv_timeout.is_zero() { Duration::from_secs(30) } else { settings.recv_timeout };
    let mut last_read = Instant::now();
    let mut probe_sent: Option<Instant> = None;
    let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    loop {
        if !out.is_empty() {
            out.write_to(stream).map_err(|e| format!("write failed: {e}"))?;
        }
        let next_tick = match probe_sent {
            Some(at) => at + patience,
            None => last_read + period,
        };
        tokio::select! {
            biased;
            r = stream.readable() => {
                r.map_err(|e| format!("read failed: {e}"))?;
                match read_available(stream, &mut rbuf, settings.recv_bufsize.max(16 << 10)) {
                    Ok(0) => return Err("connection closed by server".into()),
                    Ok(_) => {
                        last_read = Instant::now();
                        probe_sent = None;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("read failed: {e}")),
                }
                let mut whole = 0;
                while let Some(len) = scanner.scan(&rbuf[whole..]).map_err(|e| format!("bad reply from server: {e}"))? {
                    whole += len;
                }
                if whole > 0 {
                    let frames = rbuf.split_to(whole).freeze();
                    if events.send(LinkEvent { link: id, kind: LinkEventKind::Frames(frames) }).await.is_err() {
                        return Ok(());
                    }
                }
            }
            op = ops.recv() => match op {
                Some(op) => {
                    subs.apply(&op);
                    out.push(&encode_op(&op));
                }
                None => return Ok(()),
            },
            r = stream.writable(), if !out.is_empty() => {
                r.map_err(|e| format!("write failed: {e}"))?;
            }
            _ = sleep_until(next_tick) => {
                let now = Instant::now();
                match probe_sent {
                    Some(at) if now - at >= patience => return Err(format!("no reply to PING for {patience:?}")),
                    Some(_) => {}
                    None if now - last_read >= period => {
                        out.push(&ping);
                        probe_sent = Some(now);
                    }
                    None => {}
                }
            }
        }
    }
}
