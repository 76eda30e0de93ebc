//! Every coordinator backend against a real server (etcd, ZooKeeper, a directory): the
//! same operations, layout and JSON; ephemeral nodes that expire with their holder and
//! fence its writes; one-line errors for wrong addresses and credentials.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codis_core::models::{SlotMapping, Topom};
use codis_store::{Store, StoreError, connect};
use codis_testkit::{Backend, Coordinator, wait_until};

const LEASE: Duration = Duration::from_secs(3);

async fn open(c: &Coordinator, auth: &str) -> Arc<dyn codis_store::Coordinator> {
    connect(c.name(), c.addr(), auth, LEASE).await.unwrap_or_else(|e| panic!("{}: {e}", c.name())).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_operations_layout_and_json_on_every_backend() {
    for backend in Backend::ALL {
        let server = Coordinator::start(backend);
        let c = open(&server, "").await;
        let name = backend.name();
        c.create("/codis3/p/topom", b"one").await.unwrap();
        assert!(matches!(c.create("/codis3/p/topom", b"two").await, Err(StoreError::Exists { .. })), "{name}");
        assert_eq!(c.read("/codis3/p/topom", true).await.unwrap().unwrap(), b"one", "{name}");
        c.update("/codis3/p/topom", b"three").await.unwrap();
        assert_eq!(c.read("/codis3/p/topom", false).await.unwrap().unwrap(), b"three", "{name}");
        assert_eq!(c.read("/codis3/p/none", false).await.unwrap(), None, "{name}");
        assert!(matches!(c.read("/codis3/p/none", true).await, Err(StoreError::NotFound { .. })), "{name}");
        // More nodes than one transaction takes.
        let nodes: Vec<(String, Vec<u8>)> =
            (0..250).map(|i| (format!("/codis3/p/slots/slot-{i:04}"), format!("{i}").into_bytes())).collect();
        c.update_many(&nodes).await.unwrap();
        c.update_many(&nodes[..3]).await.unwrap(); // replacing works too
        let listed = c.list("/codis3/p/slots", true).await.unwrap();
        assert_eq!(listed.len(), 250, "{name}");
        assert_eq!(listed[7], "/codis3/p/slots/slot-0007", "{name}");
        let children = c.read_children("/codis3/p/slots").await.unwrap();
        assert_eq!(children.len(), 250, "{name}");
        assert_eq!(children[249], ("/codis3/p/slots/slot-0249".to_string(), b"249".to_vec()), "{name}");
        assert_eq!(c.list("/codis3", true).await.unwrap(), vec!["/codis3/p"], "{name}");
        assert_eq!(c.list("/codis3/p", true).await.unwrap(), vec!["/codis3/p/slots", "/codis3/p/topom"], "{name}");
        assert!(c.list("/codis3/q", false).await.unwrap().is_empty(), "{name}");
        assert!(matches!(c.list("/codis3/q", true).await, Err(StoreError::NotFound { .. })), "{name}");
        c.delete("/codis3/p/slots").await.unwrap();
        c.delete("/codis3/p/slots").await.unwrap();
        assert!(c.list("/codis3/p/slots", false).await.unwrap().is_empty(), "{name}");
        assert!(c.read("/codis3/../etc", false).await.is_err(), "{name}");

        // Codis's JSON, byte for byte, through the typed store.
        let store = Store::new(c.clone(), "codis-demo");
        let mut m = SlotMapping { id: 579, group_id: 2, ..Default::default() };
        m.action.state = "pending".into();
        m.action.index = 1;
        m.action.target_id = 1;
        store.update_slot_mapping(&m).await.unwrap();
        let text = c.read("/codis3/codis-demo/slots/slot-0579", true).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "{\n    \"id\": 579,\n    \"group_id\": 2,\n    \"action\": {\n        \"index\": 1,\n        \"state\": \"pending\",\n        \"target_id\": 1\n    }\n}",
            "{name}"
        );
        assert_eq!(store.slot_mappings().await.unwrap()[579], m, "{name}");
        assert_eq!(Store::products(c.as_ref()).await.unwrap(), vec!["codis-demo", "p"], "{name}");

        // A watch resolves on a change below the path.
        let watcher = {
            let c = c.clone();
            tokio::spawn(async move { c.watch("/codis3/codis-demo").await })
        };
        if backend != Backend::Filesystem {
            tokio::time::sleep(Duration::from_millis(200)).await; // let the watch register
            store.update_slot_mapping(&SlotMapping { id: 1, group_id: 1, ..Default::default() }).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), watcher).await.unwrap().unwrap().unwrap();
        } else {
            assert!(matches!(watcher.await.unwrap(), Err(StoreError::Unsupported { .. })));
        }
        c.close().await;
        assert!(matches!(c.read("/codis3/p/topom", false).await, Err(StoreError::Closed)), "{name}");
    }
}

fn topom(addr: &str) -> Topom {
    Topom { admin_addr: addr.into(), token: format!("token-{addr}"), product_name: "p".into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_locks_fence_writes_once_lost() {
    for backend in Backend::ALL {
        let server = Coordinator::start(backend);
        let name = backend.name();
        let (a, b) = (open(&server, "").await, open(&server, "").await);
        let (sa, sb) = (Store::new(a.clone(), "p"), Store::new(b.clone(), "p"));
        let lock = sa.lock(&topom("10.0.0.1:18080")).await.unwrap();
        assert!(!lock.is_lost(), "{name}");
        // Codis's tools see the holder at the lock's path, in Codis's JSON.
        assert_eq!(sb.topom().await.unwrap().unwrap().admin_addr, "10.0.0.1:18080", "{name}");
        let e = sb.lock(&topom("10.0.0.2:18080")).await.err().unwrap();
        assert!(matches!(e, StoreError::Locked(_)), "{name}: {e}");
        assert!(e.to_string().contains("10.0.0.1:18080") && e.to_string().contains("--standby"), "{name}: {e}");
        // Writes through the lock go through while it holds.
        let fenced = Store::new(lock.fenced(), "p");
        fenced.update_slot_mapping(&SlotMapping { id: 3, group_id: 1, ..Default::default() }).await.unwrap();
        assert_eq!(sb.slot_mappings().await.unwrap()[3].group_id, 1, "{name}");

        // Someone removes the lock (codis-admin --remove-lock --force): the holder learns
        // it, and its writes are refused by the coordinator, not merely by the holder.
        sb.release().await.unwrap();
        let lost = lock.lost();
        tokio::time::timeout(Duration::from_secs(5), lost).await.unwrap_or_else(|_| panic!("{name}: not lost"));
        let e = fenced.update_slot_mapping(&SlotMapping { id: 3, group_id: 2, ..Default::default() }).await;
        assert!(matches!(e, Err(StoreError::Fenced { .. })), "{name}: {e:?}");
        assert_eq!(sb.slot_mappings().await.unwrap()[3].group_id, 1, "{name}");

        // Another holder takes it; the old one's writes stay refused, and its release
        // leaves the new holder's lock alone.
        let second = sb.lock(&topom("10.0.0.2:18080")).await.unwrap();
        assert!(fenced.delete_group(1).await.is_err(), "{name}");
        lock.release().await.unwrap();
        assert_eq!(sa.topom().await.unwrap().unwrap().admin_addr, "10.0.0.2:18080", "{name}");
        Store::new(second.fenced(), "p")
            .update_slot_mapping(&SlotMapping { id: 4, ..Default::default() })
            .await
            .unwrap();
        second.release().await.unwrap();
        assert!(sa.topom().await.unwrap().is_none(), "{name}");
    }
}

/// A holder that dies without a word (its runtime and connections just stop): the lock
/// goes by itself within about the lease time, and another holder takes it. (On the
/// filesystem the flock goes with the process; the dashboard's kill -9 test shows it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_expires() {
    for backend in [Backend::Etcd, Backend::Zookeeper] {
        let server = Coordinator::start(backend);
        let name = backend.name();
        let (bname, baddr) = (server.name(), server.addr().to_string());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let c: Arc<dyn codis_store::Coordinator> = connect(bname, &baddr, "", LEASE).await.unwrap().into();
                let lock = Store::new(c, "p").lock(&topom("10.0.0.1:18080")).await.unwrap();
                std::mem::forget(lock);
            });
            // Dropping the runtime stops renewals and closes connections, like a kill -9.
        })
        .join()
        .unwrap();
        let died = Instant::now();
        let other = Store::new(open(&server, "").await, "p");
        let lock = wait_until("the dead holder's lock to expire", LEASE * 4, || {
            let other = other.clone();
            async move { other.lock(&topom("10.0.0.2:18080")).await.ok() }
        })
        .await;
        let took = died.elapsed();
        eprintln!("{name}: lock taken over {took:?} after its holder died (lease {LEASE:?})");
        assert!(took <= LEASE * 3, "{name}: {took:?}");
        lock.release().await.unwrap();
    }
}

/// A Codis-style persistent lock (or one left by a crashed Codis dashboard) is not taken
/// over: it needs `--remove-lock`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_codis_lock_stays() {
    for backend in Backend::ALL {
        let server = Coordinator::start(backend);
        let store = Store::new(open(&server, "").await, "p");
        store.acquire(&topom("10.0.0.9:18080")).await.unwrap();
        let e = store.lock(&topom("10.0.0.2:18080")).await.err().unwrap();
        assert!(e.to_string().contains("10.0.0.9:18080") && e.to_string().contains("--remove-lock"), "{e}");
        store.release().await.unwrap();
        store.lock(&topom("10.0.0.2:18080")).await.unwrap().release().await.unwrap();
    }
}

/// The coordinator goes away longer than the lease, then comes back: the holder lost its
/// lock (and knew it), and the same client works again and can lock again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_outage_loses_locks_and_the_client_recovers() {
    for backend in [Backend::Etcd, Backend::Zookeeper] {
        let mut server = Coordinator::start(backend);
        let name = backend.name();
        let c = open(&server, "").await;
        let store = Store::new(c.clone(), "p");
        let lock = store.lock(&topom("10.0.0.1:18080")).await.unwrap();
        server.stop();
        tokio::time::timeout(LEASE * 3, lock.lost()).await.unwrap_or_else(|_| panic!("{name}: lock not lost"));
        assert!(store.update_group(&Default::default()).await.is_err(), "{name}");
        server.start_again();
        let again = wait_until("the client to work again", Duration::from_secs(30), || {
            let store = store.clone();
            async move { store.lock(&topom("10.0.0.1:18080")).await.ok() }
        })
        .await;
        Store::new(again.fenced(), "p")
            .update_slot_mapping(&SlotMapping { id: 9, ..Default::default() })
            .await
            .unwrap();
        again.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_addresses_and_credentials_fail_in_one_line() {
    let nobody = format!("127.0.0.1:{}", codis_testkit::free_port());
    for name in ["etcd", "zookeeper"] {
        let e = connect(name, &nobody, "", LEASE).await.err().unwrap().to_string();
        assert!(e.contains(&nobody) && e.contains("cannot connect") && !e.contains('\n'), "{name}: {e}");
    }
    let e = connect("consul", "x", "", LEASE).await.err().unwrap().to_string();
    assert!(e.contains("use filesystem (fs), etcd or zookeeper"), "{e}");

    // etcd with authentication on: a wrong password, and none at all.
    let etcd = Coordinator::start(Backend::Etcd);
    etcd.enable_auth("s3cret");
    let c = connect("etcd", etcd.addr(), "root:s3cret", LEASE).await.unwrap();
    c.update("/codis3/p/topom", b"x").await.unwrap();
    let e = connect("etcd", etcd.addr(), "root:wrong", LEASE).await.err().unwrap().to_string();
    assert!(e.contains("authentication failed") && e.contains("user:password") && !e.contains('\n'), "{e}");
    let e = connect("etcd", etcd.addr(), "", LEASE).await.map(|_| ()).and(Ok(()));
    // etcd 3.4 lets an unauthenticated client connect; its first request is refused.
    if e.is_ok() {
        let c = connect("etcd", etcd.addr(), "", LEASE).await.unwrap();
        let e = c.read("/codis3/p/topom", false).await.err().unwrap().to_string();
        assert!(e.contains("user name is empty") && !e.contains('\n'), "{e}");
    }

    // ZooKeeper digest ACLs: the nodes are the creator's.
    let zk = Coordinator::start(Backend::Zookeeper);
    let c = connect("zookeeper", zk.addr(), "codis:s3cret", LEASE).await.unwrap();
    c.update("/codis3/p/topom", b"x").await.unwrap();
    let same = connect("zookeeper", zk.addr(), "codis:s3cret", LEASE).await.unwrap();
    assert_eq!(same.read("/codis3/p/topom", true).await.unwrap().unwrap(), b"x");
    for auth in ["codis:wrong", ""] {
        let e = connect("zookeeper", zk.addr(), auth, LEASE).await.err().unwrap().to_string();
        assert!(e.contains("not allowed to read /codis3") && !e.contains('\n'), "{auth:?}: {e}");
    }
}
