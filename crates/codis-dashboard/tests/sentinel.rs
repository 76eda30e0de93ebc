//! High availability with real redis-sentinel processes: the dashboard configures the
//! sentinels, a killed master fails over under load, proxies follow with and without
//! the dashboard, the old master rejoins as a replica, a manual promote repoints every
//! replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codis_client::sentinel::{self, MasterEntry};
use codis_core::models::SlotMapping;
use codis_dashboard::{Config, Dashboard};
use codis_proxy::{Options, Proxy};
use codis_testkit::{Client, RedisSentinel, RedisServer, Value, wait_until};
use serde_json::Value as Json;

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("codis-sentinel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Replication settings that keep tests fast: no delay before a full sync.
const FAST_SYNC: [&str; 2] = ["--repl-diskless-sync-delay", "0"];

struct Ha {
    _root: TempDir,
    config: Config,
    dashboard: Option<Dashboard>,
    proxy: Proxy,
    sentinels: Vec<RedisSentinel>,
    http: reqwest::Client,
}

impl Ha {
    /// A dashboard with fast sentinel timings, one proxy, `n` sentinels (not added yet).
    async fn start(name: &str, n: usize) -> Ha {
        let root = temp_dir(name);
        let mut config = Config::from_toml(
            "sentinel_down_after = \"1s\"\nsentinel_failover_timeout = \"5s\"\nsentinel_client_timeout = \"3s\"",
        )
        .unwrap();
        config.coordinator_addr = root.0.display().to_string();
        config.admin_addr = "127.0.0.1:0".into();
        config.product_name = format!("ha-{name}");
        let dashboard = Dashboard::start(config.clone()).await.unwrap();
        let proxy = Proxy::bind(
            codis_proxy::Config {
                proxy_addr: "127.0.0.1:0".into(),
                admin_addr: "127.0.0.1:0".into(),
                product_name: config.product_name.clone(),
                ..Default::default()
            },
            Options { workers: 1, log_control: None },
        )
        .await
        .unwrap();
        let sentinels = (0..n).map(|_| RedisSentinel::start(&[])).collect();
        let ha = Ha { _root: root, config, dashboard: Some(dashboard), proxy, sentinels, http: reqwest::Client::new() };
        ha.put(&format!("proxy/create/XAUTH/{}", ha.proxy.model().admin_addr)).await.unwrap();
        ha
    }

    fn dashboard(&self) -> &Dashboard {
        self.dashboard.as_ref().expect("dashboard running")
    }

    async fn put(&self, path: &str) -> Result<Json, String> {
        self.put_body(path, String::new()).await
    }

    async fn put_body(&self, path: &str, body: String) -> Result<Json, String> {
        let d = self.dashboard();
        let url = format!("http://{}/api/topom/{}", d.admin_addr, path.replace("XAUTH", d.topom.xauth()));
        let r = self.http.put(url).body(body).send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        if ok { Ok(v) } else { Err(v["Cause"].as_str().unwrap_or("?").to_string()) }
    }

    async fn get(&self, path: &str) -> Result<Json, String> {
        let r = self.http.get(format!("http://{}{path}", self.dashboard().admin_addr)).send().await.unwrap();
        let ok = r.status().is_success();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        if ok { Ok(v) } else { Err(v["Cause"].as_str().unwrap_or("?").to_string()) }
    }

    /// Group `gid` made of `servers` (the first is the master), holding every slot.
    async fn group(&self, gid: i64, servers: &[&RedisServer]) {
        self.put(&format!("group/create/XAUTH/{gid}")).await.unwrap();
        for s in servers {
            self.put(&format!("group/add/XAUTH/{gid}/{}", s.addr())).await.unwrap();
        }
        let m: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: gid, ..Default::default() }).collect();
        self.put_body("slots/assign/XAUTH", serde_json::to_string(&m).unwrap()).await.unwrap();
    }

    async fn add_sentinels(&self) {
        for s in &self.sentinels {
            self.put(&format!("sentinels/add/XAUTH/{}", s.addr())).await.unwrap();
        }
        self.put("sentinels/resync-all/XAUTH").await.unwrap();
    }

    fn name(&self, gid: i64) -> String {
        sentinel::master_name(&self.config.product_name, gid)
    }

    /// Waits until every sentinel knows the group's replicas and the other sentinels,
    /// which a failover needs.
    async fn wait_sentinels_ready(&self, gid: i64, replicas: i64) {
        let n = self.sentinels.len() as i64;
        for s in &self.sentinels {
            let (addr, product) = (s.addr(), self.config.product_name.clone());
            wait_until("sentinels to discover replicas and each other", Duration::from_secs(30), || {
                let (addr, product) = (addr.clone(), product.clone());
                async move {
                    let m = masters_of(&addr, &product).await.remove(&gid)?;
                    (m.num_slaves >= replicas && m.num_other_sentinels == n - 1).then_some(())
                }
            })
            .await;
        }
    }

    fn proxy_backend(&self, slot: usize) -> String {
        self.proxy.shared().router.slots()[slot].backend_addr.clone()
    }
}

async fn masters_of(addr: &str, product: &str) -> BTreeMap<i64, MasterEntry> {
    let Ok(mut c) = codis_client::Conn::open(addr, "", Duration::from_secs(2)).await else { return BTreeMap::new() };
    sentinel::product_masters(&mut c, product).await.unwrap_or_default()
}

async fn sentinel_master_fields(addr: &str, name: &str) -> BTreeMap<String, String> {
    let mut c = Client::connect(addr).await.unwrap();
    sentinel::pairs(&c.cmd(&["SENTINEL", "MASTER", name]).await.unwrap())
}

async fn info(addr: &str) -> BTreeMap<String, String> {
    let Ok(mut c) = codis_client::Conn::open(addr, "", Duration::from_secs(2)).await else { return BTreeMap::new() };
    c.info(Some("replication")).await.map(|v| v.into_iter().collect()).unwrap_or_default()
}

/// Waits until `addr` is a replica of `master` with its link up.
async fn wait_replica_of(addr: &str, master: &RedisServer, what: &str) {
    let port = master.port.to_string();
    wait_until(what, Duration::from_secs(30), || {
        let (addr, port) = (addr.to_string(), port.clone());
        async move {
            let i = info(&addr).await;
            (i.get("role").map(String::as_str) == Some("slave")
                && i.get("master_port") == Some(&port)
                && i.get("master_link_status").map(String::as_str) == Some("up"))
            .then_some(())
        }
    })
    .await;
}

fn replica(master: &RedisServer) -> RedisServer {
    let port = master.port.to_string();
    RedisServer::start(&[&["--replicaof", "127.0.0.1", &port][..], &FAST_SYNC[..]].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_are_added_resynced_and_removed() {
    let ha = Ha::start("manage", 3).await;
    let m1 = RedisServer::start(&FAST_SYNC);
    let r1 = replica(&m1);
    let m2 = RedisServer::start(&FAST_SYNC);
    ha.group(1, &[&m1, &r1]).await;

    // bad input is refused with reasons
    let e = ha.put("sentinels/add/XAUTH/nohost").await.unwrap_err();
    assert!(e.contains("use host:port"), "{e}");
    let e = ha.put(&format!("sentinels/add/XAUTH/{}", m2.addr())).await.unwrap_err();
    assert!(e.contains("not a redis-sentinel"), "{e}");
    let e = ha.put("sentinels/add/XAUTH/127.0.0.1:1").await.unwrap_err();
    assert!(e.contains("cannot be reached"), "{e}");

    ha.add_sentinels().await;
    let e = ha.put(&format!("sentinels/add/XAUTH/{}", ha.sentinels[0].addr())).await.unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    let cache = ha.dashboard().topom.cache().await;
    assert_eq!(cache.sentinel.servers.len(), 3);
    assert!(!cache.sentinel.out_of_sync);
    // every sentinel monitors the group with the configured options
    for s in &ha.sentinels {
        let f = sentinel_master_fields(&s.addr(), &ha.name(1)).await;
        assert_eq!(f["ip"], "127.0.0.1");
        assert_eq!(f["port"], m1.port.to_string());
        assert_eq!(f["quorum"], "2");
        assert_eq!(f["down-after-milliseconds"], "1000");
        assert_eq!(f["failover-timeout"], "5000");
        assert_eq!(f["parallel-syncs"], "1");
    }
    // the proxy got the list and subscribed
    let servers: Vec<String> = ha.sentinels.iter().map(|s| s.addr()).collect();
    assert_eq!(ha.proxy.shared().sentinel.servers(), servers);
    wait_until("the proxy to see the sentinels' masters", Duration::from_secs(10), || async {
        (ha.proxy.shared().sentinel.masters().get(&1) == Some(&m1.addr())).then_some(())
    })
    .await;

    // a new group is monitored after a resync
    ha.put("group/create/XAUTH/2").await.unwrap();
    ha.put(&format!("group/add/XAUTH/2/{}", m2.addr())).await.unwrap();
    assert!(ha.dashboard().topom.cache().await.sentinel.out_of_sync);
    assert!(!masters_of(&ha.sentinels[0].addr(), &ha.config.product_name).await.contains_key(&2));
    ha.put("sentinels/resync-all/XAUTH").await.unwrap();
    for s in &ha.sentinels {
        let m = masters_of(&s.addr(), &ha.config.product_name).await;
        let addrs: Vec<(i64, &str)> = m.iter().map(|(g, e)| (*g, e.addr.as_str())).collect();
        assert_eq!(addrs, vec![(1, m1.addr().as_str()), (2, m2.addr().as_str())]);
    }
    assert!(!ha.dashboard().topom.cache().await.sentinel.out_of_sync);

    // info routes
    let s0 = ha.sentinels[0].addr();
    let info = ha.get(&format!("/api/topom/sentinels/info/{s0}")).await.unwrap();
    assert_eq!(info["redis_mode"], "sentinel");
    let monitored = ha.get(&format!("/api/topom/sentinels/info/{s0}/monitored")).await.unwrap();
    assert_eq!(monitored[ha.name(2)]["port"], m2.port.to_string());
    let e = ha.get("/api/topom/sentinels/info/127.0.0.1:1").await.unwrap_err();
    assert!(e.contains("doesn't exist"), "{e}");
    // the stats show what the sentinels agree on
    let stats = ha.get("/topom/stats").await.unwrap();
    wait_until("the dashboard to poll the sentinels", Duration::from_secs(10), || async {
        let stats = ha.get("/topom/stats").await.ok()?;
        (stats["sentinels"]["masters"]["2"] == m2.addr().as_str()).then_some(())
    })
    .await;
    assert_eq!(stats["sentinels"]["model"]["servers"].as_array().unwrap().len(), 3);

    // removal stops the sentinel monitoring this product
    ha.put(&format!("sentinels/del/XAUTH/{s0}/0")).await.unwrap();
    assert!(masters_of(&s0, &ha.config.product_name).await.is_empty());
    assert_eq!(ha.dashboard().topom.cache().await.sentinel.servers.len(), 2);
    assert_eq!(ha.proxy.shared().sentinel.servers().len(), 2);
    let e = ha.put(&format!("sentinels/del/XAUTH/{s0}/0")).await.unwrap_err();
    assert!(e.contains("doesn't exist"), "{e}");
    // an unreachable sentinel needs force
    let mut ha = ha;
    let s1 = ha.sentinels[1].addr();
    ha.sentinels[1].kill();
    let e = ha.put(&format!("sentinels/del/XAUTH/{s1}/0")).await.unwrap_err();
    assert!(e.contains("force"), "{e}");
    ha.put(&format!("sentinels/del/XAUTH/{s1}/1")).await.unwrap();
    assert_eq!(ha.dashboard().topom.cache().await.sentinel.servers, vec![ha.sentinels[2].addr()]);
    ha.dashboard().topom.close().await.unwrap();
}

/// A client writing through the proxy as fast as it can: counts acknowledged writes,
/// remembers each key's last acknowledged value, and measures the longest time
/// between two successful writes.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(BTreeMap<String, u64>, Duration, u64)>,
}

impl Writer {
    fn start(addr: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut last: BTreeMap<String, u64> = BTreeMap::new();
                let mut cl: Option<Client> = None;
                let (mut last_ok, mut worst, mut errors) = (Instant::now(), Duration::ZERO, 0u64);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("w:{}", i % 200);
                    if cl.is_none() {
                        cl = Client::connect(&addr).await.ok();
                    }
                    let r = match cl.as_mut() {
                        Some(c) => tokio::time::timeout(Duration::from_secs(2), c.cmd(&["SET", &key, &i.to_string()]))
                            .await
                            .ok()
                            .and_then(|r| r.ok()),
                        None => None,
                    };
                    match r {
                        Some(Value::Simple(_)) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            last.insert(key, i);
                            worst = worst.max(last_ok.elapsed());
                            last_ok = Instant::now();
                        }
                        Some(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        None => {
                            errors += 1;
                            cl = None;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                (last, worst, errors)
            })
        };
        Writer { stop, acked, task }
    }

    /// Waits until `n` more writes were acknowledged.
    async fn wait_acked(&self, n: u64, what: &str) {
        let target = self.acked.load(Ordering::Relaxed) + n;
        wait_until(what, Duration::from_secs(30), || async {
            (self.acked.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    async fn finish(self) -> (BTreeMap<String, u64>, Duration, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Acknowledged writes whose value is gone (the key holds an older value).
async fn lost_writes(addr: &str, last: &BTreeMap<String, u64>) -> usize {
    let mut c = Client::connect(addr).await.unwrap();
    let mut lost = 0;
    for (k, v) in last {
        let got = c.cmd(&["GET", k]).await.unwrap();
        let got: u64 = got.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if got < *v {
            lost += 1;
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_fails_over_with_and_without_the_dashboard() {
    let mut ha = Ha::start("failover", 3).await;
    let mut m = RedisServer::start(&FAST_SYNC);
    let r1 = replica(&m);
    let r2 = replica(&m);
    wait_replica_of(&r1.addr(), &m, "r1 to sync").await;
    wait_replica_of(&r2.addr(), &m, "r2 to sync").await;
    ha.group(1, &[&m, &r1, &r2]).await;
    ha.add_sentinels().await;
    ha.wait_sentinels_ready(1, 2).await;

    // 1. the master is killed under load: the group fails over and writes resume
    let writer = Writer::start(ha.proxy.model().proxy_addr.clone());
    writer.wait_acked(500, "writes before the failover").await;
    let killed_at = Instant::now();
    m.kill();
    let candidates = [r1.addr(), r2.addr()];
    let new_master = wait_until("the proxy to route to a new master", Duration::from_secs(30), || async {
        let b = ha.proxy_backend(0);
        candidates.contains(&b).then_some(b)
    })
    .await;
    writer.wait_acked(500, "writes after the failover").await;
    let (last, worst, errors) = writer.finish().await;
    eprintln!(
        "failover 1: proxy switched after {:?}; longest write gap {worst:?}; {errors} failed attempts",
        killed_at.elapsed()
    );
    assert!(errors > 0, "writes failed while the master was down");
    assert!(worst < Duration::from_secs(10), "writes resumed in {worst:?}");
    let lost = lost_writes(&new_master, &last).await;
    eprintln!("failover 1: {lost} of {} keys lost their last acknowledged write", last.len());
    // every slot moved, and the dashboard recorded the new master
    assert!(ha.proxy.shared().router.slots().iter().all(|s| s.backend_addr == new_master));
    wait_until("the dashboard to follow the failover", Duration::from_secs(15), || async {
        let g = ha.dashboard().topom.cache().await.groups[&1].clone();
        (g.servers[0].addr == new_master).then_some(())
    })
    .await;
    let g = ha.dashboard().topom.cache().await.groups[&1].clone();
    assert_eq!(g.servers.last().unwrap().addr, m.addr(), "the old master is last");
    assert!(g.out_of_sync, "out of sync until the old master rejoins");
    let (newm, other_addr) = if new_master == r1.addr() { (&r1, r2.addr()) } else { (&r2, r1.addr()) };
    wait_replica_of(&other_addr, newm, "the other replica to follow the new master").await;

    // 2. the old master comes back empty and rejoins as a replica; the group heals
    m.restart();
    wait_replica_of(&m.addr(), newm, "the old master to rejoin as a replica").await;
    let stats = wait_until("the dashboard to see the group consistent again", Duration::from_secs(20), || async {
        let stats = ha.get("/topom/stats").await.ok()?;
        stats["group"]["states"]["1"]["last_failover"]["consistent_at"].as_u64().map(|_| stats)
    })
    .await;
    assert!(!ha.dashboard().topom.cache().await.groups[&1].out_of_sync, "out_of_sync cleared");
    let st = &stats["group"]["states"]["1"];
    assert_eq!(st["master"], new_master.as_str());
    assert_eq!(st["last_failover"]["kind"], "sentinel");
    assert_eq!(st["last_failover"]["from"], m.addr().as_str());
    assert_eq!(st["last_failover"]["to"], new_master.as_str());
    let d = st["last_failover"]["duration_ms"].as_u64().unwrap();
    assert!(d > 0 && d < 15_000, "detected to switched: {d} ms");
    wait_until("the group state to be consistent", Duration::from_secs(10), || async {
        let stats = ha.get("/topom/stats").await.ok()?;
        let st = &stats["group"]["states"]["1"];
        (st["consistent"] == true && st["replicas"].as_array()?.iter().all(|r| r["link"] == "up")).then_some(())
    })
    .await;

    // 3. the dashboard is down and the new master dies: the proxy fails over alone
    ha.wait_sentinels_ready(1, 2).await;
    let dashboard = ha.dashboard.take().unwrap();
    dashboard.topom.close().await.unwrap();
    drop(dashboard);
    let writer = Writer::start(ha.proxy.model().proxy_addr.clone());
    writer.wait_acked(300, "writes before the second failover").await;
    let (mut r1, mut r2) = (r1, r2);
    let killed = new_master.clone();
    if new_master == r1.addr() {
        r1.kill()
    } else {
        r2.kill()
    }
    let survivors = [m.addr(), other_addr.clone()];
    let third = wait_until("the proxy to fail over without the dashboard", Duration::from_secs(30), || async {
        let b = ha.proxy_backend(0);
        survivors.contains(&b).then_some(b)
    })
    .await;
    writer.wait_acked(300, "writes after the second failover").await;
    let (last, worst, _) = writer.finish().await;
    eprintln!("failover 2 (no dashboard): longest write gap {worst:?}");
    eprintln!("failover 2: {} keys lost their last write", lost_writes(&third, &last).await);
    assert!(ha.proxy.shared().sentinel.switched());

    // 4. the dashboard comes back and records what the sentinels did
    let d = Dashboard::start(ha.config.clone()).await.unwrap();
    ha.dashboard = Some(d);
    wait_until("the restarted dashboard to adopt the new master", Duration::from_secs(15), || async {
        let g = ha.dashboard().topom.cache().await.groups[&1].clone();
        (g.servers[0].addr == third && g.servers.last().unwrap().addr == killed).then_some(())
    })
    .await;
    let mut c = Client::connect(&ha.proxy.model().proxy_addr).await.unwrap();
    assert_eq!(c.cmd(&["SET", "after", "1"]).await.unwrap(), Value::ok());
    ha.dashboard().topom.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_promote_repoints_every_replica_and_the_sentinels() {
    let ha = Ha::start("promote", 3).await;
    let m = RedisServer::start(&FAST_SYNC);
    let r1 = replica(&m);
    let r2 = replica(&m);
    wait_replica_of(&r1.addr(), &m, "r1 to sync").await;
    wait_replica_of(&r2.addr(), &m, "r2 to sync").await;
    ha.group(1, &[&m, &r1, &r2]).await;
    ha.add_sentinels().await;
    let mut c = Client::connect(&ha.proxy.model().proxy_addr).await.unwrap();
    assert_eq!(c.cmd(&["SET", "k", "before"]).await.unwrap(), Value::ok());

    ha.put(&format!("group/promote/XAUTH/1/{}", r1.addr())).await.unwrap();
    wait_replica_of(&r2.addr(), &r1, "r2 to follow the promoted server").await;
    wait_replica_of(&m.addr(), &r1, "the old master to follow the promoted server").await;
    assert_eq!(ha.proxy_backend(0), r1.addr());
    assert_eq!(c.cmd(&["SET", "k", "after"]).await.unwrap(), Value::ok());
    wait_until("r2 to replicate the write", Duration::from_secs(10), || async {
        (Client::connect(&r2.addr()).await.ok()?.cmd(&["GET", "k"]).await.ok()? == Value::bulk("after")).then_some(())
    })
    .await;
    // the sentinels monitor the new master and agree with the dashboard
    for s in &ha.sentinels {
        let masters = masters_of(&s.addr(), &ha.config.product_name).await;
        assert_eq!(masters[&1].addr, r1.addr());
    }
    assert!(!ha.dashboard().topom.cache().await.sentinel.out_of_sync);
    let stats = ha.get("/topom/stats").await.unwrap();
    assert_eq!(stats["group"]["states"]["1"]["last_failover"]["kind"], "promote");
    let product = ha.config.product_name.clone();
    let url = format!("http://{}/metrics", ha.dashboard().admin_addr);
    let text = wait_until("the group consistent again in /metrics", Duration::from_secs(20), || async {
        let text = ha.http.get(&url).send().await.ok()?.text().await.ok()?;
        text.contains(&format!("codis_dashboard_group_consistent{{product=\"{product}\",group=\"1\"}} 1"))
            .then_some(text)
    })
    .await;
    let want = format!("codis_dashboard_failovers_total{{product=\"{product}\",group=\"1\",kind=\"promote\"}} 1");
    assert!(text.lines().any(|l| l == want), "no {want} in\n{text}");
    for s in &ha.sentinels {
        let want = format!("codis_dashboard_sentinel_up{{product=\"{product}\",addr=\"{}\"}} 1", s.addr());
        assert!(text.lines().any(|l| l == want), "no {want} in\n{text}");
    }
    ha.dashboard().topom.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_are_added_or_come_back_as_masters_are_repointed() {
    let ha = Ha::start("rejoin", 0).await;
    let m = RedisServer::start(&FAST_SYNC);
    let r = replica(&m);
    wait_replica_of(&r.addr(), &m, "the replica to sync").await;
    // a server added to the group as a stand-alone master becomes a replica
    let added = RedisServer::start(&FAST_SYNC);
    ha.group(1, &[&m, &r, &added]).await;
    wait_replica_of(&added.addr(), &m, "the dashboard to repoint the added server").await;
    // a replica that lost its replication setting (say, restarted without it) is repointed
    let mut c = Client::connect(&r.addr()).await.unwrap();
    assert_eq!(c.cmd(&["REPLICAOF", "NO", "ONE"]).await.unwrap(), Value::ok());
    wait_replica_of(&r.addr(), &m, "the dashboard to repoint the returning replica").await;
    let g = ha.dashboard().topom.cache().await.groups[&1].clone();
    assert_eq!(g.servers[0].addr, m.addr(), "the master stays");
    ha.dashboard().topom.close().await.unwrap();
}
