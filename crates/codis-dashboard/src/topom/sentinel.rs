//! redis-sentinel: the dashboard makes every sentinel watch every group's master under
//! the name `<product>-<gid>`, and follows the failovers they carry out.
//!
//! Following a failover: when a majority of the sentinels report a new master at the
//! newest config epoch (see [`codis_client::sentinel::majority_view`]), the group is
//! reordered with the new master first, written to the coordinator, pushed to the
//! proxies (which switch on their own as well, so failover does not need the
//! dashboard), and every other server gets a sync action pointing it at the new master;
//! the old master keeps its action until it comes back. The group stays `out_of_sync`
//! until INFO shows every server following the new master, then it is resynced and
//! cleared without an operator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codis_client::sentinel::{self, Agreed, Heard, MasterEntry};
use codis_client::{Conn, Value};
use codis_core::models::action;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Cache, Result, Topom, TopomError};

/// Sentinel channels the dashboard listens to.
const CHANNELS: &[&str] = &["+switch-master", "+sdown", "+odown"];

/// A failover of one group, as the dashboard saw it (kept in memory).
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// `sentinel` (redis-sentinel failed the master over) or `promote` (manual).
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_epoch: Option<i64>,
    /// When trouble with the old master was first seen (unix ms): a failed poll or a
    /// sentinel's `+sdown`; 0 if nothing was seen before the switch.
    pub detected_at: u64,
    /// When the dashboard switched the group to the new master (unix ms).
    pub switched_at: u64,
    /// From detection to the switch, in milliseconds.
    pub duration_ms: u64,
    /// When every server of the group followed the new master again (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_at: Option<u64>,
}

/// What the dashboard knows about high availability beyond the coordinator.
#[derive(Default)]
pub(super) struct HaState {
    /// Each sentinel's last answer: its masters of this product, or why it did not answer.
    pub answers: BTreeMap<String, std::result::Result<BTreeMap<i64, MasterEntry>, String>>,
    /// What a majority of the sentinels agree on, per group.
    pub view: BTreeMap<i64, Agreed>,
    /// When trouble with a group's master was first seen (unix ms).
    pub trouble_since: HashMap<i64, u64>,
    pub failovers: BTreeMap<i64, Failover>,
    /// Failovers since the start, by group and kind (`sentinel`, `promote`).
    pub failover_counts: BTreeMap<(i64, &'static str), u64>,
    /// Replicas seen not following their master, since when (unix ms).
    pub astray_since: HashMap<String, u64>,
    /// Masters elected by the sentinels that are not in their group (warned about once).
    pub strangers: std::collections::HashSet<(i64, String)>,
}

/// How long a replica must be seen not following its master before it is repointed: a
/// replica a sentinel is promoting looks the same for a moment, until `+switch-master`.
const ASTRAY_GRACE_MS: u64 = 3000;

impl HaState {
    /// Whether the sentinels are failing the group over, or see it differently from `master`.
    fn unsettled(&self, gid: i64, master: &str) -> bool {
        let trouble = self.answers.values().flatten().filter_map(|m| m.get(&gid)).any(|e| e.in_trouble());
        let other = self.view.get(&gid).is_some_and(|a| !same_server(&a.addr, master));
        trouble || other
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) use codis_client::sentinel::same_server;

fn valid_addr(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

impl Topom {
    fn sentinel_timeout(&self) -> Duration {
        let t = self.config.sentinel_client_timeout.duration();
        if t.is_zero() { Duration::from_secs(10) } else { t }
    }

    async fn open_sentinel(&self, addr: &str) -> Result<Conn> {
        Conn::open(addr, "", self.sentinel_timeout())
            .await
            .map_err(|e| TopomError::msg(format!("sentinel-[{addr}] cannot be reached: {e}")))
    }

    /// Registers a sentinel after checking it answers as one. It monitors nothing of
    /// this product until the sentinels are resynced.
    pub async fn add_sentinel(&self, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        if !valid_addr(addr) {
            return Err(TopomError::msg(format!("invalid sentinel address {addr:?}: use host:port")));
        }
        if cache.sentinel.servers.iter().any(|s| s == addr) {
            return Err(TopomError::msg(format!("sentinel-[{addr}] already exists")));
        }
        let mut c = self.open_sentinel(addr).await?;
        if let Value::Error(e) = c.cmd(&["SENTINEL", "FLUSHCONFIG"]).await? {
            return Err(TopomError::msg(format!(
                "server at {addr} is not a redis-sentinel ({e}): give a sentinel's port"
            )));
        }
        let mut s = cache.sentinel.clone();
        s.servers.push(addr.to_string());
        s.out_of_sync = true;
        self.store().update_sentinel(&s).await?;
        cache.sentinel = s;
        tracing::warn!(addr, "sentinel added; resync the sentinels to make it monitor the groups");
        Ok(())
    }

    /// Forgets a sentinel after making it stop monitoring this product's groups; with
    /// `force`, even if it cannot be reached.
    pub async fn del_sentinel(&self, addr: &str, force: bool) -> Result<()> {
        let mut cache = self.lock().await?;
        if !cache.sentinel.servers.iter().any(|s| s == addr) {
            return Err(TopomError::msg(format!("sentinel-[{addr}] doesn't exist")));
        }
        if let Err(e) = self.unmonitor_all(addr).await {
            if !force {
                return Err(TopomError::msg(format!(
                    "{e}; remove it with force to forget it anyway (it may keep monitoring the groups)"
                )));
            }
            tracing::warn!(addr, error = %e, "sentinel cleanup failed, removing anyway");
        }
        let mut s = cache.sentinel.clone();
        s.servers.retain(|x| x != addr);
        s.out_of_sync = true;
        self.store().update_sentinel(&s).await?;
        cache.sentinel = s;
        self.ha.lock().answers.remove(addr);
        self.push_sentinels(&cache).await
    }

    async fn unmonitor_all(&self, addr: &str) -> Result<()> {
        let mut c = self.open_sentinel(addr).await?;
        let masters = sentinel::product_masters(&mut c, &self.config.product_name).await?;
        for m in masters.values() {
            c.ok(&["SENTINEL", "REMOVE", &m.name]).await?;
        }
        Ok(())
    }

    /// Makes every sentinel monitor exactly this product's groups (by their current
    /// masters, with the configured quorum and timings), then gives the proxies the
    /// sentinel list. Failovers the sentinels already made are adopted first, so a
    /// resync never points a sentinel back at a dead master.
    pub async fn resync_sentinels(&self) -> Result<()> {
        self.follow_sentinels().await;
        let mut cache = self.lock().await?;
        let mut failed = Vec::new();
        for addr in cache.sentinel.servers.clone() {
            if let Err(e) = self.reconcile_sentinel(&cache, &addr).await {
                failed.push(e.to_string());
            }
        }
        if !failed.is_empty() {
            return Err(TopomError::msg(format!(
                "resync sentinels failed: {} (remove unreachable sentinels with force)",
                failed.join("; ")
            )));
        }
        self.push_sentinels(&cache).await?;
        let mut s = cache.sentinel.clone();
        s.out_of_sync = false;
        self.store().update_sentinel(&s).await?;
        cache.sentinel = s;
        Ok(())
    }

    /// Brings one sentinel in line with the groups: removes monitors of gone groups or
    /// other masters, adds missing ones, and sets every monitor's options.
    async fn reconcile_sentinel(&self, cache: &Cache, addr: &str) -> Result<()> {
        let product = &self.config.product_name;
        let mut c = self.open_sentinel(addr).await?;
        let current = sentinel::product_masters(&mut c, product).await?;
        let fail =
            |what: String, e: codis_client::ClientError| TopomError::msg(format!("sentinel-[{addr}] {what}: {e}"));
        for (gid, m) in &current {
            let keep = cache
                .groups
                .get(gid)
                .and_then(|g| g.servers.first())
                .is_some_and(|master| same_server(&master.addr, &m.addr));
            if !keep {
                c.ok(&["SENTINEL", "REMOVE", &m.name]).await.map_err(|e| fail(format!("remove {}", m.name), e))?;
            }
        }
        for g in cache.groups.values() {
            let Some(master) = g.servers.first() else { continue };
            let name = sentinel::master_name(product, g.id);
            let kept = current.get(&g.id).is_some_and(|m| same_server(&master.addr, &m.addr));
            if !kept {
                let (ip, port) = sentinel::resolve_ip(&master.addr).ok_or_else(|| {
                    TopomError::msg(format!(
                        "group-[{}] master {} does not resolve to an IP address",
                        g.id, master.addr
                    ))
                })?;
                let quorum = self.config.sentinel_quorum.to_string();
                c.ok(&["SENTINEL", "MONITOR", &name, &ip, &port.to_string(), &quorum])
                    .await
                    .map_err(|e| fail(format!("monitor {name}"), e))?;
            }
            let ms = |d: Duration| d.as_millis().max(1).to_string();
            let (down, failover) =
                (ms(self.config.sentinel_down_after.duration()), ms(self.config.sentinel_failover_timeout.duration()));
            let parallel = self.config.sentinel_parallel_syncs.to_string();
            c.ok(&[
                "SENTINEL",
                "SET",
                &name,
                "down-after-milliseconds",
                &down,
                "failover-timeout",
                &failover,
                "parallel-syncs",
                &parallel,
                "auth-pass",
                &self.config.product_auth,
            ])
            .await
            .map_err(|e| fail(format!("set options of {name}"), e))?;
            for (option, path) in [
                ("notification-script", &self.config.sentinel_notification_script),
                ("client-reconfig-script", &self.config.sentinel_client_reconfig_script),
            ] {
                if path.is_empty() {
                    continue;
                }
                c.ok(&["SENTINEL", "SET", &name, option, path]).await.map_err(|e| {
                    TopomError::msg(format!(
                        "sentinel-[{addr}] refused {option} {path}: {e} (the script must exist and be executable on \
                         the sentinel's host, and the sentinel needs `sentinel deny-scripts-reconfig no`)"
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// Gives every proxy the sentinel list (they subscribe to each sentinel themselves).
    async fn push_sentinels(&self, cache: &Cache) -> Result<()> {
        self.on_every_proxy(cache, "set sentinels", |c, _| {
            let s = cache.sentinel.clone();
            async move { c.set_sentinels(&s).await }
        })
        .await
    }

    /// `INFO` of a registered sentinel (`sentinels/info/:addr`).
    pub async fn sentinel_info(&self, addr: &str) -> Result<BTreeMap<String, String>> {
        self.known_sentinel(addr).await?;
        let mut c = self.open_sentinel(addr).await?;
        Ok(c.info(None).await?.into_iter().collect())
    }

    /// What a registered sentinel monitors for this product (`sentinels/info/:addr/monitored`).
    pub async fn sentinel_monitored(&self, addr: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        self.known_sentinel(addr).await?;
        let mut c = self.open_sentinel(addr).await?;
        let v = c.ok(&["SENTINEL", "MASTERS"]).await?;
        Ok(sentinel::pairs_list(&v)
            .into_iter()
            .filter_map(|m| {
                let name = m.get("name")?.clone();
                sentinel::group_of(&name, &self.config.product_name).map(|_| (name, m))
            })
            .collect())
    }

    async fn known_sentinel(&self, addr: &str) -> Result<()> {
        if self.cache().await.sentinel.servers.iter().any(|s| s == addr) {
            Ok(())
        } else {
            Err(TopomError::msg(format!("sentinel-[{addr}] doesn't exist")))
        }
    }

    /// Asks every sentinel for this product's masters and switches each group whose
    /// master a majority of them moved (see the module doc).
    pub(super) async fn follow_sentinels(&self) {
        let servers = self.cache().await.sentinel.servers;
        if servers.is_empty() {
            let mut ha = self.ha.lock();
            ha.answers.clear();
            ha.view.clear();
            return;
        }
        let timeout = self.sentinel_timeout().min(Duration::from_secs(3));
        let answers = sentinel::query_all(&servers, &self.config.product_name, timeout).await;
        let view = sentinel::majority_view(&answers, servers.len());
        {
            let mut ha = self.ha.lock();
            ha.answers = servers
                .iter()
                .zip(answers)
                .map(|(a, r)| (a.clone(), r.ok_or_else(|| "no answer".to_string())))
                .collect();
            ha.view = view.clone();
        }
        let Ok(mut cache) = self.lock().await else { return };
        let mut switched = false;
        for (gid, agreed) in view {
            let Some(g) = cache.groups.get(&gid) else { continue };
            let Some(master) = g.servers.first() else { continue };
            if !g.promoting.state.is_empty() || same_server(&master.addr, &agreed.addr) {
                continue;
            }
            let Some(idx) = g.servers.iter().position(|s| same_server(&s.addr, &agreed.addr)) else {
                if self.ha.lock().strangers.insert((gid, agreed.addr.clone())) {
                    tracing::warn!(group = gid, master = %agreed.addr, "sentinels elected a server that is not in the group; add it to the group or resync the sentinels");
                }
                continue;
            };
            if let Err(e) = self.switch_master(&mut cache, gid, idx, "sentinel", Some(agreed.config_epoch)).await {
                tracing::warn!(group = gid, error = %e, "could not follow the sentinels' failover");
            }
            switched = true;
        }
        drop(cache);
        if switched {
            self.sync_round().await;
        }
    }

    /// Makes `servers[idx]` the master of group `gid` in the coordinator and on the
    /// proxies, and queues sync actions pointing every other server at it.
    pub(super) async fn switch_master(
        &self,
        cache: &mut Cache,
        gid: i64,
        idx: usize,
        kind: &'static str,
        config_epoch: Option<i64>,
    ) -> Result<()> {
        let mut g = cache.group(gid)?.clone();
        let old = g.servers[0].addr.clone();
        super::replication::reorder(&mut g, idx, super::replication::max_sync_index(cache));
        g.out_of_sync = true;
        let new = g.servers[0].addr.clone();
        self.put_group(cache, g).await?;
        self.record_failover(gid, kind, old.clone(), new.clone(), config_epoch);
        tracing::warn!(group = gid, from = %old, to = %new, kind, "group master switched");
        let slots: Vec<i64> = cache.slots_of_group(gid).iter().map(|m| m.id).collect();
        if let Err(e) = self.resync(cache, &slots).await {
            // Proxies follow the sentinels themselves; the group stays out of sync.
            tracing::warn!(group = gid, error = %e, "proxies not told about the new master");
        }
        Ok(())
    }

    pub(super) fn record_failover(&self, gid: i64, kind: &'static str, from: String, to: String, epoch: Option<i64>) {
        let now = now_ms();
        let mut ha = self.ha.lock();
        let detected_at = ha.trouble_since.remove(&gid).unwrap_or(0);
        let duration_ms = if detected_at > 0 { now.saturating_sub(detected_at) } else { 0 };
        let f = Failover {
            kind,
            from,
            to,
            config_epoch: epoch,
            detected_at,
            switched_at: now,
            duration_ms,
            consistent_at: None,
        };
        *ha.failover_counts.entry((gid, kind)).or_default() += 1;
        ha.failovers.insert(gid, f);
    }

    /// Makes every sentinel forget group `gid` (before a manual promotion); the
    /// sentinels are marked out of sync. Unreachable sentinels are only logged: they
    /// alone cannot form the majority proxies need to switch.
    pub(super) async fn unmonitor_group(&self, cache: &mut Cache, gid: i64) -> Result<()> {
        if cache.sentinel.servers.is_empty() {
            return Ok(());
        }
        let name = sentinel::master_name(&self.config.product_name, gid);
        for addr in cache.sentinel.servers.clone() {
            let r = async {
                let mut c = self.open_sentinel(&addr).await?;
                match c.cmd(&["SENTINEL", "REMOVE", &name]).await? {
                    Value::Error(e) if !e.contains("No such master") => Err(TopomError::msg(e)),
                    _ => Ok(()),
                }
            };
            if let Err(e) = r.await {
                tracing::warn!(sentinel = %addr, group = gid, error = %e, "sentinel did not forget the group");
            }
        }
        let mut s = cache.sentinel.clone();
        s.out_of_sync = true;
        self.store().update_sentinel(&s).await?;
        cache.sentinel = s;
        Ok(())
    }

    /// Notes that a group's master is in trouble (first sign only).
    pub(super) fn note_trouble(&self, gid: i64) {
        self.ha.lock().trouble_since.entry(gid).or_insert_with(now_ms);
    }

    /// After a stats poll: repoints replicas that do not follow their master, and
    /// clears `out_of_sync` of a group failed over by the sentinels once every server
    /// follows the new master.
    pub(super) async fn check_groups(&self, infos: &BTreeMap<String, BTreeMap<String, String>>) {
        let cache = self.cache().await;
        for g in cache.groups.values() {
            let Some(master) = g.servers.first() else { continue };
            if !g.promoting.state.is_empty() {
                continue;
            }
            let master_up =
                infos.get(&master.addr).is_some_and(|i| i.get("role").map(String::as_str) == Some("master"));
            let settled = master_up && !self.ha.lock().unsettled(g.id, &master.addr);
            if !settled {
                let mut ha = self.ha.lock();
                for s in &g.servers {
                    ha.astray_since.remove(&s.addr);
                }
                drop(ha);
                if !master_up {
                    self.note_trouble(g.id);
                }
                continue;
            }
            self.ha.lock().trouble_since.remove(&g.id);
            let mut consistent = true;
            for s in &g.servers[1..] {
                let Some(info) = infos.get(&s.addr) else {
                    consistent = false;
                    continue;
                };
                match follows(info) {
                    Some((m, link_up)) if same_server(&m, &master.addr) => {
                        self.ha.lock().astray_since.remove(&s.addr);
                        consistent &= link_up;
                    }
                    _ => {
                        consistent = false;
                        let since = *self.ha.lock().astray_since.entry(s.addr.clone()).or_insert_with(now_ms);
                        let idle = s.action.state.is_empty() || s.action.state == action::SYNCED;
                        if idle && now_ms().saturating_sub(since) >= ASTRAY_GRACE_MS {
                            self.ha.lock().astray_since.remove(&s.addr);
                            tracing::warn!(group = g.id, addr = %s.addr, master = %master.addr, "replica does not follow its master; repointing it");
                            let _ = self.sync_create_action(&s.addr).await;
                        }
                    }
                }
            }
            let pending = g.servers.iter().any(|s| s.action.state == action::PENDING);
            let healing = self.ha.lock().failovers.get(&g.id).is_some_and(|f| f.consistent_at.is_none());
            if consistent && !pending && healing {
                let r = if g.out_of_sync { self.resync_group(g.id).await } else { Ok(()) };
                match r {
                    Ok(()) => {
                        if let Some(f) = self.ha.lock().failovers.get_mut(&g.id) {
                            f.consistent_at = Some(now_ms());
                        }
                        tracing::warn!(group = g.id, master = %master.addr, "group consistent again after failover");
                    }
                    Err(e) => tracing::warn!(group = g.id, error = %e, "group resync after failover failed"),
                }
            }
        }
    }
}

/// The master a server follows by its INFO, and whether its link is up; `None` for a master.
pub(super) fn follows(info: &BTreeMap<String, String>) -> Option<(String, bool)> {
    if info.get("role").map(String::as_str) != Some("slave") {
        return None;
    }
    let host = info.get("master_host")?;
    let port = info.get("master_port")?;
    Some((format!("{host}:{port}"), info.get("master_link_status").map(String::as_str) == Some("up")))
}

/// Listens to every sentinel and follows failovers: at once on an event, and by a poll
/// each second (events can be missed while a connection is down, and a dashboard that
/// restarts must catch up with failovers made while it was away).
pub(super) async fn run(topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    let (tx, mut rx) = mpsc::channel::<(String, Heard)>(256);
    let mut subs: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let servers = topom.cache().await.sentinel.servers;
        subs.retain(|addr, task| {
            let keep = servers.contains(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for addr in servers {
            subs.entry(addr.clone()).or_insert_with(|| tokio::spawn(sentinel::follow(addr, CHANNELS, tx.clone())));
        }
        topom.follow_sentinels().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                heard = rx.recv() => {
                    // a fresh subscription may have missed events: ask the sentinels now
                    let Some((addr, Heard::Event(ev))) = heard else { break };
                    tracing::info!(sentinel = %addr, channel = %ev.channel, payload = %ev.payload, "sentinel event");
                    if let Some(gid) = ev.master_event().and_then(|n| sentinel::group_of(n, &topom.config.product_name)) {
                        topom.note_trouble(gid);
                    }
                    if ev.switch_master().is_some() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.wait_for(|&c| c) => {
                    subs.values().for_each(|t| t.abort());
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_reads_replication_info() {
        let info = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(follows(&info(&[("role", "master")])), None);
        assert_eq!(
            follows(&info(&[
                ("role", "slave"),
                ("master_host", "127.0.0.1"),
                ("master_port", "7000"),
                ("master_link_status", "up")
            ])),
            Some(("127.0.0.1:7000".to_string(), true))
        );
        assert_eq!(
            follows(&info(&[("role", "slave"), ("master_host", "h"), ("master_port", "1")])),
            Some(("h:1".to_string(), false))
        );
        assert!(valid_addr("127.0.0.1:26379") && !valid_addr("26379") && !valid_addr(":1"));
    }
}
