//! The control plane going away does not touch the data path: with the coordinator
//! stopped for 30 s, clients of the proxy see no error; the dashboard stops writing while
//! it cannot hold its lock, and takes it back (and the proxy its jodis node) when the
//! coordinator returns, with no manual step. The proxy finds the dashboard through the
//! coordinator, as Codis's `codis-proxy --etcd/--zookeeper` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codis_core::models::SlotMapping;
use codis_dashboard::{Config, Dashboard};
use codis_proxy::discovery::{Retry, dashboard_from_coordinator, online_with_dashboard};
use codis_proxy::{Options, Proxy};
use codis_testkit::{Backend, Client, Coordinator, RedisServer, Value, wait_until};

const LEASE: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(30);

async fn coordinator_outage_causes_no_client_errors(backend: Backend) {
    let mut coord = Coordinator::start(backend);
    let product = "outage";
    let config = Config {
        coordinator_name: coord.name().into(),
        coordinator_addr: coord.addr().into(),
        admin_addr: "127.0.0.1:0".into(),
        product_name: product.into(),
        coordinator_lease: "3s".parse().unwrap(),
        ..Config::default()
    };
    let dashboard = Dashboard::start(config).await.unwrap();
    let x = dashboard.topom.xauth().to_string();
    let http = reqwest::Client::new();
    let put = |path: String, body: String| {
        let (http, url) = (http.clone(), format!("http://{}/api/topom/{path}", dashboard.admin_addr));
        async move { http.put(url).body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    let server = RedisServer::start_with_module(&[]);
    assert_eq!(put(format!("group/create/{x}/1"), String::new()).await, 200);
    assert_eq!(put(format!("group/add/{x}/1/{}", server.addr()), String::new()).await, 200);
    let all: Vec<SlotMapping> = (0..1024).map(|id| SlotMapping { id, group_id: 1, ..Default::default() }).collect();
    assert_eq!(put(format!("slots/assign/{x}"), serde_json::to_string(&all).unwrap()).await, 200);

    // The proxy registers for jodis in the same coordinator, and finds the dashboard there.
    let proxy = Proxy::bind(
        codis_proxy::Config {
            proxy_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: product.into(),
            jodis_name: coord.name().into(),
            jodis_addr: coord.addr().into(),
            jodis_timeout: "3s".parse().unwrap(),
            ..Default::default()
        },
        Options { workers: 1, log_control: None },
    )
    .await
    .unwrap();
    let retry = Retry { attempts: 3, pause: Duration::from_millis(200) };
    let found = dashboard_from_coordinator(coord.name(), coord.addr(), "", product, retry).await.unwrap();
    assert_eq!(found, dashboard.admin_addr);
    online_with_dashboard(&found, product, "", &proxy.model().admin_addr, retry).await.unwrap();
    let jodis = codis_store::Store::new(
        codis_store::connect(coord.name(), coord.addr(), "", LEASE).await.unwrap().into(),
        product,
    );
    let path = proxy.model().jodis_path.clone();
    let jodis_present = || {
        let (c, path) = (jodis.client().clone(), path.clone());
        async move { c.read(&path, false).await.ok()?.map(|_| ()) }
    };
    wait_until("the jodis node", Duration::from_secs(10), jodis_present).await;

    // Clients write and read back through the proxy the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ops, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|n| {
            let (stop, ops, errors, addr) =
                (stop.clone(), ops.clone(), errors.clone(), proxy.model().proxy_addr.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(&addr).await.unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("c{n}:{}", i % 1000);
                    let set = c.cmd(&["SET", &key, &i.to_string()]).await;
                    let get = c.cmd(&["GET", &key]).await;
                    if !matches!(set, Ok(Value::Simple(_))) || get.ok() != Some(Value::bulk(&i.to_string())) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    coord.stop();
    let stopped = Instant::now();
    let topom = dashboard.topom.clone();
    wait_until("the dashboard to give up its lock", LEASE * 2, || {
        let topom = topom.clone();
        async move { (!topom.is_active()).then_some(()) }
    })
    .await;
    eprintln!("{}: dashboard stood by {:?} into the outage", backend.name(), stopped.elapsed());
    assert_ne!(put(format!("group/create/{x}/2"), String::new()).await, 200);
    let before = ops.load(Ordering::Relaxed);
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await; // the outage itself
    assert!(ops.load(Ordering::Relaxed) > before + 1000, "clients kept going during the outage");
    coord.start_again();
    let back = Instant::now();

    wait_until("the dashboard to hold its lock again", Duration::from_secs(30), || {
        let topom = topom.clone();
        async move { topom.is_active().then_some(()) }
    })
    .await;
    eprintln!("{}: dashboard active again {:?} after the coordinator returned", backend.name(), back.elapsed());
    wait_until("the jodis node again", Duration::from_secs(30), jodis_present).await;
    eprintln!("{}: jodis node back {:?} after the coordinator returned", backend.name(), back.elapsed());
    // Both stay: they are renewed under new leases, not leftovers of the old ones
    // (etcd restores leases on restart, which then run out).
    tokio::time::sleep(LEASE * 2).await;
    assert!(jodis_present().await.is_some(), "the jodis node stays");
    assert_eq!(jodis.topom().await.unwrap().unwrap().admin_addr, dashboard.admin_addr);
    assert!(topom.is_active());
    assert_eq!(put(format!("group/create/{x}/2"), String::new()).await, 200);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ops, errors) = (ops.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    eprintln!("{}: {ops} client operations, {errors} errors", backend.name());
    assert_eq!(errors, 0, "clients saw errors while the coordinator was down");
    dashboard.topom.close().await.unwrap();
    proxy.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_causes_no_client_errors() {
    coordinator_outage_causes_no_client_errors(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_outage_causes_no_client_errors() {
    coordinator_outage_causes_no_client_errors(Backend::Zookeeper).await;
}
