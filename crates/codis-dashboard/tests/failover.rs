//! Dashboard failover on every coordinator: a `--standby` dashboard process takes over
//! from an active one killed with SIGKILL in the middle of a migration and finishes it
//! with no lost key while a client writes; a dashboard whose lock is taken from it stops
//! writing at once, and takes the lock again once it is free.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codis_core::models::{SlotMapping, Topom as LockModel};
use codis_dashboard::{Config, Dashboard};
use codis_proxy::{Options, Proxy};
use codis_store::{Store, StoreError};
use codis_testkit::{Backend, Client, Coordinator, RedisServer, Value, args, free_port, wait_until};

const LEASE: Duration = Duration::from_secs(3);

/// A `codis-dashboard` process.
struct DashboardProcess {
    child: Child,
    addr: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl DashboardProcess {
    async fn start(coord: &Coordinator, product: &str, standby: bool) -> DashboardProcess {
        let addr = format!("127.0.0.1:{}", free_port());
        let dir = std::env::temp_dir().join(format!("codis-failover-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("dashboard.toml");
        std::fs::write(
            &config,
            format!(
                "coordinator_name = \"{}\"\ncoordinator_addr = \"{}\"\nproduct_name = \"{product}\"\n\
                 admin_addr = \"{addr}\"\ncoordinator_lease = \"{}s\"\n",
                coord.name(),
                coord.addr(),
                LEASE.as_secs()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codis-dashboard"));
        cmd.arg("--config").arg(&config).arg("--log").arg(dir.join("dashboard.log"));
        if standby {
            cmd.arg("--standby");
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let url = format!("http://{addr}/api/topom/model");
        wait_until("the dashboard's API", Duration::from_secs(20), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        DashboardProcess { child, addr, _dir: tempdir::Dir(dir) }
    }

    async fn put(&self, path: &str, body: String) -> Result<(), String> {
        let r = reqwest::Client::new()
            .put(format!("http://{}/api/topom/{path}", self.addr))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() { Ok(()) } else { Err(r.text().await.unwrap_or_default()) }
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn store_of(coord: &Coordinator, product: &str) -> Store {
    let c = codis_store::connect(coord.name(), coord.addr(), "", LEASE).await.unwrap();
    Store::new(c.into(), product)
}

async fn standby_takes_over_a_killed_dashboard_mid_migration(backend: Backend) {
    let coord = Coordinator::start(backend);
    let product = "failover";
    let x = codis_core::auth::dashboard_xauth(product, "");
    let servers = [RedisServer::start_with_module(&[]), RedisServer::start_with_module(&[])];
    let proxy = Proxy::bind(
        codis_proxy::Config {
            proxy_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: product.into(),
            ..Default::default()
        },
        Options { workers: 1, log_control: None },
    )
    .await
    .unwrap();
    let mut active = DashboardProcess::start(&coord, product, false).await;
    let standby = DashboardProcess::start(&coord, product, true).await;
    let e = standby.put(&format!("group/create/{x}/1"), String::new()).await.unwrap_err();
    assert!(e.contains("does not hold the lock") && e.contains(&active.addr), "{e}");

    for (i, s) in servers.iter().enumerate() {
        active.put(&format!("group/create/{x}/{}", i + 1), String::new()).await.unwrap();
        active.put(&format!("group/add/{x}/{}/{}", i + 1, s.addr()), String::new()).await.unwrap();
    }
    active.put(&format!("proxy/create/{x}/{}", proxy.model().admin_addr), String::new()).await.unwrap();
    let all: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: 1, ..Default::default() }).collect();
    active.put(&format!("slots/assign/{x}"), serde_json::to_string(&all).unwrap()).await.unwrap();
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    let keys = 20_000;
    let cmds: Vec<_> = (0..keys).map(|i| args!["SET", format!("k{i}"), format!("v{i}")]).collect();
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert_eq!(r, Value::ok());
    }

    // A client keeps writing and reading back through the proxy the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, addr) = (stop.clone(), proxy.model().proxy_addr.clone());
        tokio::spawn(async move {
            let mut c = Client::connect(&addr).await.unwrap();
            let (mut last, mut errors) = (BTreeMap::new(), 0u64);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{}", i % 300);
                match c.cmd(&["SET", &key, &i.to_string()]).await.unwrap() {
                    Value::Simple(_) => {
                        last.insert(key.clone(), i);
                    }
                    other => {
                        eprintln!("write error: {other:?}");
                        errors += 1;
                    }
                }
                if c.cmd(&["GET", &key]).await.unwrap() != Value::bulk(&i.to_string()) {
                    errors += 1;
                }
                i += 1;
            }
            (last, errors)
        })
    };

    // A slow migration of every slot to group 2; the active dashboard dies half-way.
    active.put(&format!("slots/action/interval/{x}/20000"), String::new()).await.unwrap();
    active.put(&format!("slots/action/create-range/{x}/0/1023/2"), String::new()).await.unwrap();
    let store = store_of(&coord, product).await;
    wait_until("some slots migrated", Duration::from_secs(60), || {
        let store = store.clone();
        async move { (store.slot_mappings().await.ok()?.iter().filter(|m| m.group_id == 2).count() >= 16).then_some(()) }
    })
    .await;
    active.child.kill().unwrap(); // SIGKILL
    active.child.wait().unwrap();
    let killed = Instant::now();
    let moved = store.slot_mappings().await.unwrap().iter().filter(|m| m.group_id == 2).count();
    assert!(moved < 1024, "the kill must land mid-migration");

    let standby_addr = standby.addr.clone();
    wait_until("the standby to hold the lock", LEASE * 3, || {
        let (store, addr) = (store.clone(), standby_addr.clone());
        async move { (store.topom().await.ok()??.admin_addr == addr).then_some(()) }
    })
    .await;
    let took = killed.elapsed();
    // Mutating calls work on the new holder at once.
    standby.put(&format!("slots/action/interval/{x}/0"), String::new()).await.unwrap();
    eprintln!(
        "{}: standby took over {took:?} after the kill (lease {LEASE:?}), {moved} slots moved before",
        backend.name()
    );
    assert!(took <= LEASE + Duration::from_secs(1), "{}: takeover took {took:?}", backend.name());

    wait_until("the migration to finish under the standby", Duration::from_secs(180), || {
        let store = store.clone();
        async move {
            store.slot_mappings().await.ok()?.iter().all(|m| m.group_id == 2 && m.action.state.is_empty()).then_some(())
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (last, errors) = writer.await.unwrap();
    assert_eq!(errors, 0, "the client saw errors during the failover");
    for (key, v) in &last {
        assert_eq!(cl.cmd(&["GET", key]).await.unwrap(), Value::bulk(&v.to_string()), "{key} lost its last write");
    }
    let mut src = Client::connect(&servers[0].addr()).await.unwrap();
    assert_eq!(src.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    let mut dst = Client::connect(&servers[1].addr()).await.unwrap();
    assert_eq!(dst.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(keys + last.len() as i64));
    for i in (0..keys).step_by(97) {
        assert_eq!(cl.cmd(&["GET", &format!("k{i}")]).await.unwrap(), Value::bulk(&format!("v{i}")));
    }
}

async fn a_dashboard_that_loses_its_lock_stops_writing(backend: Backend) {
    let coord = Coordinator::start(backend);
    let config = Config {
        coordinator_name: coord.name().into(),
        coordinator_addr: coord.addr().into(),
        admin_addr: "127.0.0.1:0".into(),
        product_name: "lose".into(),
        coordinator_lease: "3s".parse().unwrap(),
        ..Config::default()
    };
    let d = Dashboard::start(config).await.unwrap();
    let x = d.topom.xauth().to_string();
    let http = reqwest::Client::new();
    let put = |path: String| {
        let (http, url) = (http.clone(), format!("http://{}/api/topom/{path}", d.admin_addr));
        async move {
            let r = http.put(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(put(format!("group/create/{x}/1")).await.0, 200);

    // An operator removes the lock and a Codis dashboard's persistent lock takes its place.
    let store = store_of(&coord, "lose").await;
    store.release().await.unwrap();
    let codis = LockModel { admin_addr: "10.1.1.1:18080".into(), token: "codis".into(), ..Default::default() };
    store.acquire(&codis).await.unwrap();
    let since = Instant::now();
    let topom = d.topom.clone();
    wait_until("the dashboard to notice", LEASE, || {
        let topom = topom.clone();
        async move { (!topom.is_active()).then_some(()) }
    })
    .await;
    eprintln!("{}: lost lock noticed after {:?}", backend.name(), since.elapsed());
    let (status, body) = put(format!("group/create/{x}/2")).await;
    assert_eq!(status, 800);
    assert!(body.contains("does not hold the lock of product lose") && body.contains("10.1.1.1:18080"), "{body}");
    // Its writes are refused by the coordinator itself, not only by the dashboard.
    let e = d.topom.store().update_group(&Default::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
    assert_eq!(store.groups().await.unwrap().keys().copied().collect::<Vec<_>>(), vec![1]);

    // Once the lock is free again, the dashboard takes it back with the state re-read.
    store.release().await.unwrap();
    wait_until("the dashboard to take its lock again", LEASE, || {
        let topom = topom.clone();
        async move { topom.is_active().then_some(()) }
    })
    .await;
    assert_eq!(put(format!("group/create/{x}/2")).await.0, 200);
    assert_eq!(store.groups().await.unwrap().len(), 2);
    assert_eq!(store.topom().await.unwrap().unwrap().admin_addr, d.admin_addr);
    d.topom.close().await.unwrap();
    assert!(store.topom().await.unwrap().is_none());
}

codis_testkit::on_every_backend!(
    standby_takes_over_a_killed_dashboard_mid_migration,
    a_dashboard_that_loses_its_lock_stops_writing
);
