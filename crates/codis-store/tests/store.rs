//! The typed store over the filesystem coordinator: Codis layout, JSON and locking.

use std::sync::Arc;

use codis_core::models::{Group, GroupServer, Proxy, SlotMapping, Topom};
use codis_store::fs::FsCoordinator;
use codis_store::{Coordinator, Store, StoreError};

fn root(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("codis-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn codis_layout_and_json() {
    let dir = root("layout");
    let client: Arc<dyn Coordinator> = Arc::new(FsCoordinator::open(dir.to_str().unwrap()).unwrap());
    let store = Store::new(client.clone(), "codis-demo");
    let mut m = SlotMapping { id: 579, group_id: 2, ..Default::default() };
    m.action.state = "pending".into();
    m.action.index = 1;
    m.action.target_id = 1;
    store.update_slot_mapping(&m).await.unwrap();
    let text = std::fs::read_to_string(dir.join("data/codis3/codis-demo/slots/slot-0579")).unwrap();
    assert_eq!(
        text,
        "{\n    \"id\": 579,\n    \"group_id\": 2,\n    \"action\": {\n        \"index\": 1,\n        \"state\": \"pending\",\n        \"target_id\": 1\n    }\n}"
    );
    let all = store.slot_mappings().await.unwrap();
    assert_eq!(all.len(), 1024);
    assert_eq!(all[579], m);
    assert_eq!(all[0], SlotMapping { id: 0, ..Default::default() });

    let g = Group {
        id: 3,
        servers: vec![GroupServer { addr: "127.0.0.1:6379".into(), ..Default::default() }],
        ..Default::default()
    };
    store.update_group(&g).await.unwrap();
    assert!(dir.join("data/codis3/codis-demo/group/group-0003").exists());
    assert_eq!(store.groups().await.unwrap()[&3], g);
    store.delete_group(3).await.unwrap();
    assert!(store.groups().await.unwrap().is_empty());

    let p = Proxy { token: "t1".into(), id: 1, ..Default::default() };
    store.update_proxy(&p).await.unwrap();
    assert!(dir.join("data/codis3/codis-demo/proxy/proxy-t1").exists());
    assert_eq!(store.proxies().await.unwrap()["t1"], p);
    assert_eq!(Store::products(client.as_ref()).await.unwrap(), vec!["codis-demo"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_lock_names_its_holder() {
    let dir = root("lock");
    let client: Arc<dyn Coordinator> = Arc::new(FsCoordinator::open(dir.to_str().unwrap()).unwrap());
    let store = Store::new(client, "p1");
    let first =
        Topom { admin_addr: "10.0.0.1:18080".into(), pid: 4242, product_name: "p1".into(), ..Default::default() };
    store.acquire(&first).await.unwrap();
    let second = Topom { admin_addr: "10.0.0.2:18080".into(), ..Default::default() };
    let err = store.acquire(&second).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)));
    let msg = err.to_string();
    assert!(msg.contains("10.0.0.1:18080") && msg.contains("4242") && msg.contains("--remove-lock"), "{msg}");
    store.release().await.unwrap();
    store.acquire(&second).await.unwrap();
    assert_eq!(store.topom().await.unwrap().unwrap().admin_addr, "10.0.0.2:18080");
    let _ = std::fs::remove_dir_all(dir);
}
