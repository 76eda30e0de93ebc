//! End to end: a dashboard, a proxy and groups of real redis-servers with the
//! codis-slots module; slots migrate and rebalance while clients write and read.
//! Every test runs on each coordinator (filesystem, etcd, ZooKeeper), see the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use codis_core::models::SlotMapping;
use codis_core::slot_of;
use codis_dashboard::{Config, Dashboard};
use codis_proxy::{Options, Proxy};
use codis_testkit::{Backend, Client, Coordinator, RedisServer, Value, args, wait_until};
use serde_json::Value as Json;

struct Cluster {
    _coord: Coordinator,
    dashboard: Dashboard,
    proxy: Proxy,
    servers: Vec<RedisServer>,
    http: reqwest::Client,
    config: Config,
    module: bool,
}

/// A dashboard configuration on coordinator `c`.
fn config_on(c: &Coordinator, product: &str) -> Config {
    Config {
        coordinator_name: c.name().into(),
        coordinator_addr: c.addr().into(),
        admin_addr: "127.0.0.1:0".into(),
        product_name: product.into(),
        ..Config::default()
    }
}

impl Cluster {
    async fn start(backend: Backend, name: &str, groups: usize) -> Cluster {
        Self::start_mode(backend, name, groups, true).await
    }

    /// `module`: redis-servers with the codis-slots module, else stock ones.
    async fn start_mode(backend: Backend, name: &str, groups: usize, module: bool) -> Cluster {
        let coord = Coordinator::start(backend);
        let config = config_on(&coord, &format!("e2e-{name}"));
        let dashboard = Dashboard::start(config.clone()).await.unwrap();
        let proxy_config = codis_proxy::Config {
            proxy_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: config.product_name.clone(),
            ..Default::default()
        };
        let proxy = Proxy::bind(proxy_config, Options { workers: 2, log_control: None }).await.unwrap();
        let servers: Vec<RedisServer> = (0..groups)
            .map(|_| if module { RedisServer::start_with_module(&[]) } else { RedisServer::start(&[]) })
            .collect();
        let c = Cluster { _coord: coord, dashboard, proxy, servers, http: reqwest::Client::new(), config, module };
        for (i, s) in c.servers.iter().enumerate() {
            c.put(&format!("group/create/{}/{}", c.xauth(), i + 1)).await.unwrap();
            c.put(&format!("group/add/{}/{}/{}", c.xauth(), i + 1, s.addr())).await.unwrap();
        }
        c.put(&format!("proxy/create/{}/{}", c.xauth(), c.proxy.model().admin_addr)).await.unwrap();
        c
    }

    fn xauth(&self) -> String {
        self.dashboard.topom.xauth().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/topom/{path}", self.dashboard.admin_addr)
    }

    async fn put(&self, path: &str) -> Result<Json, String> {
        self.put_body(path, String::new()).await
    }

    async fn put_body(&self, path: &str, body: String) -> Result<Json, String> {
        let r = self.http.put(self.url(path)).body(body).send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        if ok { Ok(v) } else { Err(v["Cause"].as_str().unwrap_or("?").to_string()) }
    }

    async fn assign_all(&self, gid: i64) {
        let m: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: gid, ..Default::default() }).collect();
        self.put_body(&format!("slots/assign/{}", self.xauth()), serde_json::to_string(&m).unwrap()).await.unwrap();
    }

    async fn client(&self) -> Client {
        Client::connect(&self.proxy.model().proxy_addr).await.unwrap()
    }

    /// Waits until no slot has a migration action.
    async fn wait_migrations(&self, timeout: Duration) {
        let topom = self.dashboard.topom.clone();
        wait_until("migrations to finish", timeout, || {
            let topom = topom.clone();
            async move { topom.cache().await.slots.iter().all(|m| m.action.state.is_empty()).then_some(()) }
        })
        .await;
    }

    /// Checks every key on every server is in a slot that the dashboard maps to
    /// that server's group, and SLOTSINFO counts agree with the keys found.
    async fn check_placement(&self) -> usize {
        let cache = self.dashboard.topom.cache().await;
        let mut total = 0;
        for (i, s) in self.servers.iter().enumerate() {
            let gid = i as i64 + 1;
            let mut c = Client::connect(&s.addr()).await.unwrap();
            let Value::Array(keys) = c.cmd(&["KEYS", "*"]).await.unwrap() else { panic!() };
            let mut per_slot: BTreeMap<i64, i64> = BTreeMap::new();
            for k in &keys {
                let k = k.as_str().unwrap();
                let slot = slot_of(k.as_bytes()) as i64;
                assert_eq!(cache.slots[slot as usize].group_id, gid, "key {k} of slot {slot} sits in group {gid}");
                *per_slot.entry(slot).or_default() += 1;
            }
            total += keys.len();
            if !self.module {
                continue;
            }
            let Value::Array(info) = c.cmd(&["SLOTSINFO", "0", "1024"]).await.unwrap() else { panic!() };
            let reported: BTreeMap<i64, i64> = info
                .iter()
                .map(|e| match e {
                    Value::Array(p) => (p[0].as_int().unwrap(), p[1].as_int().unwrap()),
                    _ => panic!(),
                })
                .collect();
            assert_eq!(reported, per_slot, "SLOTSINFO of group {gid} matches its keys");
        }
        total
    }
}

/// A client that keeps writing versioned values and reading them back, counting
/// acknowledged writes and errors.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl Load {
    fn start(addr: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
            tokio::spawn(async move {
                let mut cl = Client::connect(&addr).await.unwrap();
                let mut last: BTreeMap<String, u64> = BTreeMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{}", i % 500);
                    match cl.cmd(&["SET", &key, &i.to_string()]).await.unwrap() {
                        Value::Simple(_) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            last.insert(key.clone(), i);
                        }
                        other => {
                            eprintln!("write error: {other:?}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    match cl.cmd(&["GET", &key]).await.unwrap() {
                        Value::Bulk(v) if v == i.to_string().as_bytes() => {}
                        other => {
                            eprintln!("read of {key} gave {other:?}, expected {i}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
                last
            })
        };
        Load { stop, acked, errors, task }
    }

    async fn finish(self) -> (BTreeMap<String, u64>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let last = self.task.await.unwrap();
        (last, self.acked.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }
}

/// 20k keys of every type, some with TTLs and hash tags.
async fn populate(cl: &mut Client) -> usize {
    let mut cmds = Vec::new();
    for i in 0..4000 {
        cmds.push(args!["SET", format!("s:{i}"), format!("v{i}")]);
        cmds.push(args!["HSET", format!("h:{i}"), "a", i.to_string(), "b", "x"]);
        cmds.push(args!["RPUSH", format!("l:{{t{}}}:{i}", i % 50), "1", "2", "3"]);
        cmds.push(args!["SADD", format!("set:{i}"), "m1", "m2"]);
        cmds.push(args!["ZADD", format!("z:{i}"), "1", "a", "2", "b"]);
    }
    for i in 0..500 {
        cmds.push(args!["SET", format!("ttl:{i}"), "x", "EX", "3600"]);
    }
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert!(!r.is_error(), "{r:?}");
    }
    20_500
}

async fn verify_data(cl: &mut Client) {
    for i in (0..4000).step_by(37) {
        assert_eq!(cl.cmd(&["GET", &format!("s:{i}")]).await.unwrap(), Value::bulk(&format!("v{i}")));
        assert_eq!(cl.cmd(&["HGET", &format!("h:{i}"), "a"]).await.unwrap(), Value::bulk(&i.to_string()));
        assert_eq!(cl.cmd(&["LLEN", &format!("l:{{t{}}}:{i}", i % 50)]).await.unwrap(), Value::Int(3));
        assert_eq!(cl.cmd(&["SCARD", &format!("set:{i}")]).await.unwrap(), Value::Int(2));
        assert_eq!(cl.cmd(&["ZSCORE", &format!("z:{i}"), "b"]).await.unwrap(), Value::bulk("2"));
    }
    for i in (0..500).step_by(17) {
        let ttl = cl.cmd(&["TTL", &format!("ttl:{i}")]).await.unwrap().as_int().unwrap();
        assert!((3000..=3600).contains(&ttl), "ttl:{i} has ttl {ttl}");
    }
}

async fn migrate_and_rebalance_under_load(backend: Backend) {
    migrate_and_rebalance(backend, "migrate", true).await;
}

async fn migrate_and_rebalance_stock_servers_under_load(backend: Backend) {
    migrate_and_rebalance(backend, "stock", false).await;
}

async fn migrate_and_rebalance(backend: Backend, name: &str, module: bool) {
    let c = Cluster::start_mode(backend, name, 3, module).await;
    // start with everything on group 1 (group 3 joins later)
    c.assign_all(1).await;
    let mut cl = c.client().await;
    let keys = populate(&mut cl).await;
    let load = Load::start(c.proxy.model().proxy_addr.clone());

    // move half the slots to group 2
    c.put(&format!("slots/action/create-range/{}/0/511/2", c.xauth())).await.unwrap();
    c.wait_migrations(Duration::from_secs(120)).await;
    let cache = c.dashboard.topom.cache().await;
    assert!(cache.slots[..512].iter().all(|m| m.group_id == 2));
    assert!(cache.slots[512..].iter().all(|m| m.group_id == 1));

    // rebalance over the three groups
    let plan = c.put(&format!("slots/rebalance/{}/1", c.xauth())).await.unwrap();
    assert!(plan.as_object().unwrap().len() >= 300, "{plan}");
    c.wait_migrations(Duration::from_secs(120)).await;
    let cache = c.dashboard.topom.cache().await;
    for gid in 1..=3 {
        let n = cache.slots.iter().filter(|m| m.group_id == gid).count();
        assert!((341..=342).contains(&n), "group {gid} has {n} slots");
    }

    let (last, acked, errors) = load.finish().await;
    assert_eq!(errors, 0, "clients saw errors during the migrations");
    assert!(acked > 100, "the load ran ({acked} writes)");
    for (key, v) in &last {
        assert_eq!(cl.cmd(&["GET", key]).await.unwrap(), Value::bulk(&v.to_string()), "{key} lost its last write");
    }
    verify_data(&mut cl).await;
    assert_eq!(c.check_placement().await, keys + last.len());

    // the progress figures are there
    let stats: Json = c
        .http
        .get(format!("http://{}/topom/stats", c.dashboard.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let progress = stats["slot_action"]["progress"]["slots"].as_array().unwrap();
    assert!(progress.iter().any(|p| p["moved"].as_u64().unwrap() > 0 && p["state"] == "finished"));
    // every slot of the rebalance is listed, finished, with nothing left
    assert!(progress.len() >= 300, "{} entries", progress.len());
    for p in progress {
        assert_eq!(p["state"], "finished", "{p}");
        assert_eq!(p["remaining"], 0, "{p}");
        assert!(p["finished_at"].as_u64().unwrap() >= p["started"].as_u64().unwrap(), "{p}");
    }
    assert_eq!(stats["group"]["modes"][c.servers[0].addr()], if module { "codis-slots" } else { "stock" });

    // the same in /metrics: every finished slot counted, slots per group, servers up
    let text = c.http.get(format!("http://{}/metrics", c.dashboard.admin_addr)).send().await.unwrap();
    let text = text.text().await.unwrap();
    let product = &c.dashboard.topom.config.product_name;
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let moved = 512 + plan.as_object().unwrap().len();
    assert_eq!(value(&format!("codis_dashboard_slots_migrated_total{{product=\"{product}\"}}")), moved as f64);
    assert!(value(&format!("codis_dashboard_keys_migrated_total{{product=\"{product}\"}}")) >= keys as f64 / 2.0);
    for gid in 1..=3 {
        let n = value(&format!("codis_dashboard_slots{{product=\"{product}\",group=\"{gid}\"}}"));
        assert!((341.0..=342.0).contains(&n), "group {gid}: {n}");
    }
    assert!(!text.contains("codis_dashboard_slot_actions{"), "no migration left");
    assert_eq!(value(&format!("codis_dashboard_active{{product=\"{product}\"}}")), 1.0);
    for s in &c.servers {
        let series = format!("codis_dashboard_server_up{{product=\"{product}\",group=");
        let line = text.lines().find(|l| l.starts_with(&series) && l.contains(&format!("addr=\"{}\"", s.addr())));
        assert!(line.is_some_and(|l| l.ends_with(" 1")), "{} up in\n{text}", s.addr());
    }
}

async fn a_second_dashboard_is_refused_and_a_restart_resumes_migrations(backend: Backend) {
    let c = Cluster::start(backend, "restart", 2).await;
    c.assign_all(1).await;
    let mut cl = c.client().await;
    let cmds: Vec<_> = (0..30_000).map(|i| args!["SET", format!("k{i}"), "x".repeat(100)]).collect();
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert_eq!(r, Value::ok());
    }
    // a second dashboard on the same product names the holder of the lock
    let err = match Dashboard::start(Config { admin_addr: "127.0.0.1:0".into(), ..c.config.clone() }).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a second dashboard must not start"),
    };
    assert!(err.contains(&c.dashboard.admin_addr) && err.contains("--remove-lock"), "{err}");

    // slow migrations down so the restart lands in the middle
    c.put(&format!("slots/action/interval/{}/20000", c.xauth())).await.unwrap();
    c.put(&format!("slots/action/create-range/{}/0/1023/2", c.xauth())).await.unwrap();
    let topom = c.dashboard.topom.clone();
    wait_until("some slots migrated", Duration::from_secs(60), || {
        let topom = topom.clone();
        async move { (topom.cache().await.slots.iter().filter(|m| m.group_id == 2).count() >= 8).then_some(()) }
    })
    .await;
    c.dashboard.topom.close().await.unwrap();
    let moved_before = c.dashboard.topom.cache().await.slots.iter().filter(|m| m.group_id == 2).count();
    assert!(moved_before < 1024, "the restart must happen mid-migration");

    // a new dashboard on the same coordinator picks the actions up and finishes them
    let again = Dashboard::start(Config { admin_addr: "127.0.0.1:0".into(), ..c.config.clone() }).await.unwrap();
    let topom = again.topom.clone();
    wait_until("migrations to finish after the restart", Duration::from_secs(180), || {
        let topom = topom.clone();
        async move { topom.cache().await.slots.iter().all(|m| m.group_id == 2 && m.action.state.is_empty()).then_some(()) }
    })
    .await;
    let mut src = Client::connect(&c.servers[0].addr()).await.unwrap();
    assert_eq!(src.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    let mut dst = Client::connect(&c.servers[1].addr()).await.unwrap();
    assert_eq!(dst.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(30_000));
    assert_eq!(cl.cmd(&["GET", "k29999"]).await.unwrap(), Value::bulk(&"x".repeat(100)));
    again.topom.close().await.unwrap();
}

async fn the_action_interval_throttles_small_slots(backend: Backend) {
    let c = Cluster::start(backend, "throttle", 2).await;
    c.assign_all(1).await;
    let mut cl = c.client().await;
    let cmds: Vec<_> = (0..200).map(|i| args!["SET", format!("t{i}"), "v"]).collect();
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert_eq!(r, Value::ok());
    }
    // 16 slots of a dozen keys, each moved in one step: the interval still follows
    // every step, so the range takes at least two rounds of 250 ms (8 slots a round)
    c.put(&format!("slots/action/interval/{}/250000", c.xauth())).await.unwrap();
    let t = std::time::Instant::now();
    c.put(&format!("slots/action/create-range/{}/0/15/2", c.xauth())).await.unwrap();
    let topom = c.dashboard.topom.clone();
    wait_until("slots 0-15 moved", Duration::from_secs(60), || {
        let topom = topom.clone();
        async move {
            let slots = topom.cache().await.slots;
            slots[..16].iter().all(|m| m.group_id == 2 && m.action.state.is_empty()).then_some(())
        }
    })
    .await;
    assert!(t.elapsed() >= Duration::from_millis(500), "throttled: {:?}", t.elapsed());
    c.dashboard.topom.close().await.unwrap();
}

async fn api_errors_are_clear(backend: Backend) {
    let c = Cluster::start(backend, "errors", 1).await;
    let x = c.xauth();
    assert!(c.put("group/create/badxauth/5").await.unwrap_err().contains("invalid xauth"));
    assert!(c.put(&format!("group/create/{x}/0")).await.unwrap_err().contains("out of range"));
    assert!(c.put(&format!("group/create/{x}/1")).await.unwrap_err().contains("already exists"));
    assert!(c.put(&format!("group/add/{x}/9/127.0.0.1:1")).await.unwrap_err().contains("group-[9] doesn't exist"));
    assert!(c.put(&format!("group/add/{x}/1/127.0.0.1:1")).await.unwrap_err().contains("cannot be reached"));
    assert!(c.put(&format!("slots/action/create/{x}/5/7")).await.unwrap_err().contains("group-[7] doesn't exist"));
    assert!(c.put(&format!("slots/action/create-range/{x}/10/5/1")).await.unwrap_err().contains("invalid slot range"));
    assert!(c.put(&format!("group/remove/{x}/1")).await.unwrap_err().contains("isn't empty"));
    let e = c.put(&format!("slots/action/interval/{x}/2000000")).await.unwrap_err();
    assert!(e.contains("invalid action interval 2000000") && e.contains("0 to 1000000"), "{e}");
    assert!(c.put(&format!("slots/action/interval/{x}/-1")).await.unwrap_err().contains("invalid action interval"));
    // a stock redis-server is accepted and reported as such
    let stock = RedisServer::start(&[]);
    c.put(&format!("group/create/{x}/2")).await.unwrap();
    c.put(&format!("group/add/{x}/2/{}", stock.addr())).await.unwrap();
    let stats: Json = c
        .http
        .get(format!("http://{}/topom/stats", c.dashboard.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["group"]["modes"][stock.addr()], "stock");
    // a proxy of another product is refused
    let other = Proxy::bind(
        codis_proxy::Config {
            proxy_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: "other".into(),
            ..Default::default()
        },
        Options { workers: 1, log_control: None },
    )
    .await
    .unwrap();
    let e = c.put(&format!("proxy/create/{x}/{}", other.model().admin_addr)).await.unwrap_err();
    assert!(e.contains("belongs to product"), "{e}");
}

async fn role_of(addr: &str) -> (String, String) {
    let mut c = Client::connect(addr).await.unwrap();
    let v = c.cmd(&["INFO", "replication"]).await.unwrap();
    let text = v.as_str().unwrap().to_string();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}:"))).unwrap_or("").trim().to_string();
    (get("role"), get("master_port"))
}

async fn promote_repoints_replicas_and_the_old_master_when_it_returns(backend: Backend) {
    let c = Cluster::start(backend, "promote", 1).await;
    let x = c.xauth();
    let mut master = RedisServer::start_with_module(&["--repl-diskless-sync-delay", "0"]);
    let mport = master.port.to_string();
    let r1 = RedisServer::start_with_module(&["--replicaof", "127.0.0.1", &mport, "--repl-diskless-sync-delay", "0"]);
    let r2 = RedisServer::start_with_module(&["--replicaof", "127.0.0.1", &mport]);
    // a second group made of the new servers
    c.put(&format!("group/create/{x}/2")).await.unwrap();
    for s in [&master, &r1, &r2] {
        c.put(&format!("group/add/{x}/2/{}", s.addr())).await.unwrap();
    }
    let m: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: 2, ..Default::default() }).collect();
    c.put_body(&format!("slots/assign/{x}"), serde_json::to_string(&m).unwrap()).await.unwrap();
    let mut cl = c.client().await;
    assert_eq!(cl.cmd(&["SET", "before", "1"]).await.unwrap(), Value::ok());
    let r1addr = r1.addr();
    wait_until("replication to r1", Duration::from_secs(15), || {
        let a = r1addr.clone();
        async move {
            (Client::connect(&a).await.ok()?.cmd(&["GET", "before"]).await.ok()? == Value::bulk("1")).then_some(())
        }
    })
    .await;

    // the master dies; r1 is promoted
    master.kill();
    c.put(&format!("group/promote/{x}/2/{}", r1.addr())).await.unwrap();
    let g = c.dashboard.topom.cache().await.groups[&2].clone();
    let order: Vec<&str> = g.servers.iter().map(|s| s.addr.as_str()).collect();
    assert_eq!(order, vec![r1.addr().as_str(), r2.addr().as_str(), master.addr().as_str()]);
    assert_eq!(role_of(&r1.addr()).await.0, "master");
    // writes go to the new master through the proxy
    assert_eq!(cl.cmd(&["SET", "after", "2"]).await.unwrap(), Value::ok());
    assert_eq!(Client::connect(&r1.addr()).await.unwrap().cmd(&["GET", "after"]).await.unwrap(), Value::bulk("2"));
    // the other replica follows the new master
    let r1port = r1.port.to_string();
    wait_until("r2 to follow r1", Duration::from_secs(15), || {
        let (a, p) = (r2.addr(), r1port.clone());
        async move { (role_of(&a).await == ("slave".to_string(), p)).then_some(()) }
    })
    .await;
    // the old master comes back empty and becomes a replica of the new one
    master.restart();
    let maddr = master.addr();
    wait_until("the old master to rejoin as a replica", Duration::from_secs(20), || {
        let (a, p) = (maddr.clone(), r1port.clone());
        async move { (role_of(&a).await == ("slave".to_string(), p)).then_some(()) }
    })
    .await;
    wait_until("the old master to catch up", Duration::from_secs(20), || {
        let a = maddr.clone();
        async move { (Client::connect(&a).await.ok()?.cmd(&["GET", "after"]).await.ok()? == Value::bulk("2")).then_some(()) }
    })
    .await;
    let g = c.dashboard.topom.cache().await.groups[&2].clone();
    assert!(g.servers[1..].iter().all(|s| s.action.state == "synced"), "{:?}", g.servers);
    assert!(g.promoting.state.is_empty());
}

async fn product_auth_protects_the_api_and_reaches_servers_and_proxies(backend: Backend) {
    let coord = Coordinator::start(backend);
    let config = Config { product_auth: "s3cret".into(), ..config_on(&coord, "e2e-auth") };
    let dashboard = Dashboard::start(config.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let put = |xauth: String, path: &str| {
        let url = format!("http://{}/api/topom/{path}", dashboard.admin_addr).replace("XAUTH", &xauth);
        let http = http.clone();
        async move {
            let r = http.put(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Json>().await.unwrap_or(Json::Null))
        }
    };
    // Codis's xauth (from the product name alone) no longer opens mutating routes
    let codis_xauth = codis_core::auth::new_xauth(&["e2e-auth"]);
    let (status, body) = put(codis_xauth, "group/create/XAUTH/1").await;
    assert_eq!(status, 800);
    assert!(body["Cause"].as_str().unwrap().contains("invalid xauth"));
    let xauth = codis_core::auth::dashboard_xauth("e2e-auth", "s3cret");
    assert_eq!(put(xauth.clone(), "group/create/XAUTH/1").await.0, 200);
    // servers and proxies with the same password are driven with it
    let server = RedisServer::start_with_module(&["--requirepass", "s3cret"]);
    assert_eq!(put(xauth.clone(), &format!("group/add/XAUTH/1/{}", server.addr())).await.0, 200);
    let proxy = Proxy::bind(
        codis_proxy::Config {
            proxy_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: "e2e-auth".into(),
            product_auth: "s3cret".into(),
            ..Default::default()
        },
        Options { workers: 1, log_control: None },
    )
    .await
    .unwrap();
    assert_eq!(put(xauth.clone(), &format!("proxy/create/XAUTH/{}", proxy.model().admin_addr)).await.0, 200);
    let m: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: 1, ..Default::default() }).collect();
    let r = http
        .put(format!("http://{}/api/topom/slots/assign/{xauth}", dashboard.admin_addr))
        .body(serde_json::to_string(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    assert_eq!(cl.cmd(&["SET", "k", "v"]).await.unwrap(), Value::ok());
    // a server with another password is refused with a clear message
    let other = RedisServer::start_with_module(&["--requirepass", "different"]);
    let (status, body) = put(xauth.clone(), &format!("group/add/XAUTH/1/{}", other.addr())).await;
    assert_eq!(status, 800);
    assert!(body["Cause"].as_str().unwrap().contains("product_auth"), "{body}");
    dashboard.topom.close().await.unwrap();
}

codis_testkit::on_every_backend!(
    migrate_and_rebalance_under_load,
    migrate_and_rebalance_stock_servers_under_load,
    a_second_dashboard_is_refused_and_a_restart_resumes_migrations,
    api_errors_are_clear,
    the_action_interval_throttles_small_slots,
    promote_repoints_replicas_and_the_old_master_when_it_returns,
    product_auth_protects_the_api_and_reaches_servers_and_proxies,
);
