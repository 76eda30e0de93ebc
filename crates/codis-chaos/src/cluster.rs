//! The cluster under test: real processes on loopback ports. etcd as the coordinator,
//! `groups` groups of a master and a replica (redis-server with the codis-slots
//! module), three redis-sentinels, one codis-dashboard and `proxies` codis-proxy
//! processes (the binaries this workspace built), each of which can be killed with
//! SIGKILL and started again on the same ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use codis_client::{Client, Value};
use codis_testkit::{Backend, Coordinator, RedisSentinel, RedisServer, free_port};
use serde_json::Value as Json;

/// A child process started from a fixed command line, so that it can be restarted.
pub struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Proc {
        Proc { name: name.into(), program, args, log, child: None }
    }

    fn start(&mut self) -> Result<()> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as when a host or process dies: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process has exited on its own (it should not).
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("{} exited ({status}); see {}", self.name, self.log.display()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One codis-proxy process and its two addresses.
pub struct ProxyProc {
    pub proc: Proc,
    pub addr: String,
    pub admin: String,
}

pub struct Group {
    pub id: i64,
    /// Servers of the group in start order; which one is master changes with failovers.
    pub servers: Vec<RedisServer>,
}

/// Sizes of the cluster.
#[derive(Debug, Clone)]
pub struct Shape {
    pub groups: usize,
    pub proxies: usize,
    pub sentinels: usize,
    /// `sentinel_down_after` of the dashboard, in milliseconds.
    pub down_after_ms: u64,
    /// `coordinator_lease` of the dashboard, in seconds.
    pub lease_s: u64,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub coordinator: Coordinator,
    pub groups: Vec<Group>,
    pub sentinels: Vec<RedisSentinel>,
    pub dashboard: Proc,
    pub dashboard_addr: String,
    pub proxies: Vec<ProxyProc>,
    pub product: String,
    xauth: String,
    http: reqwest::Client,
    pub observer: Observer,
}

/// Reads the dashboard's view; cheap to clone, for the failover watcher.
#[derive(Clone)]
pub struct Observer {
    http: reqwest::Client,
    dashboard_addr: String,
}

/// One `/topom/stats` read: slot mappings `(slot, group, action state)` and each
/// group's master.
pub struct Snapshot {
    pub slots: Vec<(usize, i64, String)>,
    pub masters: Vec<(i64, String)>,
}

impl Observer {
    pub async fn get(&self, path: &str) -> Result<Json> {
        let r = self.http.get(format!("http://{}{path}", self.dashboard_addr)).send().await?;
        let ok = r.status().is_success();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        if ok { Ok(v) } else { bail!("GET {path}: {}", v["Cause"].as_str().unwrap_or("?")) }
    }

    pub async fn snapshot(&self) -> Result<Snapshot> {
        let v = self.get("/topom/stats").await?;
        let slots = v["slots"].as_array().context("no slot mappings in stats")?;
        let groups = v["group"]["models"].as_array().context("no group models in stats")?;
        Ok(Snapshot {
            slots: slots
                .iter()
                .map(|s| {
                    (
                        s["id"].as_u64().unwrap_or(0) as usize,
                        s["group_id"].as_i64().unwrap_or(0),
                        s["action"]["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
            masters: groups
                .iter()
                .map(|g| (g["id"].as_i64().unwrap_or(0), g["servers"][0]["server"].as_str().unwrap_or("").to_string()))
                .collect(),
        })
    }
}

/// Where the workspace's binaries are: next to the running executable (a test runs
/// from `target/<profile>/deps`, the `codis-chaos` binary from `target/<profile>`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable directory")?;
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found near {}: build it first (cargo build -p {name})", exe.display())
}

/// Replication settings that keep full syncs quick on a loaded machine.
const REDIS_ARGS: [&str; 4] = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"];

impl Cluster {
    pub async fn start(shape: &Shape) -> Result<Cluster> {
        let (proxy_bin, dashboard_bin) = (binary("codis-proxy")?, binary("codis-dashboard")?);
        eprintln!("chaos: running {} and {}", proxy_bin.display(), dashboard_bin.display());
        let dir = std::env::temp_dir().join(format!("codis-chaos-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir)?;
        let coordinator = Coordinator::start(Backend::Etcd);
        let product = "chaos".to_string();
        let dashboard_addr = format!("127.0.0.1:{}", free_port());
        let toml = format!(
            "coordinator_name = \"etcd\"\ncoordinator_addr = \"{}\"\ncoordinator_lease = \"{}s\"\n\
             product_name = \"{product}\"\nadmin_addr = \"{dashboard_addr}\"\n\
             migration_method = \"semi-async\"\nsentinel_down_after = \"{}ms\"\nsentinel_failover_timeout = \"10s\"\n",
            coordinator.addr(),
            shape.lease_s,
            shape.down_after_ms
        );
        std::fs::write(dir.join("dashboard.toml"), toml)?;
        let dashboard = Proc::new(
            "codis-dashboard",
            dashboard_bin,
            vec![
                "--config".into(),
                dir.join("dashboard.toml").display().to_string(),
                "--log-level".into(),
                "info".into(),
                "--standby".into(),
            ],
            dir.join("dashboard.log"),
        );
        let groups = (0..shape.groups)
            .map(|i| Group {
                id: i as i64 + 1,
                servers: (0..2).map(|_| RedisServer::start_with_module(&REDIS_ARGS)).collect(),
            })
            .collect();
        let sentinels = (0..shape.sentinels).map(|_| RedisSentinel::start(&[])).collect();
        let proxies = (0..shape.proxies)
            .map(|i| {
                let (addr, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
                let toml = format!(
                    "product_name = \"{product}\"\nproxy_addr = \"{addr}\"\nadmin_addr = \"{admin}\"\nproxy_max_clients = 10000\n"
                );
                let cfg = dir.join(format!("proxy{i}.toml"));
                std::fs::write(&cfg, toml)?;
                let args = vec![
                    "--config".into(),
                    cfg.display().to_string(),
                    "--ncpu".into(),
                    "1".into(),
                    "--dashboard".into(),
                    dashboard_addr.clone(),
                ];
                Ok(ProxyProc {
                    proc: Proc::new(&format!("codis-proxy {i}"), proxy_bin.clone(), args, dir.join(format!("proxy{i}.log"))),
                    addr,
                    admin,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let xauth = codis_core::auth::dashboard_xauth(&product, "");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let observer = Observer { http: http.clone(), dashboard_addr: dashboard_addr.clone() };
        let mut c = Cluster {
            dir,
            coordinator,
            groups,
            sentinels,
            dashboard,
            dashboard_addr,
            proxies,
            product,
            xauth,
            observer,
            http,
        };
        c.start_dashboard().await?;
        c.build().await?;
        Ok(c)
    }

    /// Groups with their servers, slots spread evenly, sentinels, then the proxies.
    async fn build(&mut self) -> Result<()> {
        let n = self.groups.len();
        for g in &self.groups {
            self.put(&format!("group/create/XAUTH/{}", g.id)).await?;
            for s in &g.servers {
                self.put(&format!("group/add/XAUTH/{}/{}", g.id, s.addr())).await?;
            }
        }
        // The second server of each group becomes a replica (the dashboard syncs it).
        for g in &self.groups {
            self.put(&format!("group/resync/XAUTH/{}", g.id)).await?;
        }
        let mapping: Vec<Json> =
            (0..1024).map(|sid| serde_json::json!({"id": sid, "group_id": self.groups[sid * n / 1024].id})).collect();
        self.put_body("slots/assign/XAUTH", serde_json::to_string(&mapping)?).await?;
        for s in &self.sentinels {
            self.put(&format!("sentinels/add/XAUTH/{}", s.addr())).await?;
        }
        self.put("sentinels/resync-all/XAUTH").await?;
        for i in 0..self.proxies.len() {
            self.start_proxy(i).await?;
        }
        self.wait_replicas_synced(Duration::from_secs(60)).await?;
        self.wait_sentinels_ready(Duration::from_secs(60)).await?;
        Ok(())
    }

    pub async fn start_dashboard(&mut self) -> Result<()> {
        self.dashboard.start()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.dashboard.exited() {
                bail!(e);
            }
            if self.get(&format!("/api/topom/xping/{}", self.xauth)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the dashboard did not answer within 60 s; see {}", self.dashboard.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill_dashboard(&mut self) {
        self.dashboard.kill();
    }

    /// Starts proxy `i` (again) and waits until it serves with a full slot table.
    pub async fn start_proxy(&mut self, i: usize) -> Result<()> {
        self.proxies[i].proc.start()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.proxies[i].proc.exited() {
                bail!(e);
            }
            if self.proxy_serves(i).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("proxy {i} did not come online within 60 s; see {}", self.proxies[i].proc.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill_proxy(&mut self, i: usize) {
        self.proxies[i].proc.kill();
    }

    /// Whether proxy `i` is online and a key of every group can be written through it.
    pub async fn proxy_serves(&self, i: usize) -> bool {
        let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), Client::connect(&self.proxies[i].addr)).await
        else {
            return false;
        };
        for key in probe_keys(self.groups.len()) {
            let ok = tokio::time::timeout(Duration::from_secs(2), c.cmd(&["SET", key.as_str(), "probe"])).await;
            if !matches!(ok, Ok(Ok(Value::Simple(_)))) {
                return false;
            }
        }
        true
    }

    /// A process of ours that died on its own, if any (a crash is a finding).
    pub fn crashed(&mut self) -> Option<String> {
        if let Some(e) = self.dashboard.exited() {
            return Some(e);
        }
        self.proxies.iter_mut().find_map(|p| p.proc.exited())
    }

    pub async fn put(&self, path: &str) -> Result<Json> {
        self.put_body(path, String::new()).await
    }

    pub async fn put_body(&self, path: &str, body: String) -> Result<Json> {
        let url = format!("http://{}/api/topom/{}", self.dashboard_addr, path.replace("XAUTH", &self.xauth));
        let r = self.http.put(&url).body(body).send().await.with_context(|| format!("PUT {path}"))?;
        let ok = r.status().is_success();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        if ok { Ok(v) } else { bail!("PUT {path}: {}", v["Cause"].as_str().unwrap_or("?")) }
    }

    pub async fn get(&self, path: &str) -> Result<Json> {
        self.observer.get(path).await
    }

    /// Whether the dashboard holds the product lock and can write to the coordinator:
    /// a harmless write (replica-groups of a master set to its current value, off) that
    /// goes through the state lock, which a standing-by dashboard refuses.
    pub async fn dashboard_writes(&self) -> bool {
        let Ok(masters) = self.masters().await else { return false };
        let Some((gid, addr)) = masters.first() else { return false };
        self.put(&format!("group/replica-groups/XAUTH/{gid}/{addr}/0")).await.is_ok()
    }

    pub async fn slots(&self) -> Result<Vec<(usize, i64, String)>> {
        Ok(self.observer.snapshot().await?.slots)
    }

    pub async fn masters(&self) -> Result<Vec<(i64, String)>> {
        Ok(self.observer.snapshot().await?.masters)
    }

    pub fn group_of_addr(&self, addr: &str) -> Option<(usize, usize)> {
        self.groups
            .iter()
            .enumerate()
            .find_map(|(gi, g)| g.servers.iter().position(|s| s.addr() == addr).map(|si| (gi, si)))
    }

    /// Waits until every server that is not its group's master replicates with its link up.
    pub async fn wait_replicas_synced(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        'poll: loop {
            if Instant::now() > deadline {
                bail!("replicas not in sync within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(masters) = self.masters().await else { continue };
            for (gid, master) in masters {
                let Some(g) = self.groups.iter().find(|g| g.id == gid) else { continue };
                for s in g.servers.iter().filter(|s| s.addr() != master) {
                    let info = info(&s.addr(), "replication").await;
                    let want = format!("master_port:{}", master.rsplit(':').next().unwrap_or(""));
                    if !(info.contains("role:slave") && info.contains("master_link_status:up") && info.contains(&want))
                    {
                        continue 'poll;
                    }
                }
            }
            return Ok(());
        }
    }

    /// Waits until every sentinel monitors every group with its replica and the other
    /// sentinels known (a failover needs both).
    pub async fn wait_sentinels_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let others = self.sentinels.len().saturating_sub(1).to_string();
        'poll: loop {
            if Instant::now() > deadline {
                bail!("sentinels not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for s in &self.sentinels {
                for g in &self.groups {
                    let name = format!("{}-{}", self.product, g.id);
                    let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), Client::connect(&s.addr())).await
                    else {
                        continue 'poll;
                    };
                    let Ok(Value::Array(kv)) = c.cmd(&["SENTINEL", "MASTER", name.as_str()]).await else {
                        continue 'poll;
                    };
                    let field = |k: &str| {
                        kv.chunks(2).find(|p| p[0].as_str() == Some(k)).and_then(|p| p[1].as_str().map(str::to_string))
                    };
                    if field("num-slaves").as_deref() != Some("1")
                        || field("num-other-sentinels") != Some(others.clone())
                    {
                        continue 'poll;
                    }
                }
            }
            return Ok(());
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.proxies {
            p.proc.kill();
        }
        self.dashboard.kill();
        if std::env::var_os("CODIS_CHAOS_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One key per group (slots are spread evenly at start), used to probe that writes go
/// through; found by slot so that every group is hit whatever the number of groups.
pub fn probe_keys(groups: usize) -> Vec<String> {
    (0..groups)
        .map(|g| {
            let want = (g * 1024 / groups + 1024 / groups / 2) as u16;
            (0u32..).map(|i| format!("chaos:probe:{i}")).find(|k| codis_core::slot_of(k.as_bytes()) == want).unwrap()
        })
        .collect()
}

/// INFO `section` of the server at `addr` (empty when it does not answer).
pub async fn info(addr: &str, section: &str) -> String {
    let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), Client::connect(addr)).await else {
        return String::new();
    };
    match tokio::time::timeout(Duration::from_secs(2), c.cmd(&["INFO", section])).await {
        Ok(Ok(v)) => v.as_str().unwrap_or("").to_string(),
        _ => String::new(),
    }
}
