//! The way back: how a backend hands replies to the session that asked.
//!
//! Each session owns an [`Inbox`]. A request sent to a backend carries a [`ReplyTo`]
//! naming the inbox, the request's sequence number in the session and, for split
//! commands, the part. Backends push replies into inboxes in batches (one lock and
//! one wake-up per run of replies for the same session), and a `ReplyTo` that is
//! dropped unanswered still answers with an error, so a session never waits forever.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use codis_resp::Encoder;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::router::SlotGates;

/// A reply for request `seq` (part `part`) of a session.
pub struct Delivery {
    pub seq: u64,
    pub part: u32,
    pub reply: Bytes,
    /// The reply was made up by the proxy (backend down, connection lost), not by Redis.
    pub proxy_error: bool,
}

/// A session's mailbox for replies.
pub struct Inbox {
    queue: Mutex<Vec<Delivery>>,
    notify: Notify,
    gates: Arc<SlotGates>,
}

impl Inbox {
    pub fn new(gates: Arc<SlotGates>) -> Arc<Inbox> {
        Arc::new(Inbox {
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            gates,
        })
    }

    /// Moves every queued delivery into `out` (which should be empty; its allocation is reused).
    pub fn take(&self, out: &mut Vec<Delivery>) {
        std::mem::swap(&mut *self.queue.lock(), out);
    }

    /// Resolves when deliveries may be waiting (a wake-up is never lost).
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    fn push_all(&self, items: &mut Vec<Delivery>) {
        self.queue.lock().append(items);
        self.notify.notify_one();
    }
}

/// Slots a request holds open until its reply arrives (see [`crate::router`]).
pub enum Tickets {
    None,
    One(u16, u8),
    Many(Box<[(u16, u8)]>),
}

/// Where the reply to one backend request goes.
pub struct ReplyTo {
    target: Option<(Arc<Inbox>, u64, u32)>,
    tickets: Tickets,
}

impl ReplyTo {
    pub fn new(inbox: Arc<Inbox>, seq: u64, part: u32, tickets: Tickets) -> ReplyTo {
        ReplyTo {
            target: Some((inbox, seq, part)),
            tickets,
        }
    }

    /// A reply nobody waits for (health-check PINGs).
    pub fn discard() -> ReplyTo {
        ReplyTo {
            target: None,
            tickets: Tickets::None,
        }
    }

    pub fn is_discard(&self) -> bool {
        self.target.is_none()
    }

    /// Answers with an error made up by the proxy.
    pub fn fail(self, msg: &str) {
        let mut batch = DeliveryBatch::default();
        batch.push(self, error_reply(msg), true);
        batch.flush();
    }

    fn release(&mut self) {
        let tickets = std::mem::replace(&mut self.tickets, Tickets::None);
        if let Some((inbox, ..)) = &self.target {
            match tickets {
                Tickets::None => {}
                Tickets::One(slot, parity) => inbox.gates.leave(slot, parity),
                Tickets::Many(list) => list
                    .iter()
                    .for_each(|&(slot, parity)| inbox.gates.leave(slot, parity)),
            }
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if self.target.is_some() {
            // Unanswered: the backend connection went away with the request.
            let this = ReplyTo {
                target: self.target.take(),
                tickets: std::mem::replace(&mut self.tickets, Tickets::None),
            };
            this.fail("ERR backend connection closed before replying, retry the command");
        }
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
    items: Vec<Delivery>,
}

impl DeliveryBatch {
    pub fn push(&mut self, mut to: ReplyTo, reply: Bytes, proxy_error: bool) {
        to.release();
        let Some((inbox, seq, part)) = to.target.take() else {
            return;
        };
        match &self.inbox {
            Some(cur) if Arc::ptr_eq(cur, &inbox) => {}
            _ => {
                self.flush();
                self.inbox = Some(inbox);
            }
        }
        self.items.push(Delivery {
            seq,
            part,
            reply,
            proxy_error,
        });
    }

    pub fn flush(&mut self) {
        if let Some(inbox) = self.inbox.take()
            && !self.items.is_empty()
        {
            inbox.push_all(&mut self.items);
        }
    }
}

impl Drop for DeliveryBatch {
    fn drop(&mut self) {
        self.flush();
    }
}
