//! The data path against real redis-servers: routing, pipelining, multi-key commands,
//! failures and recovery, protocol errors, AUTH and SELECT.

mod common;

use std::time::Duration;

use codis_testkit::{Client, Value, args, wait_until};
use common::Cluster;

fn keys_on(values: Vec<Value>) -> Vec<String> {
    match values.into_iter().next() {
        Some(Value::Array(items)) => items.into_iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_lands_on_the_server_its_slot_names() {
    let c = Cluster::start(3).await;
    let mut cl = c.client().await;
    let keys: Vec<String> =
        (0..3000).map(|i| if i % 10 == 0 { format!("{{tag{}}}:k{i}", i % 7) } else { format!("key:{i}") }).collect();
    let cmds: Vec<_> = keys.iter().map(|k| args!["SET", k, k]).collect();
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert_eq!(r, Value::ok());
    }
    let mut seen = 0;
    for i in 0..3 {
        let mut d = c.direct(i).await;
        let found = keys_on(vec![d.cmd(&["KEYS", "*"]).await.unwrap()]);
        for k in &found {
            assert_eq!(c.owner(k.as_bytes()), i, "key {k} is on server {i} but its slot belongs elsewhere");
        }
        assert!(!found.is_empty(), "server {i} got no keys");
        seen += found.len();
    }
    assert_eq!(seen, keys.len());
    // and every key reads back through the proxy
    let gets: Vec<_> = keys.iter().map(|k| args!["GET", k]).collect();
    for (k, v) in keys.iter().zip(cl.pipeline(&gets).await.unwrap()) {
        assert_eq!(v, Value::bulk(k));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_pipelined_commands_come_back_in_order() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    const N: usize = 100_000;
    // Mix forwarded writes and reads with locally answered commands in one stream.
    let mut cmds = Vec::with_capacity(N);
    for i in 0..N {
        cmds.push(match i % 4 {
            0 | 1 => args!["SET", format!("p:{}", i / 2), i.to_string()],
            2 => args!["GET", format!("p:{}", (i - 2) / 2)],
            _ => args!["ECHO", i.to_string()],
        });
    }
    let replies = cl.pipeline(&cmds).await.unwrap();
    assert_eq!(replies.len(), N);
    for (i, r) in replies.iter().enumerate() {
        let want = match i % 4 {
            0 | 1 => Value::ok(),
            2 => Value::bulk(&(i - 1).to_string()),
            _ => Value::bulk(&i.to_string()),
        };
        assert_eq!(r, &want, "reply {i} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_merge_across_backends() {
    let c = Cluster::start(3).await;
    let mut cl = c.client().await;
    let keys: Vec<String> = (0..40).map(|i| format!("m:{i}")).collect();
    let owners: std::collections::HashSet<usize> = keys.iter().map(|k| c.owner(k.as_bytes())).collect();
    assert_eq!(owners.len(), 3, "keys must span all backends");
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    assert_eq!(cl.cmd(&mset).await.unwrap(), Value::ok());
    // MGET in the requested order, with a missing key and a duplicate
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().rev().cloned());
    mget.push("m:missing".into());
    mget.push(keys[0].clone());
    let got = cl.cmd(&mget).await.unwrap();
    let mut want: Vec<Value> = keys.iter().rev().map(|k| Value::bulk(&format!("v-{k}"))).collect();
    want.push(Value::Nil);
    want.push(Value::bulk(&format!("v-{}", keys[0])));
    assert_eq!(got, Value::Array(want));
    // EXISTS counts repeats, as Redis does
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(keys.iter().take(10).cloned());
    exists.push(keys[0].clone());
    exists.push("m:missing".into());
    assert_eq!(cl.cmd(&exists).await.unwrap(), Value::Int(11));
    let mut touch = vec!["TOUCH".to_string()];
    touch.extend(keys.iter().take(5).cloned());
    assert_eq!(cl.cmd(&touch).await.unwrap(), Value::Int(5));
    let mut del = vec!["DEL".to_string()];
    del.extend(keys.iter().take(20).cloned());
    del.push("m:missing".into());
    assert_eq!(cl.cmd(&del).await.unwrap(), Value::Int(20));
    let mut unlink = vec!["UNLINK".to_string()];
    unlink.extend(keys.iter().cloned());
    assert_eq!(cl.cmd(&unlink).await.unwrap(), Value::Int(20));
    for i in 0..3 {
        assert_eq!(c.direct(i).await.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    }
    // wrong arity is reported like Redis
    let e = cl.cmd(&["MSET", "a", "1", "b"]).await.unwrap();
    assert_eq!(e, Value::Error("ERR wrong number of arguments for 'mset' command".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_reads_report_a_dead_backend_per_key() {
    let mut c = Cluster::start(2).await;
    let mut cl = c.client().await;
    let a = (0..).map(|i| format!("a{i}")).find(|k| c.owner(k.as_bytes()) == 0).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|k| c.owner(k.as_bytes()) == 1).unwrap();
    assert_eq!(cl.cmd(&["MSET", &a, "1", &b, "2"]).await.unwrap(), Value::ok());
    c.servers[1].kill();
    let got = cl.cmd(&["MGET", &a, &b]).await.unwrap();
    let Value::Array(items) = got else { panic!("{got:?}") };
    assert_eq!(items[0], Value::bulk("1"));
    let Value::Error(e) = &items[1] else { panic!("{:?}", items[1]) };
    assert!(e.contains(&c.servers[1].addr()), "error names the backend: {e}");
    // the connection is still usable
    assert_eq!(cl.cmd(&["GET", &a]).await.unwrap(), Value::bulk("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_mid_pipeline_fails_fast_then_recovers() {
    let mut c = Cluster::start(2).await;
    let mut cl = c.client().await;
    let dead: Vec<String> = (0..).map(|i| format!("d{i}")).filter(|k| c.owner(k.as_bytes()) == 1).take(50).collect();
    let live: Vec<String> = (0..).map(|i| format!("l{i}")).filter(|k| c.owner(k.as_bytes()) == 0).take(50).collect();
    // a deep pipeline that is in flight when the server dies
    let mut cmds = Vec::new();
    for i in 0..20_000 {
        cmds.push(args!["SET", dead[i % dead.len()], i.to_string()]);
    }
    let mut out = bytes::BytesMut::new();
    for cmd in &cmds {
        out.extend_from_slice(&codis_resp::encode_request(cmd.iter()));
    }
    cl.send_raw(&out).await.unwrap();
    c.servers[1].kill();
    let mut errors = 0;
    for _ in 0..cmds.len() {
        match cl.read().await.unwrap() {
            Value::Error(e) => {
                assert!(e.contains(&c.servers[1].addr()), "{e}");
                errors += 1;
            }
            v => assert_eq!(v, Value::ok()),
        }
    }
    assert!(errors > 0, "killing the server must fail some requests");
    // while it is down: its slots fail fast with a clear error, the others are served
    let started = std::time::Instant::now();
    for k in dead.iter().take(10) {
        let Value::Error(e) = cl.cmd(&["GET", k]).await.unwrap() else { panic!("expected an error") };
        assert!(e.starts_with(&format!("ERR backend {}", c.servers[1].addr())), "{e}");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "errors must come fast, took {:?}", started.elapsed());
    for k in &live {
        assert_eq!(cl.cmd(&["SET", k, "x"]).await.unwrap(), Value::ok());
    }
    // after a restart the proxy reconnects by itself, on this very session
    c.servers[1].restart();
    let key = dead[0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cl.cmd(&["SET", &key, "back"]).await.unwrap() != Value::ok() {
        assert!(std::time::Instant::now() < deadline, "backend did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cl.cmd(&["GET", &key]).await.unwrap(), Value::bulk("back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_protocol_error_and_close() {
    let c = Cluster::start(1).await;
    let big_inline = vec![b'a'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("non-numeric multibulk length", b"*x\r\n".to_vec(), "invalid multibulk length"),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec(), "invalid bulk length"),
        ("non-numeric bulk length", b"*1\r\n$abc\r\n".to_vec(), "invalid bulk length"),
        ("bulk over proto-max-bulk-len", b"*1\r\n$536870913\r\n".to_vec(), "invalid bulk length"),
        ("array over 1M elements", b"*1048577\r\n".to_vec(), "invalid multibulk length"),
        ("huge multibulk count", b"*99999999999999999999\r\n".to_vec(), "invalid multibulk length"),
        ("simple string in request", b"*1\r\n+PING\r\n".to_vec(), "expected '$', got '+'"),
        ("integer in request", b"*1\r\n:1\r\n".to_vec(), "expected '$', got ':'"),
        ("missing CRLF after bulk", b"*1\r\n$4\r\nPINGxx".to_vec(), "expected CRLF"),
        ("LF only after count", b"*1\n$4\r\nPING\r\n".to_vec(), "expected CRLF"),
        ("CR without LF", b"*1\r\n$4\rPING".to_vec(), "expected CRLF"),
        ("empty bulk length", b"*1\r\n$\r\n".to_vec(), "invalid bulk length"),
        ("empty multibulk count", b"*\r\n".to_vec(), "invalid multibulk length"),
        ("inline over 64 KB", big_inline, "too big inline request"),
        ("unbalanced quotes", b"SET a \"b\r\n".to_vec(), "unbalanced quotes"),
        ("garbage after quote", b"SET a 'b'c\r\n".to_vec(), "unbalanced quotes"),
        ("binary junk", vec![b'*', 0xff, 0xfe, b'\r', b'\n'], "invalid multibulk length"),
    ];
    assert!(cases.len() >= 15);
    for (name, input, want) in cases {
        let mut cl = c.client().await;
        // a valid command first: its reply must still arrive, in order
        cl.send(&["PING"]).await.unwrap();
        cl.send_raw(&input).await.unwrap();
        assert_eq!(cl.read().await.unwrap(), Value::Simple("PONG".into()), "{name}");
        match cl.read().await {
            Ok(Value::Error(e)) => assert!(e.starts_with("ERR Protocol error: ") && e.contains(want), "{name}: {e}"),
            other => panic!("{name}: expected a protocol error, got {other:?}"),
        }
        assert!(cl.is_closed().await, "{name}: connection must be closed");
    }
    // other clients are unaffected
    let mut ok = c.client().await;
    assert_eq!(ok.cmd(&["SET", "still", "fine"]).await.unwrap(), Value::ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_allowed_and_unknown_commands_keep_the_session() {
    let c = Cluster::start(1).await;
    let mut cl = c.client().await;
    for cmd in
        [&["MONITOR"][..], &["CONFIG", "GET", "maxmemory"], &["SLOTSMGRT-EXEC-WRAPPER", "k", "get", "k"], &["SHUTDOWN"]]
    {
        let Value::Error(e) = cl.cmd(cmd).await.unwrap() else { panic!("{cmd:?} must be refused") };
        assert!(e.contains("is not allowed"), "{e}");
    }
    // KEYS and FLUSH* run on every group: off unless the config allows them
    for cmd in [&["KEYS", "*"][..], &["flushall"], &["FLUSHDB"]] {
        let Value::Error(e) = cl.cmd(cmd).await.unwrap() else { panic!("{cmd:?} must be refused") };
        assert!(e.contains("session_allow_keyspace_commands = true"), "{e}");
    }
    let Value::Error(e) = cl.cmd(&["NOSUCHCMD", "x"]).await.unwrap() else { panic!() };
    assert!(e.contains("unknown command"), "{e}");
    let Value::Error(e) = cl.cmd(&["GET"]).await.unwrap() else { panic!() };
    assert_eq!(e, "ERR wrong number of arguments for 'get' command");
    // blocking commands are served (tests/exclusive.rs); a short timeout answers nil
    assert_eq!(cl.cmd(&["XREAD", "BLOCK", "10", "STREAMS", "s", "$"]).await.unwrap(), Value::Nil);
    assert_eq!(cl.cmd(&["SET", "k", "v"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["GET", "k"]).await.unwrap(), Value::bulk("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_group_commands_fail_clearly_and_tags_fix_them() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    let a = (0..).map(|i| format!("a{i}")).find(|k| c.owner(k.as_bytes()) == 0).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|k| c.owner(k.as_bytes()) == 1).unwrap();
    let Value::Error(e) = cl.cmd(&["SUNIONSTORE", &a, &a, &b]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT") && e.contains("hash tag"), "{e}");
    assert_eq!(cl.cmd(&["SADD", "{u1}:x", "1", "2"]).await.unwrap(), Value::Int(2));
    assert_eq!(cl.cmd(&["SADD", "{u1}:y", "2", "3"]).await.unwrap(), Value::Int(2));
    assert_eq!(cl.cmd(&["SINTERSTORE", "{u1}:z", "{u1}:x", "{u1}:y"]).await.unwrap(), Value::Int(1));
    // keys found by key specs, not only argv[1]
    assert_eq!(cl.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "{u1}:missing"]).await.unwrap(), Value::Nil);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_select() {
    let c = Cluster::start_with(1, &[], |cfg| cfg.session_auth = "s3cret".into()).await;
    let mut cl = c.client().await;
    let Value::Error(e) = cl.cmd(&["GET", "k"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("NOAUTH"), "{e}");
    let Value::Error(e) = cl.cmd(&["KEYS", "*"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("NOAUTH"), "unauthenticated clients learn nothing else: {e}");
    assert_eq!(cl.cmd(&["AUTH", "wrong"]).await.unwrap(), Value::Error("ERR invalid password".into()));
    assert!(cl.cmd(&["PING"]).await.unwrap().is_error());
    assert_eq!(cl.cmd(&["AUTH", "s3cret"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    assert_eq!(cl.cmd(&["AUTH", "default", "s3cret"]).await.unwrap(), Value::ok());
    // SELECT: range checked, data separated per database
    assert_eq!(
        cl.cmd(&["SELECT", "16"]).await.unwrap(),
        Value::Error("ERR invalid DB index, only accept DB [0,16)".into())
    );
    assert_eq!(cl.cmd(&["SELECT", "x"]).await.unwrap(), Value::Error("ERR invalid DB index".into()));
    assert_eq!(cl.cmd(&["SET", "k", "db0"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["SELECT", "5"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["GET", "k"]).await.unwrap(), Value::Nil);
    assert_eq!(cl.cmd(&["SET", "k", "db5"]).await.unwrap(), Value::ok());
    let mut d = c.direct(0).await;
    assert_eq!(d.cmd(&["GET", "k"]).await.unwrap(), Value::bulk("db0"));
    assert_eq!(d.cmd(&["SELECT", "5"]).await.unwrap(), Value::ok());
    assert_eq!(d.cmd(&["GET", "k"]).await.unwrap(), Value::bulk("db5"));
    // a second session starts in database 0
    let mut other = c.client().await;
    assert_eq!(other.cmd(&["AUTH", "s3cret"]).await.unwrap(), Value::ok());
    assert_eq!(other.cmd(&["GET", "k"]).await.unwrap(), Value::bulk("db0"));
    // without session_auth, AUTH is an error, as in Codis
    let open = Cluster::start(1).await;
    let mut cl = open.client().await;
    assert_eq!(
        cl.cmd(&["AUTH", "x"]).await.unwrap(),
        Value::Error("ERR Client sent AUTH, but no password is set".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_with_a_password_get_product_auth() {
    let c = Cluster::start_with(2, &["--requirepass", "pauth"], |cfg| cfg.product_auth = "pauth".into()).await;
    let mut cl = c.client().await;
    for i in 0..50 {
        assert_eq!(cl.cmd(&["SET", &format!("k{i}"), "v"]).await.unwrap(), Value::ok());
    }
    // a wrong product_auth gives a clear error, not a hang
    let bad = Cluster::start_with(1, &["--requirepass", "right"], |cfg| cfg.product_auth = "wrong".into()).await;
    let mut cl = bad.client().await;
    let Value::Error(e) = cl.cmd(&["GET", "k"]).await.unwrap() else { panic!() };
    assert!(e.contains("AUTH failed") && e.contains("product_auth"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pipelines_get_backpressure_not_disconnection() {
    let c = Cluster::start_with(1, &[], |cfg| cfg.session_max_pipeline = 100).await;
    let mut cl = c.client().await;
    const N: usize = 20_000;
    let mut out = bytes::BytesMut::new();
    for i in 0..N {
        out.extend_from_slice(&codis_resp::encode_request(["INCR", "counter"].iter()));
        let _ = i;
    }
    // write everything first (a task, since the proxy stops reading at 100 in flight)
    let (mut rd, mut wr) = cl.stream().split();
    let writer = async {
        tokio::io::AsyncWriteExt::write_all(&mut wr, &out).await.unwrap();
    };
    let reader = async {
        let mut buf = bytes::BytesMut::new();
        let mut scanner = codis_resp::ReplyScanner::default();
        let mut n = 0;
        let mut last = 0;
        while n < N {
            if tokio::io::AsyncReadExt::read_buf(&mut rd, &mut buf).await.unwrap() == 0 {
                panic!("proxy closed the connection after {n} replies");
            }
            while let Some(len) = scanner.scan(&buf).unwrap() {
                let v = Value::parse(&buf.split_to(len));
                last = v.as_int().expect("INCR reply");
                n += 1;
            }
        }
        last
    };
    let ((), last) = tokio::join!(writer, reader);
    assert_eq!(last, N as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commands() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    assert_eq!(cl.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    assert_eq!(cl.cmd(&["ping", "hi"]).await.unwrap(), Value::bulk("hi"));
    assert_eq!(cl.cmd(&["ECHO", "x y"]).await.unwrap(), Value::bulk("x y"));
    let hashes = cl
        .cmd(&["SLOTSHASHKEY", "foo", "bar", "{user1000}.following", "user1000", "a{}b", "{}", "x{", "x{y"])
        .await
        .unwrap();
    assert_eq!(hashes, Value::Array([289, 170, 870, 870, 0, 0, 437, 351].into_iter().map(Value::Int).collect()));
    let Value::Array(m) = cl.cmd(&["SLOTSMAPPING", "1023"]).await.unwrap() else { panic!() };
    assert_eq!(m[0], Value::bulk("1023"));
    assert_eq!(m[1], Value::bulk(&c.servers[1].addr()));
    let Value::Array(all) = cl.cmd(&["SLOTSMAPPING"]).await.unwrap() else { panic!() };
    assert_eq!(all.len(), 1024);
    let Value::Bulk(info) = cl.cmd(&["INFO"]).await.unwrap() else { panic!() };
    let info = String::from_utf8(info).unwrap();
    assert!(info.starts_with("# Proxy\r\n") && info.contains("redis_version:"), "{info}");
    let Value::Bulk(info) = cl.cmd(&["INFO", &c.servers[0].addr(), "server"]).await.unwrap() else { panic!() };
    assert!(String::from_utf8(info).unwrap().contains(&format!("tcp_port:{}", c.servers[0].port)));
    assert!(cl.cmd(&["COMMAND", "COUNT"]).await.unwrap().as_int().unwrap() > 200);
    assert_eq!(
        cl.cmd(&["SLOTSSCAN", "5000", "0"]).await.unwrap(),
        Value::Error("ERR parse slotnum '5000' failed, out of range".into())
    );
    assert_eq!(cl.cmd(&["QUIT"]).await.unwrap(), Value::ok());
    assert!(cl.is_closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_when_enabled() {
    let master = codis_testkit::RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let replica = codis_testkit::RedisServer::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let mut config = common::test_config();
    config.backend_primary_only = false;
    let proxy = codis_proxy::Proxy::bind(config, codis_proxy::Options { workers: 2, log_control: None }).await.unwrap();
    let slots: Vec<_> = (0..1024)
        .map(|i| codis_core::models::Slot {
            id: i,
            backend_addr: master.addr(),
            replica_groups: vec![vec![replica.addr()]],
            ..Default::default()
        })
        .collect();
    proxy.fill_slots(&slots).await.unwrap();
    proxy.start().unwrap();
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    assert_eq!(cl.cmd(&["SET", "rk", "1"]).await.unwrap(), Value::ok());
    wait_until("replication", Duration::from_secs(10), || async {
        let mut r = Client::connect(&replica.addr()).await.ok()?;
        (r.cmd(&["GET", "rk"]).await.ok()? == Value::bulk("1")).then_some(())
    })
    .await;
    let gets = |info: Value| -> i64 {
        let text = info.as_str().unwrap_or("").to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // reads move to the replica once this session's replica connection is up
    let mut r = Client::connect(&replica.addr()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(cl.cmd(&["GET", "rk"]).await.unwrap(), Value::bulk("1"));
        if gets(r.cmd(&["INFO", "commandstats"]).await.unwrap()) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no GET reached the replica");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // from now on reads stay on the replica and writes go to the master
    let mut m = Client::connect(&master.addr()).await.unwrap();
    let sets = |info: Value| -> i64 {
        let text = info.as_str().unwrap_or("").to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let master_gets = gets(m.cmd(&["INFO", "commandstats"]).await.unwrap());
    let replica_gets = gets(r.cmd(&["INFO", "commandstats"]).await.unwrap());
    let master_sets = sets(m.cmd(&["INFO", "commandstats"]).await.unwrap());
    for _ in 0..20 {
        assert_eq!(cl.cmd(&["GET", "rk"]).await.unwrap(), Value::bulk("1"));
    }
    assert_eq!(cl.cmd(&["SET", "rk", "2"]).await.unwrap(), Value::ok());
    assert_eq!(gets(m.cmd(&["INFO", "commandstats"]).await.unwrap()), master_gets);
    assert_eq!(gets(r.cmd(&["INFO", "commandstats"]).await.unwrap()), replica_gets + 20);
    assert_eq!(sets(m.cmd(&["INFO", "commandstats"]).await.unwrap()), master_sets + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_dropped_after_the_send_timeout() {
    let c = Cluster::start_with(1, &[], |cfg| cfg.session_send_timeout = "1s".parse().unwrap()).await;
    let mut cl = c.client().await;
    let big = "x".repeat(1 << 20);
    assert_eq!(cl.cmd(&["SET", "big", &big]).await.unwrap(), Value::ok());
    // ask for 300 MB of replies and read none of them
    let mut out = bytes::BytesMut::new();
    for _ in 0..300 {
        out.extend_from_slice(&codis_resp::encode_request(["GET", "big"].iter()));
    }
    cl.send_raw(&out).await.unwrap();
    let alive = |c: &Cluster| c.proxy.shared().stats.sessions_alive.load(std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    wait_until("the stuck session to be dropped", Duration::from_secs(15), || async { (alive(&c) == 0).then_some(()) })
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900), "dropped before the timeout: {:?}", started.elapsed());
    // what the client can still read ends well before 300 MB
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tokio::io::AsyncReadExt::read(cl.stream(), &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 300 << 20, "read {total} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_on_the_resp_port_are_hung_up() {
    let c = Cluster::start(1).await;
    let mut cl = c.client().await;
    cl.send_raw(b"POST / HTTP/1.1\r\nHost: example\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let Value::Error(e) = cl.read().await.unwrap() else { panic!("expected an error") };
    assert!(e.contains("HTTP"), "{e}");
    assert!(cl.is_closed().await);
}
