//! The slot table: which backend serves each of the 1024 slots.
//!
//! Sessions read the table through an atomically swapped snapshot ([`ArcSwap`]): no
//! lock and no clone per request. Updates (`fillslots`) build a new table, publish it,
//! and then wait until every request that was routed by the *previous* route of a
//! changed slot has been answered, as Codis does, so that once a fill returns no
//! request is still running against a backend that no longer owns the slot.
//!
//! How the wait works without a lock or an atomic read-modify-write per request:
//! - Every worker counts its requests in flight per slot and *epoch parity* (the
//!   slot's epoch is bumped on each change of that slot) in counters only that worker
//!   writes ([`SlotGates`]): plain loads and stores, no contention.
//! - A session routes a whole round of requests with one table snapshot and announces
//!   the snapshot's version for the round ([`Router::begin_round`]), as RCU readers do.
//! - After publishing a new table, an update waits for a grace period (every worker
//!   idle or on the new version), after which no request can be counted under an old
//!   epoch any more; then it waits for the old parity's counters to drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use codis_core::MAX_SLOT_NUM;
use codis_core::models::Slot;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::backend::{BackendPool, BackendSettings};

/// A slot table update that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid slot id {0}: slots are numbered 0..1023")]
    InvalidSlot(i64),
    #[error("slot {slot}: invalid backend address {addr:?} (expected host:port)")]
    InvalidAddr { slot: i64, addr: String },
    #[error("the proxy is closed")]
    Closed,
}

/// Routing of one slot, resolved to backend pools.
#[derive(Debug, Default, Clone)]
pub struct SlotRoute {
    /// Bumped each time this slot's routing changes.
    pub epoch: u32,
    pub model: Slot,
    pub backend: Option<Arc<BackendPool>>,
    pub migrate_from: Option<Arc<BackendPool>>,
    /// Replica pools, best tier first (same host, same datacenter, others).
    pub replicas: Box<[Box<[Arc<BackendPool>]>]>,
}

impl SlotRoute {
    pub fn locked(&self) -> bool {
        self.model.locked
    }
}

/// One immutable version of the whole table.
#[derive(Debug)]
pub struct RouteTable {
    pub version: u64,
    pub slots: Box<[SlotRoute]>,
    /// Every master that holds keys (slot owners and migration sources), ordered by
    /// group id then address, for the commands that run on all of them (DBSIZE, SCAN,
    /// SCRIPT LOAD...). The order is stable as groups are added with higher ids.
    pub groups: Box<[Arc<BackendPool>]>,
}

impl RouteTable {
    fn new(version: u64, slots: Box<[SlotRoute]>) -> RouteTable {
        let mut groups: Vec<(i64, Arc<BackendPool>)> = Vec::new();
        for route in slots.iter() {
            let m = &route.model;
            for (gid, pool) in
                [(m.backend_addr_group_id, &route.backend), (m.migrate_from_group_id, &route.migrate_from)]
            {
                if let Some(pool) = pool
                    && !groups.iter().any(|(_, p)| Arc::ptr_eq(p, pool))
                {
                    groups.push((gid, pool.clone()));
                }
            }
        }
        groups.sort_by(|a, b| (a.0, a.1.addr()).cmp(&(b.0, b.1.addr())));
        RouteTable { version, slots, groups: groups.into_iter().map(|(_, p)| p).collect() }
    }
}

/// In-flight counters per worker, slot and epoch parity. Each counter is written by
/// one worker thread only (sessions and their backend connections share a thread), so
/// updates are plain loads and stores; the updater only reads them.
pub struct SlotGates {
    workers: usize,
    counts: Box<[[AtomicU32; 2]]>,
}

impl SlotGates {
    fn new(workers: usize) -> SlotGates {
        let workers = workers.max(1);
        let counts = (0..MAX_SLOT_NUM * workers).map(|_| [AtomicU32::new(0), AtomicU32::new(0)]).collect();
        SlotGates { workers, counts }
    }

    fn cell(&self, worker: usize, slot: u16, parity: u8) -> &AtomicU32 {
        let worker = if worker < self.workers { worker } else { 0 };
        &self.counts[worker * MAX_SLOT_NUM + slot as usize][parity as usize & 1]
    }

    fn enter(&self, worker: usize, slot: u16, parity: u8) {
        let c = self.cell(worker, slot, parity);
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    pub fn leave(&self, worker: usize, slot: u16, parity: u8) {
        let c = self.cell(worker, slot, parity);
        c.store(c.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Release);
    }

    fn count(&self, slot: u16, parity: u8) -> u32 {
        (0..self.workers).map(|w| self.cell(w, slot, parity).load(Ordering::Acquire)).sum()
    }
}

/// A worker that is not routing requests right now.
const IDLE: u64 = u64::MAX;

/// Marks a worker as routing with one table version until dropped.
pub struct Round<'a> {
    slot: &'a AtomicU64,
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        self.slot.store(IDLE, Ordering::Release);
    }
}

/// The proxy's router: the published table plus what is needed to replace it.
pub struct Router {
    table: ArcSwap<RouteTable>,
    /// Version of the newest published table.
    version: AtomicU64,
    /// Per worker: the version it saw when it started routing its current round, or [`IDLE`].
    active: Box<[AtomicU64]>,
    gates: Arc<SlotGates>,
    workers: usize,
    settings: Arc<BackendSettings>,
    pools: Mutex<HashMap<(String, bool), Arc<BackendPool>>>,
    update: tokio::sync::Mutex<()>,
    changed: watch::Sender<u64>,
    closed: AtomicBool,
    /// Requests per slot, sampled: one request in [`SLOT_SAMPLE`] adds that many.
    slot_ops: Box<[AtomicU64]>,
}

/// One request in this many is counted per slot (by the worker that routes it), so
/// that `/metrics` shows hot slots without a shared write per request.
pub const SLOT_SAMPLE: u64 = 64;

thread_local! {
    static SAMPLE_TICK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A request counted in on a slot by the current worker; hand it to the reply so it is
/// counted out.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub slot: u16,
    pub parity: u8,
}

impl Router {
    /// A router for `workers` worker threads (see [`crate::worker`]).
    pub fn new(settings: BackendSettings, workers: usize) -> Router {
        let slots = (0..MAX_SLOT_NUM)
            .map(|i| SlotRoute { model: Slot { id: i as i64, ..Default::default() }, ..Default::default() })
            .collect();
        Router {
            table: ArcSwap::from_pointee(RouteTable::new(0, slots)),
            version: AtomicU64::new(0),
            active: (0..workers.max(1)).map(|_| AtomicU64::new(IDLE)).collect(),
            gates: Arc::new(SlotGates::new(workers)),
            workers: workers.max(1),
            settings: Arc::new(settings),
            pools: Mutex::new(HashMap::new()),
            update: tokio::sync::Mutex::new(()),
            changed: watch::channel(0).0,
            closed: AtomicBool::new(false),
            slot_ops: (0..MAX_SLOT_NUM).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn gates(&self) -> &Arc<SlotGates> {
        &self.gates
    }

    pub fn settings(&self) -> &Arc<BackendSettings> {
        &self.settings
    }

    /// The current table. Hold the guard only for a burst of routing decisions.
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// The current table as an owned pointer (for the rare re-route after a change).
    pub fn load_full(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Starts a round of routing on the current worker: announces it, then takes the
    /// table to route with. Every [`Router::enter`] must happen inside a round, and the
    /// round ends when the guard is dropped. (Announcing before reading the table is
    /// what makes the grace period of [`Router::fill_slots`] sound.)
    pub fn begin_round(&self) -> (Round<'_>, arc_swap::Guard<Arc<RouteTable>>) {
        let slot = &self.active[crate::worker::current() % self.active.len()];
        slot.store(self.version.load(Ordering::SeqCst), Ordering::SeqCst);
        (Round { slot }, self.table.load())
    }

    /// Counts a request in on `slot` under the route it was routed by (`epoch`).
    pub fn enter(&self, table: &RouteTable, slot: u16) -> Ticket {
        let parity = (table.slots[slot as usize].epoch & 1) as u8;
        self.gates.enter(crate::worker::current(), slot, parity);
        let tick = SAMPLE_TICK.with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n
        });
        if tick.is_multiple_of(SLOT_SAMPLE) {
            self.slot_ops[slot as usize].fetch_add(SLOT_SAMPLE, Ordering::Relaxed);
        }
        Ticket { slot, parity }
    }

    /// Resolves when the table changes (sessions waiting on a locked slot).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The slots as Codis models.
    pub fn slots(&self) -> Vec<Slot> {
        self.load().slots.iter().map(|r| r.model.clone()).collect()
    }

    /// Sampled request counts of the slots that had any (see [`SLOT_SAMPLE`]).
    pub fn slot_ops(&self) -> Vec<(u16, u64)> {
        self.slot_ops
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u16, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n != 0)
            .collect()
    }

    /// The state of every backend pool's connections, sorted by address.
    pub fn pool_stats(&self) -> Vec<crate::backend::PoolStats> {
        let mut out: Vec<_> = self.pools.lock().iter().map(|((_, replica), p)| p.stats(*replica)).collect();
        out.sort_by(|a, b| (&a.addr, a.replica).cmp(&(&b.addr, b.replica)));
        out
    }

    /// The pool serving `addr` in any slot (as master, source or replica).
    pub fn pool_by_addr(&self, addr: &[u8]) -> Option<Arc<BackendPool>> {
        let pools = self.pools.lock();
        let addr = std::str::from_utf8(addr).ok()?;
        pools.get(&(addr.to_string(), false)).or_else(|| pools.get(&(addr.to_string(), true))).cloned()
    }

    /// Applies slot updates, then waits for requests routed by the old routes to finish.
    pub async fn fill_slots(&self, slots: &[Slot]) -> Result<(), RouterError> {
        for s in slots {
            if s.id < 0 || s.id as usize >= MAX_SLOT_NUM {
                return Err(RouterError::InvalidSlot(s.id));
            }
            for addr in std::iter::once(&s.backend_addr)
                .chain(std::iter::once(&s.migrate_from))
                .chain(s.replica_groups.iter().flatten())
            {
                if !addr.is_empty() && !valid_addr(addr) {
                    return Err(RouterError::InvalidAddr { slot: s.id, addr: addr.clone() });
                }
            }
        }
        let _serial = self.update.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(RouterError::Closed);
        }
        let old = self.table.load_full();
        let mut routes: Vec<SlotRoute> = old.slots.to_vec();
        // The last entry for a slot wins; unchanged slots keep their epoch and need no wait.
        let mut changed: Vec<(u16, u32)> = Vec::new();
        for s in slots {
            let id = s.id as usize;
            let mut model = s.clone();
            model.replica_groups.retain(|g| !g.is_empty());
            if routes[id].model == model {
                continue;
            }
            let prev_epoch = old.slots[id].epoch;
            if !changed.iter().any(|&(c, _)| c as usize == id) {
                changed.push((id as u16, prev_epoch));
            }
            routes[id] = self.rebuild(&model, prev_epoch.wrapping_add(1));
        }
        if changed.is_empty() {
            return Ok(());
        }
        let version = old.version + 1;
        self.table.store(Arc::new(RouteTable::new(version, routes.into_boxed_slice())));
        self.version.store(version, Ordering::SeqCst);
        self.changed.send_replace(version);
        drop(old);
        // Grace period: once every worker is idle or routing with the new table, no
        // request can be counted under an old epoch any more.
        for w in self.active.iter() {
            loop {
                let v = w.load(Ordering::SeqCst);
                if v == IDLE || v >= version {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for (slot, prev_epoch) in changed {
            let parity = (prev_epoch & 1) as u8;
            while self.gates.count(slot, parity) != 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        self.collect_pools();
        Ok(())
    }

    /// Builds a route for `model`, sharing pools with other slots.
    fn rebuild(&self, model: &Slot, epoch: u32) -> SlotRoute {
        let mut pools = self.pools.lock();
        let mut pool = |addr: &str, replica: bool| -> Option<Arc<BackendPool>> {
            if addr.is_empty() {
                return None;
            }
            Some(
                pools
                    .entry((addr.to_string(), replica))
                    .or_insert_with(|| Arc::new(BackendPool::new(addr, replica, self.settings.clone(), self.workers)))
                    .clone(),
            )
        };
        let backend = pool(&model.backend_addr, false);
        let migrate_from = pool(&model.migrate_from, false);
        let replicas = model
            .replica_groups
            .iter()
            .map(|g| g.iter().filter_map(|a| pool(a, true)).collect::<Box<[_]>>())
            .filter(|g| !g.is_empty())
            .collect();
        SlotRoute { epoch, model: model.clone(), backend, migrate_from, replicas }
    }

    /// Drops pools no slot uses any more (their connections close once idle).
    fn collect_pools(&self) {
        self.pools.lock().retain(|_, p| Arc::strong_count(p) > 1);
    }

    /// Stops accepting updates and releases every backend.
    pub async fn close(&self) {
        let _serial = self.update.lock().await;
        self.closed.store(true, Ordering::Release);
    }
}

fn valid_addr(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: i64, addr: &str) -> Slot {
        Slot { id, backend_addr: addr.into(), ..Default::default() }
    }

    #[tokio::test]
    async fn fill_publishes_and_shares_pools() {
        let r = Router::new(BackendSettings::default(), 1);
        r.fill_slots(&[slot(0, "127.0.0.1:1"), slot(1, "127.0.0.1:1"), slot(2, "127.0.0.1:2")]).await.unwrap();
        let t = r.load();
        let a = t.slots[0].backend.as_ref().unwrap();
        assert!(Arc::ptr_eq(a, t.slots[1].backend.as_ref().unwrap()));
        assert_eq!(t.slots[2].backend.as_ref().unwrap().addr(), "127.0.0.1:2");
        assert!(t.slots[3].backend.is_none());
        assert_eq!(r.slots()[2].backend_addr, "127.0.0.1:2");
        assert_eq!(t.slots[0].epoch, 1);
        drop(t);
        // refilling the same routing changes nothing
        r.fill_slots(&[slot(0, "127.0.0.1:1")]).await.unwrap();
        assert_eq!(r.load().slots[0].epoch, 1);
        // moving everything off a server releases its pool
        r.fill_slots(&[slot(2, "127.0.0.1:1")]).await.unwrap();
        assert!(r.pool_by_addr(b"127.0.0.1:2").is_none());
        assert!(r.pool_by_addr(b"127.0.0.1:1").is_some());
    }

    #[tokio::test]
    async fn groups_are_every_master_once_in_group_order() {
        let r = Router::new(BackendSettings::default(), 1);
        let with_gid = |id, addr: &str, gid| Slot { backend_addr_group_id: gid, ..slot(id, addr) };
        let migrating =
            Slot { migrate_from: "127.0.0.1:9".into(), migrate_from_group_id: 9, ..with_gid(3, "127.0.0.1:2", 2) };
        r.fill_slots(&[
            with_gid(0, "127.0.0.1:3", 3),
            with_gid(1, "127.0.0.1:2", 2),
            with_gid(2, "127.0.0.1:3", 3),
            migrating,
        ])
        .await
        .unwrap();
        let t = r.load();
        let addrs: Vec<&str> = t.groups.iter().map(|p| p.addr()).collect();
        // the source of a migration holds keys too
        assert_eq!(addrs, ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:9"]);
    }

    #[tokio::test]
    async fn rejects_bad_input() {
        let r = Router::new(BackendSettings::default(), 1);
        assert!(matches!(r.fill_slots(&[slot(1024, "127.0.0.1:1")]).await, Err(RouterError::InvalidSlot(1024))));
        assert!(matches!(r.fill_slots(&[slot(1, "nohost")]).await, Err(RouterError::InvalidAddr { .. })));
        assert!(matches!(r.fill_slots(&[slot(1, "h:0")]).await, Err(RouterError::InvalidAddr { .. })));
    }

    #[tokio::test]
    async fn fill_waits_for_requests_on_the_old_route() {
        let r = Arc::new(Router::new(BackendSettings::default(), 1));
        r.fill_slots(&[slot(5, "127.0.0.1:1")]).await.unwrap();
        let ticket = {
            let (_round, t) = r.begin_round();
            r.enter(&t, 5)
        };
        let r2 = r.clone();
        let fill = tokio::spawn(async move { r2.fill_slots(&[slot(5, "127.0.0.1:2")]).await });
        // the new table is published at once, but the fill does not return while the old request runs
        let mut rx = r.subscribe();
        rx.wait_for(|&v| v >= 2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!fill.is_finished());
        // requests routed now use the other parity and do not hold the fill
        let t2 = {
            let (_round, t) = r.begin_round();
            assert_eq!(t.slots[5].backend.as_ref().unwrap().addr(), "127.0.0.1:2");
            r.enter(&t, 5)
        };
        assert_ne!(t2.parity, ticket.parity);
        r.gates().leave(0, ticket.slot, ticket.parity);
        fill.await.unwrap().unwrap();
        r.gates().leave(0, t2.slot, t2.parity);
    }

    #[tokio::test]
    async fn fill_waits_for_rounds_on_the_old_table() {
        let r = Arc::new(Router::new(BackendSettings::default(), 1));
        r.fill_slots(&[slot(9, "127.0.0.1:1")]).await.unwrap();
        // a round in progress with the old table holds the update back until it ends
        let (round, old) = r.begin_round();
        let r2 = r.clone();
        let fill = tokio::spawn(async move { r2.fill_slots(&[slot(9, "127.0.0.1:2")]).await });
        let mut rx = r.subscribe();
        rx.wait_for(|&v| v >= 2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!fill.is_finished(), "the fill must wait for the round routing with the old table");
        let ticket = r.enter(&old, 9);
        drop(round);
        drop(old);
        // the round ended, but its request still runs on the old route
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!fill.is_finished());
        r.gates().leave(0, ticket.slot, ticket.parity);
        fill.await.unwrap().unwrap();
    }
}
