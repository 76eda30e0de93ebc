//! Requests on a migrating slot, with real redis-servers running the codis-slots
//! module: the proxy follows Codis's forwarding protocol while the slot moves, and no
//! acknowledged write is lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use codis_core::models::{FORWARD_MIGRATE, FORWARD_SEMI_ASYNC, FORWARD_SYNC, Slot};
use codis_core::slot_of;
use codis_proxy::{Options, Proxy};
use codis_testkit::{Client, RedisServer, Value};
use common::test_config;

fn route(slot: u16, backend: &str, from: &str, method: i64) -> Slot {
    Slot {
        id: slot as i64,
        backend_addr: backend.into(),
        migrate_from: from.into(),
        forward_method: method,
        ..Default::default()
    }
}

/// Moves every key of `slot` from `src` to `dst` the way the dashboard does for the
/// given method: the module's own commands, or SCAN passes and MIGRATE for stock servers.
async fn migrate_slot(src: &RedisServer, dst: &RedisServer, slot: u16, method: i64) {
    let mut c = Client::connect(&src.addr()).await.unwrap();
    let port = dst.port.to_string();
    if method == FORWARD_MIGRATE {
        loop {
            let mut found = 0;
            let mut cursor = "0".to_string();
            loop {
                let Value::Array(v) = c.cmd(&["SCAN", &cursor, "COUNT", "100"]).await.unwrap() else { panic!() };
                cursor = v[0].as_str().unwrap().to_string();
                let Value::Array(keys) = &v[1] else { panic!() };
                let mine: Vec<String> = keys
                    .iter()
                    .map(|k| k.as_str().unwrap().to_string())
                    .filter(|k| slot_of(k.as_bytes()) == slot)
                    .collect();
                if !mine.is_empty() {
                    found += mine.len();
                    let mut args = vec![
                        "MIGRATE".to_string(),
                        "127.0.0.1".into(),
                        port.clone(),
                        String::new(),
                        "0".into(),
                        "5000".into(),
                        "KEYS".into(),
                    ];
                    args.extend(mine);
                    let r = c.cmd(&args).await.unwrap();
                    assert!(matches!(&r, Value::Simple(s) if s == "OK" || s == "NOKEY"), "{r:?}");
                }
                if cursor == "0" {
                    break;
                }
            }
            if found == 0 {
                return;
            }
        }
    }
    loop {
        let reply = if method == FORWARD_SYNC {
            c.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &port, "3000", &slot.to_string()]).await.unwrap()
        } else {
            c.cmd(&["SLOTSMGRTTAGSLOT-ASYNC", "127.0.0.1", &port, "3000", "200", "33554432", &slot.to_string(), "50"])
                .await
                .unwrap()
        };
        let Value::Array(v) = reply else { panic!("migration failed: {reply:?}") };
        if v[1] == Value::Int(0) {
            return;
        }
    }
}

async fn slot_moves_under_load(method: i64) {
    let start =
        |_: ()| if method == FORWARD_MIGRATE { RedisServer::start(&[]) } else { RedisServer::start_with_module(&[]) };
    let a = start(());
    let b = start(());
    let proxy = Proxy::bind(test_config(), Options { workers: 2, log_control: None }).await.unwrap();
    let all_a: Vec<Slot> = (0..1024).map(|i| route(i, &a.addr(), "", 0)).collect();
    proxy.fill_slots(&all_a).await.unwrap();
    proxy.start().unwrap();
    let addr = proxy.model().proxy_addr.clone();

    // 3000 keys in one slot (a tag), of several types, plus counters the writer bumps
    let slot = slot_of(b"{mig}");
    let mut cl = Client::connect(&addr).await.unwrap();
    let sets: Vec<_> =
        (0..3000).map(|i| codis_testkit::args!["SET", format!("{{mig}}:s{i}"), format!("v{i}")]).collect();
    assert!(cl.pipeline(&sets).await.unwrap().iter().all(|r| *r == Value::ok()));
    cl.cmd(&["HSET", "{mig}:h", "f1", "1", "f2", "2"]).await.unwrap();
    cl.cmd(&["RPUSH", "{mig}:l", "a", "b", "c"]).await.unwrap();
    cl.cmd(&["SET", "{mig}:ttl", "x", "EX", "1000"]).await.unwrap();

    // start migrating: every proxy now routes the slot to b, asking a first
    proxy.fill_slots(&[route(slot, &b.addr(), &a.addr(), method)]).await.unwrap();

    // reads during the migration see the data wherever it is
    assert_eq!(cl.cmd(&["GET", "{mig}:s7"]).await.unwrap(), Value::bulk("v7"));
    assert_eq!(cl.cmd(&["HGET", "{mig}:h", "f2"]).await.unwrap(), Value::bulk("2"));

    // a writer keeps incrementing counters in the slot while it moves
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let errors = Arc::new(AtomicI64::new(0));
    let writer = {
        let (addr, stop, acked, errors) = (addr.clone(), stop.clone(), acked.clone(), errors.clone());
        tokio::spawn(async move {
            let mut cl = Client::connect(&addr).await.unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{{mig}}:c{}", i % 16);
                match cl.cmd(&["INCR", &key]).await.unwrap() {
                    Value::Int(_) => acked.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("writer error: {other:?}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        })
    };
    migrate_slot(&a, &b, slot, method).await;
    // the slot is done: route it to b only, as the dashboard's last step does
    proxy.fill_slots(&[route(slot, &b.addr(), "", 0)]).await.unwrap();
    // let the writer run on the new owner for a moment, then stop it
    let before = acked.load(Ordering::Relaxed);
    codis_testkit::wait_until("writes on the new owner", Duration::from_secs(10), || {
        let acked = acked.clone();
        async move { (acked.load(Ordering::Relaxed) > before + 50).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(errors.load(Ordering::Relaxed), 0, "clients saw errors");

    // everything is on b, nothing left on a, and no acknowledged increment was lost
    let mut da = Client::connect(&a.addr()).await.unwrap();
    let mut db = Client::connect(&b.addr()).await.unwrap();
    assert_eq!(da.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    assert_eq!(db.cmd(&["GET", "{mig}:s2999"]).await.unwrap(), Value::bulk("v2999"));
    assert_eq!(
        db.cmd(&["LRANGE", "{mig}:l", "0", "-1"]).await.unwrap(),
        Value::Array(vec![Value::bulk("a"), Value::bulk("b"), Value::bulk("c")])
    );
    let ttl = db.cmd(&["TTL", "{mig}:ttl"]).await.unwrap().as_int().unwrap();
    assert!((1..=1000).contains(&ttl), "ttl {ttl}");
    let mut total = 0;
    for i in 0..16 {
        if let Value::Bulk(v) = db.cmd(&["GET", &format!("{{mig}}:c{i}")]).await.unwrap() {
            total += String::from_utf8(v).unwrap().parse::<i64>().unwrap();
        }
    }
    assert_eq!(total, acked.load(Ordering::Relaxed), "acknowledged increments == counters");
    assert_eq!(cl.cmd(&["GET", "{mig}:s0"]).await.unwrap(), Value::bulk("v0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_async_migration_loses_no_write() {
    slot_moves_under_load(FORWARD_SEMI_ASYNC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_server_migration_loses_no_write() {
    slot_moves_under_load(FORWARD_MIGRATE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_migration_loses_no_write() {
    slot_moves_under_load(FORWARD_SYNC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_across_a_migrating_slot() {
    let a = RedisServer::start_with_module(&[]);
    let b = RedisServer::start_with_module(&[]);
    let proxy = Proxy::bind(test_config(), Options { workers: 2, log_control: None }).await.unwrap();
    proxy.fill_slots(&(0..1024).map(|i| route(i, &a.addr(), "", 0)).collect::<Vec<_>>()).await.unwrap();
    proxy.start().unwrap();
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    let moving = slot_of(b"{m}");
    let keys = ["{m}:1", "{m}:2", "plain:1", "plain:2", "{m}:3"];
    for k in keys {
        cl.cmd(&["SET", k, k]).await.unwrap();
    }
    proxy.fill_slots(&[route(moving, &b.addr(), &a.addr(), FORWARD_SEMI_ASYNC)]).await.unwrap();
    // half of the slot's keys are moved already
    let mut src = Client::connect(&a.addr()).await.unwrap();
    let port = b.port.to_string();
    let moved = src.cmd(&["SLOTSMGRTTAGONE", "127.0.0.1", &port, "3000", "{m}:1"]).await.unwrap();
    assert!(moved.as_int().unwrap() >= 1);
    let got = cl.cmd(&["MGET", "{m}:1", "{m}:2", "plain:1", "plain:2", "{m}:3", "{m}:none"]).await.unwrap();
    let want: Vec<Value> = keys.iter().map(|k| Value::bulk(k)).chain([Value::Nil]).collect();
    assert_eq!(got, Value::Array(want));
    assert_eq!(cl.cmd(&["EXISTS", "{m}:1", "{m}:2", "plain:1", "{m}:none"]).await.unwrap(), Value::Int(3));
    assert_eq!(cl.cmd(&["MSET", "{m}:1", "x", "plain:1", "y"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["DEL", "{m}:1", "{m}:2", "plain:1"]).await.unwrap(), Value::Int(3));
}
