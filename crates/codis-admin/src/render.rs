//! Human-readable output: aligned tables and short summaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use codis_core::models::{Slot, SlotMapping, action};

use crate::view::{DashboardOverview, ProxyOverview, ProxyStats, Stats, keys_from_info, master_of};

/// A table whose columns are as wide as their widest cell, two spaces apart.
pub struct Table {
    head: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&'static str]) -> Table {
        Table { head: head.to_vec(), right: vec![false; head.len()], rows: Vec::new() }
    }

    /// Right-aligns the given columns (numbers).
    pub fn right(mut self, cols: &[usize]) -> Table {
        for &c in cols {
            self.right[c] = true;
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.head.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let head: Vec<String> = self.head.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&head).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - c.chars().count();
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < r.len() {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `0005` or `0000-0511`.
pub fn slot_span(beg: i64, end: i64) -> String {
    if beg == end { format!("{beg:04}") } else { format!("{beg:04}-{end:04}") }
}

/// Runs of consecutive items with the same key: (first, last, key).
pub fn runs<K: PartialEq + Clone>(items: impl IntoIterator<Item = (i64, K)>) -> Vec<(i64, i64, K)> {
    let mut out: Vec<(i64, i64, K)> = Vec::new();
    for (id, key) in items {
        match out.last_mut() {
            Some((_, end, k)) if *end + 1 == id && *k == key => *end = id,
            _ => out.push((id, id, key)),
        }
    }
    out
}

fn group_name(gid: i64) -> String {
    if gid == 0 { "offline".to_string() } else { gid.to_string() }
}

fn rate(keys_per_sec: f64) -> String {
    format!("{}", keys_per_sec.round() as u64)
}

fn elapsed(ms: u64) -> String {
    if ms < 1000 { format!("{ms}ms") } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

/// Slot ranges per group, with migrations and their progress (`--slots-status`).
pub fn slots_status(s: &Stats) -> String {
    let mut t = Table::new(&["SLOTS", "COUNT", "GROUP", "MASTER", "MIGRATION"]).right(&[1]);
    let key = |m: &SlotMapping| (m.group_id, m.action.state.clone(), m.action.target_id);
    for (beg, end, (gid, state, target)) in runs(s.slots.iter().map(|m| (m.id, key(m)))) {
        let master = match s.master(gid) {
            Some(m) => m.to_string(),
            None if gid == 0 => "-".to_string(),
            None => "(no servers)".to_string(),
        };
        let migration = if state.is_empty() {
            "-".to_string()
        } else {
            let mut text = format!("{state} to group {target}");
            let ps: Vec<_> = (beg..=end).filter_map(|sid| s.progress(sid)).filter(|p| p.to == target).collect();
            if !ps.is_empty() && state != action::PENDING {
                let moved: u64 = ps.iter().map(|p| p.moved).sum();
                let pending: Vec<_> = ps.iter().filter(|p| p.state != action::FINISHED).collect();
                let left = match pending.iter().map(|p| p.remaining).sum::<Option<i64>>() {
                    Some(n) => n.max(0).to_string(),
                    None => "?".to_string(),
                };
                let rate_sum: f64 = ps.iter().filter(|p| p.state != action::FINISHED).map(|p| p.keys_per_sec).sum();
                let _ = write!(text, ": {moved} keys moved, {left} left, {} keys/s", rate(rate_sum));
                if let Some(e) = ps.iter().find_map(|p| p.error.as_deref()) {
                    let _ = write!(text, "; error: {e}");
                }
            }
            text
        };
        t.row(vec![slot_span(beg, end), (end - beg + 1).to_string(), group_name(gid), master, migration]);
    }
    let mut out = t.render();

    // Slots migrating now, one line each.
    let mut active = Table::new(&["SLOT", "FROM", "TO", "STATE", "MOVED", "LEFT", "KEYS/S", "ELAPSED", "ERROR"])
        .right(&[4, 5, 6, 7]);
    for m in s.slots.iter().filter(|m| !m.action.state.is_empty() && m.action.state != action::PENDING) {
        let p = s.progress(m.id).filter(|p| p.to == m.action.target_id);
        active.row(vec![
            format!("{:04}", m.id),
            group_name(m.group_id),
            m.action.target_id.to_string(),
            m.action.state.clone(),
            p.map_or("-".into(), |p| p.moved.to_string()),
            p.and_then(|p| p.remaining).map_or("-".into(), |n| n.to_string()),
            p.map_or("-".into(), |p| rate(p.keys_per_sec)),
            p.map_or("-".into(), |p| elapsed(p.elapsed_ms)),
            p.and_then(|p| p.error.clone()).unwrap_or_default(),
        ]);
    }
    if !active.is_empty() {
        out.push('\n');
        out.push_str(&active.render());
    }

    out.push('\n');
    out.push_str(&slots_summary(s));
    out
}

/// A few lines: slot counts, migration queue and controls, last step, recent results.
pub fn slots_summary(s: &Stats) -> String {
    let mut out = String::new();
    let online = s.slots.iter().filter(|m| m.group_id != 0).count();
    let groups: std::collections::BTreeSet<i64> =
        s.slots.iter().filter(|m| m.group_id != 0).map(|m| m.group_id).collect();
    let _ =
        writeln!(out, "slots: {} in {} groups, {} offline", online, groups.len(), s.slots.len().saturating_sub(online));
    let pending = s.slots.iter().filter(|m| m.action.state == action::PENDING).count();
    let running = s.slots.iter().filter(|m| !m.action.state.is_empty() && m.action.state != action::PENDING).count();
    let a = &s.slot_action;
    let _ = writeln!(
        out,
        "migrations: {pending} pending, {running} in progress; {}, interval {}us, {} executors",
        if a.disabled { "PAUSED (--slot-action --disabled=0 resumes)" } else { "enabled" },
        a.interval,
        a.executor
    );
    if !a.progress.status.is_empty() {
        let _ = writeln!(out, "last step: {}", a.progress.status);
    }
    let done: Vec<_> = a.progress.slots.iter().filter(|p| p.state == action::FINISHED).collect();
    if !done.is_empty() {
        let moved: u64 = done.iter().map(|p| p.moved).sum();
        let _ = writeln!(out, "recently finished: {} slots, {} keys moved", done.len(), moved);
    }
    out
}

/// Every server of every group (`--group-status`).
pub fn group_status(s: &Stats) -> String {
    let mut t = Table::new(&["GROUP", "SERVER", "ROLE", "MODE", "SLOTS", "KEYS", "MEMORY", "STATUS"]).right(&[4, 5, 6]);
    let mut notes = Vec::new();
    for g in &s.group.models {
        let nslots = s.slots.iter().filter(|m| m.group_id == g.id).count();
        if g.servers.is_empty() {
            t.row(vec![
                g.id.to_string(),
                "(no servers)".into(),
                "-".into(),
                "-".into(),
                nslots.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (i, srv) in g.servers.iter().enumerate() {
            let stats = s.group.stats.get(&srv.addr);
            let info = stats.and_then(|st| st.stats.as_ref());
            let mut status = match stats {
                None => "no stats yet".to_string(),
                Some(st) if st.error.is_some() => {
                    format!("ERROR: {}", st.error.as_ref().map_or("", |e| e.cause.as_str()))
                }
                Some(st) if st.timeout => "TIMEOUT".to_string(),
                Some(_) => match info {
                    None => "no stats yet".to_string(),
                    Some(info) => {
                        let actual = master_of(info);
                        if i == 0 {
                            match actual {
                                None => "ok".to_string(),
                                Some(m) => format!("WRONG: replica of {m}, expected a master"),
                            }
                        } else {
                            let expected = &g.servers[0].addr;
                            match actual {
                                Some(m) if &m == expected => {
                                    let link = info.get("master_link_status").map_or("?", |s| s.as_str());
                                    format!("ok, link {link}")
                                }
                                Some(m) => format!("WRONG: replica of {m}, expected {expected}"),
                                None => format!("WRONG: a master, expected a replica of {expected}"),
                            }
                        }
                    }
                },
            };
            if !srv.datacenter.is_empty() {
                let _ = write!(status, "; dc {}", srv.datacenter);
            }
            if srv.replica_group {
                status.push_str("; serves reads");
            }
            if !srv.action.state.is_empty() {
                let _ = write!(status, "; sync {}", srv.action.state);
            }
            let replica =
                s.group.states.get(&g.id.to_string()).and_then(|st| st.replicas.iter().find(|r| r.addr == srv.addr));
            if let Some(lag) = replica.and_then(|r| r.lag_bytes) {
                let _ = write!(status, "; lag {lag} B");
            }
            t.row(vec![
                g.id.to_string(),
                srv.addr.clone(),
                if i == 0 { "master" } else { "replica" }.into(),
                s.group.modes.get(&srv.addr).cloned().unwrap_or_else(|| "-".into()),
                if i == 0 { nslots.to_string() } else { String::new() },
                info.map_or("-".into(), |i| keys_from_info(i).unwrap_or(0).to_string()),
                info.and_then(|i| i.get("used_memory_human").cloned()).unwrap_or_else(|| "-".into()),
                status,
            ]);
        }
        let healing = s
            .group
            .states
            .get(&g.id.to_string())
            .and_then(|st| st.last_failover.as_ref())
            .is_some_and(|f| f.kind == "sentinel" && f.consistent_at.is_none());
        if g.out_of_sync && healing {
            notes.push(format!(
                "group-{}: out of sync after the failover; the dashboard resyncs it once every server follows the new master",
                g.id
            ));
        } else if g.out_of_sync {
            notes.push(format!(
                "group-{}: proxies have an old view of this group; run --resync-group --gid={}",
                g.id, g.id
            ));
        }
        if !g.promoting.state.is_empty() {
            notes.push(format!("group-{}: promotion {}", g.id, g.promoting.state));
        }
        if let Some(st) = s.group.states.get(&g.id.to_string()) {
            notes.extend(ha_notes(g.id, st));
        }
    }
    if s.group.models.is_empty() {
        return "no groups (create one with --create-group --gid=1)\n".to_string();
    }
    let mut out = t.render();
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// What a group's replication state says beyond the table: sentinels that disagree
/// with the dashboard, and the last failover.
fn ha_notes(gid: i64, st: &crate::view::GroupState) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(m) = &st.sentinel_master
        && m != &st.master
    {
        notes.push(format!("group-{gid}: the sentinels elected {m}; the dashboard switches to it shortly"));
    }
    if let Some(f) = &st.last_failover {
        let by = if f.kind == "promote" { "promoted by hand" } else { "failed over by the sentinels" };
        let mut line = format!("group-{gid}: last failover {} -> {} ({by}) at {}", f.from, f.to, clock(f.switched_at));
        if f.detected_at > 0 {
            let _ = write!(line, ", {} after the master was seen down", secs(f.duration_ms));
        }
        match f.consistent_at {
            Some(at) => {
                let _ = write!(line, "; every server followed it {} later", secs(at.saturating_sub(f.switched_at)));
            }
            None => line.push_str("; waiting for every server to follow the new master"),
        }
        notes.push(line);
    }
    notes
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Unix milliseconds as UTC `HH:MM:SS`.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02} UTC", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// Groups and their servers in one line each (`--list-group`).
pub fn group_list(s: &Stats) -> String {
    if s.group.models.is_empty() {
        return "no groups (create one with --create-group --gid=1)\n".to_string();
    }
    let mut t = Table::new(&["GROUP", "SLOTS", "SERVERS"]).right(&[1]);
    for g in &s.group.models {
        let nslots = s.slots.iter().filter(|m| m.group_id == g.id).count();
        let servers: Vec<String> = g
            .servers
            .iter()
            .enumerate()
            .map(|(i, srv)| if i == 0 { format!("{} (master)", srv.addr) } else { srv.addr.clone() })
            .collect();
        t.row(vec![
            g.id.to_string(),
            nslots.to_string(),
            if servers.is_empty() { "-".into() } else { servers.join(", ") },
        ]);
    }
    t.render()
}

fn proxy_state(st: Option<&ProxyStats>) -> String {
    match st {
        None => "no stats yet".into(),
        Some(st) if st.error.is_some() => format!("ERROR: {}", st.error.as_ref().map_or("", |e| e.cause.as_str())),
        Some(st) if st.timeout => "TIMEOUT".into(),
        Some(st) => match &st.stats {
            None => "no stats yet".into(),
            Some(c) if c.closed => "closed".into(),
            Some(c) if c.online => "online".into(),
            Some(_) => "offline".into(),
        },
    }
}

/// Proxies with their state and counters (`--proxy-status`).
pub fn proxy_status(s: &Stats) -> String {
    if s.proxy.models.is_empty() {
        return "no proxies (register one with --create-proxy --addr=ADMIN_ADDR)\n".to_string();
    }
    let mut t = Table::new(&["ID", "TOKEN", "ADMIN", "PROXY", "STATE", "SESSIONS", "OPS", "QPS", "FAILS"])
        .right(&[0, 5, 6, 7, 8]);
    for p in &s.proxy.models {
        let st = s.proxy.stats.get(&p.token);
        let c = st.and_then(|st| st.stats.as_ref());
        let n = |f: fn(&crate::view::ProxyCounters) -> i64| c.map_or("-".to_string(), |c| f(c).to_string());
        t.row(vec![
            p.id.to_string(),
            p.token.clone(),
            p.admin_addr.clone(),
            p.proxy_addr.clone(),
            proxy_state(st),
            n(|c| c.sessions.alive),
            n(|c| c.ops.total),
            n(|c| c.ops.qps),
            n(|c| c.ops.fails),
        ]);
    }
    t.render()
}

/// Registered proxies (`--list-proxy`).
pub fn proxy_list(s: &Stats) -> String {
    if s.proxy.models.is_empty() {
        return "no proxies (register one with --create-proxy --addr=ADMIN_ADDR)\n".to_string();
    }
    let mut t = Table::new(&["ID", "TOKEN", "ADMIN", "PROXY", "HOST", "DATACENTER", "STARTED"]).right(&[0]);
    for p in &s.proxy.models {
        t.row(vec![
            p.id.to_string(),
            p.token.clone(),
            p.admin_addr.clone(),
            p.proxy_addr.clone(),
            p.hostname.clone(),
            if p.datacenter.is_empty() { "-".into() } else { p.datacenter.clone() },
            p.start_time.clone(),
        ]);
    }
    t.render()
}

/// A plan of slot moves as ranges: where each run of slots is now and where it goes.
pub fn move_plan(s: &Stats, plan: &BTreeMap<i64, i64>) -> String {
    let from = |sid: i64| s.slots.get(sid as usize).map_or(0, |m| m.group_id);
    let mut t = Table::new(&["SLOTS", "COUNT", "FROM", "TO"]).right(&[1]);
    for (beg, end, (f, to)) in runs(plan.iter().map(|(&sid, &gid)| (sid, (from(sid), gid)))) {
        t.row(vec![slot_span(beg, end), (end - beg + 1).to_string(), group_name(f), group_name(to)]);
    }
    t.render()
}

/// The dashboard's overview in a few lines.
pub fn dashboard_overview(addr: &str, o: &DashboardOverview) -> String {
    let s = &o.stats;
    let mut out = String::new();
    let cfg = |k: &str| o.config.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let _ = writeln!(out, "dashboard    {addr} ({})", if o.version.is_empty() { "?" } else { &o.version });
    let _ = writeln!(out, "product      {}", o.model.product_name);
    let _ = writeln!(out, "coordinator  {} {}", cfg("coordinator_name"), cfg("coordinator_addr"));
    let _ = writeln!(out, "started      {} (pid {})", o.model.start_time, o.model.pid);
    let servers: usize = s.group.models.iter().map(|g| g.servers.len()).sum();
    let _ = writeln!(out, "groups       {} ({servers} servers)", s.group.models.len());
    let online = s
        .proxy
        .models
        .iter()
        .filter(|p| s.proxy.stats.get(&p.token).and_then(|st| st.stats.as_ref()).is_some_and(|c| c.online))
        .count();
    let _ = writeln!(out, "proxies      {} ({online} online)", s.proxy.models.len());
    if s.closed {
        let _ = writeln!(out, "state        CLOSED");
    }
    out.push_str(&slots_summary(s));
    out
}

/// A proxy's overview in a few lines.
pub fn proxy_overview(addr: &str, o: &ProxyOverview) -> String {
    let mut out = String::new();
    let m = &o.model;
    let st = &o.stats;
    let _ = writeln!(
        out,
        "proxy      {} (admin {addr}, {})",
        m.proxy_addr,
        if o.version.is_empty() { "?" } else { &o.version }
    );
    let _ = writeln!(out, "product    {}", m.product_name);
    let _ = writeln!(out, "token      {}", m.token);
    let _ = writeln!(out, "started    {} (pid {}, host {})", m.start_time, m.pid, m.hostname);
    let state = if st.closed {
        "closed"
    } else if st.online {
        "online"
    } else {
        "offline (not started)"
    };
    let _ = writeln!(out, "state      {state}");
    out.push_str(&proxy_counters(st));
    if !o.slots.is_empty() {
        let filled = o.slots.iter().filter(|s| !s.backend_addr.is_empty()).count();
        let migrating = o.slots.iter().filter(|s| !s.migrate_from.is_empty()).count();
        let locked = o.slots.iter().filter(|s| s.locked).count();
        let _ = writeln!(out, "slots      {filled} with a backend, {migrating} migrating, {locked} locked");
    }
    out
}

pub fn proxy_counters(st: &crate::view::ProxyCounters) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "sessions   {} alive, {} total", st.sessions.alive, st.sessions.total);
    let _ = writeln!(
        out,
        "ops        {} total, {} fails, {} redis errors, {} qps",
        st.ops.total, st.ops.fails, st.ops.redis.errors, st.ops.qps
    );
    out
}

/// A proxy's routing as ranges (`--proxy=ADDR slots`).
pub fn proxy_slots(slots: &[Slot]) -> String {
    let mut t = Table::new(&["SLOTS", "COUNT", "BACKEND", "MIGRATE FROM", "LOCKED", "REPLICAS"]).right(&[1]);
    let key = |s: &Slot| {
        let replicas: Vec<String> = s.replica_groups.iter().map(|g| g.join(" ")).collect();
        (s.backend_addr.clone(), s.migrate_from.clone(), s.locked, replicas.join(" | "))
    };
    for (beg, end, (backend, from, locked, replicas)) in runs(slots.iter().map(|s| (s.id, key(s)))) {
        t.row(vec![
            slot_span(beg, end),
            (end - beg + 1).to_string(),
            if backend.is_empty() { "(offline)".into() } else { backend },
            if from.is_empty() { "-".into() } else { from },
            if locked { "yes".into() } else { "-".into() },
            if replicas.is_empty() { "-".into() } else { replicas },
        ]);
    }
    t.render()
}

/// A JSON object as aligned `key  value` lines, nested objects with dotted keys.
pub fn key_values(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut pairs = Vec::new();
    walk("", v, &mut pairs);
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let line = format!("{k:width$}  {v}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_core::models::{Group, GroupServer, SlotAction};

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "NUM", "LAST"]).right(&[1]);
        t.row(vec!["long-cell".into(), "7".into(), "x".into()]);
        t.row(vec!["b".into(), "1234".into(), "".into()]);
        assert_eq!(t.render(), "A           NUM  LAST\nlong-cell     7  x\nb          1234\n");
    }

    #[test]
    fn runs_merge_consecutive_equal_keys() {
        let r = runs([(0, 1), (1, 1), (2, 2), (4, 2), (5, 2)]);
        assert_eq!(r, vec![(0, 1, 1), (2, 2, 2), (4, 5, 2)]);
        assert_eq!(slot_span(3, 3), "0003");
        assert_eq!(slot_span(0, 511), "0000-0511");
    }

    fn stats() -> Stats {
        let mut s = Stats {
            slots: (0..1024)
                .map(|id| SlotMapping { id, group_id: if id < 512 { 1 } else { 2 }, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        for g in [1, 2] {
            s.group.models.push(Group {
                id: g,
                servers: vec![GroupServer { addr: format!("h:{g}"), ..Default::default() }],
                ..Default::default()
            });
        }
        s
    }

    #[test]
    fn group_status_shows_lag_and_the_last_failover() {
        let mut s = stats();
        s.group.models[0].servers.push(GroupServer { addr: "h:9".into(), ..Default::default() });
        let st: crate::view::GroupState = serde_json::from_str(
            r#"{"master":"h:1","master_status":"up","consistent":true,"sentinel_master":"h:1",
                "replicas":[{"addr":"h:9","role":"replica","follows":"h:1","link":"up","lag_bytes":42}],
                "last_failover":{"kind":"sentinel","from":"h:9","to":"h:1","config_epoch":3,
                  "detected_at":3600000,"switched_at":3602500,"duration_ms":2500,"consistent_at":3606500}}"#,
        )
        .unwrap();
        s.group.states.insert("1".into(), st);
        let out = group_status(&s);
        assert!(out.contains("; lag 42 B"), "{out}");
        assert!(
            out.contains(
                "group-1: last failover h:9 -> h:1 (failed over by the sentinels) at 01:00:02 UTC, 2.5 s after the \
                 master was seen down; every server followed it 4.0 s later"
            ),
            "{out}"
        );
        // sentinels ahead of the dashboard, and a failover still healing
        let st = s.group.states.get_mut("1").unwrap();
        st.sentinel_master = Some("h:9".into());
        st.last_failover.as_mut().unwrap().consistent_at = None;
        s.group.models[0].out_of_sync = true;
        let out = group_status(&s);
        assert!(out.contains("group-1: the sentinels elected h:9"), "{out}");
        assert!(
            out.contains("the dashboard resyncs it once every server follows") && !out.contains("--resync-group"),
            "{out}"
        );
        assert!(out.contains("waiting for every server to follow the new master"), "{out}");
    }

    #[test]
    fn slot_ranges_show_migrations_and_progress() {
        let mut s = stats();
        for sid in 0..4 {
            s.slots[sid].action = SlotAction { index: 1, state: "pending".into(), target_id: 2 };
        }
        s.slots[4].action = SlotAction { index: 1, state: "migrating".into(), target_id: 2 };
        s.slot_action.progress.slots.push(crate::view::SlotProgress {
            slot: 4,
            from: 1,
            to: 2,
            state: "migrating".into(),
            moved: 100,
            remaining: Some(50),
            keys_per_sec: 1000.0,
            elapsed_ms: 100,
            ..Default::default()
        });
        let out = slots_status(&s);
        assert!(out.contains("0000-0003      4  1      h:1     pending to group 2"), "{out}");
        assert!(
            out.contains("0004           1  1      h:1     migrating to group 2: 100 keys moved, 50 left, 1000 keys/s"),
            "{out}"
        );
        assert!(out.contains("0005-0511    507  1      h:1     -"), "{out}");
        assert!(out.contains("0512-1023    512  2      h:2     -"), "{out}");
        assert!(out.contains("migrations: 4 pending, 1 in progress"), "{out}");
    }

    #[test]
    fn move_plans_are_ranges() {
        let s = stats();
        let plan: BTreeMap<i64, i64> = (0..10).map(|sid| (sid, 2)).chain((600..602).map(|sid| (sid, 1))).collect();
        let out = move_plan(&s, &plan);
        assert_eq!(out, "SLOTS      COUNT  FROM  TO\n0000-0009     10  1     2\n0600-0601      2  2     1\n");
    }

    #[test]
    fn nested_key_values() {
        let v = serde_json::json!({"a": "x", "b": {"c": 1, "d": true}, "e": []});
        assert_eq!(key_values(&v), "a    x\nb.c  1\nb.d  true\ne    []\n");
    }
}
