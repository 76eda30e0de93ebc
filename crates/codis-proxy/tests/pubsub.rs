//! Pub/sub through the proxy, against real redis-servers: channels on each group,
//! patterns across groups, shard channels, introspection, subscribed mode, and
//! subscribers that keep receiving across a backend restart and a slot move.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use codis_core::models::Slot;
use codis_testkit::{Client, Value, wait_until};
use common::Cluster;

const PATIENCE: Duration = Duration::from_secs(10);

/// A name whose slot lives on server `group`.
fn name_on(c: &Cluster, group: usize, prefix: &str) -> String {
    (0..).map(|i| format!("{prefix}{i}")).find(|k| c.owner(k.as_bytes()) == group).unwrap()
}

fn b(s: &str) -> Value {
    Value::bulk(s)
}

fn confirm(what: &str, name: &str, count: i64) -> Value {
    Value::Array(vec![b(what), b(name), Value::Int(count)])
}

fn message(channel: &str, payload: &str) -> Value {
    Value::Array(vec![b("message"), b(channel), b(payload)])
}

async fn next(sub: &mut Client) -> Value {
    tokio::time::timeout(PATIENCE, sub.read()).await.expect("a message in time").unwrap()
}

/// Reads pushes until `want` arrives (earlier publishes may have been delivered too).
async fn receive(sub: &mut Client, want: &Value) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if &sub.read().await.unwrap() == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{want:?} never arrived"));
}

/// Polls `check` every 10 ms until it returns `Some`, failing after [`PATIENCE`]
/// (like `wait_until`, for checks that borrow a client mutably).
async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `payload-N` until some subscriber gets it; returns what was published.
async fn publish_until_heard(publisher: &mut Client, cmd: &str, channel: &str, payload: &str) -> String {
    let mut n = 0;
    poll("a subscriber to hear the publish", async || {
        n += 1;
        let msg = format!("{payload}-{n}");
        match publisher.cmd(&[cmd, channel, &msg]).await.unwrap() {
            Value::Int(n) if n > 0 => Some(msg),
            _ => None,
        }
    })
    .await
}

async fn numsub(c: &Cluster, server: usize, channel: &str) -> i64 {
    let Value::Array(v) = c.direct(server).await.cmd(&["PUBSUB", "NUMSUB", channel]).await.unwrap() else { panic!() };
    v[1].as_int().unwrap()
}

fn as_set(v: Value) -> BTreeSet<String> {
    let Value::Array(items) = v else { panic!("{v:?}") };
    items.into_iter().map(|i| i.as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_publish_on_two_groups() {
    let c = Cluster::start(2).await;
    let (ca, cb) = (name_on(&c, 0, "chan-a"), name_on(&c, 1, "chan-b"));
    let mut sub = c.client().await;
    let mut publisher = c.client().await;

    // one confirmation per channel, with the session's running count
    sub.send(&["SUBSCRIBE", &ca, &cb, &ca]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("subscribe", &ca, 1));
    assert_eq!(next(&mut sub).await, confirm("subscribe", &cb, 2));
    assert_eq!(next(&mut sub).await, confirm("subscribe", &ca, 2), "a repeated channel keeps the count");
    // confirmed means subscribed on the channel's own server
    assert_eq!(numsub(&c, 0, &ca).await, 1);
    assert_eq!(numsub(&c, 1, &cb).await, 1);
    assert_eq!(numsub(&c, 1, &ca).await, 0);

    assert_eq!(publisher.cmd(&["PUBLISH", &ca, "m1"]).await.unwrap(), Value::Int(1));
    assert_eq!(publisher.cmd(&["PUBLISH", &cb, "m2"]).await.unwrap(), Value::Int(1));
    let got: BTreeSet<String> = [next(&mut sub).await, next(&mut sub).await].iter().map(|v| format!("{v:?}")).collect();
    let want: BTreeSet<String> = [message(&ca, "m1"), message(&cb, "m2")].iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(got, want);

    // a pattern as well: the channel subscriber and the pattern both receive
    sub.send(&["PSUBSCRIBE", "chan-*"]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("psubscribe", "chan-*", 3));
    assert_eq!(publisher.cmd(&["PUBLISH", &ca, "m3"]).await.unwrap(), Value::Int(2));
    assert_eq!(next(&mut sub).await, message(&ca, "m3"));
    assert_eq!(next(&mut sub).await, Value::Array(vec![b("pmessage"), b("chan-*"), b(&ca), b("m3")]));

    // subscribed mode: only what Redis allows, with Redis's error
    assert_eq!(
        sub.cmd(&["GET", "x"]).await.unwrap(),
        Value::Error(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in \
             this context"
                .into()
        )
    );
    let Value::Error(e) = sub.cmd(&["CLIENT", "ID"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("ERR Can't execute 'client|id'"), "{e}");
    assert_eq!(sub.cmd(&["PING"]).await.unwrap(), Value::Array(vec![b("pong"), b("")]));
    assert_eq!(sub.cmd(&["PING", "hi"]).await.unwrap(), Value::Array(vec![b("pong"), b("hi")]));

    // unsubscribing counts down; patterns count with channels
    assert_eq!(sub.cmd(&["UNSUBSCRIBE", &ca, "never"]).await.unwrap(), confirm("unsubscribe", &ca, 2));
    assert_eq!(next(&mut sub).await, confirm("unsubscribe", "never", 2));
    assert_eq!(sub.cmd(&["PUNSUBSCRIBE"]).await.unwrap(), confirm("punsubscribe", "chan-*", 1));
    assert_eq!(sub.cmd(&["UNSUBSCRIBE"]).await.unwrap(), confirm("unsubscribe", &cb, 0));
    // out of subscribed mode: everything works again, and nothing is left behind
    assert_eq!(sub.cmd(&["SET", "x", "1"]).await.unwrap(), Value::ok());
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]).await.unwrap(),
        Value::Array(vec![b("unsubscribe"), Value::Nil, Value::Int(0)])
    );
    assert_eq!(sub.cmd(&["PUNSUBSCRIBE", "p"]).await.unwrap(), confirm("punsubscribe", "p", 0));
    wait_until("the servers forget the subscriber", PATIENCE, || async {
        (numsub(&c, 0, &ca).await == 0 && numsub(&c, 1, &cb).await == 0).then_some(())
    })
    .await;
    assert_eq!(publisher.cmd(&["PUBLISH", &cb, "late"]).await.unwrap(), Value::Int(0));

    // RESET leaves subscribed mode and releases the links; so does hanging up
    sub.send(&["SUBSCRIBE", &ca]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("subscribe", &ca, 1));
    assert_eq!(sub.cmd(&["RESET"]).await.unwrap(), Value::Simple("RESET".into()));
    assert_eq!(sub.cmd(&["GET", "x"]).await.unwrap(), b("1"));
    wait_until("RESET releases the link", PATIENCE, || async { (numsub(&c, 0, &ca).await == 0).then_some(()) }).await;
    sub.send(&["SUBSCRIBE", &cb]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("subscribe", &cb, 1));
    assert_eq!(numsub(&c, 1, &cb).await, 1);
    drop(sub);
    wait_until("a departed client's link closes", PATIENCE, || async { (numsub(&c, 1, &cb).await == 0).then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_hear_every_group() {
    let c = Cluster::start(2).await;
    let (na, nb) = (name_on(&c, 0, "news."), name_on(&c, 1, "news."));
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    assert_eq!(sub.cmd(&["PSUBSCRIBE", "news.*", "sport.*"]).await.unwrap(), confirm("psubscribe", "news.*", 1));
    assert_eq!(next(&mut sub).await, confirm("psubscribe", "sport.*", 2));
    for (ch, msg) in [(&na, "a"), (&nb, "b")] {
        assert_eq!(publisher.cmd(&["PUBLISH", ch, msg]).await.unwrap(), Value::Int(1), "{ch}");
        assert_eq!(next(&mut sub).await, Value::Array(vec![b("pmessage"), b("news.*"), b(ch), b(msg)]));
    }
    // one session's patterns are on every group, yet count once, as on one Redis
    assert_eq!(publisher.cmd(&["PUBSUB", "NUMPAT"]).await.unwrap(), Value::Int(2));
    assert_eq!(publisher.cmd(&["PUBSUB", "CHANNELS"]).await.unwrap(), Value::Array(vec![]));
    assert_eq!(sub.cmd(&["PUNSUBSCRIBE", "news.*"]).await.unwrap(), confirm("punsubscribe", "news.*", 1));
    assert_eq!(publisher.cmd(&["PUBLISH", &na, "gone"]).await.unwrap(), Value::Int(0));
    assert_eq!(publisher.cmd(&["PUBSUB", "NUMPAT"]).await.unwrap(), Value::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_introspection_merges_the_groups() {
    let c = Cluster::start(2).await;
    let (ca, cb) = (name_on(&c, 0, "ch-a"), name_on(&c, 1, "ch-b"));
    let mut one = c.client().await;
    let mut two = c.client().await;
    let mut cl = c.client().await;
    one.send(&["SUBSCRIBE", &ca, &cb]).await.unwrap();
    next(&mut one).await;
    next(&mut one).await;
    assert_eq!(two.cmd(&["SUBSCRIBE", &ca]).await.unwrap(), confirm("subscribe", &ca, 1));
    assert_eq!(
        cl.cmd(&["PUBSUB", "NUMSUB", &cb, "nobody", &ca]).await.unwrap(),
        Value::Array(vec![b(&cb), Value::Int(1), b("nobody"), Value::Int(0), b(&ca), Value::Int(2)])
    );
    assert_eq!(cl.cmd(&["PUBSUB", "NUMSUB"]).await.unwrap(), Value::Array(vec![]));
    assert_eq!(as_set(cl.cmd(&["PUBSUB", "CHANNELS"]).await.unwrap()), BTreeSet::from([ca.clone(), cb.clone()]));
    assert_eq!(as_set(cl.cmd(&["PUBSUB", "CHANNELS", "ch-b*"]).await.unwrap()), BTreeSet::from([cb.clone()]));
    assert_eq!(cl.cmd(&["PUBSUB", "NUMPAT"]).await.unwrap(), Value::Int(0));
    assert_eq!(two.cmd(&["PSUBSCRIBE", "x*"]).await.unwrap(), confirm("psubscribe", "x*", 2));
    assert_eq!(cl.cmd(&["PUBSUB", "NUMPAT"]).await.unwrap(), Value::Int(1));
    // PUBLISH counts the receivers on the channel's group
    assert_eq!(cl.cmd(&["PUBLISH", &ca, "hi"]).await.unwrap(), Value::Int(2));
    assert_eq!(next(&mut one).await, message(&ca, "hi"));
    assert_eq!(next(&mut two).await, message(&ca, "hi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_channels() {
    let c = Cluster::start(2).await;
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    // shard channels sharing a slot, counted apart from ordinary channels
    sub.send(&["SSUBSCRIBE", "{s}a", "{s}b"]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("ssubscribe", "{s}a", 1));
    assert_eq!(next(&mut sub).await, confirm("ssubscribe", "{s}b", 2));
    assert_eq!(sub.cmd(&["SUBSCRIBE", "plain"]).await.unwrap(), confirm("subscribe", "plain", 1));
    assert_eq!(publisher.cmd(&["SPUBLISH", "{s}a", "hi"]).await.unwrap(), Value::Int(1));
    assert_eq!(next(&mut sub).await, Value::Array(vec![b("smessage"), b("{s}a"), b("hi")]));
    assert_eq!(publisher.cmd(&["PUBLISH", "{s}a", "not-shard"]).await.unwrap(), Value::Int(0));
    assert_eq!(
        publisher.cmd(&["PUBSUB", "SHARDNUMSUB", "{s}b", "{s}z"]).await.unwrap(),
        Value::Array(vec![b("{s}b"), Value::Int(1), b("{s}z"), Value::Int(0)])
    );
    assert_eq!(
        as_set(publisher.cmd(&["PUBSUB", "SHARDCHANNELS"]).await.unwrap()),
        BTreeSet::from(["{s}a".to_string(), "{s}b".to_string()])
    );
    // channels of two groups in one command: refused as Redis Cluster does
    let (x, y) = (name_on(&c, 0, "sx"), name_on(&c, 1, "sy"));
    let Value::Error(e) = sub.cmd(&["SSUBSCRIBE", &x, &y]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT Keys in request don't hash to the same slot") && e.contains("hash tag"), "{e}");
    let Value::Error(e) = sub.cmd(&["SUNSUBSCRIBE", &x, &y]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    // SUNSUBSCRIBE without names: every shard channel, counting down
    let Value::Array(first) = sub.cmd(&["SUNSUBSCRIBE"]).await.unwrap() else { panic!() };
    let Value::Array(second) = next(&mut sub).await else { panic!() };
    assert_eq!(
        (&first[0], &first[2], &second[0], &second[2]),
        (&b("sunsubscribe"), &Value::Int(1), &b("sunsubscribe"), &Value::Int(0))
    );
    let names = BTreeSet::from([first[1].as_str().unwrap().to_string(), second[1].as_str().unwrap().to_string()]);
    assert_eq!(names, BTreeSet::from(["{s}a".to_string(), "{s}b".to_string()]));
    // still subscribed to "plain"
    assert!(sub.cmd(&["GET", "k"]).await.unwrap().is_error());
    assert_eq!(sub.cmd(&["UNSUBSCRIBE"]).await.unwrap(), confirm("unsubscribe", "plain", 0));
    assert_eq!(sub.cmd(&["GET", "k"]).await.unwrap(), Value::Nil);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_survives_a_backend_restart() {
    let mut c = Cluster::start(2).await;
    let (ca, cb) = (name_on(&c, 0, "r-a"), name_on(&c, 1, "r-b"));
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    sub.send(&["SUBSCRIBE", &ca, &cb]).await.unwrap();
    next(&mut sub).await;
    next(&mut sub).await;
    sub.send(&["PSUBSCRIBE", "r-*"]).await.unwrap();
    assert_eq!(next(&mut sub).await, confirm("psubscribe", "r-*", 3));

    c.servers[0].restart();
    // the link reconnects and subscribes again by itself: the channel and the pattern
    let heard = publish_until_heard(&mut publisher, "PUBLISH", &cb, "other").await;
    receive(&mut sub, &message(&cb, &heard)).await;
    wait_until("resubscribed after the restart", PATIENCE, || async { (numsub(&c, 0, &ca).await == 1).then_some(()) })
        .await;
    let mut check = c.direct(0).await;
    poll("pattern resubscribed", async || {
        (check.cmd(&["PUBSUB", "NUMPAT"]).await.unwrap() == Value::Int(1)).then_some(())
    })
    .await;
    let after = "after-restart";
    // (the proxy's shared connection to the restarted server may need a moment too)
    let n = poll("the proxy publishes again", async || publisher.cmd(&["PUBLISH", &ca, after]).await.unwrap().as_int())
        .await;
    assert_eq!(n, 2, "the channel and the pattern, both on the restarted server");
    receive(&mut sub, &message(&ca, after)).await;
    assert_eq!(next(&mut sub).await, Value::Array(vec![b("pmessage"), b("r-*"), b(&ca), b(after)]));
    // the session's view did not change
    assert_eq!(sub.cmd(&["UNSUBSCRIBE", &ca]).await.unwrap(), confirm("unsubscribe", &ca, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_its_channel_to_another_group() {
    let c = Cluster::start(2).await;
    let ch = name_on(&c, 0, "moving");
    let shard = format!("{{{ch}}}s");
    let slot = codis_core::slot_of(ch.as_bytes()) as i64;
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    assert_eq!(sub.cmd(&["SUBSCRIBE", &ch]).await.unwrap(), confirm("subscribe", &ch, 1));
    assert_eq!(sub.cmd(&["SSUBSCRIBE", &shard]).await.unwrap(), confirm("ssubscribe", &shard, 1));
    assert_eq!(publisher.cmd(&["PUBLISH", &ch, "before"]).await.unwrap(), Value::Int(1));
    assert_eq!(next(&mut sub).await, message(&ch, "before"));

    // the slot starts moving to the second group: its channels go with it at once
    let moved = Slot { id: slot, backend_addr: c.servers[1].addr(), backend_addr_group_id: 2, ..Default::default() };
    let migrating = Slot {
        migrate_from: c.servers[0].addr(),
        migrate_from_group_id: 1,
        forward_method: codis_core::models::FORWARD_SEMI_ASYNC,
        ..moved.clone()
    };
    c.proxy.fill_slots(&[migrating]).await.unwrap();
    let heard = publish_until_heard(&mut publisher, "PUBLISH", &ch, "during").await;
    receive(&mut sub, &message(&ch, &heard)).await;
    assert_eq!(numsub(&c, 1, &ch).await, 1);
    // and once it belongs to the second group (as after a migration or a failover)
    c.proxy.fill_slots(&[moved]).await.unwrap();
    let heard = publish_until_heard(&mut publisher, "PUBLISH", &ch, "after").await;
    receive(&mut sub, &message(&ch, &heard)).await;
    assert_eq!(numsub(&c, 1, &ch).await, 1);
    wait_until("the old group forgets the subscriber", PATIENCE, || async {
        (numsub(&c, 0, &ch).await == 0).then_some(())
    })
    .await;
    let heard = publish_until_heard(&mut publisher, "SPUBLISH", &shard, "s").await;
    receive(&mut sub, &Value::Array(vec![b("smessage"), b(&shard), b(&heard)])).await;
    assert_eq!(sub.cmd(&["UNSUBSCRIBE"]).await.unwrap(), confirm("unsubscribe", &ch, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_around_subscriptions_keep_their_order() {
    let c = Cluster::start(2).await;
    let (ca, cb) = (name_on(&c, 0, "p-a"), name_on(&c, 1, "p-b"));
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    // earlier requests are answered first; what follows SUBSCRIBE is in subscribed mode
    let replies = sub
        .pipeline(&[
            codis_testkit::args!["SET", "k", "v"],
            codis_testkit::args!["SUBSCRIBE", &ca],
            codis_testkit::args!["PING"],
            codis_testkit::args!["GET", "k"],
            codis_testkit::args!["SUBSCRIBE", &cb],
        ])
        .await
        .unwrap();
    assert_eq!(replies[..3], [Value::ok(), confirm("subscribe", &ca, 1), Value::Array(vec![b("pong"), b("")])]);
    assert!(replies[3].as_str().unwrap().starts_with("ERR Can't execute 'get'"), "{:?}", replies[3]);
    assert_eq!(replies[4], confirm("subscribe", &cb, 2));
    // messages go out in publish order; a PING is answered by the proxy itself, so it
    // is ordered after what the proxy has received, not after what is still on its way
    // from the server (see README)
    for i in 0..50 {
        assert_eq!(publisher.cmd(&["PUBLISH", &ca, &i.to_string()]).await.unwrap(), Value::Int(1));
    }
    for i in 0..50 {
        assert_eq!(next(&mut sub).await, message(&ca, &i.to_string()));
    }
    sub.send(&["PING", "mark"]).await.unwrap();
    assert_eq!(next(&mut sub).await, Value::Array(vec![b("pong"), b("mark")]));
    // QUIT in subscribed mode closes the connection
    assert_eq!(sub.cmd(&["QUIT"]).await.unwrap(), Value::ok());
    assert!(sub.is_closed().await);
    wait_until("the links close with the session", PATIENCE, || async {
        (numsub(&c, 0, &ca).await == 0 && numsub(&c, 1, &cb).await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_while_a_backend_is_down_takes_effect_when_it_is_back() {
    let mut c = Cluster::start(2).await;
    let ca = name_on(&c, 0, "d-a");
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    c.servers[0].kill();
    // confirmed at once with the session's count; the server gets it once it is back
    assert_eq!(sub.cmd(&["SUBSCRIBE", &ca]).await.unwrap(), confirm("subscribe", &ca, 1));
    c.servers[0].restart();
    let heard = publish_until_heard(&mut publisher, "PUBLISH", &ca, "back").await;
    receive(&mut sub, &message(&ca, &heard)).await;
    // and unsubscribing while it is down again does not hang either
    c.servers[0].kill();
    assert_eq!(sub.cmd(&["UNSUBSCRIBE", &ca]).await.unwrap(), confirm("unsubscribe", &ca, 0));
    assert!(sub.cmd(&["GET", &ca]).await.unwrap().is_error(), "the server is still down");
}
