//! Consistency checker: clients write versions they can recognise through the proxies
//! ([`workload`]) while a loop injects faults one after another ([`faults`]): slot
//! migrations, rebalances, kill -9 of proxies, of the dashboard and of group masters
//! (sentinel failover), a coordinator frozen for less or more than the dashboard's lease. At the end every key is read back.
//!
//! The [`Report`] counts acknowledged writes lost (split into those a master crash
//! explains, since replication is asynchronous, and the rest), stale reads, writes
//! applied twice, client errors by kind, and how long each fault took to heal.
//! [`Report::passed`] holds when nothing but master crashes lost writes.
//!
//! Everything runs on real processes ([`cluster`]); the `codis-chaos` binary runs it for
//! as long as asked, the crate's test for a short CI round.

pub mod cluster;
pub mod faults;
pub mod workload;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use cluster::{Cluster, Shape};
use faults::{CYCLE, Fault, Injector, Record};
use workload::{Shared, Tally, Worker};

#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Shape,
    /// Whole cycles of faults are injected until this much time has passed (at least one).
    pub duration: Duration,
    pub clients: usize,
    /// Keys of each kind (counter, list, hash) per client.
    pub keys: usize,
    /// Pause between a client's operations (sets the load).
    pub pause: Duration,
    /// Load without faults between two faults.
    pub quiet: Duration,
    pub seed: u64,
    /// The faults of one cycle, in order (empty: load only).
    pub cycle: Vec<Fault>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shape: Shape { groups: 3, proxies: 2, sentinels: 3, down_after_ms: 1000, lease_s: 5 },
            duration: Duration::from_secs(60),
            clients: 8,
            keys: 32,
            pause: Duration::from_millis(2),
            quiet: Duration::from_secs(2),
            seed: 1,
            cycle: CYCLE.to_vec(),
        }
    }
}

pub struct Report {
    pub options: Options,
    pub elapsed: Duration,
    pub faults: Vec<Record>,
    pub tally: Tally,
    /// Master changes the harness did not cause (seconds into the faults, group).
    pub unplanned_failovers: Vec<(Duration, i64)>,
}

impl Report {
    /// Nothing lost but what master crashes explain, no stale read, nothing applied twice.
    pub fn passed(&self) -> bool {
        self.tally.lost == 0 && self.tally.stale_reads == 0 && self.tally.duplicated == 0
    }
}

/// Starts the cluster and the clients, injects faults for `opts.duration`, stops the
/// clients, reads every key back and reports.
pub async fn run(opts: Options) -> Result<Report> {
    run_with(opts, async |_: &Cluster| {}).await
}

/// [`run`], with `meddle` called on the cluster after the clients stop and before the
/// keys are read back: the checker's own test loses writes there on purpose.
pub async fn run_with(opts: Options, meddle: impl AsyncFnOnce(&Cluster)) -> Result<Report> {
    let start = Instant::now();
    let mut cluster = Cluster::start(&opts.shape).await.context("starting the cluster")?;
    eprintln!("chaos: cluster up in {:.1?} (logs in {})", start.elapsed(), cluster.log_dir().display());
    let shared = Arc::new(Shared::new(cluster.proxies.iter().map(|p| p.addr.clone()).collect()));
    let workers: Vec<_> = (0..opts.clients)
        .map(|i| tokio::spawn(Worker::new(i, opts.keys, opts.seed, shared.clone()).run(opts.pause)))
        .collect();
    let watcher = tokio::spawn(watch_failovers(cluster.observer.clone(), shared.clone()));
    let t0 = Instant::now();
    let mut injector = Injector::new(t0, Duration::from_secs(opts.shape.lease_s));
    let mut faults = Vec::new();
    let outcome: Result<()> = async {
        for (n, fault) in opts.cycle.iter().copied().cycle().enumerate() {
            if n > 0 && n % opts.cycle.len() == 0 && t0.elapsed() >= opts.duration {
                break;
            }
            tokio::time::sleep(opts.quiet).await;
            let r = injector.inject(&mut cluster, &shared, fault).await.with_context(|| fault.name())?;
            eprintln!("chaos: {:>6.1?} {:<24} {:<40} healed in {:.2?}", r.at, fault.name(), r.detail, r.healed);
            faults.push(r);
        }
        tokio::time::sleep(opts.quiet).await;
        Ok(())
    }
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let mut tally = Tally::default();
    let mut done = Vec::new();
    for w in workers {
        done.push(w.await.context("a client task panicked")?);
    }
    outcome?;
    meddle(&cluster).await;
    for mut w in done {
        w.verify().await?;
        tally.add(&w.tally);
    }
    let crashes = shared.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let unplanned_failovers = crashes
        .iter()
        .filter(|u| !u.planned)
        .filter(|u| {
            !crashes
                .iter()
                .any(|k| k.planned && k.group == u.group && k.at <= u.at && u.at - k.at < Duration::from_secs(30))
        })
        .map(|u| (u.at.saturating_duration_since(t0), u.group))
        .collect();
    Ok(Report { options: opts, elapsed: start.elapsed(), faults, tally, unplanned_failovers })
}

/// Records every change of a group's master the dashboard shows, whoever caused it:
/// a failover loses what the old master acknowledged and had not replicated, whether
/// the harness killed it or the sentinels only judged it down.
async fn watch_failovers(observer: cluster::Observer, shared: Arc<Shared>) {
    let mut prev: Option<cluster::Snapshot> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok(now) = observer.snapshot().await {
            if let Some(before) = &prev {
                for (gid, master) in &now.masters {
                    let changed = before.masters.iter().any(|(g, m)| g == gid && m != master && !m.is_empty());
                    if changed {
                        let mut slots = [false; 1024];
                        for (sid, g, _) in &before.slots {
                            slots[*sid] = g == gid;
                        }
                        let crash =
                            workload::Crash { at: Instant::now(), group: *gid, slots: Arc::new(slots), planned: false };
                        shared.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(crash);
                    }
                }
            }
            prev = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let t = &self.tally;
        writeln!(
            f,
            "codis-chaos: {} groups (master + replica), {} proxies, {} sentinels, etcd; {} clients x {} keys of each kind; {:.0?} of faults, {:.0?} in all",
            o.shape.groups,
            o.shape.proxies,
            o.shape.sentinels,
            o.clients,
            o.keys,
            self.faults.last().map_or(Duration::ZERO, |r| r.at + r.healed),
            self.elapsed
        )?;
        writeln!(f, "\n| fault | times | heal min | heal median | heal max | whole again max |")?;
        writeln!(f, "|---|---|---|---|---|---|")?;
        let mut kinds: Vec<Fault> = self.faults.iter().map(|r| r.fault).collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            let mut heals: Vec<Duration> = self.faults.iter().filter(|r| r.fault == k).map(|r| r.healed).collect();
            heals.sort();
            let whole = self.faults.iter().filter(|r| r.fault == k).filter_map(|r| r.whole).max();
            writeln!(
                f,
                "| {} | {} | {:.2?} | {:.2?} | {:.2?} | {} |",
                k.name(),
                heals.len(),
                heals[0],
                heals[heals.len() / 2],
                heals[heals.len() - 1],
                whole.map_or("-".into(), |w| format!("{w:.2?}"))
            )?;
        }
        writeln!(
            f,
            "\nwrites acknowledged {}, failed {}; reads {} ok, {} failed",
            t.writes_acked, t.writes_failed, t.reads_ok, t.reads_failed
        )?;
        writeln!(f, "acknowledged writes lost: {} (not explained by a failover)", t.lost)?;
        writeln!(
            f,
            "acknowledged writes lost to master crashes: {} (acknowledged less than {:?} before a kill -9 of their master, or read up to {:?} after: asynchronous replication)",
            t.lost_to_crash,
            workload::CRASH_WINDOW,
            workload::REPLY_GRACE
        )?;
        writeln!(
            f,
            "acknowledged writes lost to failovers the harness did not cause: {} (same window; {} such failovers{})",
            t.lost_to_failover,
            self.unplanned_failovers.len(),
            self.unplanned_failovers
                .iter()
                .map(|(at, g)| format!(", group {g} at {:.1}s", at.as_secs_f64()))
                .collect::<String>()
        )?;
        writeln!(f, "stale reads: {}; writes applied twice: {}", t.stale_reads, t.duplicated)?;
        writeln!(f, "client errors by kind:")?;
        for (k, n) in &t.errors {
            writeln!(f, "  {n:>8}  {k}")?;
        }
        for finding in &t.findings {
            writeln!(f, "finding: {finding}")?;
        }
        write!(f, "verdict: {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}
