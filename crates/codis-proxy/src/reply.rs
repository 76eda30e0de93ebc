//! The way back: how a backend hands replies to the session that asked.
//!
//! Each session owns an [`Inbox`]. The requests a session sends to a backend connection
//! in one batch wait there as one [`Replies`], which names the inbox once and lists each
//! request's sequence number (and part, for split commands). The backend copies small
//! replies into one buffer per run of replies for the same session and hands the run
//! over with one lock and one wake-up; the session usually copies them straight to its
//! client. Large replies travel by reference. Requests whose connection goes away are
//! answered with an error, so a session never waits forever.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use codis_resp::Encoder;
use parking_lot::Mutex;

use crate::router::SlotGates;

/// The part number of a reply nobody waits for (the MULTI and QUEUED replies of a
/// transaction the proxy queued itself); the session drops it.
pub const DISCARD_PART: u32 = u32::MAX;

/// Replies at least this large are passed by reference instead of copied.
pub const SHARE_LIMIT: usize = 16 << 10;

/// Where the bytes of a delivered reply are.
pub enum Body {
    /// In the [`Mail::data`] buffer it arrived with.
    Copied {
        start: u32,
        end: u32,
    },
    Shared(Bytes),
}

/// A reply for request `seq` (part `part`) of a session.
pub struct Delivery {
    pub seq: u64,
    pub part: u32,
    pub body: Body,
    /// The reply was made up by the proxy (backend down, connection lost), not by Redis.
    pub proxy_error: bool,
}

/// Replies handed over together, with the buffer their copied bytes live in.
#[derive(Default)]
pub struct Mail {
    pub items: Vec<Delivery>,
    pub data: BytesMut,
}

impl Mail {
    fn push(&mut self, seq: u64, part: u32, reply: ReplyData<'_>, proxy_error: bool) {
        let body = match reply {
            ReplyData::Slice(b) if b.len() < SHARE_LIMIT => {
                let start = self.data.len() as u32;
                self.data.extend_from_slice(b);
                Body::Copied { start, end: self.data.len() as u32 }
            }
            ReplyData::Slice(b) => Body::Shared(Bytes::copy_from_slice(b)),
            ReplyData::Bytes(b) => Body::Shared(b),
        };
        self.items.push(Delivery { seq, part, body, proxy_error });
    }

    /// Moves everything of `other` behind what is here.
    fn append(&mut self, other: &mut Mail) {
        if self.items.is_empty() {
            std::mem::swap(self, other);
            return;
        }
        let base = self.data.len() as u32;
        self.data.extend_from_slice(&other.data);
        for mut d in other.items.drain(..) {
            if let Body::Copied { start, end } = &mut d.body {
                *start += base;
                *end += base;
            }
            self.items.push(d);
        }
        other.data.clear();
    }
}

#[derive(Default)]
struct Mailbox {
    mail: Mail,
    waker: Option<Waker>,
}

/// A session's mailbox for replies.
pub struct Inbox {
    queue: Mutex<Mailbox>,
    gates: Arc<SlotGates>,
    /// The worker the session runs on (its requests are counted in that worker's gates).
    worker: usize,
}

impl Inbox {
    pub fn new(gates: Arc<SlotGates>) -> Arc<Inbox> {
        Arc::new(Inbox { queue: Mutex::new(Mailbox::default()), gates, worker: crate::worker::current() })
    }

    /// Swaps the delivered mail into `out`, which must be empty (its buffers are reused).
    pub fn take(&self, out: &mut Mail) {
        std::mem::swap(&mut self.queue.lock().mail, out);
    }

    /// Ready when deliveries are waiting; otherwise registers the session to be woken.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.queue.lock();
        if !q.mail.items.is_empty() {
            return Poll::Ready(());
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Resolves when deliveries are waiting.
    pub fn ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_ready(cx))
    }

    fn deliver(&self, mail: &mut Mail) {
        let waker = {
            let mut q = self.queue.lock();
            q.mail.append(mail);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Slots a request holds open until its reply arrives (see [`crate::router`]).
pub enum Tickets {
    None,
    One(u16, u8),
    Many(Box<[(u16, u8)]>),
}

/// One request waiting for its reply: its sequence number in the session, its part
/// (for split commands) and the slots it holds open.
pub struct Pend {
    pub seq: u64,
    pub part: u32,
    pub tickets: Tickets,
}

/// A reply as the backend has it: in its read buffer, or already shared.
pub enum ReplyData<'a> {
    Slice(&'a [u8]),
    Bytes(Bytes),
}

/// The requests of one batch (all from one session, on one backend connection) that
/// wait for replies, in order. Naming the session's inbox once per batch, not once per
/// request, keeps reference counting off the per-request path. Requests still
/// unanswered when this is dropped are answered with an error.
pub struct Replies {
    inbox: Option<Arc<Inbox>>,
    items: Vec<Pend>,
    next: usize,
}

impl Replies {
    pub fn with_capacity(inbox: Arc<Inbox>, n: usize) -> Replies {
        Replies { inbox: Some(inbox), items: Vec::with_capacity(n), next: 0 }
    }

    /// One reply nobody waits for (a health-check PING).
    pub fn discard() -> Replies {
        Replies { inbox: None, items: vec![Pend { seq: 0, part: 0, tickets: Tickets::None }], next: 0 }
    }

    pub fn push(&mut self, seq: u64, part: u32, tickets: Tickets) {
        self.items.push(Pend { seq, part, tickets });
    }

    /// Requests still waiting.
    pub fn len(&self) -> usize {
        self.items.len() - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the next reply over; false if nobody waits for it (health check).
    pub fn answer(&mut self, batch: &mut DeliveryBatch, reply: ReplyData<'_>, proxy_error: bool) -> bool {
        let Some(pend) = self.items.get_mut(self.next) else { return false };
        self.next += 1;
        let tickets = std::mem::replace(&mut pend.tickets, Tickets::None);
        let (seq, part) = (pend.seq, pend.part);
        match &self.inbox {
            Some(inbox) => {
                batch.push(inbox, seq, part, tickets, reply, proxy_error);
                true
            }
            None => false,
        }
    }

    /// Answers every waiting request with the same error.
    pub fn fail_all(&mut self, msg: &str) {
        if self.is_empty() {
            return;
        }
        let reply = error_reply(msg);
        let mut batch = DeliveryBatch::default();
        while !self.is_empty() {
            self.answer(&mut batch, ReplyData::Bytes(reply.clone()), true);
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.fail_all("ERR backend connection closed before replying, retry the command");
    }
}

/// `-<msg>\r\n` as a frame.
pub fn error_reply(msg: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    b.put_error(msg);
    b.freeze()
}

/// Collects replies and hands them over per session in runs.
#[derive(Default)]
pub struct DeliveryBatch {
    inbox: Option<Arc<Inbox>>,
    mail: Mail,
}

impl DeliveryBatch {
    fn push(
        &mut self,
        inbox: &Arc<Inbox>,
        seq: u64,
        part: u32,
        tickets: Tickets,
        reply: ReplyData<'_>,
        proxy_error: bool,
    ) {
        // The request is answered: it no longer holds its slots open.
        match tickets {
            Tickets::None => {}
            Tickets::One(slot, parity) => inbox.gates.leave(inbox.worker, slot, parity),
            Tickets::Many(list) => {
                list.iter().for_each(|&(slot, parity)| inbox.gates.leave(inbox.worker, slot, parity))
            }
        }
        match &self.inbox {
            Some(cur) if Arc::ptr_eq(cur, inbox) => {}
            _ => {
                self.flush();
                self.inbox = Some(inbox.clone());
            }
        }
        self.mail.push(seq, part, reply, proxy_error);
    }

    pub fn flush(&mut self) {
        if let Some(inbox) = self.inbox.take()
            && !self.mail.items.is_empty()
        {
            inbox.deliver(&mut self.mail);
        }
    }
}

impl Drop for DeliveryBatch {
    fn drop(&mut self) {
        self.flush();
    }
}
