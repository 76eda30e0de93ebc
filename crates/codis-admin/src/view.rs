//! The parts of the dashboard's and proxy's JSON that the tables show.
//!
//! Everything is optional and unknown fields are ignored, so a Codis 3.2 dashboard
//! (which lacks codis-rs's additions such as `modes` and per-slot progress) renders too.

use std::collections::BTreeMap;

use codis_core::models::{Group, Proxy, RemoteError, SlotMapping};
use serde::Deserialize;

/// `/topom/stats`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub closed: bool,
    pub slots: Vec<SlotMapping>,
    pub group: GroupSection,
    pub proxy: ProxySection,
    pub slot_action: SlotAction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupSection {
    pub models: Vec<Group>,
    pub stats: BTreeMap<String, ServerStats>,
    /// codis-rs: "codis-slots" or "stock" per server.
    pub modes: BTreeMap<String, String>,
    /// codis-rs: replication state per group id.
    pub states: BTreeMap<String, GroupState>,
}

/// codis-rs: a group's replication as the dashboard last polled it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupState {
    pub master: String,
    pub master_status: String,
    pub replicas: Vec<ReplicaState>,
    pub consistent: bool,
    pub sentinel_master: Option<String>,
    pub last_failover: Option<Failover>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReplicaState {
    pub addr: String,
    pub role: String,
    pub follows: String,
    pub link: String,
    pub lag_bytes: Option<i64>,
    pub last_io_seconds: Option<i64>,
}

/// codis-rs: the last master change of a group.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Failover {
    pub kind: String,
    pub from: String,
    pub to: String,
    pub config_epoch: Option<i64>,
    pub detected_at: u64,
    pub switched_at: u64,
    pub duration_ms: u64,
    pub consistent_at: Option<u64>,
}

/// One server's INFO as the dashboard last saw it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServerStats {
    pub stats: Option<BTreeMap<String, String>>,
    pub error: Option<RemoteError>,
    pub timeout: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxySection {
    pub models: Vec<Proxy>,
    pub stats: BTreeMap<String, ProxyStats>,
}

/// One proxy's stats as the dashboard last saw them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxyStats {
    pub stats: Option<ProxyCounters>,
    pub error: Option<RemoteError>,
    pub timeout: bool,
}

/// A proxy's `/proxy/stats`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxyCounters {
    pub online: bool,
    pub closed: bool,
    pub ops: Ops,
    pub sessions: Sessions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ops {
    pub total: i64,
    pub fails: i64,
    pub qps: i64,
    pub redis: RedisErrors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RedisErrors {
    pub errors: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sessions {
    pub total: i64,
    pub alive: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlotAction {
    pub interval: i64,
    pub disabled: bool,
    pub progress: Progress,
    pub executor: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub status: String,
    /// codis-rs: per-slot figures.
    pub slots: Vec<SlotProgress>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SlotProgress {
    pub slot: i64,
    pub from: i64,
    pub to: i64,
    pub state: String,
    pub moved: u64,
    /// Unknown (null) before the first step, and on stock servers until a pass finds none.
    pub remaining: Option<i64>,
    pub elapsed_ms: u64,
    pub keys_per_sec: f64,
    pub error: Option<String>,
}

impl Stats {
    pub fn group(&self, gid: i64) -> Option<&Group> {
        self.group.models.iter().find(|g| g.id == gid)
    }

    pub fn master(&self, gid: i64) -> Option<&str> {
        self.group(gid).and_then(|g| g.servers.first()).map(|s| s.addr.as_str())
    }

    pub fn progress(&self, sid: i64) -> Option<&SlotProgress> {
        self.slot_action.progress.slots.iter().find(|p| p.slot == sid)
    }
}

/// `/proxy` (the proxy's overview).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxyOverview {
    pub version: String,
    pub model: Proxy,
    pub stats: ProxyCounters,
    pub slots: Vec<codis_core::models::Slot>,
}

/// `/topom` (the dashboard's overview), the parts the summary shows.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DashboardOverview {
    pub version: String,
    pub config: serde_json::Value,
    pub model: codis_core::models::Topom,
    pub stats: Stats,
}

/// Keys in all databases, from INFO's keyspace lines (`db0:keys=12,expires=0,...`).
pub fn keys_from_info(info: &BTreeMap<String, String>) -> Option<u64> {
    let mut total = None;
    for (k, v) in info {
        let Some(n) = k.strip_prefix("db") else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let keys = v.split(',').find_map(|kv| kv.strip_prefix("keys=")).and_then(|n| n.parse::<u64>().ok());
        if let Some(keys) = keys {
            *total.get_or_insert(0) += keys;
        }
    }
    total
}

/// The master a server replicates from, from INFO (`master_host`/`master_port`, or
/// Codis's `master_addr`).
pub fn master_of(info: &BTreeMap<String, String>) -> Option<String> {
    if let Some(a) = info.get("master_addr") {
        return Some(a.clone());
    }
    match (info.get("master_host"), info.get("master_port")) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_helpers() {
        let mut info = BTreeMap::new();
        assert_eq!(keys_from_info(&info), None);
        info.insert("db0".to_string(), "keys=12,expires=1,avg_ttl=0".to_string());
        info.insert("db3".to_string(), "keys=30,expires=0,avg_ttl=0".to_string());
        info.insert("dbsize".to_string(), "x".to_string());
        assert_eq!(keys_from_info(&info), Some(42));
        assert_eq!(master_of(&info), None);
        info.insert("master_host".to_string(), "10.0.0.1".to_string());
        info.insert("master_port".to_string(), "6379".to_string());
        assert_eq!(master_of(&info).as_deref(), Some("10.0.0.1:6379"));
    }

    #[test]
    fn codis_stats_without_additions_parse() {
        let s: Stats = serde_json::from_str(
            r#"{"closed":false,"slots":[{"id":0,"group_id":1,"action":{}}],
                "group":{"models":[{"id":1,"servers":[{"server":"a:1"}]}],"stats":{"a:1":{"stats":{"db0":"keys=3"},"unixtime":1}}},
                "proxy":{"models":[],"stats":{}},
                "slot_action":{"interval":0,"disabled":false,"progress":{"status":""},"executor":0}}"#,
        )
        .unwrap();
        assert_eq!(s.master(1), Some("a:1"));
        assert_eq!(keys_from_info(s.group.stats["a:1"].stats.as_ref().unwrap()), Some(3));
    }
}
