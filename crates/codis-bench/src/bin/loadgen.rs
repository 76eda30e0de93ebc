//! `loadgen`: a fixed-rate (open-loop) Redis load with latency percentiles.
//!
//! Requests are scheduled at their intended times, and latency is measured from that
//! time, so a stall shows up as latency instead of silently lowering the rate.
//! Prints one JSON line per second (`t, ops, errors, p50_us, p99_us, max_us`) and a
//! summary line at the end; with `--phase-file`, also a summary per phase (the file's
//! content when each second began), so a benchmark can ask for the p99 over all the
//! requests of a period rather than per second.
//!
//! With `--track`, every write creates a key of its own (`track:<client>:<seq>`), so
//! a lost write cannot be hidden by a later one; at the end the clients check that
//! every acknowledged key exists and report how many were lost, and the periods (over
//! 100 ms) in which no write succeeded, with their unix-ms bounds, for failover
//! measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use codis_bench::percentiles;
use codis_client::{Client, Value};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
struct Args {
    /// Address of the proxy (or server) to load.
    #[arg(long)]
    addr: String,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 20000)]
    rate: u64,
    /// Connections.
    #[arg(long, default_value_t = 16)]
    clients: u64,
    /// Keys are `key:<n>` for n below this (DEBUG POPULATE's naming).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Fraction of writes (SET), the rest are GETs.
    #[arg(long, default_value_t = 0.2)]
    writes: f64,
    /// Stop after this many seconds (0: run until this file exists).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Stop when this file appears.
    #[arg(long)]
    stop_file: Option<String>,
    /// Group samples by the content of this file (read once per second).
    #[arg(long)]
    phase_file: Option<String>,
    /// Write versioned values and report lost acknowledged writes and write outages.
    #[arg(long)]
    track: bool,
}

/// What a tracking client saw: its keys' last acknowledged values, and when its writes succeeded.
#[derive(Default)]
struct Tracked {
    /// Keys whose SET was acknowledged.
    acked: Vec<String>,
    /// Unix ms of each successful write, in order.
    ok_at: Vec<u64>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Sample {
    at: Instant,
    latency_us: u64,
    error: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let per_client = Duration::from_secs_f64(args.clients as f64 / args.rate.max(1) as f64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (tx, stop, addr) = (tx.clone(), stop.clone(), args.addr.clone());
        let (keys, writes, track) = (args.keys, args.writes, args.track);
        tasks.push(tokio::spawn(async move {
            let mut cl = Client::connect(&addr).await.expect("connect");
            let mut next = Instant::now() + per_client.mul_f64(c as f64 / args.clients as f64);
            let mut n: u64 = c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut tracked = Tracked::default();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let write = ((n >> 11) % 1000) as f64 / 1000.0 < writes;
                let key = if track && write {
                    seq += 1;
                    format!("track:{c}:{seq}")
                } else if track {
                    format!("track:{c}:{}", (n >> 33) % seq.max(1))
                } else {
                    format!("key:{}", (n >> 33) % keys)
                };
                let value = "0123456789abcdef";
                let reply = if write { cl.cmd(&["SET", &key, value]).await } else { cl.cmd(&["GET", &key]).await };
                let error = !matches!(reply, Ok(Value::Simple(_)) | Ok(Value::Bulk(_)) | Ok(Value::Nil));
                if error {
                    eprintln!("error: {reply:?}");
                    if reply.is_err()
                        && let Ok(fresh) = Client::connect(&addr).await
                    {
                        cl = fresh;
                    }
                } else if track && write {
                    tracked.acked.push(key);
                    tracked.ok_at.push(unix_ms());
                }
                let _ = tx.send(Sample { at: next, latency_us: next.elapsed().as_micros() as u64, error });
                next += per_client;
            }
            if !track {
                return (0, 0, tracked.ok_at);
            }
            // read back every key this client wrote
            let mut lost = 0u64;
            for chunk in tracked.acked.chunks(500) {
                let cmds: Vec<Vec<Vec<u8>>> =
                    chunk.iter().map(|k| vec![b"EXISTS".to_vec(), k.as_bytes().to_vec()]).collect();
                match cl.pipeline(&cmds).await {
                    Ok(replies) => lost += replies.iter().filter(|r| r.as_int() != Some(1)).count() as u64,
                    Err(e) => {
                        eprintln!("cannot check acknowledged keys: {e}");
                        lost += chunk.len() as u64;
                    }
                }
            }
            (lost, tracked.acked.len() as u64, tracked.ok_at)
        }));
    }
    drop(tx);
    let mut window: Vec<u64> = Vec::new();
    let mut all: Vec<u64> = Vec::new();
    let read_phase =
        || args.phase_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).map(|s| s.trim().to_string());
    let mut phases: std::collections::BTreeMap<String, (Vec<u64>, u64)> = Default::default();
    let mut phase = read_phase();
    let (mut errors, mut window_errors, mut second) = (0u64, 0u64, 1u64);
    loop {
        let deadline = start + Duration::from_secs(second);
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(s)) => {
                if s.at >= deadline {
                    // belongs to a later window: close this one first
                    report(second, &mut window, &mut window_errors);
                    second += 1;
                    phase = read_phase();
                }
                window.push(s.latency_us);
                all.push(s.latency_us);
                if let Some(p) = &phase {
                    let (samples, errs) = phases.entry(p.clone()).or_default();
                    samples.push(s.latency_us);
                    *errs += s.error as u64;
                }
                if s.error {
                    errors += 1;
                    window_errors += 1;
                }
            }
            Ok(None) => break,
            Err(_) => {
                report(second, &mut window, &mut window_errors);
                second += 1;
                phase = read_phase();
                let done = (args.seconds > 0 && second > args.seconds)
                    || args.stop_file.as_ref().is_some_and(|f| std::path::Path::new(f).exists());
                if done {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    for (name, (mut samples, errs)) in phases {
        let ops = samples.len();
        let (p50, p99, max) = percentiles(&mut samples);
        println!(
            "{}",
            serde_json::json!({"phase": name, "ops": ops, "errors": errs, "p50_us": p50, "p99_us": p99, "max_us": max})
        );
    }
    if args.track {
        let (mut lost, mut checked, mut ok_at) = (0, 0, Vec::new());
        for t in tasks {
            let (l, c, ok) = t.await?;
            lost += l;
            checked += c;
            ok_at.extend(ok);
        }
        ok_at.sort_unstable();
        let gaps: Vec<serde_json::Value> = ok_at
            .windows(2)
            .filter(|w| w[1] - w[0] > 100)
            .map(|w| serde_json::json!({"from_ms": w[0], "to_ms": w[1], "ms": w[1] - w[0]}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"track": true, "acked_writes": ok_at.len(), "keys_checked": checked,
                "acked_writes_lost": lost, "write_gaps": gaps})
        );
    }
    let total = all.len();
    let (p50, p99, max) = percentiles(&mut all);
    println!(
        "{}",
        serde_json::json!({"summary": true, "ops": total, "errors": errors, "p50_us": p50, "p99_us": p99, "max_us": max})
    );
    Ok(())
}

fn report(t: u64, window: &mut Vec<u64>, errors: &mut u64) {
    let (p50, p99, max) = percentiles(window);
    println!(
        "{}",
        serde_json::json!({"t": t, "ops": window.len(), "errors": *errors, "p50_us": p50, "p99_us": p99, "max_us": max})
    );
    window.clear();
    *errors = 0;
}
