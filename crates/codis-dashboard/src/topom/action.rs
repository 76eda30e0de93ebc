//! The migration loop: slots move through pending → preparing → prepared → migrating
//! → finished, every proxy acknowledging each routing change before the next.
//!
//! Unlike Codis (one slot per group at a time), a round takes every disjoint pair of
//! (source, target) groups, and several slots per pair: their state changes are pushed
//! to proxies together, then each pair's executor empties its slots one after another
//! with the module's batched commands, while the pairs run in parallel. A dashboard
//! that restarts picks up actions where they stood.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use codis_client::{Conn, Value};
use codis_core::models::{FORWARD_SYNC, SlotMapping, action};
use futures_util::future::join_all;
use serde::Serialize;

use super::{Cache, Result, ServerMode, Topom, TopomError};

/// Slots of one (source, target) pair prepared, moved and completed together in a
/// round (each routing change is pushed to proxies once for all of them). Few, so that
/// few requests at a time take the migrating-slot path.
const SLOTS_PER_PAIR: usize = 8;
/// The same for stock servers, where each round costs a SCAN of the whole source
/// keyspace: enough slots that a large move needs only a handful of passes.
const STOCK_SLOTS_PER_PAIR: usize = 128;

/// How long a finished slot's progress stays visible.
const PROGRESS_KEEP_SECS: u64 = 600;

/// Progress of one slot's migration, for the API and the UI.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlotProgress {
    pub slot: i64,
    pub from: i64,
    pub to: i64,
    pub state: String,
    /// Keys moved so far (all databases).
    pub moved: u64,
    /// Keys left in the database being emptied after the last step; null while not
    /// known (before the first step, and on stock servers until a pass finds none).
    pub remaining: Option<i64>,
    /// Unix time the migration of this slot started (0 while queued).
    pub started: u64,
    /// Unix time it finished; finished entries are dropped after [`PROGRESS_KEEP_SECS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    pub elapsed_ms: u64,
    pub keys_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) async fn run(topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    loop {
        if topom.is_closed() {
            return;
        }
        let pause = if !topom.is_active() {
            Duration::from_millis(100) // standing by: the holder of the lock migrates
        } else {
            match topom.action_round().await {
                Ok(true) => Duration::ZERO,
                Ok(false) => Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "slot migration round failed, retrying");
                    *topom.action.status.lock() = format!("[ERROR] {e}");
                    Duration::from_secs(1)
                }
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|&c| c) => return,
            }
        }
    }
}

/// Picks the slots of this round: in-progress actions first, then pending ones (unless
/// migrations are disabled), in action order; each group serves in at most one pair,
/// and a pair takes at most `cap(from, to)` slots.
fn pick(
    cache: &Cache,
    disabled: bool,
    limit: usize,
    cap: impl Fn(i64, i64) -> usize,
) -> BTreeMap<(i64, i64), Vec<i64>> {
    let mut actions: Vec<&SlotMapping> = cache.slots.iter().filter(|m| !m.action.state.is_empty()).collect();
    actions.sort_by_key(|m| (m.action.state == action::PENDING, m.action.index));
    let mut pairs: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    let mut total = 0;
    for m in actions {
        if total >= limit || (disabled && m.action.state == action::PENDING) {
            continue;
        }
        let (from, to) = (m.group_id, m.action.target_id);
        if cache.is_group_promoting(from) || cache.is_group_promoting(to) {
            continue;
        }
        let busy = |g: i64| pairs.keys().any(|&(a, b)| (a, b) != (from, to) && (a == g || b == g));
        if (from != 0 && busy(from)) || busy(to) {
            continue;
        }
        let slots = pairs.entry((from, to)).or_default();
        if slots.len() < cap(from, to) {
            slots.push(m.id);
            total += 1;
        }
    }
    pairs
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Topom {
    /// One round; false when there was nothing to do.
    async fn action_round(self: &Arc<Self>) -> Result<bool> {
        let disabled = self.action.disabled.load(Ordering::Relaxed);
        let limit = self.config.migration_parallel_slots.max(1) as usize;
        let pairs = {
            let cache = self.lock().await?;
            pick(&cache, disabled, limit, |_, _| SLOTS_PER_PAIR)
        };
        if pairs.is_empty() {
            return Ok(false);
        }
        // Knowing the servers' kind decides how many slots a pair takes.
        self.probe_masters(&pairs).await;
        let pairs = {
            let cache = self.lock().await?;
            pick(&cache, disabled, limit, |from, to| match self.pair_mode(&cache, from, to) {
                ServerMode::Stock => STOCK_SLOTS_PER_PAIR,
                ServerMode::Slots => SLOTS_PER_PAIR,
            })
        };
        let sids: Vec<i64> = pairs.values().flatten().copied().collect();
        self.prepare(&sids).await?;
        if disabled {
            // Paused: slots stay migrating (requests keep working) until resumed.
            return Ok(false);
        }
        let runs = pairs.into_iter().map(|((from, to), sids)| {
            let topom = self.clone();
            async move {
                let mode = {
                    let cache = topom.lock().await?;
                    topom.pair_mode(&cache, from, to)
                };
                if mode == ServerMode::Stock {
                    // One SCAN pass serves every slot of the pair.
                    if topom.execute_stock(&sids, from, to).await? {
                        topom.complete(&sids).await?;
                    }
                    return Ok(());
                }
                let mut done = Vec::with_capacity(sids.len());
                for sid in sids {
                    if !topom.execute_slot(sid, from, to).await? {
                        break; // paused
                    }
                    done.push(sid);
                }
                topom.complete(&done).await?;
                Ok::<(), TopomError>(())
            }
        });
        for r in join_all(runs).await {
            r?;
        }
        Ok(true)
    }

    /// Moves `sids` to `migrating`, one routing push per step for all of them.
    async fn prepare(&self, sids: &[i64]) -> Result<()> {
        let mut cache = self.lock().await?;
        let preparing = sids
            .iter()
            .filter(|&&sid| cache.slots[sid as usize].action.state == action::PENDING)
            .map(|&sid| {
                let mut m = cache.slots[sid as usize].clone();
                m.action.state = action::PREPARING.into();
                m
            })
            .collect();
        self.put_slots(&mut cache, preparing).await?;
        for (from, to) in [(action::PREPARING, action::PREPARED), (action::PREPARED, action::MIGRATING)] {
            let step: Vec<i64> =
                sids.iter().copied().filter(|&s| cache.slots[s as usize].action.state == from).collect();
            if step.is_empty() {
                continue;
            }
            let mut next = cache.clone();
            for &s in &step {
                next.slots[s as usize].action.state = to.into();
            }
            tracing::debug!(slots = ?step, "resync slots to {to}");
            if let Err(e) = self.resync(&next, &step).await {
                if from == action::PREPARING {
                    // Proxies that did lock the slots must not stay locked.
                    let _ = self.resync(&cache, &step).await;
                }
                return Err(e);
            }
            self.put_slots(&mut cache, step.iter().map(|&s| next.slots[s as usize].clone()).collect()).await?;
        }
        // The round's slots wait their turn in the UI as queued (started 0).
        let now = now_unix();
        let mut progress = self.action.progress.lock();
        progress.retain(|_, p| p.finished_at.is_none_or(|t| now.saturating_sub(t) < PROGRESS_KEEP_SECS));
        for &sid in sids {
            let m = &cache.slots[sid as usize];
            if m.action.state == action::MIGRATING && progress.get(&sid).is_none_or(|p| p.finished_at.is_some()) {
                let queued = SlotProgress {
                    slot: sid,
                    from: m.group_id,
                    to: m.action.target_id,
                    state: action::MIGRATING.into(),
                    ..Default::default()
                };
                progress.insert(sid, queued);
            }
        }
        Ok(())
    }

    /// Empties slot `sid` on its source (all databases) into the target; false if
    /// migrations were paused meanwhile.
    async fn execute_slot(&self, sid: i64, from_gid: i64, to_gid: i64) -> Result<bool> {
        let (state, from, dest) = {
            let cache = self.lock().await?;
            let m = cache.slot(sid)?;
            (m.action.state.clone(), cache.group_master(m.group_id), cache.group_master(m.action.target_id))
        };
        if state != action::MIGRATING || from.is_empty() {
            return Ok(true); // finished already, or the slot was offline: nothing to move
        }
        if dest.is_empty() {
            return Err(TopomError::msg(format!("slot-[{sid}]: target group-[{to_gid}] has no master")));
        }
        let started = Instant::now();
        self.mark_migrating(&[sid], from_gid, to_gid);
        self.action.executors.fetch_add(1, Ordering::Relaxed);
        let result = self.migrate_keys(sid, &from, &dest, started).await;
        self.action.executors.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = &result {
            if let Some(p) = self.action.progress.lock().get_mut(&sid) {
                p.error = Some(e.to_string());
            }
            *self.action.status.lock() = format!("[ERROR] Slot[{sid:04}]: {e}");
        }
        result
    }

    /// Starts the progress entries of slots whose keys begin to move.
    fn mark_migrating(&self, sids: &[i64], from: i64, to: i64) {
        let mut progress = self.action.progress.lock();
        for &sid in sids {
            let p = SlotProgress {
                slot: sid,
                from,
                to,
                state: action::MIGRATING.into(),
                started: now_unix(),
                ..Default::default()
            };
            progress.insert(sid, p);
        }
    }

    /// A connection to the migration source, and the target split into host and port.
    async fn open_source<'d>(&self, from: &str, dest: &'d str) -> Result<(Conn, &'d str, &'d str)> {
        let timeout = self.config.migration_timeout.duration();
        let c = Conn::open(from, &self.config.product_auth, timeout).await?;
        let (host, port) =
            dest.rsplit_once(':').ok_or_else(|| TopomError::msg(format!("bad target address {dest}")))?;
        Ok((c, host, port))
    }

    async fn migrate_keys(&self, sid: i64, from: &str, dest: &str, started: Instant) -> Result<bool> {
        let timeout = self.config.migration_timeout.duration();
        let (mut c, host, port) = self.open_source(from, dest).await?;
        let sync = self.config.forward_method() == FORWARD_SYNC;
        let step_timeout_ms = timeout.min(Duration::from_secs(5)).as_millis().to_string();
        let (maxbulks, maxbytes, numkeys) = (
            self.config.migration_async_maxbulks.to_string(),
            self.config.migration_async_maxbytes.bytes().to_string(),
            self.config.migration_async_numkeys.to_string(),
        );
        let slot = sid.to_string();
        let mut db = 0i64;
        loop {
            c.ok(&["SELECT", &db.to_string()]).await?;
            loop {
                if self.is_closed() || !self.is_active() || self.action.disabled.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let reply = if sync {
                    c.ok(&["SLOTSMGRTTAGSLOT", host, port, &step_timeout_ms, &slot]).await?
                } else {
                    c.ok(&[
                        "SLOTSMGRTTAGSLOT-ASYNC",
                        host,
                        port,
                        &step_timeout_ms,
                        &maxbulks,
                        &maxbytes,
                        &slot,
                        &numkeys,
                    ])
                    .await?
                };
                let (moved, remaining) = match &reply {
                    Value::Array(v) if v.len() == 2 => (v[0].as_int().unwrap_or(0), v[1].as_int().unwrap_or(0)),
                    other => {
                        return Err(TopomError::msg(format!(
                            "slot-[{sid}]: unexpected migration reply {other:?} from {from}"
                        )));
                    }
                };
                self.record_step(sid, db, moved, Some(remaining), started);
                // After every step, the last one too (as Codis): a slot small enough to
                // move in one step is still throttled by the interval.
                let pause = self.action.interval_us.load(Ordering::Relaxed);
                if pause > 0 {
                    tokio::time::sleep(Duration::from_micros(pause as u64)).await;
                }
                if remaining == 0 {
                    break;
                }
            }
            // Next database that holds keys, as Codis finds it from INFO keyspace.
            let next = c
                .info(Some("keyspace"))
                .await?
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("db").and_then(|n| n.parse::<i64>().ok()))
                .filter(|&n| n > db)
                .min();
            match next {
                Some(n) => db = n,
                None => return Ok(true),
            }
        }
    }

    /// Learns whether the masters of the round's pairs have the SLOTS* commands, before
    /// proxies are told how to forward.
    async fn probe_masters(&self, pairs: &BTreeMap<(i64, i64), Vec<i64>>) {
        let masters: Vec<String> = match self.lock().await {
            Ok(cache) => pairs.keys().flat_map(|&(a, b)| [cache.group_master(a), cache.group_master(b)]).collect(),
            Err(_) => return,
        };
        for addr in masters.into_iter().filter(|a| !a.is_empty()) {
            if !self.modes.lock().contains_key(&addr)
                && let Ok(mode) = self.probe_server(&addr).await
            {
                self.modes.lock().insert(addr, mode);
            }
        }
    }

    /// Empties `sids` on a stock source: SCAN passes over every database, moving the
    /// keys of those slots with `MIGRATE ... KEYS` (no REPLACE: a key already on the
    /// target would mean a lost write, so it is an error). A slot is declared empty
    /// only after a complete pass finds none of its keys. False if paused meanwhile.
    async fn execute_stock(&self, sids: &[i64], from_gid: i64, to_gid: i64) -> Result<bool> {
        let (from, dest, active) = {
            let cache = self.lock().await?;
            let active: Vec<i64> =
                sids.iter().copied().filter(|&s| cache.slots[s as usize].action.state == action::MIGRATING).collect();
            (cache.group_master(from_gid), cache.group_master(to_gid), active)
        };
        if active.is_empty() || from.is_empty() {
            return Ok(true);
        }
        if dest.is_empty() {
            return Err(TopomError::msg(format!("target group-[{to_gid}] has no master")));
        }
        let started = Instant::now();
        self.mark_migrating(&active, from_gid, to_gid);
        self.action.executors.fetch_add(1, Ordering::Relaxed);
        let r = self.migrate_stock(&active, &from, &dest, started).await;
        self.action.executors.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = &r {
            *self.action.status.lock() = format!("[ERROR] {e}");
        }
        r
    }

    async fn migrate_stock(&self, sids: &[i64], from: &str, dest: &str, started: Instant) -> Result<bool> {
        let timeout = self.config.migration_timeout.duration();
        let (mut c, host, port) = self.open_source(from, dest).await?;
        let wanted: std::collections::BTreeSet<u16> = sids.iter().map(|&s| s as u16).collect();
        let timeout_ms = timeout.as_millis().to_string();
        loop {
            let mut found: BTreeMap<i64, i64> = BTreeMap::new();
            let dbs: Vec<String> = c
                .info(Some("keyspace"))
                .await?
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("db").map(str::to_string))
                .collect();
            for db in dbs {
                c.ok(&["SELECT", &db]).await?;
                let mut cursor = "0".to_string();
                loop {
                    if self.is_closed() || !self.is_active() || self.action.disabled.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                    let reply = c.ok(&["SCAN", &cursor, "COUNT", "1000"]).await?;
                    let Value::Array(v) = reply else {
                        return Err(TopomError::msg(format!("unexpected SCAN reply from {from}")));
                    };
                    cursor = v.first().and_then(|c| c.as_str()).unwrap_or("0").to_string();
                    let keys: Vec<Vec<u8>> = match v.get(1) {
                        Some(Value::Array(keys)) => keys
                            .iter()
                            .filter_map(|k| match k {
                                Value::Bulk(b) => Some(b.clone()),
                                _ => None,
                            })
                            .filter(|k| wanted.contains(&codis_core::slot_of(k)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    for batch in keys.chunks(100) {
                        let mut args: Vec<&[u8]> = vec![
                            b"MIGRATE",
                            host.as_bytes(),
                            port.as_bytes(),
                            b"",
                            db.as_bytes(),
                            timeout_ms.as_bytes(),
                        ];
                        if !self.config.product_auth.is_empty() {
                            args.extend([b"AUTH".as_slice(), self.config.product_auth.as_bytes()]);
                        }
                        args.push(b"KEYS");
                        args.extend(batch.iter().map(|k| k.as_slice()));
                        match c.cmd(&args).await? {
                            Value::Error(e) => {
                                return Err(TopomError::msg(format!("MIGRATE from {from} to {dest} failed: {e}")));
                            }
                            _ => {
                                for k in batch {
                                    *found.entry(codis_core::slot_of(k) as i64).or_default() += 1;
                                }
                            }
                        }
                    }
                    let pause = self.action.interval_us.load(Ordering::Relaxed);
                    if pause > 0 {
                        tokio::time::sleep(Duration::from_micros(pause as u64)).await;
                    }
                    if cursor == "0" {
                        break;
                    }
                }
            }
            for &sid in sids {
                // Keys written during the pass may be left: only a pass that finds none
                // says the slot is empty.
                let moved = found.get(&sid).copied().unwrap_or(0);
                self.record_step(sid, 0, moved, (moved == 0).then_some(0), started);
            }
            if found.is_empty() {
                return Ok(true);
            }
        }
    }

    fn record_step(&self, sid: i64, db: i64, moved: i64, remaining: Option<i64>, started: Instant) {
        let mut progress = self.action.progress.lock();
        if let Some(p) = progress.get_mut(&sid) {
            p.moved += moved.max(0) as u64;
            p.remaining = remaining;
            p.elapsed_ms = started.elapsed().as_millis() as u64;
            p.keys_per_sec = p.moved as f64 / started.elapsed().as_secs_f64().max(1e-3);
        }
        let left = remaining.map_or("?".to_string(), |n| n.to_string());
        *self.action.status.lock() = format!("[OK] Slot[{sid:04}]@DB[{db}]={left}");
    }

    /// `migrating` → `finished` → the slots belong to the target (one routing push per
    /// step for all of them).
    async fn complete(&self, sids: &[i64]) -> Result<()> {
        if sids.is_empty() {
            return Ok(());
        }
        let mut cache = self.lock().await?;
        let mut finished = Vec::new();
        for &sid in sids {
            let mut m = cache.slot(sid)?.clone();
            if m.action.state == action::MIGRATING {
                m.action.state = action::FINISHED.into();
                finished.push(m);
            } else if m.action.state != action::FINISHED {
                return Err(TopomError::msg(format!("slot-[{sid}] action state is invalid: {:?}", m.action.state)));
            }
        }
        self.put_slots(&mut cache, finished).await?;
        self.resync(&cache, sids).await?;
        let done = sids
            .iter()
            .map(|&sid| SlotMapping {
                id: sid,
                group_id: cache.slots[sid as usize].action.target_id,
                ..Default::default()
            })
            .collect();
        self.put_slots(&mut cache, done).await?;
        self.resync(&cache, sids).await?;
        let mut progress = self.action.progress.lock();
        self.action.slots_migrated.fetch_add(sids.len() as u64, Ordering::Relaxed);
        for &sid in sids {
            if let Some(p) = progress.get_mut(&sid) {
                self.action.keys_moved.fetch_add(p.moved, Ordering::Relaxed);
                p.state = action::FINISHED.into();
                p.error = None;
                p.remaining = Some(0);
                p.finished_at = Some(now_unix());
            }
        }
        tracing::info!(slots = ?sids, "slots migrated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_core::models::{Group, GroupServer, SlotAction};

    fn cache() -> Cache {
        let mut c = Cache {
            slots: (0..1024).map(|id| SlotMapping { id, ..Default::default() }).collect(),
            ..Default::default()
        };
        for g in 1..=4 {
            let servers = vec![GroupServer { addr: format!("h:{g}"), ..Default::default() }];
            c.groups.insert(g, Group { id: g, servers, ..Default::default() });
        }
        c
    }

    fn act(c: &mut Cache, sid: usize, from: i64, to: i64, index: i64, state: &str) {
        c.slots[sid].group_id = from;
        c.slots[sid].action = SlotAction { index, state: state.into(), target_id: to };
    }

    #[test]
    fn pairs_are_disjoint_and_in_progress_first() {
        let mut c = cache();
        act(&mut c, 10, 1, 2, 5, action::PENDING);
        act(&mut c, 11, 1, 2, 6, action::PENDING);
        act(&mut c, 12, 3, 4, 7, action::PENDING);
        act(&mut c, 13, 2, 3, 1, action::PENDING); // shares groups with both pairs above
        act(&mut c, 14, 1, 2, 9, action::MIGRATING);
        let p = pick(&c, false, 100, |_, _| 8);
        // the migrating action comes first, so pair (1,2) wins over the earlier-indexed (2,3)
        assert_eq!(p.get(&(1, 2)), Some(&vec![14, 10, 11]));
        assert_eq!(p.get(&(3, 4)), Some(&vec![12]));
        assert!(!p.contains_key(&(2, 3)));
        // disabled: only actions already in progress
        let p = pick(&c, true, 100, |_, _| 8);
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(&(1, 2)), Some(&vec![14]));
        // the limit caps the round, and the cap each pair
        assert_eq!(pick(&c, false, 2, |_, _| 8).values().map(Vec::len).sum::<usize>(), 2);
        let p = pick(&c, false, 100, |from, _| if from == 1 { 2 } else { 8 });
        assert_eq!(p.get(&(1, 2)), Some(&vec![14, 10]));
        assert_eq!(p.get(&(3, 4)), Some(&vec![12]));
    }

    #[test]
    fn promoting_groups_wait() {
        let mut c = cache();
        act(&mut c, 1, 1, 2, 1, action::PENDING);
        c.groups.get_mut(&2).unwrap().promoting.state = action::PREPARING.into();
        assert!(pick(&c, false, 100, |_, _| 8).is_empty());
    }
}
