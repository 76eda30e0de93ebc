//! Requests for slots being migrated, with Codis's forwarding methods.
//!
//! While a slot moves, its routing names the target as backend and the source as
//! `migrate_from`. A request with a key in such a slot first asks the source:
//! - **sync** (`forward_method` 0): `SLOTSMGRTTAGONE <target> 3000 <key>` moves the key
//!   (with its tag group) to the target, then the request runs on the target;
//! - **semi-async** (1): `SLOTSMGRT-EXEC-WRAPPER <key> <command...>` runs the command on
//!   the source if the key is still there (code 2), says it is absent so the request
//!   goes to the target (0), or that it is being moved right now, in which case the
//!   proxy asks again shortly (1);
//! - **migrate** (2, for stock servers without the module): `MIGRATE <target> "" <db>
//!   <timeout> KEYS <keys...>` moves the keys the command names (or finds none), then
//!   the request runs on the target.
//!
//! Each step is an ordinary pipelined request; the session resumes the request when
//! the step's reply arrives ([`super::pending::Followup`]), so nothing blocks.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use codis_core::models::{FORWARD_MIGRATE, FORWARD_SYNC};
use codis_resp::{Encoder, ReplyView, Request, parse_integer};

use super::Session;
use super::pending::Followup;
use crate::reply::{Tickets, error_reply};
use crate::router::RouteTable;

/// How long a request keeps asking about a key that is being moved before giving up.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A request on a migrating slot, between steps.
pub(crate) struct Migration {
    /// The command to run (for a split command, its sub-command for this key).
    pub req: Request,
    /// The keys of the request in the migrating slot; the first decides where it runs.
    pub keys: Vec<Bytes>,
    pub slot: u16,
    /// The source said the key is not there (any more): run on the target.
    to_target: bool,
    /// How the last step was asked (the slot's routing may change before it answers).
    method: i64,
    /// The source the last step was sent to.
    source: String,
    attempts: u32,
    since: Instant,
}

impl Migration {
    pub fn new(req: Request, keys: Vec<Bytes>, slot: u16) -> Box<Migration> {
        debug_assert!(!keys.is_empty());
        Box::new(Migration {
            req,
            keys,
            slot,
            to_target: false,
            method: FORWARD_SYNC,
            source: String::new(),
            attempts: 0,
            since: Instant::now(),
        })
    }
}

/// What to do after a step's reply.
enum Step {
    /// The request is answered.
    Done(Bytes, bool),
    /// Run the request on the target.
    Target,
    /// Ask the source again after a pause.
    Retry(Duration),
}

/// Pacing for a key in a batch being moved. A batch is acknowledged within a few
/// milliseconds, so asking again every millisecond keeps the wait short (Codis's
/// growing pauses cost a client 5-20 ms per busy key) while costing the source one
/// cheap command per try; a key busy for longer (a huge key) is asked less often.
fn retry_delay(attempts: u32) -> Duration {
    match attempts {
        0..200 => Duration::from_millis(1),
        _ => Duration::from_millis(10),
    }
}

fn decide(m: &mut Migration, reply: &Bytes, proxy_error: bool) -> Step {
    let (method, source) = (m.method, m.source.as_str());
    if proxy_error {
        return Step::Done(reply.clone(), true);
    }
    let slot = m.slot;
    if let Some(err) = ReplyView::error_text(reply) {
        let err = String::from_utf8_lossy(err);
        let cmd = match method {
            FORWARD_SYNC => "SLOTSMGRTTAGONE",
            FORWARD_MIGRATE => "MIGRATE",
            _ => "SLOTSMGRT-EXEC-WRAPPER",
        };
        let hint = if err.contains("unknown command") {
            " (load the codis-slots module on it, or migrate with another method)"
        } else {
            ""
        };
        let msg = format!("ERR slot {slot} is migrating and its source {source} failed {cmd}: {err}{hint}");
        return Step::Done(error_reply(&msg), true);
    }
    if method == FORWARD_MIGRATE {
        // +OK: moved; +NOKEY: none of the keys is on the source (any more).
        return match &reply[..] {
            b"+OK\r\n" | b"+NOKEY\r\n" => Step::Target,
            _ => Step::Done(error_reply(&format!("ERR slot {slot}: unexpected reply to MIGRATE from {source}")), true),
        };
    }
    if method == FORWARD_SYNC {
        return match parse_integer(reply) {
            Some(_) => Step::Target,
            None => Step::Done(
                error_reply(&format!("ERR slot {slot}: unexpected reply to SLOTSMGRTTAGONE from {source}")),
                true,
            ),
        };
    }
    let parts = ReplyView::array_elements(reply).filter(|p| p.len() == 2);
    let code = parts.as_ref().and_then(|p| parse_integer(&reply[p[0].clone()]));
    match (code, parts) {
        (Some(0), _) => Step::Target,
        (Some(1), _) => {
            if m.since.elapsed() > MAX_WAIT {
                let msg = format!("ERR slot {slot}: key is being migrated for more than {MAX_WAIT:?}, retry later");
                return Step::Done(error_reply(&msg), true);
            }
            let delay = retry_delay(m.attempts);
            m.attempts += 1;
            Step::Retry(delay)
        }
        (Some(2), Some(p)) => Step::Done(reply.slice(p[1].clone()), false),
        _ => Step::Done(
            error_reply(&format!("ERR slot {slot}: unexpected reply to SLOTSMGRT-EXEC-WRAPPER from {source}")),
            true,
        ),
    }
}

impl Session {
    /// Starts `m` for request `seq` (part `part`), whose entry already exists.
    pub(super) fn start_migration(&mut self, table: &RouteTable, seq: u64, part: u32, m: Box<Migration>) {
        self.advance_migration(table, seq, part, m);
    }

    /// Sends the next step of `m`: to the source while the slot migrates and the key
    /// may be there, else the request itself to the slot's owner.
    fn advance_migration(&mut self, table: &RouteTable, seq: u64, part: u32, m: Box<Migration>) {
        let slot = m.slot;
        let route = &table.slots[slot as usize];
        if route.locked() {
            // Between migration steps of the dashboard; look again in a moment.
            return self.delay_migration(seq, part, m, Duration::from_millis(1));
        }
        let Some(target) = &route.backend else {
            let msg = format!("ERR slot {slot} is not ready, may be offline (assign it to a group)");
            self.finish_part(seq, part, error_reply(&msg), true);
            return;
        };
        let ticket = self.shared.router.enter(table, slot);
        let tickets = Tickets::One(ticket.slot, ticket.parity);
        self.seed = self.seed.wrapping_add(1);
        match &route.migrate_from {
            Some(source) if !m.to_target => {
                let mut m = m;
                m.method = route.model.forward_method;
                m.source = source.addr().to_string();
                let (host, port) = target.addr().rsplit_once(':').unwrap_or((target.addr(), ""));
                let payload = match m.method {
                    FORWARD_SYNC => {
                        encode([b"SLOTSMGRTTAGONE".as_slice(), host.as_bytes(), port.as_bytes(), b"3000", &m.keys[0]])
                    }
                    FORWARD_MIGRATE => {
                        let db = self.db.to_string();
                        let auth = &self.shared.config.product_auth;
                        let mut args: Vec<&[u8]> =
                            vec![b"MIGRATE", host.as_bytes(), port.as_bytes(), b"", db.as_bytes(), b"5000"];
                        if !auth.is_empty() {
                            args.extend([b"AUTH".as_slice(), auth.as_bytes()]);
                        }
                        args.push(b"KEYS");
                        args.extend(m.keys.iter().map(|k| &k[..]));
                        encode(args)
                    }
                    _ => {
                        let head = [b"SLOTSMGRT-EXEC-WRAPPER".as_slice(), &m.keys[0]];
                        encode(head.into_iter().chain(m.req.args()))
                    }
                };
                let conn = source.conn(self.key(), self.seed);
                self.pending.set_migrating(seq, part, m);
                self.queue_bytes(conn, &payload, seq, part, tickets);
            }
            _ => {
                let conn = target.conn(self.key(), self.seed);
                self.queue_bytes(conn, m.req.raw(), seq, part, tickets);
            }
        }
    }

    fn finish_part(&mut self, seq: u64, part: u32, reply: Bytes, proxy_error: bool) {
        // The entry waits for this part, so no follow-up can come of it.
        let _ = self.pending.deliver(seq, part, reply, proxy_error);
    }

    fn delay_migration(&mut self, seq: u64, part: u32, m: Box<Migration>, delay: Duration) {
        self.delayed.push((tokio::time::Instant::now() + delay, seq, part, m));
    }

    /// Handles the replies of migration steps that arrived.
    pub(super) fn run_followups(&mut self) {
        if self.followups.is_empty() {
            return;
        }
        let router = self.shared.router.clone();
        let (round, table) = router.begin_round();
        let mut followups = std::mem::take(&mut self.followups);
        for f in followups.drain(..) {
            let Followup { seq, part, mut migration, reply, proxy_error } = f;
            match decide(&mut migration, &reply, proxy_error) {
                Step::Done(reply, proxy_error) => self.finish_part(seq, part, reply, proxy_error),
                Step::Target => {
                    migration.to_target = true;
                    self.advance_migration(&table, seq, part, migration);
                }
                Step::Retry(delay) if delay.is_zero() => self.advance_migration(&table, seq, part, migration),
                Step::Retry(delay) => self.delay_migration(seq, part, migration, delay),
            }
        }
        self.followups = followups;
        drop((round, table));
        self.flush_outbox();
    }

    /// When the earliest delayed migration step is due.
    pub(super) fn next_delayed(&self) -> Option<tokio::time::Instant> {
        self.delayed.iter().map(|d| d.0).min()
    }

    /// Resends the delayed steps that are due.
    pub(super) fn run_delayed(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed).into_iter().partition(|d| d.0 <= now);
        self.delayed = later;
        if due.is_empty() {
            return;
        }
        let router = self.shared.router.clone();
        let (round, table) = router.begin_round();
        for (_, seq, part, m) in due {
            self.advance_migration(&table, seq, part, m);
        }
        drop((round, table));
        self.flush_outbox();
    }
}

fn encode<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let args: Vec<&[u8]> = args.into_iter().collect();
    let mut out = BytesMut::with_capacity(32 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.put_array_len(args.len());
    for a in args {
        out.put_bulk(a);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: i64) -> Migration {
        let mut m = *Migration::new(Request::from_args(["GET", "k"]), vec![Bytes::from_static(b"k")], 7);
        m.method = method;
        m.source = "1.2.3.4:5".into();
        m
    }

    #[test]
    fn semi_async_codes() {
        let mut mig = m(codis_core::models::FORWARD_SEMI_ASYNC);
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b"*2\r\n:0\r\n$-1\r\n"), false), Step::Target));
        match decide(&mut mig, &Bytes::from_static(b"*2\r\n:2\r\n$1\r\nv\r\n"), false) {
            Step::Done(r, false) => assert_eq!(&r[..], b"$1\r\nv\r\n"),
            _ => panic!("code 2 returns the source's reply"),
        }
        for _ in 0..200 {
            assert!(
                matches!(decide(&mut mig, &Bytes::from_static(b"*2\r\n:1\r\n$-1\r\n"), false), Step::Retry(d) if d == Duration::from_millis(1))
            );
        }
        assert!(
            matches!(decide(&mut mig, &Bytes::from_static(b"*2\r\n:1\r\n$-1\r\n"), false), Step::Retry(d) if d == Duration::from_millis(10))
        );
        match decide(&mut mig, &Bytes::from_static(b"-ERR unknown command 'SLOTSMGRT-EXEC-WRAPPER'\r\n"), false) {
            Step::Done(r, true) => {
                let text = String::from_utf8_lossy(&r);
                assert!(text.contains("1.2.3.4:5") && text.contains("codis-slots"), "{text}");
            }
            _ => panic!("errors are reported"),
        }
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b"*2\r\n:-1\r\n$-1\r\n"), false), Step::Done(_, true)));
    }

    #[test]
    fn migrate_replies() {
        let mut mig = m(FORWARD_MIGRATE);
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b"+OK\r\n"), false), Step::Target));
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b"+NOKEY\r\n"), false), Step::Target));
        match decide(&mut mig, &Bytes::from_static(b"-ERR Target instance replied with error: BUSYKEY\r\n"), false) {
            Step::Done(r, true) => assert!(String::from_utf8_lossy(&r).contains("MIGRATE")),
            _ => panic!("errors are reported"),
        }
    }

    #[test]
    fn sync_replies() {
        let mut mig = m(FORWARD_SYNC);
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b":1\r\n"), false), Step::Target));
        assert!(matches!(decide(&mut mig, &Bytes::from_static(b"-ERR x\r\n"), false), Step::Done(_, true)));
    }
}
