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

use super::{SlotProgress, Topom};
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
        Stats {
            closed: self.is_closed(),
            slots: cache.slots.clone(),
            group: GroupStats {
                models: cache.groups.values().cloned().collect(),
                stats: cached.servers.clone(),
                modes: modes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
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
            sentinels: SentinelStats {
                model: cache.sentinel.clone(),
                stats: BTreeMap::new(),
                masters: BTreeMap::new(),
            },
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
        {
            let mut s = self.stats.lock();
            s.servers = servers;
            s.proxies = proxies;
        }
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
