//! What the dashboard shows: Codis's `/topom` overview and stats, refreshed by a loop
//! that polls every server (INFO) and proxy (stats) once a second and re-onlines
//! proxies that restarted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codis_client::Conn;
use codis_core::models::{Group, Proxy, Sentinel, SlotMapping};
use futures_util::future::join_all;
use serde::Serialize;

use super::{Failover, SlotProgress, Topom};
use crate::config::Config;

/// Whether a server has the SLOTS* commands, which decides how its slots migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ServerMode {
    /// codis-slots module (or codis-server): migration with SLOTSMGRT* commands.
    #[serde(rename = "codis-slots")]
    Slots,
    /// A stock redis-server.
    #[serde(rename = "stock")]
    Stock,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteError {
    #[serde(rename = "Cause")]
    pub cause: String,
}

/// One server's INFO, as Codis reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedisStats {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
    pub unixtime: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timeout: bool,
}

/// One proxy's stats, as Codis reports them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
    pub unixtime: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timeout: bool,
}

#[derive(Default)]
pub(super) struct StatsCache {
    servers: BTreeMap<String, RedisStats>,
    proxies: BTreeMap<String, ProxyStats>,
}

#[derive(Serialize)]
pub struct GroupStats {
    pub models: Vec<Group>,
    pub stats: BTreeMap<String, RedisStats>,
    /// How each server's slots migrate (codis-rs addition).
    pub modes: BTreeMap<String, ServerMode>,
    /// Replication state of each group, by group id (codis-rs addition).
    pub states: BTreeMap<i64, GroupState>,
}

/// A group's replication as the last poll saw it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupState {
    pub master: String,
    /// `up`, `down` (no answer) or `not a master` (it answers as a replica).
    pub master_status: String,
    pub replicas: Vec<ReplicaState>,
    /// Every replica follows the master with its link up.
    pub consistent: bool,
    /// The master a majority of the sentinels agree on, when they monitor the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<Failover>,
}

/// One replica of a group.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaState {
    pub addr: String,
    /// `replica`, `master`, or `down` (no answer).
    pub role: String,
    /// The master it follows (`host:port`), empty if none.
    pub follows: String,
    /// Its replication link: `up` or `down`.
    pub link: String,
    /// Bytes of the master's replication stream it has not received yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Seconds since it last heard from its master.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_io_seconds: Option<i64>,
}

/// The replication state of group `g` from the servers' INFO.
fn group_state(g: &Group, servers: &BTreeMap<String, RedisStats>) -> Option<GroupState> {
    let master = g.servers.first()?;
    let info = |addr: &str| servers.get(addr).filter(|s| s.error.is_none() && !s.stats.is_empty()).map(|s| &s.stats);
    let num = |i: &BTreeMap<String, String>, k: &str| i.get(k).and_then(|v| v.parse::<i64>().ok());
    let minfo = info(&master.addr);
    let master_status = match minfo {
        None => "down",
        Some(i) if i.get("role").map(String::as_str) == Some("master") => "up",
        Some(_) => "not a master",
    };
    let master_offset = minfo.and_then(|i| num(i, "master_repl_offset"));
    let replicas: Vec<ReplicaState> = g.servers[1..]
        .iter()
        .map(|s| match info(&s.addr) {
            None => ReplicaState {
                addr: s.addr.clone(),
                role: "down".into(),
                follows: String::new(),
                link: "down".into(),
                lag_bytes: None,
                last_io_seconds: None,
            },
            Some(i) => match super::sentinel::follows(i) {
                None => ReplicaState {
                    addr: s.addr.clone(),
                    role: "master".into(),
                    follows: String::new(),
                    link: "down".into(),
                    lag_bytes: None,
                    last_io_seconds: None,
                },
                Some((m, up)) => ReplicaState {
                    addr: s.addr.clone(),
                    role: "replica".into(),
                    follows: m,
                    link: if up { "up" } else { "down" }.into(),
                    lag_bytes: match (master_offset, num(i, "slave_repl_offset")) {
                        (Some(mo), Some(ro)) if up => Some((mo - ro).max(0)),
                        _ => None,
                    },
                    last_io_seconds: num(i, "master_last_io_seconds_ago"),
                },
            },
        })
        .collect();
    let consistent = master_status == "up"
        && replicas.iter().all(|r| r.link == "up" && super::sentinel::same_server(&r.follows, &master.addr));
    Some(GroupState {
        master: master.addr.clone(),
        master_status: master_status.into(),
        replicas,
        consistent,
        sentinel_master: None,
        last_failover: None,
    })
}

#[derive(Serialize)]
pub struct ProxySection {
    pub models: Vec<Proxy>,
    pub stats: BTreeMap<String, ProxyStats>,
}

#[derive(Serialize)]
pub struct Progress {
    pub status: String,
    /// Per-slot figures (codis-rs addition).
    pub slots: Vec<SlotProgress>,
}

#[derive(Serialize)]
pub struct SlotActionStats {
    pub interval: i64,
    pub disabled: bool,
    pub progress: Progress,
    pub executor: i64,
}

#[derive(Serialize)]
pub struct SentinelStats {
    pub model: Sentinel,
    pub stats: BTreeMap<String, RedisStats>,
    pub masters: BTreeMap<String, String>,
}

/// `/topom/stats`, field for field as Codis, plus a few additions.
#[derive(Serialize)]
pub struct Stats {
    pub closed: bool,
    pub slots: Vec<SlotMapping>,
    pub group: GroupStats,
    pub proxy: ProxySection,
    pub slot_action: SlotActionStats,
    pub sentinels: SentinelStats,
}

/// `/topom`.
#[derive(Serialize)]
pub struct Overview<'a> {
    pub version: &'static str,
    pub compile: &'static str,
    pub config: &'a Config,
    pub model: &'a codis_core::models::Topom,
    pub stats: Stats,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Topom {
    pub async fn stats(&self) -> Stats {
        let cache = self.cache().await;
        let cached = self.stats.lock();
        let modes = self.modes.lock();
        let ha = self.ha.lock();
        let states = cache
            .groups
            .values()
            .filter_map(|g| {
                let mut st = group_state(g, &cached.servers)?;
                st.sentinel_master = ha.view.get(&g.id).map(|a| a.addr.clone());
                st.last_failover = ha.failovers.get(&g.id).cloned();
                Some((g.id, st))
            })
            .collect();
        let masters = ha.view.iter().map(|(gid, a)| (gid.to_string(), a.addr.clone())).collect();
        let sentinel_stats = ha
            .answers
            .iter()
            .map(|(addr, r)| {
                let st = match r {
                    Ok(m) => RedisStats {
                        stats: m
                            .values()
                            .map(|e| (e.name.clone(), format!("{} epoch={} flags={}", e.addr, e.config_epoch, e.flags)))
                            .collect(),
                        unixtime: now_unix(),
                        ..Default::default()
                    },
                    Err(e) => RedisStats {
                        error: Some(RemoteError { cause: e.clone() }),
                        unixtime: now_unix(),
                        ..Default::default()
                    },
                };
                (addr.clone(), st)
            })
            .collect();
        Stats {
            closed: self.is_closed(),
            slots: cache.slots.clone(),
            group: GroupStats {
                models: cache.groups.values().cloned().collect(),
                stats: cached.servers.clone(),
                modes: modes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                states,
            },
            proxy: ProxySection { models: cache.proxies.values().cloned().collect(), stats: cached.proxies.clone() },
            slot_action: SlotActionStats {
                interval: self.action.interval_us.load(Ordering::Relaxed),
                disabled: self.action.disabled.load(Ordering::Relaxed),
                progress: Progress {
                    status: self.action.status.lock().clone(),
                    slots: self.action.progress.lock().values().cloned().collect(),
                },
                executor: self.action.executors.load(Ordering::Relaxed),
            },
            sentinels: SentinelStats { model: cache.sentinel.clone(), stats: sentinel_stats, masters },
        }
    }

    pub async fn overview(&self) -> Overview<'_> {
        Overview {
            version: concat!("codis-rs ", env!("CARGO_PKG_VERSION")),
            compile: "",
            config: &self.config,
            model: &self.model,
            stats: self.stats().await,
        }
    }

    async fn refresh(&self, conns: &mut HashMap<String, Conn>) {
        let cache = self.cache().await;
        // Servers: INFO, and the migration mode of servers not probed yet.
        let addrs: Vec<String> = cache.groups.values().flat_map(|g| g.servers.iter().map(|s| s.addr.clone())).collect();
        let mut servers = BTreeMap::new();
        for addr in addrs {
            let unknown = !self.modes.lock().contains_key(&addr);
            if unknown && let Ok(mode) = self.probe_server(&addr).await {
                self.modes.lock().insert(addr.clone(), mode);
            }
            let stats = match self.server_info(conns, &addr).await {
                Ok(stats) => RedisStats { stats, unixtime: now_unix(), ..Default::default() },
                Err(e) => {
                    conns.remove(&addr);
                    RedisStats { error: Some(RemoteError { cause: e }), unixtime: now_unix(), ..Default::default() }
                }
            };
            servers.insert(addr, stats);
        }
        // Proxies: stats, and re-online those that restarted.
        let calls = cache.proxies.values().map(|p| {
            let c = self.proxy_client(p);
            async move { (p.token.clone(), c.stats().await) }
        });
        let mut proxies = BTreeMap::new();
        let mut offline = Vec::new();
        for (token, r) in join_all(calls).await {
            let stats = match r {
                Ok(v) => {
                    let online = v.get("online").and_then(|o| o.as_bool()).unwrap_or(true);
                    let closed = v.get("closed").and_then(|o| o.as_bool()).unwrap_or(false);
                    if !online && !closed {
                        offline.push(token.clone());
                    }
                    ProxyStats { stats: Some(v), unixtime: now_unix(), ..Default::default() }
                }
                Err(e) => ProxyStats {
                    error: Some(RemoteError { cause: e.to_string() }),
                    unixtime: now_unix(),
                    ..Default::default()
                },
            };
            proxies.insert(token, stats);
        }
        let infos: BTreeMap<String, BTreeMap<String, String>> = servers
            .iter()
            .filter(|(_, s)| s.error.is_none() && !s.stats.is_empty())
            .map(|(a, s)| (a.clone(), s.stats.clone()))
            .collect();
        {
            let mut s = self.stats.lock();
            s.servers = servers;
            s.proxies = proxies;
        }
        self.check_groups(&infos).await;
        for token in offline {
            self.reonline_if_needed(&token, false).await;
        }
    }

    async fn server_info(
        &self,
        conns: &mut HashMap<String, Conn>,
        addr: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        if !conns.contains_key(addr) {
            let c =
                Conn::open(addr, &self.config.product_auth, Duration::from_secs(2)).await.map_err(|e| e.to_string())?;
            conns.insert(addr.to_string(), c);
        }
        let c = conns.get_mut(addr).expect("connection just opened");
        let mut info: BTreeMap<String, String> = c.info(None).await.map_err(|e| e.to_string())?.into_iter().collect();
        if let Ok(codis_client::Value::Array(v)) = c.cmd(&["CONFIG", "GET", "maxmemory"]).await
            && let Some(m) = v.get(1).and_then(|m| m.as_str())
        {
            info.insert("maxmemory".into(), m.to_string());
        }
        Ok(info)
    }
}

pub(super) async fn run(topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    let mut conns = HashMap::new();
    loop {
        topom.refresh(&mut conns).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|&c| c) => return,
        }
    }
}
