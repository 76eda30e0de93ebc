//! `codis-chaos`: runs the consistency checker for as long as asked and prints its
//! report; exits 1 when acknowledged writes were lost (other than to master crashes),
//! a read was stale or a write applied twice.
//!
//! Needs the workspace's codis-proxy and codis-dashboard binaries next to it and the
//! codis-slots module (`cargo build --release -p codis-proxy -p codis-dashboard -p
//! codis-slots -p codis-chaos`), plus redis-server, redis-sentinel and etcd.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use codis_chaos::{Options, run};

#[derive(Parser, Debug)]
#[command(name = "codis-chaos", about = "Consistency checker of codis-rs under faults")]
struct Args {
    /// How long to inject faults, in seconds (at least one round of every fault runs).
    #[arg(long, default_value_t = 1800)]
    duration: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Keys of each kind per client.
    #[arg(long, default_value_t = 64)]
    keys: usize,
    /// Pause between a client's operations, in milliseconds.
    #[arg(long, default_value_t = 1)]
    pause_ms: u64,
    /// Groups (a master and a replica each).
    #[arg(long, default_value_t = 3)]
    groups: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let mut o = Options {
        duration: Duration::from_secs(a.duration),
        clients: a.clients,
        keys: a.keys,
        pause: Duration::from_millis(a.pause_ms),
        seed: a.seed,
        ..Default::default()
    };
    o.shape.groups = a.groups;
    let report = run(o).await?;
    println!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
