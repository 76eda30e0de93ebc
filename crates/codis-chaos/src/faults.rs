//! The faults, one at a time: each is injected, then the harness waits until the
//! cluster has healed (and measures how long that took) before the next one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::Cluster;
use crate::workload::{Crash, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Move a range of slots to another group (semi-async migration).
    MigrateSlots,
    /// Rebalance slots over the groups.
    Rebalance,
    /// SIGKILL a proxy; start it again a second later.
    KillProxy,
    /// SIGKILL the dashboard; a new one takes over once the dead one's lease expires.
    RestartDashboard,
    /// SIGKILL a group's master; sentinels fail over; the old master comes back as a replica.
    KillMaster,
    /// SIGSTOP the coordinator (etcd), then SIGCONT: every other time for less than the
    /// dashboard's lease, else for longer (the dashboard loses its lock and takes it back).
    PauseCoordinator,
}

/// The order faults come in: a migration first so that the rebalance has work to do.
pub const CYCLE: [Fault; 6] = [
    Fault::MigrateSlots,
    Fault::KillProxy,
    Fault::Rebalance,
    Fault::KillMaster,
    Fault::RestartDashboard,
    Fault::PauseCoordinator,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::MigrateSlots => "migrate slots",
            Fault::Rebalance => "rebalance",
            Fault::KillProxy => "kill -9 a proxy",
            Fault::RestartDashboard => "kill -9 the dashboard",
            Fault::KillMaster => "kill -9 a group master",
            Fault::PauseCoordinator => "pause the coordinator",
        }
    }
}

/// One injected fault and how it healed.
#[derive(Debug, Clone)]
pub struct Record {
    pub fault: Fault,
    pub detail: String,
    /// Seconds from the start of the run to the injection.
    pub at: Duration,
    /// From the injection until clients are served again (for a migration: until done).
    pub healed: Duration,
    /// Until the cluster is whole again (replicas in sync, sentinels ready), when that
    /// comes later than `healed`.
    pub whole: Option<Duration>,
}

/// How long each heal may take before the run fails.
const HEAL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Injector {
    pub start: Instant,
    /// How many faults of each kind ran: picks the next proxy, master, target group.
    rounds: std::collections::HashMap<Fault, usize>,
    /// The dashboard's lease: the coordinator stays frozen for less, or for more.
    pub lease: Duration,
}

impl Injector {
    pub fn new(start: Instant, lease: Duration) -> Injector {
        Injector { start, rounds: Default::default(), lease }
    }

    pub async fn inject(&mut self, c: &mut Cluster, shared: &Shared, fault: Fault) -> Result<Record> {
        let round = *self.rounds.entry(fault).and_modify(|n| *n += 1).or_insert(0);
        let t0 = Instant::now();
        let at = t0 - self.start;
        let (detail, healed, whole) = match fault {
            Fault::MigrateSlots => {
                let detail = migrate(c, round).await?;
                (detail, t0.elapsed(), None)
            }
            Fault::Rebalance => {
                let plan = c.put("slots/rebalance/XAUTH/1").await?;
                let n = plan.as_object().map_or(0, |m| m.len());
                wait_no_actions(c).await?;
                (format!("{n} slots planned"), t0.elapsed(), None)
            }
            Fault::KillProxy => {
                let i = round % c.proxies.len();
                c.kill_proxy(i);
                // The proxy stays down for a second: clients on it must move to another.
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.start_proxy(i).await?;
                (format!("proxy {i} ({})", c.proxies[i].addr), t0.elapsed(), None)
            }
            Fault::RestartDashboard => {
                c.kill_dashboard();
                c.start_dashboard().await?;
                poll("the new dashboard to take the lock", || async { c.dashboard_writes().await.then_some(()) })
                    .await?;
                ("a standby takes over once the lease expires".into(), t0.elapsed(), None)
            }
            Fault::KillMaster => kill_master(c, shared, round, t0).await?,
            Fault::PauseCoordinator => {
                let pause = if round.is_multiple_of(2) {
                    self.lease.saturating_sub(Duration::from_secs(2)).max(Duration::from_secs(1))
                } else {
                    self.lease + Duration::from_secs(2)
                };
                c.coordinator.pause();
                tokio::time::sleep(pause).await;
                c.coordinator.resume();
                let resumed = Instant::now();
                poll("the dashboard to write to the coordinator again", || async {
                    c.dashboard_writes().await.then_some(())
                })
                .await?;
                (format!("etcd frozen {pause:?}; heal counted from SIGCONT"), resumed.elapsed(), None)
            }
        };
        for i in 0..c.proxies.len() {
            poll("every proxy to serve", || async { c.proxy_serves(i).await.then_some(()) }).await?;
        }
        if let Some(e) = c.crashed() {
            bail!("{e} (during {})", fault.name());
        }
        Ok(Record { fault, detail, at, healed, whole })
    }
}

/// Moves up to 64 slots of the group with most slots to the next group.
async fn migrate(c: &Cluster, round: usize) -> Result<String> {
    let slots = c.slots().await?;
    let mut count = std::collections::BTreeMap::<i64, usize>::new();
    for (_, g, _) in &slots {
        *count.entry(*g).or_default() += 1;
    }
    let (&from, _) = count.iter().max_by_key(|(_, n)| **n).context("no slots assigned")?;
    let ids: Vec<i64> = c.groups.iter().map(|g| g.id).collect();
    let to = ids[(ids.iter().position(|&g| g == from).unwrap_or(0) + 1 + round) % ids.len()];
    let to = if to == from { ids[(ids.iter().position(|&g| g == from).unwrap_or(0) + 1) % ids.len()] } else { to };
    let beg = slots.iter().find(|(_, g, _)| *g == from).map(|s| s.0).context("source has no slot")?;
    let mut end = beg;
    while end + 1 < slots.len() && slots[end + 1].1 == from && end + 1 - beg < 64 {
        end += 1;
    }
    c.put(&format!("slots/action/create-range/XAUTH/{beg}/{end}/{to}")).await?;
    poll("the migration to finish", || async {
        let s = c.slots().await.ok()?;
        s[beg..=end].iter().all(|(_, g, state)| *g == to && state.is_empty()).then_some(())
    })
    .await?;
    Ok(format!("slots {beg}..={end} group {from} -> {to}"))
}

async fn kill_master(
    c: &mut Cluster,
    shared: &Shared,
    round: usize,
    t0: Instant,
) -> Result<(String, Duration, Option<Duration>)> {
    let masters = c.masters().await?;
    let (gid, master) = masters[round % masters.len()].clone();
    let (gi, si) = c.group_of_addr(&master).context("the master is not one of ours")?;
    let mut owned = [false; 1024];
    for (sid, g, _) in c.slots().await? {
        owned[sid] = g == gid;
    }
    c.groups[gi].servers[si].kill();
    // Taken once the process is reaped: it acknowledged nothing after this.
    shared.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Crash {
        at: Instant::now(),
        group: gid,
        slots: Arc::new(owned),
        planned: true,
    });
    let new = poll("the dashboard to promote a replica", || async {
        let m = c.masters().await.ok()?;
        m.into_iter().find(|(g, a)| *g == gid && *a != master && !a.is_empty()).map(|(_, a)| a)
    })
    .await?;
    for i in 0..c.proxies.len() {
        poll("every proxy to write to the new master", || async { c.proxy_serves(i).await.then_some(()) }).await?;
    }
    let healed = t0.elapsed();
    // The old master returns empty (no persistence) and must become a replica.
    c.groups[gi].servers[si].restart();
    c.wait_replicas_synced(HEAL_TIMEOUT).await?;
    c.wait_sentinels_ready(HEAL_TIMEOUT).await?;
    Ok((format!("group {gid}: {master} -> {new}"), healed, Some(t0.elapsed())))
}

/// Waits until no slot has a migration pending or in progress.
async fn wait_no_actions(c: &Cluster) -> Result<()> {
    poll("slot actions to finish", || async {
        let s = c.slots().await.ok()?;
        s.iter().all(|(_, _, state)| state.is_empty()).then_some(())
    })
    .await
}

/// Polls `check` every 50 ms until it gives `Some`, for at most [`HEAL_TIMEOUT`].
async fn poll<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + HEAL_TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {HEAL_TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
