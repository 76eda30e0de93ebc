//! Replication inside groups: promoting a replica, and sync actions that point servers
//! at their group's master.
//!
//! Codis's promote left the old master and the other replicas pointing nowhere; here a
//! promote queues a sync action for every other server, and the sync loop keeps
//! retrying a server that cannot be reached (the old master after a crash) until it
//! comes back and becomes a replica of the new master.

use std::sync::Arc;
use std::time::Duration;

use codis_client::{ClientError, Conn, Value};
use codis_core::models::{Group, GroupServerAction, action};

use super::{Cache, Result, Topom, TopomError};

/// Points `addr` at `master` (`None`: make it a master), as Codis's dashboard does.
async fn set_master(addr: &str, master: Option<&str>, auth: &str) -> Result<(), ClientError> {
    let mut c = Conn::open(addr, auth, Duration::from_secs(3)).await?;
    if !auth.is_empty() {
        c.ok(&["CONFIG", "SET", "masterauth", auth]).await?;
    }
    match master.and_then(|m| m.rsplit_once(':')) {
        Some((host, port)) => c.ok(&["REPLICAOF", host, port]).await?,
        None => c.ok(&["REPLICAOF", "NO", "ONE"]).await?,
    };
    // Persist the role when the server runs from a config file; without one this fails
    // harmlessly (Codis reported such servers as failed although the switch happened).
    if let Value::Error(e) = c.cmd(&["CONFIG", "REWRITE"]).await?
        && !e.contains("without a config file")
    {
        tracing::warn!(addr, error = %e, "CONFIG REWRITE failed");
    }
    Ok(())
}

impl Topom {
    /// Makes `addr` the master of group `gid`: proxies hold the group's requests while
    /// the roles switch, the old master and the other replicas are repointed.
    pub async fn promote_server(&self, gid: i64, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let mut g = cache.group(gid)?.clone();
        let index = Cache::server_index(&g, addr)?;
        if !g.promoting.state.is_empty() {
            if index as i64 != g.promoting.index {
                return Err(TopomError::msg(format!("group-[{gid}] is promoting index = {}", g.promoting.index)));
            }
        } else if index == 0 {
            return Err(TopomError::msg(format!("group-[{gid}] can't promote master")));
        }
        let busy = cache.slots.iter().any(|m| {
            (m.group_id == gid || m.action.target_id == gid)
                && !m.action.state.is_empty()
                && m.action.state != action::PENDING
        });
        if busy {
            return Err(TopomError::msg(format!(
                "group-[{gid}] has slots migrating; promote after they finish (or pause migrations)"
            )));
        }
        let slots: Vec<i64> = cache.slots_of_group(gid).iter().map(|m| m.id).collect();
        if g.promoting.state.is_empty() {
            g.promoting.index = index as i64;
            g.promoting.state = action::PREPARING.into();
            self.put_group(&mut cache, g.clone()).await?;
        }
        if g.promoting.state == action::PREPARING {
            let mut next = cache.clone();
            next.groups.get_mut(&gid).expect("group exists").promoting.state = action::PREPARED.into();
            if let Err(e) = self.resync(&next, &slots).await {
                let _ = self.resync(&cache, &slots).await;
                return Err(e);
            }
            g.promoting.state = action::PREPARED.into();
            self.put_group(&mut cache, g.clone()).await?;
        }
        if g.promoting.state == action::PREPARED {
            // Sentinels would fight the promotion: they forget the group until the
            // sentinels are resynced below.
            self.unmonitor_group(&mut cache, gid).await?;
            let from = g.servers[0].addr.clone();
            let idx = g.promoting.index as usize;
            reorder(&mut g, idx, max_sync_index(&cache));
            self.record_failover(gid, "promote", from, g.servers[0].addr.clone(), None);
            g.promoting.index = 0;
            g.promoting.state = action::FINISHED.into();
            self.put_group(&mut cache, g.clone()).await?;
            if let Err(e) = set_master(&g.servers[0].addr, None, &self.config.product_auth).await {
                tracing::warn!(addr = %g.servers[0].addr, error = %e, "promoted server did not become master");
            }
        }
        // finished: proxies use the new master; the promotion is over.
        self.resync(&cache, &slots).await?;
        g.promoting = Default::default();
        g.out_of_sync = false;
        self.put_group(&mut cache, g).await?;
        let sentinels = !cache.sentinel.servers.is_empty();
        drop(cache);
        self.sync_round().await;
        tracing::warn!(group = gid, master = addr, "promoted");
        if sentinels && let Err(e) = self.resync_sentinels().await {
            tracing::warn!(group = gid, error = %e, "sentinels not resynced after the promotion; resync them");
        }
        Ok(())
    }

    /// Queues pointing `addr` at its group's master (or making it master if it is first).
    pub async fn sync_create_action(&self, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let (g, i) =
            cache.group_by_server(addr).ok_or_else(|| TopomError::msg(format!("server-[{addr}] doesn't exist")))?;
        if !g.promoting.state.is_empty() {
            return Err(TopomError::msg(format!("group-[{}] is promoting", g.id)));
        }
        if g.servers[i].action.state == action::PENDING {
            return Err(TopomError::msg(format!("server-[{addr}] action already exists")));
        }
        let mut g = g.clone();
        g.servers[i].action = GroupServerAction { index: max_sync_index(&cache) + 1, state: action::PENDING.into() };
        self.put_group(&mut cache, g).await
    }

    pub async fn sync_remove_action(&self, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let (g, i) =
            cache.group_by_server(addr).ok_or_else(|| TopomError::msg(format!("server-[{addr}] doesn't exist")))?;
        if !g.promoting.state.is_empty() {
            return Err(TopomError::msg(format!("group-[{}] is promoting", g.id)));
        }
        if g.servers[i].action.state.is_empty() {
            return Err(TopomError::msg(format!("server-[{addr}] action doesn't exist")));
        }
        let mut g = g.clone();
        g.servers[i].action = GroupServerAction::default();
        self.put_group(&mut cache, g).await
    }

    /// Runs every pending sync action: reachable servers are repointed (`synced`, or
    /// `synced_failed` if the server refused); unreachable ones stay pending.
    pub(super) async fn sync_round(&self) {
        let pending: Vec<(i64, String, Option<String>)> = match self.lock().await {
            Ok(cache) => cache
                .groups
                .values()
                .filter(|g| g.promoting.state.is_empty())
                .flat_map(|g| {
                    let master = g.servers.first().map(|s| s.addr.clone());
                    g.servers
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.action.state == action::PENDING)
                        .map(move |(i, s)| (g.id, s.addr.clone(), if i == 0 { None } else { master.clone() }))
                })
                .collect(),
            Err(_) => return,
        };
        for (gid, addr, master) in pending {
            let state = match set_master(&addr, master.as_deref(), &self.config.product_auth).await {
                Ok(()) => action::SYNCED,
                Err(ClientError::Io { .. }) | Err(ClientError::Timeout { .. }) => continue, // not back yet
                Err(e) => {
                    tracing::warn!(addr, error = %e, "sync action failed");
                    action::SYNCED_FAILED
                }
            };
            let Ok(mut cache) = self.lock().await else { return };
            let Some(mut g) = cache.groups.get(&gid).cloned() else { continue };
            if let Some(s) = g.servers.iter_mut().find(|s| s.addr == addr && s.action.state == action::PENDING) {
                s.action.state = state.into();
                tracing::info!(addr, master = ?master, state, "sync action done");
                let _ = self.put_group(&mut cache, g).await;
            }
        }
    }
}

/// Puts `servers[idx]` first and the old master last (`[new, other replicas..., old]`);
/// everyone but the new master gets a pending sync action pointing it at the new
/// master, numbered after `last_index`.
pub(super) fn reorder(g: &mut Group, idx: usize, last_index: i64) {
    let mut servers = vec![g.servers[idx].clone()];
    servers.extend(g.servers.iter().enumerate().filter(|&(i, _)| i != idx && i != 0).map(|(_, s)| s.clone()));
    if idx != 0 {
        servers.push(g.servers[0].clone());
    }
    let mut next = last_index;
    for (i, s) in servers.iter_mut().enumerate() {
        s.action = if i == 0 {
            GroupServerAction::default()
        } else {
            next += 1;
            GroupServerAction { index: next, state: action::PENDING.into() }
        };
    }
    g.servers = servers;
}

pub(super) fn max_sync_index(cache: &super::Cache) -> i64 {
    cache
        .groups
        .values()
        .flat_map(|g| g.servers.iter())
        .filter(|s| !s.action.state.is_empty())
        .map(|s| s.action.index)
        .max()
        .unwrap_or(0)
}

pub(super) async fn run(topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    loop {
        topom.sync_round().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|&c| c) => return,
        }
    }
}
