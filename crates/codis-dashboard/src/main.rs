//! `codis-dashboard`: command-line entry point (flags as in Codis 3.2).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use codis_dashboard::Dashboard;
use codis_dashboard::config::{Config, DEFAULT_CONFIG};

#[derive(Parser, Debug)]
#[command(name = "codis-dashboard", version, about = "Cluster manager of codis-rs (Codis 3.2 compatible)")]
struct Args {
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    ncpu: Option<usize>,
    /// Configuration file (dashboard.toml); keys left out keep their defaults.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Append logs to this file instead of standard error.
    #[arg(short = 'l', long)]
    log: Option<PathBuf>,
    /// Log level: error, warn, info or debug.
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    /// Log lines as text, or as JSON objects (one per line) for log shippers.
    #[arg(long = "log-format", default_value = "text")]
    log_format: codis_log::Format,
    /// Address to advertise when admin_addr listens on 0.0.0.0.
    #[arg(long = "host-admin")]
    host_admin: Option<String>,
    /// Write the process id to this file (removed on exit).
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Use ZooKeeper at this address (overrides the config file).
    #[arg(long, conflicts_with_all = ["etcd", "filesystem"])]
    zookeeper: Option<String>,
    #[arg(long = "zookeeper-auth")]
    zookeeper_auth: Option<String>,
    /// Use etcd at this address (overrides the config file).
    #[arg(long, conflicts_with = "filesystem")]
    etcd: Option<String>,
    #[arg(long = "etcd-auth")]
    etcd_auth: Option<String>,
    /// Use this directory as the coordinator (overrides the config file).
    #[arg(long)]
    filesystem: Option<String>,
    #[arg(long = "product_name")]
    product_name: Option<String>,
    #[arg(long = "product_auth")]
    product_auth: Option<String>,
    /// Remove a stale dashboard lock of the product before starting.
    #[arg(long = "remove-lock")]
    remove_lock: bool,
    /// Wait while another dashboard holds the product, and take over when its lock
    /// goes (it stopped, died, or lost the coordinator for `coordinator_lease`).
    #[arg(long)]
    standby: bool,
    /// Print the default configuration and exit.
    #[arg(long = "default-config")]
    default_config: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.default_config {
        println!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    codis_log::init(&args.log_level, args.log.as_deref(), args.log_format)?;
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &args.host_admin {
        config.host_admin = v.clone();
    }
    if let Some(addr) = &args.zookeeper {
        (config.coordinator_name, config.coordinator_addr) = ("zookeeper".into(), addr.clone());
        config.coordinator_auth = args.zookeeper_auth.clone().unwrap_or_default();
    }
    if let Some(addr) = &args.etcd {
        (config.coordinator_name, config.coordinator_addr) = ("etcd".into(), addr.clone());
        config.coordinator_auth = args.etcd_auth.clone().unwrap_or_default();
    }
    if let Some(dir) = &args.filesystem {
        (config.coordinator_name, config.coordinator_addr) = ("filesystem".into(), dir.clone());
    }
    if let Some(v) = &args.product_name {
        config.product_name = v.clone();
    }
    if let Some(v) = &args.product_auth {
        config.product_auth = v.clone();
    }
    config.standby = args.standby;
    config.validate()?;
    let ncpu = args.ncpu.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(ncpu).enable_all().build()?;
    runtime.block_on(run(config, args.remove_lock, args.pidfile))
}

async fn run(config: Config, remove_lock: bool, pidfile: Option<PathBuf>) -> Result<()> {
    if remove_lock {
        let client = codis_store::connect(
            &config.coordinator_name,
            &config.coordinator_addr,
            &config.coordinator_auth,
            config.coordinator_lease.duration(),
        )
        .await?;
        codis_store::Store::new(client.into(), &config.product_name)
            .release()
            .await
            .context("removing the dashboard lock")?;
        tracing::warn!(product = %config.product_name, "removed the dashboard lock");
    }
    let dashboard = Dashboard::start(config).await?;
    if let Some(path) = &pidfile {
        std::fs::write(path, std::process::id().to_string())
            .with_context(|| format!("cannot write pidfile {}", path.display()))?;
    }
    tracing::warn!(admin = %dashboard.admin_addr, "dashboard is working");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut closed = dashboard.topom.shutdown_signal();
    tokio::select! {
        _ = closed.wait_for(|&c| c) => {}
        _ = tokio::signal::ctrl_c() => tracing::warn!("interrupted"),
        _ = term.recv() => tracing::warn!("terminated"),
    }
    dashboard.topom.close().await?;
    if let Some(path) = &pidfile {
        let _ = std::fs::remove_file(path);
    }
    tracing::warn!("dashboard exited");
    Ok(())
}
