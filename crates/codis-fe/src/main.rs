//! `codis-fe`: command-line entry point (flags as in Codis 3.2, plus login options).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use codis_fe::{Config, Fe, Source};

#[derive(Parser, Debug)]
#[command(name = "codis-fe", version, about = "Web console of codis-rs (Codis 3.2 compatible routes)")]
struct Args {
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    ncpu: Option<usize>,
    /// Address to serve the console on.
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: String,
    /// JSON file listing products: [{"name": "codis-demo", "dashboard": "127.0.0.1:18080"}].
    #[arg(long = "dashboard-list", conflicts_with_all = ["zookeeper", "etcd", "filesystem"])]
    dashboard_list: Option<PathBuf>,
    /// Find products in ZooKeeper at this address.
    #[arg(long, conflicts_with_all = ["etcd", "filesystem"])]
    zookeeper: Option<String>,
    /// ZooKeeper digest credentials: user:password.
    #[arg(long = "zookeeper-auth", default_value = "")]
    zookeeper_auth: String,
    /// Find products in etcd at this address.
    #[arg(long, conflicts_with = "filesystem")]
    etcd: Option<String>,
    /// etcd user: user:password.
    #[arg(long = "etcd-auth", default_value = "")]
    etcd_auth: String,
    /// Find products in this coordinator directory.
    #[arg(long)]
    filesystem: Option<String>,
    /// A password that logs in to every product (else log in with a product's secret).
    #[arg(long, env = "CODIS_FE_PASSWORD", default_value = "")]
    password: String,
    /// Admin secret of a product, used after logging in with --password: NAME=SECRET (repeatable).
    #[arg(long = "product-auth")]
    product_auth: Vec<String>,
    /// Without login, show the cluster but refuse changes (false: anyone may change it).
    #[arg(long = "read-only-without-login", default_value_t = true, action = clap::ArgAction::Set)]
    read_only_without_login: bool,
    /// Even viewing needs a login.
    #[arg(long = "require-login")]
    require_login: bool,
    /// Serve the UI from this directory instead of the copy built into the binary.
    #[arg(long = "assets-dir")]
    assets_dir: Option<PathBuf>,
    /// Seconds between samples of each product (charts and event log).
    #[arg(long = "sample-interval", default_value_t = 3)]
    sample_interval: u64,
    /// Append logs to this file instead of standard error.
    #[arg(short = 'l', long)]
    log: Option<PathBuf>,
    /// Log level: error, warn, info or debug.
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    /// Log lines as text, or as JSON objects (one per line) for log shippers.
    #[arg(long = "log-format", default_value = "text")]
    log_format: codis_log::Format,
    /// Write the process id to this file (removed on exit).
    #[arg(long)]
    pidfile: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    codis_log::init(&args.log_level, args.log.as_deref(), args.log_format)?;
    let mut product_auth = HashMap::new();
    for pa in &args.product_auth {
        let Some((name, secret)) = pa.split_once('=') else {
            bail!("invalid --product-auth {pa:?}: use NAME=SECRET");
        };
        product_auth.insert(name.to_string(), secret.to_string());
    }
    let config = Config {
        password: args.password.clone(),
        product_auth,
        read_only_without_login: args.read_only_without_login,
        require_login: args.require_login,
        assets_dir: args.assets_dir.clone(),
        sample_interval: std::time::Duration::from_secs(args.sample_interval.max(1)),
    };
    let ncpu = args.ncpu.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(ncpu).enable_all().build()?;
    runtime.block_on(run(args, config))
}

async fn run(args: Args, config: Config) -> Result<()> {
    let source = if let Some(path) = &args.dashboard_list {
        Source::ListFile(path.clone())
    } else {
        let (name, addr, auth) = match (&args.zookeeper, &args.etcd, &args.filesystem) {
            (Some(a), _, _) => ("zookeeper", a.clone(), args.zookeeper_auth.clone()),
            (_, Some(a), _) => ("etcd", a.clone(), args.etcd_auth.clone()),
            (_, _, Some(a)) => ("filesystem", a.clone(), String::new()),
            _ => bail!(
                "say where the products are: --dashboard-list FILE, --filesystem DIR, --etcd ADDR or --zookeeper ADDR"
            ),
        };
        let c = codis_store::connect(name, &addr, &auth, std::time::Duration::from_secs(30))
            .await
            .with_context(|| format!("cannot open the {name} coordinator at {addr}"))?;
        Source::Coordinator(Arc::from(c))
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another process using it?)", args.listen))?;
    if let Some(path) = &args.pidfile {
        std::fs::write(path, std::process::id().to_string())
            .with_context(|| format!("cannot write pidfile {}", path.display()))?;
    }
    tracing::warn!(listen = %listener.local_addr()?, "codis-fe is serving");
    let fe = Fe::new(config, source);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = fe.serve(listener) => r.context("serving the console")?,
        _ = tokio::signal::ctrl_c() => tracing::warn!("interrupted"),
        _ = term.recv() => tracing::warn!("terminated"),
    }
    if let Some(path) = &args.pidfile {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
