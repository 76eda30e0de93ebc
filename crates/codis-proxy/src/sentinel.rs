//! Following redis-sentinel failovers without the dashboard.
//!
//! The dashboard gives the proxy its sentinel list (`PUT /api/proxy/sentinels`). The
//! proxy subscribes to `+switch-master` on every sentinel; on an event, and whenever a
//! subscription is (re)established (events may have been missed meanwhile), it asks
//! every sentinel for the product's masters and reroutes each group whose master a
//! majority of the sentinels report at the newest config epoch. Sentinels that have
//! not caught up yet announce `+switch-master` themselves when they do, and the proxy
//! also re-asks a few times a second until the event's group is settled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use codis_client::sentinel::{self, Heard, same_server};
use codis_core::models::Slot;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::proxy::Shared;

/// How long the proxy keeps re-asking after an event before leaving it to the next one.
const SETTLE: Duration = Duration::from_secs(15);
/// Pause between those re-asks.
const RECHECK: Duration = Duration::from_millis(200);
/// The proxy only needs to hear about switches.
const CHANNELS: &[&str] = &["+switch-master"];

/// The sentinel list and what the proxy learned from it (shown in its stats).
pub struct SentinelState {
    list: watch::Sender<Vec<String>>,
    masters: Mutex<BTreeMap<i64, String>>,
    switched: AtomicBool,
}

impl Default for SentinelState {
    fn default() -> Self {
        SentinelState {
            list: watch::channel(Vec::new()).0,
            masters: Mutex::new(BTreeMap::new()),
            switched: false.into(),
        }
    }
}

impl SentinelState {
    /// Replaces the sentinel list and resubscribes.
    pub fn set(&self, servers: Vec<String>) {
        self.list.send_replace(servers);
    }

    /// Resubscribes to the same sentinels.
    pub fn rewatch(&self) {
        self.list.send_modify(|_| {});
    }

    pub fn servers(&self) -> Vec<String> {
        self.list.borrow().clone()
    }

    /// The masters the sentinels agreed on at the last check, by group id.
    pub fn masters(&self) -> BTreeMap<i64, String> {
        self.masters.lock().clone()
    }

    /// Whether the proxy has rerouted a group on the sentinels' word.
    pub fn switched(&self) -> bool {
        self.switched.load(Ordering::Relaxed)
    }
}

/// Watches the sentinels of the current list until the proxy closes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut list = shared.sentinel.list.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let servers = list.borrow_and_update().clone();
        let (tx, mut notes) = mpsc::channel(256);
        let product = shared.config.product_name.clone();
        let tasks: Vec<_> =
            servers.iter().map(|addr| tokio::spawn(sentinel::follow(addr.clone(), CHANNELS, tx.clone()))).collect();
        drop(tx);
        let mut pending: HashMap<i64, (String, Instant)> = HashMap::new();
        let mut check = false;
        let stop = loop {
            if check && !servers.is_empty() {
                let view = reroute(&shared, &servers).await;
                let now = Instant::now();
                pending.retain(|gid, (addr, until)| {
                    *until > now && !view.get(gid).is_some_and(|agreed| same_server(agreed, addr))
                });
                check = false;
            }
            let recheck = async {
                if pending.is_empty() { std::future::pending::<()>().await } else { tokio::time::sleep(RECHECK).await }
            };
            tokio::select! {
                r = list.changed() => break r.is_err(),
                _ = shutdown.wait_for(|&c| c) => break true,
                heard = notes.recv(), if !servers.is_empty() => match heard {
                    Some((_, Heard::Subscribed)) => check = true,
                    Some((from, Heard::Event(ev))) => {
                        if let Some((name, _, new)) = ev.switch_master()
                            && let Some(gid) = sentinel::group_of(name, &product)
                        {
                            tracing::info!(sentinel = %from, group = gid, master = %new, "+switch-master");
                            pending.insert(gid, (new, Instant::now() + SETTLE));
                            check = true;
                        }
                    }
                    None => {}
                },
                _ = recheck => check = true,
            }
        };
        tasks.iter().for_each(|t| t.abort());
        if stop {
            return;
        }
    }
}

/// Asks the sentinels and reroutes the groups they moved; returns the agreed masters.
async fn reroute(shared: &Shared, servers: &[String]) -> BTreeMap<i64, String> {
    let product = &shared.config.product_name;
    let answers = sentinel::query_all(servers, product, Duration::from_secs(2)).await;
    let view = sentinel::majority_view(&answers, servers.len());
    let masters: BTreeMap<i64, String> = view.iter().map(|(gid, a)| (*gid, a.addr.clone())).collect();
    *shared.sentinel.masters.lock() = masters.clone();
    for (gid, agreed) in &view {
        let changed = switch_slots(&shared.router.slots(), *gid, &agreed.addr);
        if changed.is_empty() {
            continue;
        }
        let from = changed[0].1.clone();
        let slots: Vec<Slot> = changed.into_iter().map(|(s, _)| s).collect();
        match shared.fill_slots(&slots).await {
            Ok(()) => {
                shared.sentinel.switched.store(true, Ordering::Relaxed);
                tracing::warn!(group = gid, from = %from, to = %agreed.addr, epoch = agreed.config_epoch, slots = slots.len(), "sentinels switched the group's master");
            }
            Err(e) => tracing::warn!(group = gid, error = %e, "cannot switch to the sentinels' master"),
        }
    }
    masters
}

/// The slots of group `gid` rerouted to `addr` (as backend or migration source), each
/// with the address it had.
fn switch_slots(slots: &[Slot], gid: i64, addr: &str) -> Vec<(Slot, String)> {
    let mut same: HashMap<String, bool> = HashMap::new();
    let mut differs = |a: &str| !a.is_empty() && !*same.entry(a.to_string()).or_insert_with(|| same_server(a, addr));
    let mut out = Vec::new();
    for s in slots {
        let mut s = s.clone();
        let mut old = None;
        if s.backend_addr_group_id == gid && differs(&s.backend_addr) {
            old = Some(std::mem::replace(&mut s.backend_addr, addr.to_string()));
        }
        if s.migrate_from_group_id == gid && differs(&s.migrate_from) {
            let prev = std::mem::replace(&mut s.migrate_from, addr.to_string());
            old.get_or_insert(prev);
        }
        if let Some(old) = old {
            out.push((s, old));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_the_groups_slots() {
        let slot = |id: i64, gid: i64, addr: &str| Slot {
            id,
            backend_addr: addr.into(),
            backend_addr_group_id: gid,
            ..Default::default()
        };
        let mut migrating = slot(3, 2, "127.0.0.1:7002");
        migrating.migrate_from = "127.0.0.1:7000".into();
        migrating.migrate_from_group_id = 1;
        let slots = vec![slot(0, 1, "127.0.0.1:7000"), slot(1, 1, "127.0.0.1:7001"), slot(2, 2, "x:1"), migrating];
        let changed = switch_slots(&slots, 1, "127.0.0.1:7001");
        let ids: Vec<i64> = changed.iter().map(|(s, _)| s.id).collect();
        assert_eq!(ids, vec![0, 3]);
        assert_eq!(changed[0].0.backend_addr, "127.0.0.1:7001");
        assert_eq!(changed[0].1, "127.0.0.1:7000");
        assert_eq!(
            (changed[1].0.backend_addr.as_str(), changed[1].0.migrate_from.as_str()),
            ("127.0.0.1:7002", "127.0.0.1:7001")
        );
        // a host name of the same server is not a switch
        assert!(switch_slots(&[slot(0, 1, "localhost:7001")], 1, "127.0.0.1:7001").is_empty());
    }
}
