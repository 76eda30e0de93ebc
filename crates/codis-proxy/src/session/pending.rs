//! Requests of one session that have not been answered yet, in request order.
//!
//! Every request gets a sequence number and an entry here. Backends answer in any order
//! across connections; entries fill in as replies arrive and leave from the front only,
//! so the client sees replies exactly in the order it sent requests.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use codis_resp::{Encoder, ReplyKind, ReplyView, parse_integer};

use super::migrate::Migration;
use crate::command::Merge;
use crate::reply::error_reply;
use crate::slowlog::Summary;

pub(crate) enum State {
    /// Answered; `proxy_error` marks errors the proxy made up.
    Ready { reply: Bytes, proxy_error: bool },
    /// Waiting for the one reply of a forwarded request.
    Waiting,
    /// Waiting for the parts of a split multi-key command.
    Split(Box<Split>),
    /// `INFO`: the backend's reply is appended to this proxy section.
    Info(Bytes),
    /// Waiting for a migration step on the slot's source (see [`super::migrate`]).
    Migrating(Box<Migration>),
    /// `SCAN` on group `index` of `groups`: the group's cursor is turned into the
    /// proxy's (see [`super::scan`]).
    Scan { index: usize, groups: usize },
}

/// One part of a split command.
pub(crate) enum Part {
    Waiting,
    Migrating(Box<Migration>),
    Done(Bytes, bool),
}

/// A migration step's reply, for the session to decide the next step.
pub(crate) struct Followup {
    pub seq: u64,
    pub part: u32,
    pub migration: Box<Migration>,
    pub reply: Bytes,
    pub proxy_error: bool,
}

pub(crate) struct Entry {
    pub cmd: u16,
    pub start: Instant,
    pub state: State,
    /// What the slow log shows if the request turns out slow.
    pub summary: Summary,
}

/// The parts of one split command and how to put their replies back together.
pub(crate) struct Split {
    kind: Merge,
    parts: Vec<Part>,
    remaining: usize,
    /// For `MGET`: each key's part and position within that part's reply.
    positions: Vec<(u32, u32)>,
}

impl Split {
    pub fn new(kind: Merge, parts: usize, positions: Vec<(u32, u32)>) -> Split {
        Split { kind, parts: (0..parts).map(|_| Part::Waiting).collect(), remaining: parts, positions }
    }

    /// Marks part `i` as waiting for a migration step.
    pub fn set_migrating(&mut self, i: usize, m: Box<Migration>) {
        self.parts[i] = Part::Migrating(m);
    }

    /// The merged reply, once every part has answered.
    fn merge(&self) -> (Bytes, bool) {
        let parts: Vec<(&Bytes, bool)> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Done(reply, proxy_error) => (reply, *proxy_error),
                _ => unreachable!("merged before every part answered"),
            })
            .collect();
        let proxy_error = parts.iter().any(|p| p.1);
        let replies: Vec<&Bytes> = parts.iter().map(|p| p.0).collect();
        (merge(self.kind, &replies, &self.positions), proxy_error)
    }
}

/// Puts the replies of the parts of one command together (see [`Merge`]).
fn merge(kind: Merge, parts: &[&Bytes], positions: &[(u32, u32)]) -> Bytes {
    let is_error = |r: &Bytes| ReplyKind::of(r) == ReplyKind::Error;
    let first_error = || parts.iter().find(|r| is_error(r)).map(|r| (*r).clone());
    let mut out = BytesMut::new();
    match kind {
        Merge::Mget => {
            let elements: Vec<Option<Vec<std::ops::Range<usize>>>> =
                parts.iter().map(|r| ReplyView::array_elements(r)).collect();
            out.put_array_len(positions.len());
            for &(part, pos) in positions {
                let reply = parts[part as usize];
                match elements[part as usize].as_ref().and_then(|e| e.get(pos as usize)) {
                    Some(range) => out.put_slice(&reply[range.clone()]),
                    // The part failed as a whole: its keys get its error.
                    None if is_error(reply) => out.put_slice(reply),
                    None => out.put_error("ERR unexpected reply from backend to MGET"),
                }
            }
        }
        Merge::AllOk => match parts.iter().find(|r| &r[..] != b"+OK\r\n") {
            Some(r) => return (*r).clone(),
            None => out.put_simple(b"OK"),
        },
        // Where no script runs the answer is NOTBUSY: any other error says more.
        Merge::AnyOk => match parts.iter().find(|r| &r[..] == b"+OK\r\n") {
            Some(r) => return (*r).clone(),
            None => {
                return parts
                    .iter()
                    .find(|r| !r.starts_with(b"-NOTBUSY"))
                    .map_or_else(|| parts[0].clone(), |r| (*r).clone());
            }
        },
        Merge::Sum => {
            let mut sum = 0i64;
            for r in parts {
                match parse_integer(r) {
                    Some(n) => sum += n,
                    None => return (*r).clone(),
                }
            }
            out.put_integer(sum);
        }
        Merge::Same => {
            if let Some(e) = first_error() {
                return e;
            }
            if parts.iter().any(|r| r != &parts[0]) {
                out.put_error("ERR the groups answered differently; run the command again");
            } else {
                return parts[0].clone();
            }
        }
        Merge::First => return parts[0].clone(),
        Merge::Min => {
            let mut min = i64::MAX;
            for r in parts {
                match parse_integer(r) {
                    Some(n) => min = min.min(n),
                    None => return (*r).clone(),
                }
            }
            out.put_integer(min);
        }
        Merge::Max => {
            let mut max = 0i64;
            for r in parts {
                match parse_integer(r) {
                    Some(n) => max = max.max(n),
                    None => return (*r).clone(),
                }
            }
            out.put_integer(max);
        }
        Merge::NonNil => {
            let nil = |r: &Bytes| &r[..] == b"$-1\r\n" || &r[..] == b"_\r\n";
            return match parts.iter().find(|r| !nil(r) && !is_error(r)) {
                Some(r) => (*r).clone(),
                None => first_error().unwrap_or_else(|| parts[0].clone()),
            };
        }
        Merge::And | Merge::Concat | Merge::Union => {
            if let Some(e) = first_error() {
                return e;
            }
            let arrays: Option<Vec<Vec<std::ops::Range<usize>>>> =
                parts.iter().map(|r| ReplyView::array_elements(r)).collect();
            let Some(arrays) = arrays else {
                return error_reply("ERR unexpected reply from backend: expected an array");
            };
            if kind == Merge::Union {
                let mut seen: Vec<&[u8]> = Vec::new();
                for (r, elements) in parts.iter().zip(&arrays) {
                    for e in elements {
                        let item = &r[e.clone()];
                        if !seen.contains(&item) {
                            seen.push(item);
                        }
                    }
                }
                out.put_array_len(seen.len());
                seen.iter().for_each(|item| out.put_slice(item));
            } else if kind == Merge::Concat {
                out.put_array_len(arrays.iter().map(Vec::len).sum());
                for (r, elements) in parts.iter().zip(&arrays) {
                    for e in elements {
                        out.put_slice(&r[e.clone()]);
                    }
                }
            } else {
                let n = arrays[0].len();
                if arrays.iter().any(|a| a.len() != n) {
                    return error_reply("ERR the groups answered differently; run the command again");
                }
                out.put_array_len(n);
                for i in 0..n {
                    let all = parts.iter().zip(&arrays).all(|(r, a)| parse_integer(&r[a[i].clone()]) == Some(1));
                    out.put_integer(all as i64);
                }
            }
        }
    }
    out.freeze()
}

/// Entries a session keeps room for; a deep pipeline (up to `session_max_pipeline`,
/// 10,000 by default, some 64 bytes each) grows the queue, [`Pending::shrink`] gives the
/// room back.
const KEEP_ENTRIES: usize = 256;

#[derive(Default)]
pub(crate) struct Pending {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// The summary of the request being dispatched, given to the entries it makes.
    pub summary: Summary,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sequence number the next pushed entry will get.
    pub fn next_seq(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    pub fn push(&mut self, cmd: u16, start: Instant, state: State) -> u64 {
        let seq = self.next_seq();
        self.entries.push_back(Entry { cmd, start, state, summary: self.summary });
        seq
    }

    /// Takes the first entry if it is `seq`, waiting for a single reply: its reply can
    /// go straight to the client.
    pub fn take_front_if_waiting(&mut self, seq: u64) -> Option<Entry> {
        if seq != self.base || !matches!(self.entries.front()?.state, State::Waiting) {
            return None;
        }
        self.base += 1;
        self.entries.pop_front()
    }

    /// Fills in a reply. A reply to a migration step is handed back as a [`Followup`]
    /// (the entry then waits for whatever the session sends next).
    pub fn deliver(&mut self, seq: u64, part: u32, reply: Bytes, proxy_error: bool) -> Option<Followup> {
        let entry = self.entries.get_mut(seq.checked_sub(self.base)? as usize)?;
        match &mut entry.state {
            State::Waiting => entry.state = State::Ready { reply, proxy_error },
            State::Migrating(_) => {
                let State::Migrating(migration) = std::mem::replace(&mut entry.state, State::Waiting) else {
                    unreachable!()
                };
                return Some(Followup { seq, part, migration, reply, proxy_error });
            }
            State::Split(split) => {
                let slot = &mut split.parts[part as usize];
                match slot {
                    Part::Waiting => {
                        *slot = Part::Done(reply, proxy_error);
                        split.remaining -= 1;
                    }
                    Part::Migrating(_) => {
                        let Part::Migrating(migration) = std::mem::replace(slot, Part::Waiting) else { unreachable!() };
                        return Some(Followup { seq, part, migration, reply, proxy_error });
                    }
                    Part::Done(..) => {}
                }
                if split.remaining == 0 {
                    let (reply, proxy_error) = split.merge();
                    entry.state = State::Ready { reply, proxy_error };
                }
            }
            State::Info(section) => {
                let reply = info_reply(section, &reply);
                entry.state = State::Ready { reply, proxy_error };
            }
            &mut State::Scan { index, groups } => {
                let reply = super::scan::proxy_reply(&reply, index, groups);
                entry.state = State::Ready { reply, proxy_error };
            }
            State::Ready { .. } => {}
        }
        None
    }

    /// Puts a request (or part) back to waiting for a migration step.
    pub fn set_migrating(&mut self, seq: u64, part: u32, m: Box<Migration>) {
        let Some(entry) = seq.checked_sub(self.base).and_then(|i| self.entries.get_mut(i as usize)) else { return };
        match &mut entry.state {
            State::Split(split) => split.set_migrating(part as usize, m),
            state => *state = State::Migrating(m),
        }
    }

    /// Gives back the room a deep pipeline left, once it has drained.
    pub fn shrink(&mut self) {
        if self.entries.capacity() > KEEP_ENTRIES && self.entries.len() <= KEEP_ENTRIES / 2 {
            self.entries.shrink_to(KEEP_ENTRIES);
        }
    }

    /// Takes the first entry if it is answered.
    pub fn pop_ready(&mut self) -> Option<(Entry, Bytes, bool)> {
        if !matches!(self.entries.front()?.state, State::Ready { .. }) {
            return None;
        }
        let entry = self.entries.pop_front()?;
        self.base += 1;
        let State::Ready { reply, proxy_error } = &entry.state else { unreachable!() };
        let (reply, proxy_error) = (reply.clone(), *proxy_error);
        Some((entry, reply, proxy_error))
    }
}

/// The proxy's INFO section followed by the backend's INFO text.
fn info_reply(section: &[u8], backend: &Bytes) -> Bytes {
    let mut text = BytesMut::from(section);
    let body = match backend.first() {
        // "$<len>\r\n<body>\r\n"
        Some(b'$') => {
            backend.iter().position(|&b| b == b'\n').map(|nl| &backend[nl + 1..backend.len().saturating_sub(2)])
        }
        // RESP3's verbatim string: "=<len>\r\ntxt:<body>\r\n"
        Some(b'=') => {
            backend.iter().position(|&b| b == b'\n').and_then(|nl| backend.get(nl + 5..backend.len().saturating_sub(2)))
        }
        _ => None,
    };
    match body {
        Some(body) => {
            text.put_slice(b"\r\n");
            text.put_slice(body);
        }
        None => {
            let msg = ReplyView::error_text(backend).map(|e| String::from_utf8_lossy(e).into_owned());
            text.put_slice(format!("\r\n# Backend\r\nbackend_error:{}\r\n", msg.unwrap_or_default()).as_bytes());
        }
    }
    let mut out = BytesMut::with_capacity(text.len() + 16);
    out.put_bulk(&text);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(p: &mut Pending, seq: u64, part: u32, reply: &'static [u8]) {
        p.deliver(seq, part, Bytes::from_static(reply), false);
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut p = Pending::default();
        let now = Instant::now();
        let a = p.push(0, now, State::Waiting);
        let b = p.push(0, now, State::Waiting);
        deliver(&mut p, b, 0, b"+B\r\n");
        assert!(p.pop_ready().is_none(), "b must wait for a");
        deliver(&mut p, a, 0, b"+A\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b"+A\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b"+B\r\n");
        assert!(p.is_empty());
    }

    #[test]
    fn mget_merges_in_key_order_with_per_key_errors() {
        let mut p = Pending::default();
        // keys k0 k1 k2 k3: parts 0 = [k0, k2], 1 = [k1], 2 = [k3]
        let split = Split::new(Merge::Mget, 3, vec![(0, 0), (1, 0), (0, 1), (2, 0)]);
        let seq = p.push(0, Instant::now(), State::Split(Box::new(split)));
        deliver(&mut p, seq, 1, b"*1\r\n$2\r\nv1\r\n");
        deliver(&mut p, seq, 2, b"-ERR backend down\r\n");
        assert!(p.pop_ready().is_none());
        deliver(&mut p, seq, 0, b"*2\r\n$2\r\nv0\r\n$-1\r\n");
        let (_, reply, _) = p.pop_ready().unwrap();
        assert_eq!(&reply[..], b"*4\r\n$2\r\nv0\r\n$2\r\nv1\r\n$-1\r\n-ERR backend down\r\n");
    }

    #[test]
    fn sums_and_mset() {
        let mut p = Pending::default();
        let s = p.push(0, Instant::now(), State::Split(Box::new(Split::new(Merge::Sum, 2, vec![]))));
        deliver(&mut p, s, 0, b":2\r\n");
        deliver(&mut p, s, 1, b":3\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b":5\r\n");
        let s = p.push(0, Instant::now(), State::Split(Box::new(Split::new(Merge::AllOk, 2, vec![]))));
        deliver(&mut p, s, 0, b"+OK\r\n");
        deliver(&mut p, s, 1, b"-ERR x\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b"-ERR x\r\n");
        let s = p.push(0, Instant::now(), State::Split(Box::new(Split::new(Merge::Sum, 2, vec![]))));
        deliver(&mut p, s, 0, b"-ERR y\r\n");
        deliver(&mut p, s, 1, b":1\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b"-ERR y\r\n");
    }

    #[test]
    fn union_and_max() {
        let mut p = Pending::default();
        let s = p.push(0, Instant::now(), State::Split(Box::new(Split::new(Merge::Union, 2, vec![]))));
        deliver(&mut p, s, 0, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        deliver(&mut p, s, 1, b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        let s = p.push(0, Instant::now(), State::Split(Box::new(Split::new(Merge::Max, 2, vec![]))));
        deliver(&mut p, s, 0, b":2\r\n");
        deliver(&mut p, s, 1, b":5\r\n");
        assert_eq!(&p.pop_ready().unwrap().1[..], b":5\r\n");
    }

    #[test]
    fn info_takes_resp3_verbatim_text() {
        let mut p = Pending::default();
        let s = p.push(0, Instant::now(), State::Info(Bytes::from_static(b"# Proxy\r\n")));
        deliver(&mut p, s, 0, b"=9\r\ntxt:a:1\r\n\r\n");
        let (_, reply, _) = p.pop_ready().unwrap();
        assert_eq!(&reply[..], b"$16\r\n# Proxy\r\n\r\na:1\r\n\r\n");
    }

    #[test]
    fn info_prepends_proxy_section() {
        let mut p = Pending::default();
        let s = p.push(0, Instant::now(), State::Info(Bytes::from_static(b"# Proxy\r\na:1\r\n")));
        deliver(&mut p, s, 0, b"$15\r\n# Server\r\nb:2\r\n\r\n");
        let (_, reply, _) = p.pop_ready().unwrap();
        assert_eq!(&reply[..], b"$31\r\n# Proxy\r\na:1\r\n\r\n# Server\r\nb:2\r\n\r\n");
    }
}
