//! The clients: each owns its keys (so it knows exactly what it wrote) and writes
//! versions it can recognise: counters (INCR returns the new value), append-only lists
//! of increasing sequence numbers, hashes whose fields only grow. Every reply is
//! checked against what was acknowledged before:
//! - a value below the last acknowledged one is a *rollback*: acknowledged writes are
//!   gone. It is explained when a master of the key's slot was killed (SIGKILL) within
//!   [`CRASH_WINDOW`] after the write was acknowledged, since replication is
//!   asynchronous (the kill's time is taken once the process is gone, and a reply
//!   still on its way may reach the client up to [`REPLY_GRACE`] later); otherwise it
//!   is a lost write (reads) or a stale read.
//! - a counter above the last acknowledged value plus the writes that failed is a
//!   write applied twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use codis_client::{Client, Value};
use codis_core::slot_of;

/// How long after a write's acknowledgement a master change may still lose it: the
/// replica's lag on a loaded 2-core machine, plus the watcher's delay in seeing a
/// failover it did not cause, stay below this.
pub const CRASH_WINDOW: Duration = Duration::from_secs(5);

/// How long a client that sees a rollback waits for the failover watcher to record the
/// master change behind it (the client can see it first).
const WATCH_LAG: Duration = Duration::from_secs(3);

/// How long after a master died one of its replies may still be read by a client.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);

/// A request that gets no reply within this is counted as failed (and its connection dropped).
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A group's master that was gone at `at`, while the group served the slots marked
/// in `slots`: killed by the harness (`planned`, the time taken once it was reaped),
/// or replaced by a failover the harness did not cause (the sentinels judged a live
/// master down; the time is when the watcher saw the new master).
#[derive(Clone)]
pub struct Crash {
    pub at: Instant,
    pub group: i64,
    pub slots: Arc<[bool; 1024]>,
    pub planned: bool,
}

/// What the harness shares with the clients.
pub struct Shared {
    /// When the run started (findings say when they were seen).
    pub start: Instant,
    pub proxies: Vec<String>,
    pub stop: AtomicBool,
    pub crashes: Mutex<Vec<Crash>>,
}

impl Shared {
    pub fn new(proxies: Vec<String>) -> Shared {
        Shared { start: Instant::now(), proxies, stop: AtomicBool::new(false), crashes: Mutex::new(Vec::new()) }
    }

    /// What can explain losing a write to `slot` acknowledged at `acked_at`: a master
    /// the harness killed (`Some(true)`), another failover (`Some(false)`), or nothing.
    fn crash_explains(&self, slot: u16, acked_at: Instant) -> Option<bool> {
        let crashes = self.crashes.lock().unwrap_or_else(PoisonError::into_inner);
        let near = |c: &&Crash| {
            c.slots[slot as usize]
                && acked_at <= c.at + REPLY_GRACE
                && c.at.saturating_duration_since(acked_at) <= CRASH_WINDOW
        };
        let found: Vec<bool> = crashes.iter().filter(near).map(|c| c.planned).collect();
        if found.is_empty() { None } else { Some(found.contains(&true)) }
    }
}

/// Counts of one client, summed over all clients at the end.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    /// Acknowledged writes found gone, explained by a master the harness killed.
    pub lost_to_crash: u64,
    /// Acknowledged writes found gone, explained by a failover the harness did not cause.
    pub lost_to_failover: u64,
    /// Acknowledged writes found gone with no crash to explain them.
    pub lost: u64,
    /// Reads that returned less than was acknowledged, with no crash to explain them.
    pub stale_reads: u64,
    /// Writes applied more than once.
    pub duplicated: u64,
    /// Client-visible errors by kind (addresses and numbers masked).
    pub errors: BTreeMap<String, u64>,
    /// The first few findings, described (with when, for the stream checks).
    pub findings: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.writes_acked += o.writes_acked;
        self.writes_failed += o.writes_failed;
        self.reads_ok += o.reads_ok;
        self.reads_failed += o.reads_failed;
        self.lost_to_crash += o.lost_to_crash;
        self.lost_to_failover += o.lost_to_failover;
        self.lost += o.lost;
        self.stale_reads += o.stale_reads;
        self.duplicated += o.duplicated;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for f in &o.findings {
            if self.findings.len() < 40 {
                self.findings.push(f.clone());
            }
        }
    }

    /// Keeps the first few of each client (so that the report shows several clients').
    fn finding(&mut self, f: String) {
        if self.findings.len() < 5 {
            self.findings.push(f);
        }
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

const FIELDS: usize = 4;

struct Counter {
    key: String,
    slot: u16,
    acked: i64,
    acked_at: Instant,
    /// INCRs that failed since the last acknowledged one (each may or may not have applied).
    unknown: i64,
}

struct List {
    key: String,
    slot: u16,
    next: u64,
    /// Acknowledged sequence numbers and when.
    acked: Vec<(u64, Instant)>,
}

struct Field {
    next: u64,
    acked: u64,
    acked_at: Instant,
}

struct Hash {
    key: String,
    slot: u16,
    fields: [Field; FIELDS],
}

/// One client and the keys it owns.
pub struct Worker {
    id: usize,
    shared: Arc<Shared>,
    rng: u64,
    conn: Option<Client>,
    cursor: usize,
    counters: Vec<Counter>,
    lists: Vec<List>,
    hashes: Vec<Hash>,
    pub tally: Tally,
}

impl Worker {
    /// Client `id` owning `keys` keys of each kind.
    pub fn new(id: usize, keys: usize, seed: u64, shared: Arc<Shared>) -> Worker {
        let now = Instant::now();
        let key = |kind: &str, i: usize| format!("chaos:{kind}:{id}:{i}");
        Worker {
            id,
            shared,
            rng: seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            conn: None,
            cursor: id,
            counters: (0..keys)
                .map(|i| {
                    let key = key("c", i);
                    Counter { slot: slot_of(key.as_bytes()), key, acked: 0, acked_at: now, unknown: 0 }
                })
                .collect(),
            lists: (0..keys)
                .map(|i| {
                    let key = key("l", i);
                    List { slot: slot_of(key.as_bytes()), key, next: 1, acked: Vec::new() }
                })
                .collect(),
            hashes: (0..keys)
                .map(|i| {
                    let key = key("h", i);
                    Hash {
                        slot: slot_of(key.as_bytes()),
                        key,
                        fields: std::array::from_fn(|_| Field { next: 1, acked: 0, acked_at: now }),
                    }
                })
                .collect(),
            tally: Tally::default(),
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: reproducible from the seed, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Runs operations until the harness says stop; `pause` between operations sets the rate.
    pub async fn run(mut self, pause: Duration) -> Worker {
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.step().await;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        self
    }

    /// Sends one command through the current proxy connection (opening one to the next
    /// proxy when there is none); `None` when it failed at the connection level.
    async fn call(&mut self, args: &[&str]) -> Option<Value> {
        if self.conn.is_none() {
            let n = self.shared.proxies.len();
            self.cursor += 1;
            let addr = &self.shared.proxies[self.cursor % n];
            match tokio::time::timeout(Duration::from_secs(2), Client::connect(addr)).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => {
                    self.tally.error(format!("connect: {}", e.kind()));
                    // Do not spin on a dead proxy; the next call tries the next one.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return None;
                }
                Err(_) => {
                    self.tally.error("connect: timed out".into());
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        match tokio::time::timeout(OP_TIMEOUT, conn.cmd(args)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.tally.error(format!("connection: {}", e.kind()));
                self.conn = None;
                None
            }
            Err(_) => {
                self.tally.error(format!("no reply within {OP_TIMEOUT:?}"));
                self.conn = None;
                None
            }
        }
    }

    /// A reply that is a server error is counted by kind and treated as a failure.
    fn ok(&mut self, v: Option<Value>) -> Option<Value> {
        match v? {
            Value::Error(e) => {
                self.tally.error(mask(&e));
                None
            }
            v => Some(v),
        }
    }

    async fn step(&mut self) {
        let r = self.rand();
        let write = r % 10 < 6;
        let (kind, idx) = ((r >> 8) % 3, ((r >> 16) as usize) % self.counters.len());
        match (kind, write) {
            (0, true) => self.incr(idx).await,
            (0, false) => self.get(idx).await,
            (1, true) => self.push(idx).await,
            (1, false) => self.last(idx).await,
            (_, true) => self.hset(idx, (r >> 40) as usize % FIELDS).await,
            (_, false) => self.hget(idx, (r >> 40) as usize % FIELDS).await,
        }
    }

    async fn incr(&mut self, i: usize) {
        let key = self.counters[i].key.clone();
        let v = self.call(&["INCR", &key]).await;
        let Some(Value::Int(v)) = self.ok(v) else {
            self.tally.writes_failed += 1;
            self.counters[i].unknown += 1;
            return;
        };
        self.tally.writes_acked += 1;
        let c = &self.counters[i];
        let (acked, unknown, slot, acked_at) = (c.acked, c.unknown, c.slot, c.acked_at);
        if v <= acked {
            let gone = (acked - v + 1) as u64;
            self.rollback(slot, acked_at, gone, format!("INCR {key} returned {v} after {acked} was acknowledged"))
                .await;
        } else if v > acked + 1 + unknown {
            self.tally.duplicated += (v - acked - 1 - unknown) as u64;
            self.tally.finding(format!("INCR {key} returned {v}: acknowledged {acked}, {unknown} failed since"));
        }
        let c = &mut self.counters[i];
        (c.acked, c.acked_at, c.unknown) = (v, Instant::now(), 0);
    }

    async fn get(&mut self, i: usize) {
        let key = self.counters[i].key.clone();
        let Some(v) = self.read_number(&["GET", &key]).await else { return };
        let c = &self.counters[i];
        if v < c.acked {
            let (slot, acked_at, acked) = (c.slot, c.acked_at, c.acked);
            if self
                .stale(
                    slot,
                    acked_at,
                    (acked - v) as u64,
                    format!("GET {key} returned {v} after {acked} was acknowledged"),
                )
                .await
            {
                let c = &mut self.counters[i];
                (c.acked, c.unknown) = (v, 0);
            }
        }
    }

    async fn push(&mut self, i: usize) {
        let (key, seq) = (self.lists[i].key.clone(), self.lists[i].next);
        self.lists[i].next += 1;
        let v = self.call(&["RPUSH", &key, &seq.to_string()]).await;
        if let Some(Value::Int(_)) = self.ok(v) {
            self.tally.writes_acked += 1;
            self.lists[i].acked.push((seq, Instant::now()));
        } else {
            self.tally.writes_failed += 1;
        }
    }

    async fn last(&mut self, i: usize) {
        let key = self.lists[i].key.clone();
        let Some(last) = self.read_number(&["LINDEX", &key, "-1"]).await else { return };
        let last = last.max(0) as u64;
        let l = &self.lists[i];
        if let Some(&(want, acked_at)) = l.acked.last()
            && last < want
        {
            let gone = l.acked.iter().filter(|(s, _)| *s > last).count() as u64;
            let slot = l.slot;
            if self
                .stale(slot, acked_at, gone, format!("LINDEX {key} -1 returned {last} after {want} was acknowledged"))
                .await
            {
                self.lists[i].acked.retain(|(s, _)| *s <= last);
            }
        }
    }

    async fn hset(&mut self, i: usize, f: usize) {
        let key = self.hashes[i].key.clone();
        let version = self.hashes[i].fields[f].next;
        self.hashes[i].fields[f].next += 1;
        let v = self.call(&["HSET", &key, &format!("f{f}"), &version.to_string()]).await;
        if let Some(Value::Int(_)) = self.ok(v) {
            self.tally.writes_acked += 1;
            let field = &mut self.hashes[i].fields[f];
            (field.acked, field.acked_at) = (version, Instant::now());
        } else {
            self.tally.writes_failed += 1;
        }
    }

    async fn hget(&mut self, i: usize, f: usize) {
        let key = self.hashes[i].key.clone();
        let Some(got) = self.read_number(&["HGET", &key, &format!("f{f}")]).await else { return };
        let got = got.max(0) as u64;
        let (slot, field) = (self.hashes[i].slot, &self.hashes[i].fields[f]);
        if got < field.acked {
            let (acked, acked_at) = (field.acked, field.acked_at);
            let what = format!("HGET {key} f{f} returned {got} after {acked} was acknowledged");
            if self.stale(slot, acked_at, 1, what).await {
                self.hashes[i].fields[f].acked = got;
            }
        }
    }

    /// A read of one of our numbers: nil is 0, something else than a number -1; `None`
    /// (counted as a failed read) when the read failed.
    async fn read_number(&mut self, args: &[&str]) -> Option<i64> {
        let v = self.call(args).await;
        let n = match self.ok(v) {
            Some(Value::Nil) => 0,
            Some(Value::Bulk(b)) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()).unwrap_or(-1),
            _ => {
                self.tally.reads_failed += 1;
                return None;
            }
        };
        self.tally.reads_ok += 1;
        Some(n)
    }

    /// What explains losing a write to `slot` acknowledged at `acked_at` (see
    /// [`Shared::crash_explains`]), waiting up to [`WATCH_LAG`] for the watcher.
    async fn explanation(&self, slot: u16, acked_at: Instant) -> Option<bool> {
        let deadline = Instant::now() + WATCH_LAG;
        loop {
            let found = self.shared.crash_explains(slot, acked_at);
            if found.is_some() || Instant::now() >= deadline || self.shared.stop.load(Ordering::Relaxed) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A write reply showed `gone` acknowledged writes vanished.
    async fn rollback(&mut self, slot: u16, acked_at: Instant, gone: u64, what: String) {
        if let Some(planned) = self.explanation(slot, acked_at).await {
            self.explained(planned, gone);
        } else {
            self.tally.lost += gone;
            self.tally.finding(format!("[{:.1?}] lost: {what}", self.shared.start.elapsed()));
        }
    }

    fn explained(&mut self, planned: bool, gone: u64) {
        if planned {
            self.tally.lost_to_crash += gone;
        } else {
            self.tally.lost_to_failover += gone;
        }
    }

    /// A read returned less than was acknowledged. Returns whether a master crash
    /// explains it (the caller then takes the read value as the new baseline; an
    /// unexplained one is left for the final check to count as lost or not).
    async fn stale(&mut self, slot: u16, acked_at: Instant, gone: u64, what: String) -> bool {
        if let Some(planned) = self.explanation(slot, acked_at).await {
            self.explained(planned, gone);
            true
        } else {
            self.tally.stale_reads += 1;
            self.tally.finding(format!("[{:.1?}] stale read: {what}", self.shared.start.elapsed()));
            false
        }
    }

    /// Reads back everything this client owns and counts acknowledged writes that are gone.
    pub async fn verify(&mut self) -> anyhow::Result<()> {
        for i in 0..self.counters.len() {
            let key = self.counters[i].key.clone();
            let v = self.read_back(&["GET", &key]).await?;
            let v: i64 = match v {
                Value::Nil => 0,
                v => v.as_str().and_then(|s| s.parse().ok()).unwrap_or(-1),
            };
            let c = &self.counters[i];
            let (acked, unknown, slot, acked_at) = (c.acked, c.unknown, c.slot, c.acked_at);
            if v < acked {
                self.rollback(
                    slot,
                    acked_at,
                    (acked - v) as u64,
                    format!("{key} is {v} at the end, {acked} acknowledged"),
                )
                .await;
            } else if v > acked + unknown {
                self.tally.duplicated += (v - acked - unknown) as u64;
                self.tally.finding(format!("{key} is {v} at the end: {acked} acknowledged, {unknown} failed since"));
            }
        }
        for i in 0..self.lists.len() {
            let key = self.lists[i].key.clone();
            let Value::Array(items) = self.read_back(&["LRANGE", &key, "0", "-1"]).await? else {
                anyhow::bail!("LRANGE {key} is not a list");
            };
            let seqs: Vec<u64> = items.iter().filter_map(|v| v.as_str().and_then(|s| s.parse().ok())).collect();
            if seqs.windows(2).any(|w| w[0] >= w[1]) {
                self.tally.finding(format!("{key} is out of order or has a duplicate: {seqs:?}"));
                self.tally.duplicated += 1;
            }
            let present: std::collections::HashSet<u64> = seqs.into_iter().collect();
            let slot = self.lists[i].slot;
            let missing: Vec<(u64, Instant)> =
                self.lists[i].acked.iter().filter(|(s, _)| !present.contains(s)).copied().collect();
            // One finding per list, each missing element counted (and explained on its own).
            if let Some(&(first, _)) = missing.first() {
                let what = format!("{key} lacks {} acknowledged elements at the end, from {first}", missing.len());
                let mut lost = 0;
                for &(_, at) in &missing {
                    match self.shared.crash_explains(slot, at) {
                        Some(planned) => self.explained(planned, 1),
                        None => lost += 1,
                    }
                }
                if lost > 0 {
                    self.tally.lost += lost;
                    self.tally.finding(format!("lost: {what}"));
                }
            }
        }
        for i in 0..self.hashes.len() {
            let key = self.hashes[i].key.clone();
            for f in 0..FIELDS {
                let v = self.read_back(&["HGET", &key, &format!("f{f}")]).await?;
                let got: u64 = v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                let (slot, field) = (self.hashes[i].slot, &self.hashes[i].fields[f]);
                if got < field.acked {
                    let (acked, at) = (field.acked, field.acked_at);
                    self.rollback(slot, at, 1, format!("{key} f{f} is {got} at the end, {acked} acknowledged")).await;
                }
            }
        }
        Ok(())
    }

    /// A read of the final check: retried (the cluster has healed, but a proxy may still
    /// be reconnecting), an error only if it keeps failing.
    async fn read_back(&mut self, args: &[&str]) -> anyhow::Result<Value> {
        let mut last = String::new();
        for _ in 0..50 {
            match self.call(args).await {
                Some(Value::Error(e)) => last = e,
                Some(v) => return Ok(v),
                None => last = "connection failed".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("client {}: {} keeps failing: {last}", self.id, args.join(" "))
    }
}

/// An error message as a kind: numbers (ports, slots, counts) masked so that one cause
/// is one line of the report.
pub fn mask(e: &str) -> String {
    let mut out = String::with_capacity(e.len());
    let mut digits = false;
    for ch in e.chars().take(120) {
        if ch.is_ascii_digit() {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_numbers_in_error_kinds() {
        assert_eq!(mask("ERR backend 127.0.0.1:6379 is down"), "ERR backend N.N.N.N:N is down");
    }

    #[test]
    fn a_crash_explains_only_recent_writes_of_its_slots() {
        let shared = Shared::new(vec![]);
        let t0 = Instant::now();
        let mut slots = [false; 1024];
        slots[7] = true;
        let at = t0 + Duration::from_secs(1);
        shared.crashes.lock().unwrap().push(Crash { at, group: 1, slots: Arc::new(slots), planned: true });
        assert_eq!(shared.crash_explains(7, t0), Some(true));
        assert_eq!(shared.crash_explains(8, t0), None, "another group's slot");
        assert_eq!(shared.crash_explains(7, t0 + Duration::from_millis(1500)), Some(true), "a reply on its way");
        assert_eq!(shared.crash_explains(7, t0 + Duration::from_secs(3)), None, "acknowledged after the crash");
        assert_eq!(shared.crash_explains(7, t0 - CRASH_WINDOW), None, "acknowledged long before the crash");
        let mut other = [false; 1024];
        other[8] = true;
        shared.crashes.lock().unwrap().push(Crash { at, group: 2, slots: Arc::new(other), planned: false });
        assert_eq!(shared.crash_explains(8, t0), Some(false), "a failover the harness did not cause");
    }
}
