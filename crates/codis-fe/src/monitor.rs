//! The FE's memory of each product: a ring buffer of samples (QPS, sessions, memory,
//! keys) taken every few seconds, so charts show the last hour even after a page
//! reload, and an event log of topology changes found by diffing successive
//! `/topom/stats` snapshots (the dashboard keeps no history of its own).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::products::Products;

/// How much history to keep.
pub const HISTORY: Duration = Duration::from_secs(3600);
/// How many events to keep per product.
pub const MAX_EVENTS: usize = 500;

/// One point of the overview charts.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix time in milliseconds.
    pub t: u64,
    pub qps: i64,
    pub sessions: i64,
    /// Bytes used by all servers.
    pub memory: i64,
    /// Keys of all group masters (db0 and others).
    pub keys: i64,
}

/// One topology change.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub t: u64,
    pub kind: String,
    pub message: String,
}

#[derive(Default)]
struct ProductState {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
    last: Option<Snapshot>,
}

/// What the event diff compares.
#[derive(Default, Clone)]
struct Snapshot {
    groups: BTreeMap<i64, Vec<String>>,
    slots: Vec<(i64, String)>,
    proxies: BTreeMap<String, (String, bool)>,
    failovers: BTreeMap<i64, (i64, String)>,
    sentinels: BTreeSet<String>,
}

/// Samples and events of every product.
pub struct Monitor {
    interval: Duration,
    /// Wakes the loop for an extra sample right after a change made through codis-fe,
    /// so the event log sees each step of what the operator did.
    poke: tokio::sync::Notify,
    state: Mutex<HashMap<String, ProductState>>,
    http: reqwest::Client,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Monitor {
    pub fn new(interval: Duration) -> Monitor {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Monitor { interval, poke: tokio::sync::Notify::new(), state: Mutex::new(HashMap::new()), http }
    }

    pub fn samples(&self, product: &str) -> Vec<Sample> {
        self.state.lock().get(product).map(|s| s.samples.iter().cloned().collect()).unwrap_or_default()
    }

    /// The newest sample of `product`.
    pub fn latest(&self, product: &str) -> Option<Sample> {
        self.state.lock().get(product)?.samples.back().cloned()
    }

    /// Newest first.
    pub fn events(&self, product: &str) -> Vec<Event> {
        self.state.lock().get(product).map(|s| s.events.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// Asks for a sample now (a change was just made).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// The admin address of proxy `token` of `product`, as last sampled.
    pub fn proxy_admin(&self, product: &str, token: &str) -> Option<String> {
        let st = self.state.lock();
        st.get(product)?.last.as_ref()?.proxies.get(token).map(|(addr, _)| addr.clone())
    }

    /// Polls every product's dashboard every `interval` until the process ends.
    pub async fn run(self: Arc<Self>, products: Arc<Products>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.poke.notified() => {}
            }
            let Ok(list) = products.all().await else { continue };
            for (name, addr) in list.iter() {
                match self.fetch(addr).await {
                    Ok(stats) => self.record(name, &stats),
                    Err(e) => tracing::debug!(product = %name, error = %e, "cannot sample the dashboard"),
                }
            }
            let known: BTreeSet<&String> = list.keys().collect();
            self.state.lock().retain(|k, _| known.contains(k));
        }
    }

    async fn fetch(&self, addr: &str) -> Result<Value, reqwest::Error> {
        self.http.get(format!("http://{addr}/topom/stats")).send().await?.error_for_status()?.json().await
    }

    /// Adds a sample and the events since the last snapshot of `product`.
    pub fn record(&self, product: &str, stats: &Value) {
        let t = now_ms();
        let sample = sample(t, stats);
        let snap = snapshot(stats);
        let mut all = self.state.lock();
        let st = all.entry(product.to_string()).or_default();
        // An hour by time (extra samples after changes do not shorten it), and a cap.
        let cap = 2 * (HISTORY.as_millis() / self.interval.as_millis().max(1)) as usize;
        st.samples.push_back(sample);
        let oldest = t.saturating_sub(HISTORY.as_millis() as u64);
        while st.samples.front().is_some_and(|s| s.t < oldest) || st.samples.len() > cap.max(1) {
            st.samples.pop_front();
        }
        let events = match &st.last {
            None => vec![("watch".to_string(), format!("codis-fe started watching product {product}"))],
            Some(prev) => diff(prev, &snap),
        };
        for (kind, message) in events {
            tracing::info!(product, kind, "{message}");
            st.events.push_back(Event { t, kind, message });
        }
        while st.events.len() > MAX_EVENTS {
            st.events.pop_front();
        }
        st.last = Some(snap);
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)
}

fn sample(t: u64, stats: &Value) -> Sample {
    let mut s = Sample { t, qps: 0, sessions: 0, memory: 0, keys: 0 };
    if let Some(proxies) = stats["proxy"]["stats"].as_object() {
        for p in proxies.values() {
            s.qps += int(&p["stats"]["ops"]["qps"]);
            s.sessions += int(&p["stats"]["sessions"]["alive"]);
        }
    }
    let masters: BTreeSet<&str> = stats["group"]["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["servers"][0]["server"].as_str())
        .collect();
    if let Some(servers) = stats["group"]["stats"].as_object() {
        for (addr, st) in servers {
            let info = &st["stats"];
            s.memory += int(&info["used_memory"]);
            if masters.contains(addr.as_str())
                && let Some(info) = info.as_object()
            {
                for (k, v) in info {
                    // dbN:keys=1,expires=0,avg_ttl=0
                    if k.starts_with("db")
                        && let Some(n) = v.as_str().and_then(|v| v.strip_prefix("keys="))
                    {
                        s.keys += n.split(',').next().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
                    }
                }
            }
        }
    }
    s
}

fn snapshot(stats: &Value) -> Snapshot {
    let mut snap = Snapshot::default();
    for g in stats["group"]["models"].as_array().into_iter().flatten() {
        let servers = g["servers"].as_array().into_iter().flatten();
        snap.groups.insert(int(&g["id"]), servers.filter_map(|s| s["server"].as_str().map(str::to_string)).collect());
    }
    for m in stats["slots"].as_array().into_iter().flatten() {
        snap.slots.push((int(&m["group_id"]), m["action"]["state"].as_str().unwrap_or("").to_string()));
    }
    for p in stats["proxy"]["models"].as_array().into_iter().flatten() {
        let token = p["token"].as_str().unwrap_or("").to_string();
        let st = &stats["proxy"]["stats"][&token];
        let up = st["error"].is_null() && !st["timeout"].as_bool().unwrap_or(false) && st["stats"]["online"] == true;
        snap.proxies.insert(token, (p["admin_addr"].as_str().unwrap_or("").to_string(), up));
    }
    if let Some(states) = stats["group"]["states"].as_object() {
        for (gid, st) in states {
            let f = &st["last_failover"];
            if !f.is_null() {
                // The switch time tells failovers apart; the text is what the log shows.
                let mut text = format!(
                    "{} of {} to {}",
                    f["kind"].as_str().unwrap_or("switch"),
                    f["from"].as_str().unwrap_or("?"),
                    f["to"].as_str().unwrap_or("?"),
                );
                let ms = int(&f["duration_ms"]);
                if ms > 0 {
                    text.push_str(&format!(" ({ms} ms from detection to switch)"));
                }
                snap.failovers.insert(gid.parse().unwrap_or(0), (int(&f["switched_at"]), text));
            }
        }
    }
    for s in stats["sentinels"]["model"]["servers"].as_array().into_iter().flatten() {
        if let Some(s) = s.as_str() {
            snap.sentinels.insert(s.to_string());
        }
    }
    snap
}

/// `a-b` or `a`.
fn range(a: usize, b: usize) -> String {
    if a == b { format!("slot {a}") } else { format!("slots {a}-{b}") }
}

/// Consecutive runs of slot ids sharing the same key, as (first, last, key).
fn runs<K: PartialEq + Clone>(items: impl Iterator<Item = (usize, K)>) -> Vec<(usize, usize, K)> {
    let mut out: Vec<(usize, usize, K)> = Vec::new();
    for (i, k) in items {
        match out.last_mut() {
            Some((_, end, key)) if *end + 1 == i && *key == k => *end = i,
            _ => out.push((i, i, k)),
        }
    }
    out
}

fn diff(prev: &Snapshot, next: &Snapshot) -> Vec<(String, String)> {
    let mut ev = Vec::new();
    let mut push = |kind: &str, msg: String| ev.push((kind.to_string(), msg));
    for (gid, servers) in &next.groups {
        match prev.groups.get(gid) {
            None => {
                push("group", format!("group-{gid} created"));
                for s in servers {
                    push("server", format!("server {s} added to group-{gid}"));
                }
            }
            Some(old) => {
                for s in servers.iter().filter(|s| !old.contains(s)) {
                    push("server", format!("server {s} added to group-{gid}"));
                }
                for s in old.iter().filter(|s| !servers.contains(s)) {
                    push("server", format!("server {s} removed from group-{gid}"));
                }
                if let (Some(a), Some(b)) = (old.first(), servers.first())
                    && a != b
                {
                    push("master", format!("group-{gid} master changed from {a} to {b}"));
                }
            }
        }
    }
    for gid in prev.groups.keys().filter(|g| !next.groups.contains_key(g)) {
        push("group", format!("group-{gid} removed"));
    }
    if prev.slots.len() == next.slots.len() {
        let moved = prev
            .slots
            .iter()
            .zip(&next.slots)
            .enumerate()
            .filter_map(|(i, (a, b))| (a.0 != b.0).then_some((i, (a.0, b.0))));
        for (a, b, (from, to)) in runs(moved) {
            let what = range(a, b);
            let msg = match (from, to) {
                (0, to) => format!("{what} assigned to group-{to}"),
                (from, 0) => format!("{what} taken off group-{from}"),
                (from, to) => format!("{what} moved from group-{from} to group-{to}"),
            };
            push("slots", msg);
        }
        let started = prev
            .slots
            .iter()
            .zip(&next.slots)
            .enumerate()
            .filter_map(|(i, (a, b))| (a.1.is_empty() && !b.1.is_empty()).then_some((i, ())));
        for (a, b, ()) in runs(started) {
            push("migration", format!("migration of {} queued", range(a, b)));
        }
    }
    for (token, (addr, up)) in &next.proxies {
        match prev.proxies.get(token) {
            None => push("proxy", format!("proxy {addr} added ({})", if *up { "online" } else { "offline" })),
            Some((_, was)) if was != up => {
                push("proxy", format!("proxy {addr} is {}", if *up { "online" } else { "offline" }))
            }
            _ => {}
        }
    }
    for (token, (addr, _)) in &prev.proxies {
        if !next.proxies.contains_key(token) {
            push("proxy", format!("proxy {addr} removed"));
        }
    }
    for (gid, f) in &next.failovers {
        if prev.failovers.get(gid).map(|p| p.0) != Some(f.0) {
            push("failover", format!("group-{gid}: {}", f.1));
        }
    }
    for s in next.sentinels.difference(&prev.sentinels) {
        push("sentinel", format!("sentinel {s} added"));
    }
    for s in prev.sentinels.difference(&next.sentinels) {
        push("sentinel", format!("sentinel {s} removed"));
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(groups: Value, slots: &[i64]) -> Value {
        let slots: Vec<Value> =
            slots.iter().enumerate().map(|(i, g)| json!({"id": i, "group_id": g, "action": {}})).collect();
        json!({"group": {"models": groups, "stats": {
            "a:1": {"stats": {"used_memory": "100", "db0": "keys=7,expires=0,avg_ttl=0"}},
            "a:2": {"stats": {"used_memory": "50", "db0": "keys=7,expires=0,avg_ttl=0"}}}},
            "proxy": {"models": [], "stats": {}}, "slots": slots})
    }

    #[test]
    fn samples_and_events() {
        let m = Monitor::new(Duration::from_secs(3));
        let g1 = json!([{"id": 1, "servers": [{"server": "a:1"}, {"server": "a:2"}]}]);
        m.record("p", &stats(g1, &[0, 0, 0, 0]));
        let s = &m.samples("p")[0];
        assert_eq!((s.memory, s.keys), (150, 7), "memory of all servers, keys of masters only");
        let g2 = json!([{"id": 1, "servers": [{"server": "a:2"}, {"server": "a:1"}]}, {"id": 2, "servers": []}]);
        m.record("p", &stats(g2, &[1, 1, 2, 0]));
        let msgs: Vec<String> = m.events("p").into_iter().rev().map(|e| e.message).collect();
        assert_eq!(
            msgs,
            [
                "codis-fe started watching product p",
                "group-1 master changed from a:1 to a:2",
                "group-2 created",
                "slots 0-1 assigned to group-1",
                "slot 2 assigned to group-2",
            ]
        );
    }

    #[test]
    fn proxies_moves_and_failovers() {
        let m = Monitor::new(Duration::from_secs(3));
        let g = json!([{"id": 1, "servers": [{"server": "a:1"}]}, {"id": 2, "servers": [{"server": "a:2"}]}]);
        let mut s = stats(g.clone(), &[1, 1, 1, 2]);
        s["proxy"] = json!({"models": [{"token": "t1", "admin_addr": "p:1"}],
            "stats": {"t1": {"stats": {"online": true, "ops": {"qps": 5}, "sessions": {"alive": 2}}}}});
        m.record("p", &s);
        assert_eq!((m.samples("p")[0].qps, m.samples("p")[0].sessions), (5, 2));
        assert_eq!(m.proxy_admin("p", "t1").as_deref(), Some("p:1"));
        let mut s2 = stats(g, &[2, 2, 1, 2]);
        s2["proxy"] = json!({"models": [{"token": "t1", "admin_addr": "p:1"}],
            "stats": {"t1": {"error": {"Cause": "refused"}}}});
        s2["group"]["states"] = json!({"1": {"last_failover": {"kind": "sentinel", "from": "a:1", "to": "a:3",
            "duration_ms": 900, "switched_at": 7}}});
        m.record("p", &s2);
        let msgs: Vec<String> = m.events("p").into_iter().take(3).map(|e| e.message).collect();
        assert_eq!(
            msgs,
            [
                "group-1: sentinel of a:1 to a:3 (900 ms from detection to switch)",
                "proxy p:1 is offline",
                "slots 0-1 moved from group-1 to group-2",
            ]
        );
    }
}
