//! `/metrics`: the dashboard's view of the cluster in Prometheus's text format: slots
//! per group, migrations (in progress per slot, and totals), each group's master and
//! replicas, proxies and sentinels answering, failovers. Built from the same
//! snapshot as `/topom/stats`, so both always agree.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::Topom;

impl Topom {
    pub async fn prometheus(&self) -> String {
        let st = self.stats().await;
        let product = self.config.product_name.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::with_capacity(4096);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP codis_dashboard_{name} {help}\n# TYPE codis_dashboard_{name} {kind}");
        };
        let p = format!("product=\"{product}\"");

        family(&mut out, "active", "gauge", "1 while this dashboard holds the product lock (0: standing by).");
        let _ = writeln!(out, "codis_dashboard_active{{{p}}} {}", self.is_active() as u8);

        family(&mut out, "slots", "gauge", "Slots assigned to each group (group 0: offline).");
        let mut per_group = BTreeMap::<i64, u64>::new();
        let mut actions = BTreeMap::<&str, u64>::new();
        for s in &st.slots {
            *per_group.entry(s.group_id).or_default() += 1;
            if !s.action.state.is_empty() {
                *actions.entry(s.action.state.as_str()).or_default() += 1;
            }
        }
        for (g, n) in &per_group {
            let _ = writeln!(out, "codis_dashboard_slots{{{p},group=\"{g}\"}} {n}");
        }
        family(
            &mut out,
            "slot_actions",
            "gauge",
            "Slots with a migration, by state (pending, preparing, migrating, ...).",
        );
        for (state, n) in &actions {
            let _ = writeln!(out, "codis_dashboard_slot_actions{{{p},state=\"{state}\"}} {n}");
        }
        family(&mut out, "slots_migrated_total", "counter", "Slot migrations finished since the dashboard started.");
        let _ = writeln!(
            out,
            "codis_dashboard_slots_migrated_total{{{p}}} {}",
            self.action.slots_migrated.load(Ordering::Relaxed)
        );
        family(&mut out, "keys_migrated_total", "counter", "Keys moved by finished slot migrations since the start.");
        let _ = writeln!(
            out,
            "codis_dashboard_keys_migrated_total{{{p}}} {}",
            self.action.keys_moved.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "migration_keys_moved",
            "gauge",
            "Keys moved so far by each slot migrating now (or just finished).",
        );
        for s in &st.slot_action.progress.slots {
            let _ = writeln!(
                out,
                "codis_dashboard_migration_keys_moved{{{p},slot=\"{}\",from=\"{}\",to=\"{}\",state=\"{}\"}} {}",
                s.slot, s.from, s.to, s.state, s.moved
            );
        }
        family(&mut out, "migration_keys_remaining", "gauge", "Keys left in the slot's current database, when known.");
        for s in st.slot_action.progress.slots.iter().filter(|s| s.remaining.is_some()) {
            let _ = writeln!(
                out,
                "codis_dashboard_migration_keys_remaining{{{p},slot=\"{}\"}} {}",
                s.slot,
                s.remaining.unwrap_or(0)
            );
        }

        family(&mut out, "server_up", "gauge", "1 when the dashboard's last INFO of the server succeeded.");
        for g in &st.group.models {
            for (i, s) in g.servers.iter().enumerate() {
                let up = st.group.stats.get(&s.addr).is_some_and(|r| r.error.is_none() && !r.timeout);
                let role = if i == 0 { "master" } else { "replica" };
                let _ = writeln!(
                    out,
                    "codis_dashboard_server_up{{{p},group=\"{}\",addr=\"{}\",role=\"{role}\"}} {}",
                    g.id, s.addr, up as u8
                );
            }
        }
        family(
            &mut out,
            "group_consistent",
            "gauge",
            "1 when the master is up and every replica follows it with its link up.",
        );
        for (g, state) in &st.group.states {
            let _ = writeln!(out, "codis_dashboard_group_consistent{{{p},group=\"{g}\"}} {}", state.consistent as u8);
        }
        family(&mut out, "replica_lag_bytes", "gauge", "Replication stream a replica has not received yet.");
        for (g, state) in &st.group.states {
            for r in state.replicas.iter().filter(|r| r.lag_bytes.is_some()) {
                let _ = writeln!(
                    out,
                    "codis_dashboard_replica_lag_bytes{{{p},group=\"{g}\",addr=\"{}\"}} {}",
                    r.addr,
                    r.lag_bytes.unwrap_or(0)
                );
            }
        }
        family(
            &mut out,
            "failovers_total",
            "counter",
            "Master changes since the start, by group and kind (sentinel, promote).",
        );
        let counts = self.ha.lock().failover_counts.clone();
        for ((g, kind), n) in &counts {
            let _ = writeln!(out, "codis_dashboard_failovers_total{{{p},group=\"{g}\",kind=\"{kind}\"}} {n}");
        }
        family(
            &mut out,
            "last_failover_seconds",
            "gauge",
            "From detecting the old master's trouble to switching, last failover.",
        );
        for (g, state) in &st.group.states {
            if let Some(f) = &state.last_failover {
                let _ = writeln!(
                    out,
                    "codis_dashboard_last_failover_seconds{{{p},group=\"{g}\"}} {}",
                    f.duration_ms as f64 / 1000.0
                );
            }
        }

        family(&mut out, "proxy_up", "gauge", "1 when the dashboard's last stats call to the proxy succeeded.");
        for m in &st.proxy.models {
            let up = st.proxy.stats.get(&m.token).is_some_and(|s| s.error.is_none() && !s.timeout && s.stats.is_some());
            let _ = writeln!(out, "codis_dashboard_proxy_up{{{p},addr=\"{}\"}} {}", m.admin_addr, up as u8);
        }
        family(&mut out, "sentinel_up", "gauge", "1 when the sentinel answered the dashboard's last poll.");
        for addr in &st.sentinels.model.servers {
            let up = st.sentinels.stats.get(addr).is_some_and(|s| s.error.is_none() && !s.timeout);
            let _ = writeln!(out, "codis_dashboard_sentinel_up{{{p},addr=\"{addr}\"}} {}", up as u8);
        }
        out
    }
}
