//! Commands that hold a connection, against real redis-servers: blocking commands,
//! WAIT and transactions, including while their slot moves.

mod common;

use std::time::{Duration, Instant};

use codis_core::models::Slot;
use codis_testkit::{Value, args, wait_until};
use common::Cluster;

fn key_on(c: &Cluster, group: usize, prefix: &str) -> String {
    (0..).map(|i| format!("{prefix}{i}")).find(|k| c.owner(k.as_bytes()) == group).unwrap()
}

async fn blocked_clients(c: &Cluster, i: usize) -> i64 {
    let Value::Bulk(info) = c.direct(i).await.cmd(&["INFO", "clients"]).await.unwrap() else { panic!() };
    let info = String::from_utf8(info).unwrap();
    info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_wait_on_their_own_connection() {
    let c = Cluster::start(2).await;
    let mut waiter = c.client().await;
    let mut pusher = c.client().await;
    // BLPOP released by an LPUSH from another proxy connection; the shared
    // connections stay free meanwhile.
    let blpop = tokio::spawn(async move {
        let r = waiter.cmd(&["BLPOP", "queue", "10"]).await.unwrap();
        (waiter, r)
    });
    wait_until("the BLPOP blocks on its server", Duration::from_secs(5), || async {
        (blocked_clients(&c, c.owner(b"queue")).await == 1).then_some(())
    })
    .await;
    assert_eq!(pusher.cmd(&["GET", "other"]).await.unwrap(), Value::Nil, "other requests are not held up");
    assert_eq!(pusher.cmd(&["LPUSH", "queue", "job1"]).await.unwrap(), Value::Int(1));
    let (mut waiter, r) = blpop.await.unwrap();
    assert_eq!(r, Value::Array(vec![Value::bulk("queue"), Value::bulk("job1")]));

    // timeouts are honoured, and a pipeline around a blocking command keeps its order
    let t = Instant::now();
    let replies =
        waiter.pipeline(&[args!["SET", "a", "1"], args!["BRPOP", "empty", "0.2"], args!["GET", "a"]]).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(replies, vec![Value::ok(), Value::Nil, Value::bulk("1")]);

    // BLMOVE and BZPOPMIN between keys of one group; across groups: CROSSSLOT
    assert_eq!(pusher.cmd(&["RPUSH", "{j}src", "x"]).await.unwrap(), Value::Int(1));
    assert_eq!(waiter.cmd(&["BLMOVE", "{j}src", "{j}dst", "LEFT", "RIGHT", "1"]).await.unwrap(), Value::bulk("x"));
    pusher.cmd(&["ZADD", "z", "1", "m"]).await.unwrap();
    let r = waiter.cmd(&["BZPOPMIN", "z", "1"]).await.unwrap();
    assert_eq!(r, Value::Array(vec![Value::bulk("z"), Value::bulk("m"), Value::bulk("1")]));
    let (a, b) = (key_on(&c, 0, "a"), key_on(&c, 1, "b"));
    let Value::Error(e) = waiter.cmd(&["BLPOP", &a, &b, "1"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    let Value::Error(e) = waiter.cmd(&["BZMPOP", "0", "0", "z", "MIN"]).await.unwrap() else { panic!() };
    assert!(e.contains("numkeys"), "the server's own error: {e}");
    // XREAD BLOCK without a stream key: the server's own error. (The proxy used to
    // pass such a request between its forward and blocking paths until its stack
    // overflowed and the process died.)
    for bad in [&["XREAD", "BLOCK", "0", "x"][..], &["XREAD", "BLOCK", "0", "STREAMS"]] {
        let Value::Error(e) = waiter.cmd(bad).await.unwrap() else { panic!("{bad:?}") };
        assert!(e.starts_with("ERR"), "{bad:?}: {e}");
    }
    assert_eq!(waiter.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    let Value::Error(e) = waiter.cmd(&["BLPOP", "q", "soon"]).await.unwrap() else { panic!() };
    assert!(e.contains("timeout is not a float"), "{e}");

    // XREAD with BLOCK
    let mut reader = c.client().await;
    let xread = tokio::spawn(async move { reader.cmd(&["XREAD", "BLOCK", "5000", "STREAMS", "events", "$"]).await });
    wait_until("XREAD blocks", Duration::from_secs(5), || async {
        (blocked_clients(&c, c.owner(b"events")).await == 1).then_some(())
    })
    .await;
    let Value::Bulk(_) = pusher.cmd(&["XADD", "events", "*", "f", "v"]).await.unwrap() else { panic!() };
    let Value::Array(streams) = xread.await.unwrap().unwrap() else { panic!("XREAD") };
    assert_eq!(streams.len(), 1);

    // a client that leaves while blocked releases its server connection, and nothing
    // is taken for it afterwards
    let mut leaver = c.client().await;
    leaver.send(&["BLPOP", "jobs", "0"]).await.unwrap();
    let server = c.owner(b"jobs");
    wait_until("the BLPOP blocks", Duration::from_secs(5), || async {
        (blocked_clients(&c, server).await == 1).then_some(())
    })
    .await;
    drop(leaver);
    wait_until("the blocked connection is released", Duration::from_secs(5), || async {
        (blocked_clients(&c, server).await == 0).then_some(())
    })
    .await;
    assert_eq!(pusher.cmd(&["LPUSH", "jobs", "j"]).await.unwrap(), Value::Int(1));
    assert_eq!(pusher.cmd(&["LLEN", "jobs"]).await.unwrap(), Value::Int(1), "no element went to a departed client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_command_follows_its_slot_to_the_new_owner() {
    let c = Cluster::start(2).await;
    let key = key_on(&c, 0, "moving");
    let slot = codis_core::slot_of(key.as_bytes()) as i64;
    let mut waiter = c.client().await;
    let k = key.clone();
    let blpop = tokio::spawn(async move { waiter.cmd(&["BLPOP", &k, "20"]).await.unwrap() });
    wait_until("blocked on the first server", Duration::from_secs(5), || async {
        (blocked_clients(&c, 0).await == 1).then_some(())
    })
    .await;
    // the slot now belongs to the second server
    let moved = Slot { id: slot, backend_addr: c.servers[1].addr(), backend_addr_group_id: 2, ..Default::default() };
    c.proxy.fill_slots(&[moved]).await.unwrap();
    wait_until("blocked on the new owner", Duration::from_secs(5), || async {
        (blocked_clients(&c, 0).await == 0 && blocked_clients(&c, 1).await == 1).then_some(())
    })
    .await;
    let mut pusher = c.client().await;
    assert_eq!(pusher.cmd(&["RPUSH", &key, "v"]).await.unwrap(), Value::Int(1));
    assert_eq!(blpop.await.unwrap(), Value::Array(vec![Value::bulk(&key), Value::bulk("v")]));
    assert_eq!(c.direct(1).await.cmd(&["EXISTS", &key]).await.unwrap(), Value::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_one_group() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    // queued by the proxy, run together on the group's master
    let r = cl
        .pipeline(&[
            args!["SET", "{t}n", "1"],
            args!["MULTI"],
            args!["INCR", "{t}n"],
            args!["INCRBY", "{t}n", "10"],
            args!["EXEC"],
            args!["GET", "{t}n"],
        ])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Value::ok(),
            Value::ok(),
            Value::Simple("QUEUED".into()),
            Value::Simple("QUEUED".into()),
            Value::Array(vec![Value::Int(2), Value::Int(12)]),
            Value::bulk("12"),
        ]
    );
    // a key on another group fails the transaction as a whole
    let (a, b) = (key_on(&c, 0, "x"), key_on(&c, 1, "y"));
    assert_eq!(cl.cmd(&["MULTI"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["SET", &a, "1"]).await.unwrap(), Value::Simple("QUEUED".into()));
    let Value::Error(e) = cl.cmd(&["SET", &b, "1"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT") && e.contains("hash tag"), "{e}");
    let Value::Error(e) = cl.cmd(&["EXEC"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("EXECABORT"), "{e}");
    assert_eq!(cl.cmd(&["EXISTS", &a]).await.unwrap(), Value::Int(0), "nothing of it ran");
    // errors and DISCARD
    assert!(cl.cmd(&["EXEC"]).await.unwrap().is_error());
    assert!(cl.cmd(&["DISCARD"]).await.unwrap().is_error());
    cl.cmd(&["MULTI"]).await.unwrap();
    assert_eq!(cl.cmd(&["MULTI"]).await.unwrap(), Value::Error("ERR MULTI calls can not be nested".into()));
    cl.cmd(&["SET", &a, "2"]).await.unwrap();
    assert_eq!(cl.cmd(&["DISCARD"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["EXISTS", &a]).await.unwrap(), Value::Int(0));
    // a Redis-side error inside EXEC is that command's reply, as in Redis
    cl.cmd(&["SET", "{t}s", "text"]).await.unwrap();
    cl.cmd(&["MULTI"]).await.unwrap();
    cl.cmd(&["INCR", "{t}s"]).await.unwrap();
    cl.cmd(&["SET", "{t}o", "ok"]).await.unwrap();
    let Value::Array(r) = cl.cmd(&["EXEC"]).await.unwrap() else { panic!() };
    assert!(r[0].is_error() && r[1] == Value::ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_detects_conflicts() {
    let c = Cluster::start(2).await;
    let mut a = c.client().await;
    let mut b = c.client().await;
    a.cmd(&["SET", "w", "0"]).await.unwrap();
    // no conflict: runs
    assert_eq!(a.cmd(&["WATCH", "w"]).await.unwrap(), Value::ok());
    a.cmd(&["MULTI"]).await.unwrap();
    a.cmd(&["SET", "w", "1"]).await.unwrap();
    assert_eq!(a.cmd(&["EXEC"]).await.unwrap(), Value::Array(vec![Value::ok()]));
    // another client changes the key in between: EXEC answers nil and nothing runs
    assert_eq!(a.cmd(&["WATCH", "w"]).await.unwrap(), Value::ok());
    assert_eq!(b.cmd(&["SET", "w", "theirs"]).await.unwrap(), Value::ok());
    a.cmd(&["MULTI"]).await.unwrap();
    a.cmd(&["SET", "w", "mine"]).await.unwrap();
    assert_eq!(a.cmd(&["EXEC"]).await.unwrap(), Value::Nil);
    assert_eq!(a.cmd(&["GET", "w"]).await.unwrap(), Value::bulk("theirs"));
    // UNWATCH forgets
    a.cmd(&["WATCH", "w"]).await.unwrap();
    assert_eq!(a.cmd(&["UNWATCH"]).await.unwrap(), Value::ok());
    b.cmd(&["SET", "w", "again"]).await.unwrap();
    a.cmd(&["MULTI"]).await.unwrap();
    a.cmd(&["SET", "w", "mine"]).await.unwrap();
    assert_eq!(a.cmd(&["EXEC"]).await.unwrap(), Value::Array(vec![Value::ok()]));
    // watched keys and the transaction's keys must share a group
    let (x, y) = (key_on(&c, 0, "x"), key_on(&c, 1, "y"));
    let Value::Error(e) = a.cmd(&["WATCH", &x, &y]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    a.cmd(&["WATCH", &x]).await.unwrap();
    a.cmd(&["MULTI"]).await.unwrap();
    assert!(a.cmd(&["SET", &y, "1"]).await.unwrap().is_error());
    assert_eq!(a.cmd(&["WATCH", &x]).await.unwrap(), Value::Error("ERR WATCH inside MULTI is not allowed".into()));
    assert!(a.cmd(&["EXEC"]).await.unwrap().is_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_slot_makes_exec_retryable() {
    let c = Cluster::start(2).await;
    let key = key_on(&c, 0, "m");
    let slot = codis_core::slot_of(key.as_bytes()) as i64;
    let mut cl = c.client().await;
    cl.cmd(&["MULTI"]).await.unwrap();
    cl.cmd(&["SET", &key, "1"]).await.unwrap();
    let migrating = Slot {
        id: slot,
        backend_addr: c.servers[1].addr(),
        backend_addr_group_id: 2,
        migrate_from: c.servers[0].addr(),
        migrate_from_group_id: 1,
        forward_method: codis_core::models::FORWARD_SEMI_ASYNC,
        ..Default::default()
    };
    c.proxy.fill_slots(&[migrating]).await.unwrap();
    let Value::Error(e) = cl.cmd(&["EXEC"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("TRYAGAIN") && e.contains("not run"), "{e}");
    assert_eq!(c.direct(0).await.cmd(&["EXISTS", &key]).await.unwrap(), Value::Int(0));
    let Value::Error(e) = cl.cmd(&["WATCH", &key]).await.unwrap() else { panic!() };
    assert!(e.starts_with("TRYAGAIN"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_replicas_of_every_group() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    cl.cmd(&["SET", "k", "v"]).await.unwrap();
    // no replicas: every group answers 0 at once
    assert_eq!(cl.cmd(&["WAIT", "0", "100"]).await.unwrap(), Value::Int(0));
    let t = Instant::now();
    assert_eq!(cl.cmd(&["WAIT", "1", "200"]).await.unwrap(), Value::Int(0));
    assert!(t.elapsed() >= Duration::from_millis(190), "WAIT honours its timeout");
    assert!(cl.cmd(&["WAIT", "x", "1"]).await.unwrap().is_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_releases_another_session() {
    let c = Cluster::start(1).await;
    let mut waiter = c.client().await;
    let mut other = c.client().await;
    let Value::Int(id) = waiter.cmd(&["CLIENT", "ID"]).await.unwrap() else { panic!() };
    let id = id.to_string();
    assert_eq!(other.cmd(&["CLIENT", "UNBLOCK", &id]).await.unwrap(), Value::Int(0), "not blocked yet");
    for (mode, expect_error) in [("TIMEOUT", false), ("ERROR", true)] {
        waiter.send(&["BLPOP", "nothing", "0"]).await.unwrap();
        wait_until("the BLPOP blocks on its server", Duration::from_secs(5), || async {
            (blocked_clients(&c, 0).await == 1).then_some(())
        })
        .await;
        assert_eq!(other.cmd(&["CLIENT", "UNBLOCK", &id, mode]).await.unwrap(), Value::Int(1));
        match waiter.read().await.unwrap() {
            Value::Error(e) => assert!(expect_error && e.starts_with("UNBLOCKED"), "{e}"),
            v => assert!(!expect_error && v == Value::Nil, "{v:?}"),
        }
    }
    let Value::Error(e) = other.cmd(&["CLIENT", "UNBLOCK", &id, "LATER"]).await.unwrap() else { panic!() };
    assert!(e.contains("TIMEOUT or ERROR"), "{e}");
    assert_eq!(waiter.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()), "the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_timeout_runs_out_while_its_slot_migrates() {
    let c = Cluster::start(2).await;
    let key = key_on(&c, 0, "busy");
    let slot = codis_core::slot_of(key.as_bytes()) as i64;
    let migrating = Slot {
        id: slot,
        backend_addr: c.servers[1].addr(),
        backend_addr_group_id: 2,
        migrate_from: c.servers[0].addr(),
        migrate_from_group_id: 1,
        ..Default::default()
    };
    c.proxy.fill_slots(&[migrating]).await.unwrap();
    // the command waits for the move to finish, but not past its own timeout
    let mut waiter = c.client().await;
    let t = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), waiter.cmd(&["BLPOP", &key, "0.3"])).await;
    assert_eq!(reply.expect("BLPOP answers when its timeout runs out").unwrap(), Value::Nil);
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(waiter.cmd(&["BLMOVE", &key, &key, "LEFT", "LEFT", "0.1"]).await.unwrap(), Value::Nil);
    assert_eq!(waiter.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
}
