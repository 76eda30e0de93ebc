//! The proxy as a whole: listeners, identity, lifecycle.
//!
//! [`Proxy::bind`] opens the client and admin listeners and starts serving; the router
//! stays offline (new clients get `ERR router is not online`) until slots are filled
//! and [`Proxy::start`] is called, by the dashboard or by static mode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use codis_core::auth::{new_token, new_xauth};
use codis_core::models::{self, Slot};
use codis_resp::Limits;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener};
use tokio::sync::watch;

use crate::backend::BackendSettings;
use crate::config::Config;
use crate::router::{Router, RouterError};
use crate::stats::{RusageSampler, Stats};
use crate::worker::{self, Workers};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {what} {addr}: {source} (is another process using it?)")]
    Listen { what: &'static str, addr: String, source: std::io::Error },
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("cannot start {count} worker threads: {source}")]
    Workers { count: usize, source: std::io::Error },
}

/// How to run a proxy, beyond its config file.
pub struct Options {
    /// Worker threads serving sessions (`--ncpu`).
    pub workers: usize,
    pub log_control: Option<LogControl>,
}

impl Default for Options {
    fn default() -> Self {
        Options { workers: std::thread::available_parallelism().map_or(1, |n| n.get()), log_control: None }
    }
}

/// Changes the log level at runtime (`PUT /api/proxy/loglevel`); provided by the binary.
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// State shared by every session and the admin API.
pub struct Shared {
    pub config: Config,
    pub router: Arc<Router>,
    pub stats: Arc<Stats>,
    pub limits: Limits,
    pub model: models::Proxy,
    pub xauth: String,
    pub online: AtomicBool,
    pub closed: AtomicBool,
    pub shutdown: watch::Sender<bool>,
    pub rusage: Arc<RusageSampler>,
    pub slowlog: crate::slowlog::SlowLog,
    /// The sentinels to follow, and what they said.
    pub sentinel: crate::sentinel::SentinelState,
    pub log_control: Option<LogControl>,
    workers: OnceLock<Workers>,
    /// Sessions waiting in a blocking command, by their CLIENT ID: the connection the
    /// command waits on, for CLIENT UNBLOCK from another session.
    pub blocked: Mutex<std::collections::HashMap<u64, crate::backend::ConnHandle>>,
    /// The jodis registration task, started when the proxy first goes online.
    jodis: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    /// The `# Proxy` section that `INFO` puts before the backend's.
    pub fn info_section(&self) -> String {
        let table = self.router.load();
        let assigned = table.slots.iter().filter(|s| s.backend.is_some()).count();
        let migrating = table.slots.iter().filter(|s| s.migrate_from.is_some()).count();
        format!(
            "# Proxy\r\nproxy_version:{}\r\nproduct_name:{}\r\nproxy_addr:{}\r\nadmin_addr:{}\r\nonline:{}\r\nsessions_alive:{}\r\nsessions_total:{}\r\nops_total:{}\r\nops_fails:{}\r\nops_qps:{}\r\nslots_assigned:{}\r\nslots_migrating:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.model.product_name,
            self.model.proxy_addr,
            self.model.admin_addr,
            self.online.load(Ordering::Relaxed) as u8,
            self.stats.sessions_alive.load(Ordering::Relaxed),
            self.stats.sessions_total.load(Ordering::Relaxed),
            self.stats.total.load(Ordering::Relaxed),
            self.stats.fails.load(Ordering::Relaxed),
            self.stats.qps.load(Ordering::Relaxed),
            assigned,
            migrating,
        )
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire) && !self.is_closed()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Puts the router online; clients connecting from now on are served. With jodis
    /// configured, the proxy registers for Jodis clients from now on.
    pub fn start(self: &Arc<Self>) -> Result<(), RouterError> {
        if self.is_closed() {
            return Err(RouterError::Closed);
        }
        self.online.store(true, Ordering::Release);
        let mut jodis = self.jodis.lock();
        if jodis.is_none() && !self.model.jodis_path.is_empty() {
            *jodis = Some(tokio::spawn(crate::jodis::run(self.clone())));
        }
        Ok(())
    }

    pub async fn fill_slots(&self, slots: &[Slot]) -> Result<(), RouterError> {
        if self.is_closed() {
            return Err(RouterError::Closed);
        }
        self.router.fill_slots(slots).await
    }

    /// Stops listening and ends every session.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("proxy shutting down");
        self.shutdown.send_replace(true);
        self.router.close().await;
        // The jodis node goes before the process does.
        let jodis = self.jodis.lock().take();
        if let Some(task) = jodis {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds the client and admin listeners and starts serving them.
    pub async fn bind(config: Config, options: Options) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let Options { workers, log_control } = options;
        let workers = workers.max(1);
        let (listener, proxy_addr) = bind_client(&config).await?;
        let admin = TcpListener::bind(&config.admin_addr).await.map_err(|source| ProxyError::Listen {
            what: "admin_addr",
            addr: config.admin_addr.clone(),
            source,
        })?;
        let admin_local = admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let admin_addr = advertised(&admin_local, &config.host_admin);
        let proxy_addr_adv =
            if config.proto_type == "unix" { proxy_addr.clone() } else { advertised(&proxy_addr, &config.host_proxy) };

        let token = new_token(&[&config.product_name, &proxy_addr, &admin_local]);
        let xauth = new_xauth(&[&config.product_name, &config.product_auth, &token]);
        let model = models::Proxy {
            id: 0,
            token,
            start_time: codis_core::clock::now_string(),
            admin_addr,
            proto_type: config.proto_type.clone(),
            proxy_addr: proxy_addr_adv,
            jodis_path: String::new(), // set below, from the token
            product_name: config.product_name.clone(),
            pid: std::process::id() as i64,
            pwd: std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            sys: uname(),
            hostname: hostname(),
            datacenter: config.proxy_datacenter.clone(),
        };
        let model = models::Proxy { jodis_path: crate::jodis::path(&config, &model.token), ..model };
        let limits = Limits::default();
        let settings = backend_settings(&config);
        let stats = Arc::new(Stats::default());
        stats.spawn_qps();
        let shared = Arc::new(Shared {
            router: Arc::new(Router::new(settings, workers)),
            stats,
            limits,
            model,
            xauth,
            online: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            rusage: RusageSampler::spawn(),
            slowlog: crate::slowlog::SlowLog::new(config.slowlog_log_slower_than, config.slowlog_max_len as usize),
            blocked: Mutex::new(Default::default()),
            sentinel: Default::default(),
            log_control,
            workers: OnceLock::new(),
            jodis: Mutex::new(None),
            config,
        });
        let pool = Workers::start(workers, &shared).map_err(|source| ProxyError::Workers { count: workers, source })?;
        let _ = shared.workers.set(pool);
        tracing::info!(proxy = %shared.model.proxy_addr, admin = %shared.model.admin_addr, token = %shared.model.token, "proxy listening");
        tokio::spawn(accept_loop(listener, shared.clone()));
        tokio::spawn(crate::admin::serve(admin, shared.clone()));
        tokio::spawn(crate::sentinel::run(shared.clone()));
        Ok(Proxy { shared })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn model(&self) -> &models::Proxy {
        &self.shared.model
    }

    pub fn xauth(&self) -> &str {
        &self.shared.xauth
    }

    pub fn start(&self) -> Result<(), RouterError> {
        self.shared.start()
    }

    pub async fn fill_slots(&self, slots: &[Slot]) -> Result<(), RouterError> {
        self.shared.fill_slots(slots).await
    }

    pub async fn close(&self) {
        self.shared.close().await
    }

    /// Resolves once the proxy is closed (admin shutdown or [`Proxy::close`]).
    pub async fn closed(&self) {
        let mut rx = self.shared.shutdown.subscribe();
        let _ = rx.wait_for(|&closed| closed).await;
    }
}

fn backend_settings(c: &Config) -> BackendSettings {
    BackendSettings {
        auth: c.product_auth.clone(),
        connect_timeout: Duration::from_secs(3),
        ping_period: c.backend_ping_period.duration(),
        recv_timeout: c.backend_recv_timeout.duration(),
        send_timeout: c.backend_send_timeout.duration(),
        recv_bufsize: Config::clamp_buf(c.backend_recv_bufsize),
        max_pipeline: c.backend_max_pipeline.max(1) as usize,
        keepalive: c.backend_keepalive_period.duration(),
        databases: c.backend_number_databases.max(1) as usize,
        primary_parallel: c.backend_primary_parallel.max(1) as usize,
        replica_parallel: c.backend_replica_parallel.max(1) as usize,
    }
}

async fn bind_client(config: &Config) -> Result<(Listener, String), ProxyError> {
    let err = |source| ProxyError::Listen { what: "proxy_addr", addr: config.proxy_addr.clone(), source };
    if config.proto_type == "unix" {
        let path = std::path::PathBuf::from(&config.proxy_addr);
        if path.exists() {
            // A stale socket from a previous run; a live one would refuse the bind below anyway.
            if std::os::unix::net::UnixStream::connect(&path).is_err() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let l = UnixListener::bind(&path).map_err(err)?;
        return Ok((Listener::Unix(l, path), config.proxy_addr.clone()));
    }
    let l = listen_tcp(&config.proxy_addr).await.map_err(err)?;
    let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    Ok((Listener::Tcp(l), addr))
}

/// Pending connections the client listener may queue. `TcpListener::bind` asks for
/// 128, the standard library's choice: a burst of a few hundred connects then fills
/// the accept queue, and Linux drops further SYNs (the client retries after a second)
/// or even the last ACK of a handshake (the client believes it is connected while the
/// proxy never sees it). Codis, like any Go server, asks for `net.core.somaxconn`;
/// asking for more than that gets exactly that, so ask for the most.
const LISTEN_BACKLOG: u32 = 65535;

/// Binds the client listener with a deep accept queue ([`LISTEN_BACKLOG`]), trying
/// each address `addr` resolves to, like `TcpListener::bind`.
async fn listen_tcp(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        let socket = if sa.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As `TcpListener::bind`: a restarted proxy can listen again at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(sa).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")))
}

/// The address to publish for a listener: `host` if given, else the listen address
/// with an unspecified IP replaced by this host's name (as Codis does).
fn advertised(local: &str, host: &str) -> String {
    if !host.is_empty() {
        return host.to_string();
    }
    match local.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.ip().is_unspecified() => {
            let name = hostname();
            let resolves = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), sa.port()))
                .is_ok_and(|mut a| a.next().is_some());
            if resolves { format!("{name}:{}", sa.port()) } else { format!("127.0.0.1:{}", sa.port()) }
        }
        _ => local.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn uname() -> String {
    std::process::Command::new("uname")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut delay = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            _ = shutdown.wait_for(|&c| c) => break,
        };
        match accepted {
            Ok(conn) => {
                delay = Duration::from_millis(10);
                admit(conn, &shared);
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

enum Accepted {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Starts a session, or turns the client away with Codis's errors.
fn admit(conn: Accepted, shared: &Arc<Shared>) {
    let max = shared.config.proxy_max_clients;
    let refuse = if !shared.is_online() {
        Some(&b"-ERR router is not online\r\n"[..])
    } else if max > 0 && shared.stats.sessions_alive.load(Ordering::Relaxed) >= max {
        Some(&b"-ERR max number of clients reached\r\n"[..])
    } else {
        None
    };
    if let Some(msg) = refuse {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                match conn {
                    Accepted::Tcp(mut s) => s.write_all(msg).await,
                    Accepted::Unix(mut s) => s.write_all(msg).await,
                }
            })
            .await;
        });
        return;
    }
    let client = match conn {
        Accepted::Tcp(s) => {
            let _ = s.set_nodelay(true);
            let ka = shared.config.session_keepalive_period.duration();
            if !ka.is_zero() {
                let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(ka));
            }
            s.into_std().map(worker::Client::Tcp)
        }
        Accepted::Unix(s) => s.into_std().map(worker::Client::Unix),
    };
    let (Ok(client), Some(workers)) = (client, shared.workers.get()) else { return };
    shared.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
    shared.stats.sessions_alive.fetch_add(1, Ordering::Relaxed);
    workers.assign(client);
}

/// Runs a client session on the current worker.
pub(crate) async fn run_session_tcp(s: TcpStream, shared: Arc<Shared>) {
    crate::session::serve(s, shared.clone()).await;
    shared.stats.sessions_alive.fetch_sub(1, Ordering::Relaxed);
}

/// Runs a client session on the current worker (Unix socket).
pub(crate) async fn run_session_unix(s: tokio::net::UnixStream, shared: Arc<Shared>) {
    crate::session::serve(s, shared.clone()).await;
    shared.stats.sessions_alive.fetch_sub(1, Ordering::Relaxed);
}
