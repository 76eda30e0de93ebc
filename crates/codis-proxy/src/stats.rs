//! Request statistics in Codis's shape (`ops`, per-command `cmd`, `sessions`, `rusage`).
//!
//! Sessions count locally and fold their counts into the shared counters every 100 ms
//! and when they end, so the hot path touches no shared cache line per request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::command;

/// Upper bounds of the latency histogram buckets, in microseconds (`+Inf` is implied).
/// From 100 µs (a pipelined hit) to 5 s (a stuck backend), roughly ×5 apart.
pub const LATENCY_BUCKETS_US: [i64; 10] =
    [100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000];

/// Bucket index of a request that took `nsecs` (the last one is `+Inf`).
fn bucket_of(nsecs: i64) -> usize {
    let us = nsecs / 1000;
    LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len())
}

#[derive(Default)]
struct OpCounter {
    calls: AtomicI64,
    nsecs: AtomicI64,
    fails: AtomicI64,
    redis_errors: AtomicI64,
    /// Requests per latency bucket (not cumulative; the exporter sums them).
    buckets: [AtomicI64; LATENCY_BUCKETS_US.len() + 1],
}

/// Per-command figures as `/proxy/stats` reports them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OpStats {
    pub opstr: String,
    pub calls: i64,
    pub usecs: i64,
    pub usecs_percall: i64,
    pub fails: i64,
    pub redis_errtype: i64,
    /// Requests per latency bucket of [`LATENCY_BUCKETS_US`] plus `+Inf` (not in
    /// Codis's JSON).
    #[serde(skip)]
    pub buckets: [i64; LATENCY_BUCKETS_US.len() + 1],
}

/// The proxy-wide counters.
pub struct Stats {
    pub total: AtomicI64,
    pub fails: AtomicI64,
    pub redis_errors: AtomicI64,
    pub qps: AtomicI64,
    pub sessions_total: AtomicI64,
    pub sessions_alive: AtomicI64,
    ops: Box<[OpCounter]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            total: AtomicI64::new(0),
            fails: AtomicI64::new(0),
            redis_errors: AtomicI64::new(0),
            qps: AtomicI64::new(0),
            sessions_total: AtomicI64::new(0),
            sessions_alive: AtomicI64::new(0),
            // one extra entry for commands the table does not know
            ops: (0..=command::count()).map(|_| OpCounter::default()).collect(),
        }
    }
}

impl Stats {
    fn slot(&self, id: u16) -> &OpCounter {
        &self.ops[(id as usize).min(self.ops.len() - 1)]
    }

    /// Every command used since the last reset, sorted by name.
    pub fn op_stats(&self) -> Vec<OpStats> {
        let mut out: Vec<OpStats> = self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, c)| c.calls.load(Ordering::Relaxed) != 0 || c.fails.load(Ordering::Relaxed) != 0)
            .map(|(i, c)| {
                let calls = c.calls.load(Ordering::Relaxed);
                let usecs = c.nsecs.load(Ordering::Relaxed) / 1000;
                OpStats {
                    opstr: command::name_of(i as u16).to_string(),
                    calls,
                    usecs,
                    usecs_percall: if calls != 0 { usecs / calls } else { 0 },
                    fails: c.fails.load(Ordering::Relaxed),
                    redis_errtype: c.redis_errors.load(Ordering::Relaxed),
                    buckets: std::array::from_fn(|i| c.buckets[i].load(Ordering::Relaxed)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.opstr.cmp(&b.opstr));
        out
    }

    pub fn reset(&self) {
        for c in self.ops.iter() {
            c.calls.store(0, Ordering::Relaxed);
            c.nsecs.store(0, Ordering::Relaxed);
            c.fails.store(0, Ordering::Relaxed);
            c.redis_errors.store(0, Ordering::Relaxed);
            for b in &c.buckets {
                b.store(0, Ordering::Relaxed);
            }
        }
        self.total.store(0, Ordering::Relaxed);
        self.fails.store(0, Ordering::Relaxed);
        self.redis_errors.store(0, Ordering::Relaxed);
    }

    /// Updates `qps` once a second until the returned task is dropped with the runtime.
    pub fn spawn_qps(self: &std::sync::Arc<Self>) {
        let stats = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last = 0;
            let mut at = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(stats) = stats.upgrade() else { return };
                let now = Instant::now();
                let total = stats.total.load(Ordering::Relaxed);
                let delta = (total - last).max(0) as f64 / (now - at).as_secs_f64().max(1e-3);
                stats.qps.store(delta.round() as i64, Ordering::Relaxed);
                last = total;
                at = now;
            }
        });
    }
}

#[derive(Default, Clone, Copy)]
struct LocalOp {
    id: u16,
    calls: i64,
    nsecs: i64,
    fails: i64,
    redis_errors: i64,
    buckets: [i64; LATENCY_BUCKETS_US.len() + 1],
}

/// A session's unflushed counts.
pub struct LocalStats {
    ops: Vec<LocalOp>,
    dirty: bool,
    last_flush: Instant,
}

impl Default for LocalStats {
    fn default() -> Self {
        LocalStats { ops: Vec::new(), dirty: false, last_flush: Instant::now() }
    }
}

impl LocalStats {
    /// Records one finished request.
    pub fn record(&mut self, id: u16, elapsed: Duration, proxy_error: bool, redis_error: bool) {
        let e = match self.ops.iter_mut().position(|o| o.id == id) {
            Some(i) => &mut self.ops[i],
            None => {
                self.ops.push(LocalOp { id, ..Default::default() });
                self.ops.last_mut().unwrap()
            }
        };
        let nsecs = elapsed.as_nanos() as i64;
        e.calls += 1;
        e.nsecs += nsecs;
        e.buckets[bucket_of(nsecs)] += 1;
        e.fails += proxy_error as i64;
        e.redis_errors += redis_error as i64;
        self.dirty = true;
    }

    /// Folds the counts into `stats` if 100 ms passed (or `force`).
    pub fn flush(&mut self, stats: &Stats, now: Instant, force: bool) {
        if !self.dirty || (!force && now - self.last_flush < Duration::from_millis(100)) {
            return;
        }
        self.last_flush = now;
        self.dirty = false;
        let (mut total, mut fails, mut errors) = (0, 0, 0);
        for o in self.ops.iter_mut().filter(|o| o.calls != 0) {
            let c = stats.slot(o.id);
            c.calls.fetch_add(o.calls, Ordering::Relaxed);
            c.nsecs.fetch_add(o.nsecs, Ordering::Relaxed);
            c.fails.fetch_add(o.fails, Ordering::Relaxed);
            c.redis_errors.fetch_add(o.redis_errors, Ordering::Relaxed);
            for (shared, &n) in c.buckets.iter().zip(&o.buckets) {
                if n != 0 {
                    shared.fetch_add(n, Ordering::Relaxed);
                }
            }
            total += o.calls;
            fails += o.fails;
            errors += o.redis_errors;
            *o = LocalOp { id: o.id, ..Default::default() };
        }
        stats.total.fetch_add(total, Ordering::Relaxed);
        stats.fails.fetch_add(fails, Ordering::Relaxed);
        stats.redis_errors.fetch_add(errors, Ordering::Relaxed);
    }
}

/// CPU and memory of this process, as `rusage` in the stats.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rusage {
    pub now: String,
    /// CPU used over the last sampling period, in cores (1.0 = one core busy).
    pub cpu: f64,
    /// Resident memory in bytes.
    pub mem: i64,
}

/// Samples `/proc/self` once a second.
pub struct RusageSampler {
    latest: parking_lot::Mutex<Rusage>,
}

impl RusageSampler {
    pub fn spawn() -> std::sync::Arc<RusageSampler> {
        let s = std::sync::Arc::new(RusageSampler { latest: parking_lot::Mutex::new(Rusage::default()) });
        let weak = std::sync::Arc::downgrade(&s);
        tokio::spawn(async move {
            let mut prev = (Instant::now(), cpu_seconds());
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(s) = weak.upgrade() else { return };
                let now = (Instant::now(), cpu_seconds());
                let cpu = (now.1 - prev.1) / (now.0 - prev.0).as_secs_f64().max(1e-3);
                prev = now;
                *s.latest.lock() = Rusage { now: codis_core::clock::now_string(), cpu, mem: rss_bytes() };
            }
        });
        s
    }

    pub fn get(&self) -> Rusage {
        self.latest.lock().clone()
    }
}

/// User plus system CPU seconds of this process.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> i64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages = statm.split_whitespace().nth(1).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i64
}

/// What `/metrics` shows besides the counters of [`Stats`].
pub struct Exposition<'a> {
    pub stats: &'a Stats,
    pub usage: &'a Rusage,
    pub online: bool,
    pub product: &'a str,
    pub backends: &'a [crate::backend::PoolStats],
    /// Sampled requests per slot (see [`crate::router::SLOT_SAMPLE`]).
    pub slot_ops: &'a [(u16, u64)],
}

/// The proxy's counters in Prometheus's text exposition format. Per-command series
/// carry a `cmd` label, per-backend ones `addr` and `role`; every series carries the
/// product, so one Prometheus can scrape the proxies of several products.
pub fn prometheus(e: &Exposition<'_>) -> String {
    use std::fmt::Write;
    let stats = e.stats;
    let product = e.product.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::with_capacity(8192);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP codis_proxy_{name} {help}\n# TYPE codis_proxy_{name} {kind}");
    };
    let ops = stats.op_stats();
    type Series = (&'static str, &'static str, fn(&OpStats) -> f64);
    let per_command: [Series; 3] = [
        ("commands_total", "Requests served, by command.", |o| o.calls as f64),
        ("command_failures_total", "Requests the proxy failed (backend down, refused, ...), by command.", |o| {
            o.fails as f64
        }),
        ("command_redis_errors_total", "Error replies from the servers, by command.", |o| o.redis_errtype as f64),
    ];
    for (name, help, value) in per_command {
        family(&mut out, name, "counter", help);
        for o in &ops {
            let _ = writeln!(out, "codis_proxy_{name}{{product=\"{product}\",cmd=\"{}\"}} {}", o.opstr, value(o));
        }
    }
    family(&mut out, "command_duration_seconds", "histogram", "Time from request to reply, by command.");
    for o in &ops {
        let labels = format!("product=\"{product}\",cmd=\"{}\"", o.opstr);
        let mut cumulative = 0;
        for (i, n) in o.buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| (*us as f64 / 1e6).to_string());
            let _ = writeln!(out, "codis_proxy_command_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "codis_proxy_command_duration_seconds_sum{{{labels}}} {}", o.usecs as f64 / 1e6);
        let _ = writeln!(out, "codis_proxy_command_duration_seconds_count{{{labels}}} {}", o.calls);
    }
    type BackendSeries = (&'static str, &'static str, &'static str, fn(&crate::backend::PoolStats) -> f64);
    let per_backend: [BackendSeries; 6] = [
        ("backend_connections_up", "gauge", "Shared connections to the server that are up.", |b| b.up as f64),
        ("backend_connections_down", "gauge", "Shared connections waiting to reconnect.", |b| b.down as f64),
        ("backend_connections_connecting", "gauge", "Shared connections being opened.", |b| b.connecting as f64),
        ("backend_inflight", "gauge", "Requests sent or queued to the server, not answered yet.", |b| {
            b.inflight as f64
        }),
        ("backend_requests_total", "counter", "Requests sent to the server on shared connections.", |b| b.sent as f64),
        ("backend_connects_total", "counter", "Successful connects to the server (more than one: reconnects).", |b| {
            b.connects as f64
        }),
    ];
    for (name, kind, help, value) in per_backend {
        family(&mut out, name, kind, help);
        for b in e.backends {
            let role = if b.replica { "replica" } else { "master" };
            let _ = writeln!(
                out,
                "codis_proxy_{name}{{product=\"{product}\",addr=\"{}\",role=\"{role}\"}} {}",
                b.addr,
                value(b)
            );
        }
    }
    family(
        &mut out,
        "slot_requests_sampled_total",
        "counter",
        "Requests by slot, sampled (one request in 64 counts 64): which slots are hot.",
    );
    for (slot, n) in e.slot_ops {
        let _ = writeln!(out, "codis_proxy_slot_requests_sampled_total{{product=\"{product}\",slot=\"{slot}\"}} {n}");
    }
    let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
    let scalars: [(&str, &str, &str, f64); 8] = [
        ("requests_total", "counter", "Requests served.", load(&stats.total) as f64),
        ("failures_total", "counter", "Requests the proxy failed.", load(&stats.fails) as f64),
        ("redis_errors_total", "counter", "Error replies from the servers.", load(&stats.redis_errors) as f64),
        ("ops_per_second", "gauge", "Requests in the last second.", load(&stats.qps) as f64),
        ("sessions", "gauge", "Client connections open.", load(&stats.sessions_alive) as f64),
        ("sessions_total", "counter", "Client connections accepted.", load(&stats.sessions_total) as f64),
        ("resident_memory_bytes", "gauge", "Resident memory of the proxy process.", e.usage.mem as f64),
        ("online", "gauge", "1 once the proxy serves (slots filled and started).", if e.online { 1.0 } else { 0.0 }),
    ];
    for (name, kind, help, value) in scalars {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "codis_proxy_{name}{{product=\"{product}\"}} {value}");
    }
    out
}
