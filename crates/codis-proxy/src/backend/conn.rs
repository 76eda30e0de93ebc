//! The task behind one backend connection.
//!
//! It connects (AUTH and SELECT first), then pipelines: requests from sessions are
//! appended to one write buffer and flushed together, replies are matched to requests
//! in order and handed back in batches. On any failure every request in flight gets
//! an error reply, the connection is marked down so new requests fail at once, and
//! reconnection is retried with backoff (immediately at first, then 50 ms doubling to
//! 1 s). Idle connections are health-checked with PING.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use codis_resp::{ReplyScanner, ReplyView, encode_request};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use super::{BackendSettings, Batch, ConnShared, DOWN, UP};
use crate::io::{OutQueue, read_available};
use crate::reply::{DeliveryBatch, Replies, ReplyData, SHARE_LIMIT};

/// How a served connection ended.
enum End {
    /// The pool was dropped and everything in flight was answered.
    Closed,
    Failed(String),
}

pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<Batch>,
    shared: Arc<ConnShared>,
    settings: Arc<BackendSettings>,
) {
    let mut failures: u32 = 0;
    loop {
        let err = match connect(&shared, &settings).await {
            Ok(stream) => {
                failures = 0;
                shared.state.store(UP, Ordering::Relaxed);
                shared.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(addr = %shared.addr, db = shared.key.db, resp3 = shared.key.resp3, "backend connected");
                match serve(&stream, &mut rx, &shared, &settings).await {
                    End::Closed => return,
                    End::Failed(e) => e,
                }
            }
            Err(e) => e,
        };
        failures += 1;
        shared.inflight.store(0, Ordering::Relaxed);
        *shared.last_error.lock() = err.clone();
        shared.state.store(DOWN, Ordering::Relaxed);
        if shared.private {
            // Lost for good (see `PrivateConn`): fail whatever still comes.
            tracing::debug!(addr = %shared.addr, error = %err, "private backend connection lost");
            while let Some(batch) = rx.recv().await {
                batch.fail(&shared.unavailable());
            }
            return;
        }
        let delay = backoff(failures);
        tracing::warn!(addr = %shared.addr, db = shared.key.db, error = %err, retry_in = ?delay, "backend unavailable");
        // While waiting to retry, requests fail at once rather than pile up.
        let retry_at = Instant::now() + delay;
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => batch.fail(&shared.unavailable()),
                    None => return,
                },
                _ = sleep_until(retry_at) => break,
            }
        }
    }
}

/// Immediate retries for a blip, then 50 ms doubling up to 1 s: a server that comes back
/// is used again within a second, and a dead one costs one refused connect per second.
pub(super) fn backoff(failures: u32) -> Duration {
    if failures <= 2 {
        return Duration::ZERO;
    }
    Duration::from_millis(50u64.saturating_mul(1 << (failures - 3).min(7))).min(Duration::from_secs(1))
}

pub(super) async fn connect(shared: &ConnShared, settings: &BackendSettings) -> Result<TcpStream, String> {
    let stream = match timeout(settings.connect_timeout, TcpStream::connect(&*shared.addr)).await {
        Err(_) => {
            return Err(format!("connect timed out after {:?}", settings.connect_timeout));
        }
        Ok(Err(e)) => return Err(format!("connect failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    if !settings.keepalive.is_zero() {
        let ka = socket2::TcpKeepalive::new().with_time(settings.keepalive).with_interval(settings.keepalive);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    let mut setup = Vec::new();
    if !settings.auth.is_empty() {
        setup.push((encode_request(["AUTH", settings.auth.as_str()]), "AUTH"));
    }
    if shared.key.resp3 {
        setup.push((encode_request(["HELLO", "3"]), "HELLO"));
    }
    if shared.key.db != 0 {
        setup.push((encode_request([&b"SELECT"[..], shared.key.db.to_string().as_bytes()]), "SELECT"));
    }
    if shared.private {
        setup.push((encode_request(["CLIENT", "ID"]), "CLIENT ID"));
    }
    if !setup.is_empty() {
        let deadline = Instant::now() + settings.connect_timeout;
        let replies = handshake(&stream, &setup, deadline).await?;
        if shared.private
            && let Some(id) = replies.last().and_then(|r| codis_resp::parse_integer(r))
        {
            shared.client_id.store(id, Ordering::Relaxed);
        }
    }
    Ok(stream)
}

/// Sends AUTH/SELECT (and CLIENT ID) and checks their replies before the connection
/// takes traffic; returns the replies.
async fn handshake(stream: &TcpStream, setup: &[(Bytes, &str)], deadline: Instant) -> Result<Vec<Bytes>, String> {
    let mut out = OutQueue::default();
    for (req, _) in setup {
        out.push(req);
    }
    let mut buf = BytesMut::with_capacity(512);
    let mut scanner = ReplyScanner::default();
    let mut replies = Vec::with_capacity(setup.len());
    let io = async {
        while !out.is_empty() {
            stream.writable().await.map_err(|e| e.to_string())?;
            out.write_to(stream).map_err(|e| e.to_string())?;
        }
        while replies.len() < setup.len() {
            stream.readable().await.map_err(|e| e.to_string())?;
            match read_available(stream, &mut buf, 512) {
                Ok(0) => return Err("connection closed during AUTH/SELECT".to_string()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.to_string()),
            }
            while let Some(len) = scanner.scan(&buf).map_err(|e| e.to_string())? {
                let frame = buf.split_to(len).freeze();
                let what = setup[replies.len()].1;
                if let Some(err) = ReplyView::error_text(&frame) {
                    let err = String::from_utf8_lossy(err);
                    // A server without a password rejects AUTH; that is not a reason to stay down.
                    let no_password = what == "AUTH"
                        && (err.contains("without any password configured") || err.contains("no password is set"));
                    // A server running a long script answers BUSY to all but SCRIPT KILL:
                    // the connection is fine (it may be the one to send the kill), only
                    // its id stays unknown.
                    let busy = what == "CLIENT ID" && err.starts_with("BUSY");
                    if !no_password && !busy {
                        let hint = match what {
                            "AUTH" => " (check product_auth)",
                            "SELECT" => " (check backend_number_databases)",
                            "HELLO" => " (RESP3 needs Redis 6 or newer)",
                            _ => "",
                        };
                        return Err(format!("{what} failed: {err}{hint}"));
                    }
                }
                replies.push(frame);
            }
        }
        Ok(replies)
    };
    match tokio::time::timeout_at(deadline, io).await {
        Ok(r) => r,
        Err(_) => Err("no reply to AUTH/SELECT".to_string()),
    }
}

async fn serve(
    stream: &TcpStream,
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    shared: &ConnShared,
    settings: &BackendSettings,
) -> End {
    let mut inflight = InFlight::default();
    let result = pipeline(stream, rx, shared, settings, &mut inflight).await;
    if let End::Failed(err) = &result {
        let msg = format!("ERR backend {} connection lost: {err}; the command may or may not have run", shared.addr);
        inflight.fail_all(&msg);
    }
    result
}

/// Requests written to the server and not yet answered, as the batches they came in.
#[derive(Default)]
struct InFlight {
    runs: VecDeque<Replies>,
    count: usize,
}

impl InFlight {
    fn push(&mut self, replies: Replies) {
        self.count += replies.len();
        if !replies.is_empty() {
            self.runs.push_back(replies);
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Hands `reply` to the oldest waiting request. `Err` if nothing waits (the server
    /// sent something unasked); `Ok(false)` for a health-check reply.
    fn answer(&mut self, batch: &mut DeliveryBatch, reply: ReplyData<'_>) -> Result<bool, ()> {
        let run = self.runs.front_mut().ok_or(())?;
        let delivered = run.answer(batch, reply, false);
        self.count -= 1;
        if run.is_empty() {
            self.runs.pop_front();
        }
        Ok(delivered)
    }

    fn fail_all(&mut self, msg: &str) {
        for mut run in self.runs.drain(..) {
            run.fail_all(msg);
        }
        self.count = 0;
    }
}

async fn pipeline(
    stream: &TcpStream,
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    shared: &ConnShared,
    settings: &BackendSettings,
    inflight: &mut InFlight,
) -> End {
    let mut out = OutQueue::default();
    let mut rbuf = BytesMut::with_capacity(settings.recv_bufsize.min(16 << 10));
    let mut scanner = ReplyScanner::default();
    let mut incoming: Vec<Batch> = Vec::with_capacity(64);
    let mut closing = false;
    let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    let mut last_read = Instant::now();
    let mut last_activity = Instant::now();
    let mut write_stalled: Option<Instant> = None;
    let tick = if settings.ping_period.is_zero() {
        Duration::from_secs(1)
    } else {
        settings.ping_period.min(Duration::from_secs(1))
    };
    let mut next_tick = Instant::now() + tick;

    loop {
        // Take whatever sessions queued, up to the pipeline limit, without waiting.
        while !closing && inflight.len() < settings.max_pipeline {
            match rx.try_recv() {
                Ok(batch) => {
                    if inflight.is_empty() {
                        last_read = Instant::now();
                    }
                    shared.sent.fetch_add(batch.replies.len() as u64, Ordering::Relaxed);
                    out.append(batch.out);
                    inflight.push(batch.replies);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => closing = true,
            }
        }
        if !out.is_empty() {
            match out.write_to(stream) {
                Ok(n) if n > 0 => {
                    write_stalled = None;
                    last_activity = Instant::now();
                }
                Ok(_) => {}
                Err(e) => return End::Failed(format!("write failed: {e}")),
            }
            if !out.is_empty() && write_stalled.is_none() {
                write_stalled = Some(Instant::now());
            }
        }
        shared.inflight.store(inflight.len(), Ordering::Relaxed);
        if closing && inflight.is_empty() {
            return End::Closed;
        }
        let can_take = !closing && inflight.len() < settings.max_pipeline;
        tokio::select! {
            biased;
            r = stream.readable() => {
                if let Err(e) = r {
                    return End::Failed(format!("read failed: {e}"));
                }
                match read_available(stream, &mut rbuf, settings.recv_bufsize) {
                    Ok(0) => return End::Failed("connection closed by server".to_string()),
                    Ok(_) => {
                        last_read = Instant::now();
                        last_activity = last_read;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return End::Failed(format!("read failed: {e}")),
                }
                let mut batch = DeliveryBatch::default();
                loop {
                    let len = match scanner.scan(&rbuf) {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(e) => return End::Failed(format!("bad reply from server: {e}")),
                    };
                    if shared.key.resp3 && rbuf.first() == Some(&b'>') {
                        // A RESP3 push answers no request: it must not take a reply's place.
                        rbuf.advance(len);
                        continue;
                    }
                    // Small replies are copied out and the buffer reused; large ones are shared.
                    let (delivered, frame) = if len < SHARE_LIMIT {
                        let d = inflight.answer(&mut batch, ReplyData::Slice(&rbuf[..len]));
                        (d, None)
                    } else {
                        let frame = rbuf.split_to(len).freeze();
                        (inflight.answer(&mut batch, ReplyData::Bytes(frame.clone())), Some(frame))
                    };
                    match delivered {
                        Err(()) => return End::Failed("unexpected reply from server".to_string()),
                        Ok(false) => {
                            let health = frame.as_deref().unwrap_or(&rbuf[..len]);
                            if let Some(err) = ReplyView::error_text(health) {
                                tracing::warn!(addr = %shared.addr, reply = %String::from_utf8_lossy(err), "health check failed");
                            }
                        }
                        Ok(true) => {}
                    }
                    if frame.is_none() {
                        rbuf.advance(len);
                    }
                }
            }
            n = rx.recv_many(&mut incoming, 64), if can_take => {
                if n == 0 {
                    closing = true;
                }
                if inflight.is_empty() {
                    last_read = Instant::now();
                }
                for batch in incoming.drain(..) {
                    shared.sent.fetch_add(batch.replies.len() as u64, Ordering::Relaxed);
                    out.append(batch.out);
                    inflight.push(batch.replies);
                }
            }
            r = stream.writable(), if !out.is_empty() => {
                if let Err(e) = r {
                    return End::Failed(format!("write failed: {e}"));
                }
            }
            _ = sleep_until(next_tick) => {
                let now = Instant::now();
                next_tick = now + tick;
                if !inflight.is_empty() && !settings.recv_timeout.is_zero() && now - last_read >= settings.recv_timeout {
                    return End::Failed(format!("no reply for {:?}", settings.recv_timeout));
                }
                if let Some(since) = write_stalled
                    && !settings.send_timeout.is_zero()
                    && now - since >= settings.send_timeout
                {
                    return End::Failed(format!("write blocked for {:?}", settings.send_timeout));
                }
                if !settings.ping_period.is_zero() && inflight.is_empty() && now - last_activity >= settings.ping_period {
                    out.push(&ping);
                    inflight.push(Replies::discard());
                    last_activity = now;
                    last_read = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::ZERO);
        assert_eq!(backoff(3), Duration::from_millis(50));
        assert_eq!(backoff(4), Duration::from_millis(100));
        assert_eq!(backoff(100), Duration::from_secs(1));
    }
}
