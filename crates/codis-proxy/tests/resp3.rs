//! RESP3 per session (`HELLO 3`), against real redis-servers: the backends' RESP3
//! replies pass through, the proxy's own replies follow the session's protocol, and
//! RESP2 sessions are not affected.

mod common;

use std::time::Duration;

use codis_testkit::{Client, Value};
use common::Cluster;

fn key_on(c: &Cluster, group: usize, prefix: &str) -> String {
    (0..).map(|i| format!("{prefix}{i}")).find(|k| c.owner(k.as_bytes()) == group).unwrap()
}

/// Sends a command and returns its reply's raw bytes.
async fn raw(cl: &mut Client, args: &[&str]) -> String {
    cl.send(args).await.unwrap();
    raw_next(cl).await
}

async fn raw_next(cl: &mut Client) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(10), cl.read_frame()).await.expect("a reply in time").unwrap();
    String::from_utf8(frame.to_vec()).unwrap()
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_switches_one_session_to_resp3() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    let mut resp2 = c.client().await;
    let hello = raw(&mut cl, &["HELLO", "3", "SETNAME", "r3"]).await;
    assert!(hello.starts_with("%7\r\n") && hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");

    // the servers' RESP3 replies pass through
    assert_eq!(raw(&mut cl, &["HSET", "h", "f", "v"]).await, ":1\r\n");
    assert_eq!(raw(&mut cl, &["HGETALL", "h"]).await, format!("%1\r\n{}{}", bulk("f"), bulk("v")));
    assert_eq!(raw(&mut cl, &["GET", "missing"]).await, "_\r\n");
    assert_eq!(raw(&mut cl, &["ZADD", "z", "1.5", "m"]).await, ":1\r\n");
    assert_eq!(raw(&mut cl, &["ZSCORE", "z", "m"]).await, ",1.5\r\n");
    // merged across groups
    let (a, b) = (key_on(&c, 0, "a"), key_on(&c, 1, "b"));
    assert_eq!(raw(&mut cl, &["SET", &a, "1"]).await, "+OK\r\n");
    assert_eq!(raw(&mut cl, &["MGET", &a, &b]).await, format!("*2\r\n{}_\r\n", bulk("1")));
    // blocking commands time out with RESP3's null
    assert_eq!(raw(&mut cl, &["BLPOP", "empty", "0.05"]).await, "_\r\n");
    // the proxy's own replies
    let Value::Bulk(info) = Value::parse(raw(&mut cl, &["CLIENT", "INFO"]).await.as_bytes()) else { panic!() };
    assert!(String::from_utf8(info).unwrap().contains("resp=3"));
    assert_eq!(raw(&mut cl, &["CLIENT", "GETNAME"]).await, bulk("r3"));
    assert_eq!(raw(&mut cl, &["CLIENT", "SETNAME", ""]).await, "+OK\r\n");
    assert_eq!(raw(&mut cl, &["CLIENT", "GETNAME"]).await, "_\r\n");
    let info = raw(&mut cl, &["INFO", "server"]).await;
    assert!(info.contains("# Proxy") && info.contains("redis_version:"), "{info:?}");

    // another session still speaks RESP2
    assert_eq!(resp2.cmd(&["HGETALL", "h"]).await.unwrap(), Value::Array(vec![Value::bulk("f"), Value::bulk("v")]));
    assert_eq!(resp2.cmd(&["GET", "missing"]).await.unwrap(), Value::Nil);

    // back to RESP2 with HELLO 2, and with RESET
    assert!(raw(&mut cl, &["HELLO", "2"]).await.starts_with("*14\r\n"));
    assert_eq!(raw(&mut cl, &["GET", "missing"]).await, "$-1\r\n");
    assert!(raw(&mut cl, &["HELLO", "3"]).await.starts_with("%7\r\n"));
    assert_eq!(raw(&mut cl, &["RESET"]).await, "+RESET\r\n");
    assert_eq!(raw(&mut cl, &["HGETALL", "h"]).await, format!("*2\r\n{}{}", bulk("f"), bulk("v")));
    // pipelined switches apply from the next request on
    let replies = cl
        .pipeline(&[
            codis_testkit::args!["GET", "missing"],
            codis_testkit::args!["HELLO", "3"],
            codis_testkit::args!["GET", "missing"],
        ])
        .await
        .unwrap();
    assert_eq!(replies[0], Value::Nil);
    assert_eq!(replies[2], Value::Other(b"_\r\n".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscribers_get_pushes_and_run_commands() {
    let c = Cluster::start(2).await;
    let (ca, cb) = (key_on(&c, 0, "ch"), key_on(&c, 1, "ch"));
    let mut sub = c.client().await;
    let mut publisher = c.client().await;
    raw(&mut sub, &["HELLO", "3"]).await;
    sub.send(&["SUBSCRIBE", &ca, &cb]).await.unwrap();
    assert_eq!(raw_next(&mut sub).await, format!(">3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(&ca)));
    assert_eq!(raw_next(&mut sub).await, format!(">3\r\n{}{}:2\r\n", bulk("subscribe"), bulk(&cb)));
    // RESP3 has no subscribed mode: any command runs, PING is a plain PONG
    assert_eq!(raw(&mut sub, &["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(raw(&mut sub, &["PING"]).await, "+PONG\r\n");
    assert_eq!(publisher.cmd(&["PUBLISH", &cb, "hi"]).await.unwrap(), Value::Int(1));
    assert_eq!(raw_next(&mut sub).await, format!(">3\r\n{}{}{}", bulk("message"), bulk(&cb), bulk("hi")));
    assert_eq!(
        raw(&mut sub, &["PSUBSCRIBE", "ch*"]).await,
        format!(">3\r\n{}{}:3\r\n", bulk("psubscribe"), bulk("ch*"))
    );
    assert_eq!(publisher.cmd(&["PUBLISH", &ca, "p"]).await.unwrap(), Value::Int(2));
    assert_eq!(raw_next(&mut sub).await, format!(">3\r\n{}{}{}", bulk("message"), bulk(&ca), bulk("p")));
    assert_eq!(
        raw_next(&mut sub).await,
        format!(">4\r\n{}{}{}{}", bulk("pmessage"), bulk("ch*"), bulk(&ca), bulk("p"))
    );
    assert_eq!(raw(&mut sub, &["PUNSUBSCRIBE"]).await, format!(">3\r\n{}{}:2\r\n", bulk("punsubscribe"), bulk("ch*")));
    assert_eq!(raw(&mut sub, &["UNSUBSCRIBE", &ca]).await, format!(">3\r\n{}{}:1\r\n", bulk("unsubscribe"), bulk(&ca)));
    assert_eq!(raw(&mut sub, &["UNSUBSCRIBE"]).await, format!(">3\r\n{}{}:0\r\n", bulk("unsubscribe"), bulk(&cb)));
    assert_eq!(raw(&mut sub, &["UNSUBSCRIBE"]).await, format!(">3\r\n{}_\r\n:0\r\n", bulk("unsubscribe")));
    assert_eq!(raw(&mut sub, &["GET", "k"]).await, bulk("v"));
}
