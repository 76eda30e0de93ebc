//! `codis-proxy`: command-line entry point (flags as in Codis 3.2).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use codis_core::models::Slot;
use codis_proxy::config::{Config, DEFAULT_CONFIG};
use codis_proxy::discovery::{Retry, dashboard_from_coordinator, online_with_dashboard};
use codis_proxy::proxy::{LogControl, Options, Proxy};

#[derive(Parser, Debug)]
#[command(name = "codis-proxy", version, about = "RESP proxy of codis-rs (Codis 3.2 compatible)")]
struct Args {
    /// Worker threads serving clients (default: number of CPUs).
    #[arg(long)]
    ncpu: Option<usize>,
    /// Accepted for compatibility with Codis; threads are fixed at --ncpu.
    #[arg(long = "max-ncpu")]
    max_ncpu: Option<usize>,
    /// Configuration file (proxy.toml); keys left out keep their defaults.
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
    /// Address to advertise for the admin API when admin_addr listens on 0.0.0.0.
    #[arg(long = "host-admin")]
    host_admin: Option<String>,
    /// Address to advertise for clients when proxy_addr listens on 0.0.0.0.
    #[arg(long = "host-proxy")]
    host_proxy: Option<String>,
    /// Static mode: serve the slots in this JSON file (Codis `[]Slot`) with no dashboard.
    #[arg(long, conflicts_with_all = ["dashboard", "zookeeper", "etcd", "filesystem"])]
    fillslots: Option<PathBuf>,
    /// Register with the dashboard at this address, which then fills the slots and
    /// starts the proxy.
    #[arg(long, conflicts_with_all = ["zookeeper", "etcd", "filesystem"])]
    dashboard: Option<String>,
    /// Find the product's dashboard in this ZooKeeper (its lock node), then register.
    #[arg(long, conflicts_with_all = ["etcd", "filesystem"])]
    zookeeper: Option<String>,
    /// `user:password` for --zookeeper.
    #[arg(long = "zookeeper-auth", requires = "zookeeper")]
    zookeeper_auth: Option<String>,
    /// Find the product's dashboard in this etcd, then register.
    #[arg(long, conflicts_with = "filesystem")]
    etcd: Option<String>,
    /// `user:password` for --etcd.
    #[arg(long = "etcd-auth", requires = "etcd")]
    etcd_auth: Option<String>,
    /// Find the product's dashboard in this filesystem coordinator, then register.
    #[arg(long)]
    filesystem: Option<String>,
    /// Refuse to start unless at least this many file descriptors can be opened.
    #[arg(long)]
    ulimit: Option<u64>,
    /// Write the process id to this file (removed on exit).
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Override product_name.
    #[arg(long = "product_name")]
    product_name: Option<String>,
    /// Override product_auth.
    #[arg(long = "product_auth")]
    product_auth: Option<String>,
    /// Override session_auth.
    #[arg(long = "session_auth")]
    session_auth: Option<String>,
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
    let log_control: LogControl = Box::new(codis_log::set_level);
    let nofile = raise_nofile();
    if let Some(n) = args.ulimit {
        ensure_nofile(n)?;
    }
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &args.host_admin {
        config.host_admin = v.clone();
    }
    if let Some(v) = &args.host_proxy {
        config.host_proxy = v.clone();
    }
    if let Some(v) = &args.product_name {
        config.product_name = v.clone();
    }
    if let Some(v) = &args.product_auth {
        config.product_auth = v.clone();
    }
    if let Some(v) = &args.session_auth {
        config.session_auth = v.clone();
    }
    config.validate()?;
    match nofile {
        Ok(limit) if config.proxy_max_clients > 0 && limit < config.proxy_max_clients as u64 + SPARE_FDS => {
            tracing::warn!(
                limit,
                proxy_max_clients = config.proxy_max_clients,
                "the open-files limit is below proxy_max_clients: clients will wait in the accept queue \
                 once descriptors run out; raise the hard limit (ulimit -Hn, LimitNOFILE=)"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let slots = match &args.fillslots {
        Some(path) => Some(read_slots(path)?),
        None => None,
    };
    let ncpu = args.ncpu.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    // Sessions run on `ncpu` worker threads of their own; this runtime only accepts
    // connections and serves the admin API.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let options = Options { workers: ncpu, log_control: Some(log_control) };
    let join = match (&args.dashboard, &args.zookeeper, &args.etcd, &args.filesystem) {
        (Some(addr), ..) => Some(Join::Dashboard(addr.clone())),
        (_, Some(addr), ..) => Some(Join::Coordinator("zookeeper", addr.clone(), args.zookeeper_auth.clone())),
        (_, _, Some(addr), _) => Some(Join::Coordinator("etcd", addr.clone(), args.etcd_auth.clone())),
        (.., Some(root)) => Some(Join::Coordinator("filesystem", root.clone(), None)),
        _ => None,
    };
    runtime.block_on(run(config, slots, join, args.pidfile, options))
}

/// How the proxy finds the dashboard that drives it.
enum Join {
    Dashboard(String),
    /// Coordinator name, address and `user:password`: the dashboard's address is in the
    /// product's lock node.
    Coordinator(&'static str, String, Option<String>),
}

async fn run(
    config: Config,
    slots: Option<Vec<Slot>>,
    join: Option<Join>,
    pidfile: Option<PathBuf>,
    options: Options,
) -> Result<()> {
    let (product, product_auth) = (config.product_name.clone(), config.product_auth.clone());
    let proxy = Proxy::bind(config, options).await?;
    let _pid = pidfile.map(PidFile::create).transpose()?;
    if let Some(slots) = slots {
        proxy.fill_slots(&slots).await.context("filling slots from --fillslots")?;
        proxy.start()?;
        tracing::warn!(slots = slots.len(), "static mode: slots filled, proxy online");
    } else if let Some(join) = join {
        // Codis's patience: 10 tries for a dashboard, 30 through a coordinator, 3 s apart.
        let pause = std::time::Duration::from_secs(3);
        let dashboard = match join {
            Join::Dashboard(addr) => addr,
            Join::Coordinator(name, addr, auth) => {
                let retry = Retry { attempts: 30, pause };
                let found = dashboard_from_coordinator(name, &addr, auth.as_deref().unwrap_or(""), &product, retry)
                    .await
                    .with_context(|| format!("finding the dashboard of product {product}"))?;
                tracing::warn!(dashboard = %found, coordinator = name, "found the dashboard");
                found
            }
        };
        let retry = Retry { attempts: 10, pause };
        online_with_dashboard(&dashboard, &product, &product_auth, &proxy.model().admin_addr, retry).await?;
    } else {
        tracing::warn!("proxy waiting online: fill slots and start it through the admin API");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = proxy.closed() => {}
        _ = tokio::signal::ctrl_c() => tracing::warn!("interrupted"),
        _ = term.recv() => tracing::warn!("terminated"),
    }
    proxy.close().await;
    tracing::warn!("proxy exited");
    Ok(())
}

fn read_slots(path: &PathBuf) -> Result<Vec<Slot>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read slots file {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "slots file {} is not a JSON array of slots like [{{\"id\":0,\"backend_addr\":\"127.0.0.1:6379\"}}]",
            path.display()
        )
    })
}

/// Descriptors the proxy needs besides its clients' (listeners, backend connections,
/// log file), for the warning about a limit below `proxy_max_clients`.
const SPARE_FDS: u64 = 128;

/// Raises the open-files soft limit to the hard limit and returns the limit in force.
///
/// Every client connection is a descriptor, and the usual soft default of 1024 would
/// hold the proxy far below `proxy_max_clients`; the hard limit is what the
/// administrator granted. Go programs, Codis among them, do the same at start-up.
fn raise_nofile() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // An unlimited hard limit is not a valid soft one: Linux caps descriptors at
    // fs.nr_open, 2^20 by default.
    let want = if lim.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { lim.rlim_max };
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(want)
}

/// Raises the open-files limit to `want` if the hard limit allows, else fails.
fn ensure_nofile(want: u64) -> Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("cannot read the open-files limit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    let raised = libc::rlimit { rlim_cur: want.min(lim.rlim_max), rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 && raised.rlim_cur >= want {
        return Ok(());
    }
    bail!("ulimit -n is {} (hard limit {}), need at least {want}: raise it before starting", lim.rlim_cur, lim.rlim_max)
}

struct PidFile(PathBuf);

impl PidFile {
    fn create(path: PathBuf) -> Result<PidFile> {
        let path = std::path::absolute(&path).unwrap_or(path);
        std::fs::write(&path, std::process::id().to_string())
            .with_context(|| format!("cannot write pidfile {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
