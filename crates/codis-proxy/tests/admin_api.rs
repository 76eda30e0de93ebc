//! The admin HTTP API: Codis routes, JSON and status codes.

mod common;

use std::time::Duration;

use codis_core::models::Slot;
use codis_proxy::Proxy;
use codis_testkit::{Client, RedisServer, Value, args, wait_until};
use common::{Cluster, test_config};
use serde_json::Value as Json;

async fn get(url: &str) -> (u16, Json) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

async fn put(url: &str, body: Option<String>) -> (u16, Json) {
    let mut req = reqwest::Client::new().put(url);
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_xping_stats_and_slots() {
    let c = Cluster::start(2).await;
    let base = format!("http://{}", c.admin);
    let xauth = c.proxy.xauth().to_string();
    let (status, model) = get(&format!("{base}/api/proxy/model")).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = model.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "token",
        "start_time",
        "admin_addr",
        "proto_type",
        "proxy_addr",
        "product_name",
        "pid",
        "pwd",
        "sys",
        "hostname",
        "datacenter",
    ] {
        assert!(keys.contains(&k), "model lacks {k}: {model}");
    }
    assert_eq!(model["product_name"], "codis-demo");
    assert_eq!(model["proxy_addr"], c.addr.as_str());
    assert_eq!(model["token"].as_str().unwrap().len(), 32);
    assert_eq!(xauth, codis_core::auth::new_xauth(&["codis-demo", "", model["token"].as_str().unwrap()]));

    assert_eq!(get(&format!("{base}/api/proxy/xping/{xauth}")).await, (200, Json::from("OK")));
    let (status, err) = get(&format!("{base}/api/proxy/xping/bad")).await;
    assert_eq!(status, 800);
    assert_eq!(err["Cause"], "invalid xauth, please check product name & auth");

    let mut cl = c.client().await;
    for i in 0..10 {
        cl.cmd(&["SET", &format!("k{i}"), "v"]).await.unwrap();
        cl.cmd(&["GET", &format!("k{i}")]).await.unwrap();
    }
    cl.cmd(&["KEYS", "*"]).await.unwrap();
    let stats = wait_until("stats flushed", Duration::from_secs(5), || {
        let url = format!("{base}/api/proxy/stats/{xauth}/1");
        async move {
            let (_, s) = get(&url).await;
            (s["ops"]["total"].as_i64() == Some(21)).then_some(s)
        }
    })
    .await;
    assert_eq!(stats["online"], true);
    assert_eq!(stats["closed"], false);
    assert_eq!(stats["ops"]["fails"], 1);
    assert_eq!(stats["sessions"]["alive"], 1);
    let cmds = stats["ops"]["cmd"].as_array().unwrap();
    let get_stats = cmds.iter().find(|c| c["opstr"] == "GET").unwrap();
    assert_eq!(get_stats["calls"], 10);
    for k in ["usecs", "usecs_percall", "fails", "redis_errtype"] {
        assert!(get_stats.get(k).is_some(), "{k} missing");
    }
    assert!(cmds.iter().any(|c| c["opstr"] == "KEYS" && c["fails"] == 1));
    assert!(stats["rusage"].get("mem").is_some());
    // without flags, no per-command list
    let (_, plain) = get(&format!("{base}/api/proxy/stats/{xauth}")).await;
    assert!(plain["ops"].get("cmd").is_none());
    assert_eq!(put(&format!("{base}/api/proxy/stats/reset/{xauth}"), None).await, (200, Json::from("OK")));
    let (_, reset) = get(&format!("{base}/proxy/stats")).await;
    assert_eq!(reset["ops"]["total"], 0);

    let (_, slots) = get(&format!("{base}/api/proxy/slots/{xauth}")).await;
    let slots: Vec<Slot> = serde_json::from_value(slots).unwrap();
    assert_eq!(slots.len(), 1024);
    assert_eq!(slots[1023].backend_addr, c.servers[1].addr());
    let (_, overview) = get(&format!("{base}/proxy")).await;
    assert_eq!(overview["config"]["proxy_max_clients"], 1000);
    assert_eq!(overview["config"]["backend_recv_bufsize"], "128kb");
    assert!(overview["config"].get("product_auth").is_none(), "secrets are not shown");
    assert_eq!(overview["slots"].as_array().unwrap().len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fillslots_moves_keys_and_start_puts_online() {
    let a = RedisServer::start(&[]);
    let b = RedisServer::start(&[]);
    let proxy = Proxy::bind(test_config(), codis_proxy::Options { workers: 2, log_control: None }).await.unwrap();
    let base = format!("http://{}", proxy.model().admin_addr);
    let xauth = proxy.xauth().to_string();
    // not online yet: Codis's error, then close
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    assert_eq!(cl.read().await.unwrap(), Value::Error("ERR router is not online".into()));
    let slots: Vec<Slot> = (0..1024).map(|i| Slot { id: i, backend_addr: a.addr(), ..Default::default() }).collect();
    let (status, _) =
        put(&format!("{base}/api/proxy/fillslots/{xauth}"), Some(serde_json::to_string(&slots).unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(put(&format!("{base}/api/proxy/start/{xauth}"), None).await, (200, Json::from("OK")));
    let mut cl = Client::connect(&proxy.model().proxy_addr).await.unwrap();
    assert_eq!(cl.cmd(&["SET", "foo", "1"]).await.unwrap(), Value::ok());
    // move foo's slot to b: new writes land there
    let slot = codis_core::slot_of(b"foo") as i64;
    let moved = vec![Slot { id: slot, backend_addr: b.addr(), ..Default::default() }];
    let (status, _) =
        put(&format!("{base}/api/proxy/fillslots/{xauth}"), Some(serde_json::to_string(&moved).unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(cl.cmd(&["SET", "foo", "2"]).await.unwrap(), Value::ok());
    assert_eq!(Client::connect(&b.addr()).await.unwrap().cmd(&["GET", "foo"]).await.unwrap(), Value::bulk("2"));
    assert_eq!(Client::connect(&a.addr()).await.unwrap().cmd(&["GET", "foo"]).await.unwrap(), Value::bulk("1"));
    // an offline slot answers with an error and the session goes on
    let offline = vec![Slot { id: slot, ..Default::default() }];
    put(&format!("{base}/api/proxy/fillslots/{xauth}"), Some(serde_json::to_string(&offline).unwrap())).await;
    let Value::Error(e) = cl.cmd(&["GET", "foo"]).await.unwrap() else { panic!() };
    assert!(e.contains(&format!("slot {slot} is not ready")), "{e}");
    assert_eq!(cl.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    // bad input gets Codis-style errors
    let (status, err) = put(&format!("{base}/api/proxy/fillslots/{xauth}"), Some("[{\"id\":5000}]".into())).await;
    assert_eq!(status, 800);
    assert!(err["Cause"].as_str().unwrap().contains("invalid slot id 5000"));
    let (status, err) = put(&format!("{base}/api/proxy/fillslots/{xauth}"), Some("not json".into())).await;
    assert_eq!(status, 800);
    assert!(err["Cause"].as_str().unwrap().contains("invalid slots JSON"));
    let (status, _) = put(&format!("{base}/api/proxy/loglevel/{xauth}/debug"), None).await;
    assert_eq!(status, 800, "no log control in this process");
    // shutdown closes the proxy
    assert_eq!(put(&format!("{base}/api/proxy/shutdown/{xauth}"), None).await, (200, Json::from("OK")));
    tokio::time::timeout(Duration::from_secs(5), proxy.closed()).await.expect("proxy closes");
    assert!(cl.is_closed().await, "sessions end on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_and_idle_timeout() {
    let c = Cluster::start_with(1, &[], |cfg| {
        cfg.proxy_max_clients = 2;
        cfg.session_recv_timeout = "1s".parse().unwrap();
    })
    .await;
    let mut a = c.client().await;
    let mut b = c.client().await;
    assert_eq!(a.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    assert_eq!(b.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
    let mut third = c.client().await;
    assert_eq!(third.read().await.unwrap(), Value::Error("ERR max number of clients reached".into()));
    // idle sessions are closed after session_recv_timeout
    let started = std::time::Instant::now();
    assert!(a.is_closed().await);
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_prometheus_format() {
    let c = Cluster::start(1).await;
    let mut cl = c.client().await;
    for i in 0..5 {
        assert_eq!(cl.cmd(&["SET", &format!("m{i}"), "v"]).await.unwrap(), Value::ok());
    }
    assert!(cl.cmd(&["CONFIG", "GET", "x"]).await.unwrap().is_error());
    // 200 requests on one key: one in 64 is sampled into its slot's counter
    let hot: Vec<Vec<Vec<u8>>> = (0..200).map(|_| args!["SET", "hot", "v"]).collect();
    assert!(cl.pipeline(&hot).await.unwrap().iter().all(|v| *v == Value::ok()));
    let url = format!("http://{}/metrics", c.admin);
    // sessions hand their counters over about once a second
    let text = wait_until("SET counted in /metrics", Duration::from_secs(10), || async {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = r.text().await.unwrap();
        text.contains(r#"codis_proxy_commands_total{product="codis-demo",cmd="SET"} 205"#).then_some(text)
    })
    .await;
    for line in [
        "# TYPE codis_proxy_commands_total counter",
        r#"codis_proxy_command_failures_total{product="codis-demo",cmd="CONFIG"} 1"#,
        r#"codis_proxy_sessions{product="codis-demo"} 1"#,
        r#"codis_proxy_online{product="codis-demo"} 1"#,
        "# TYPE codis_proxy_resident_memory_bytes gauge",
        "# TYPE codis_proxy_command_duration_seconds histogram",
        r#"codis_proxy_command_duration_seconds_bucket{product="codis-demo",cmd="SET",le="+Inf"} 205"#,
        r#"codis_proxy_command_duration_seconds_count{product="codis-demo",cmd="SET"} 205"#,
        &format!(
            r#"codis_proxy_backend_connections_up{{product="codis-demo",addr="{}",role="master"}} 1"#,
            c.servers[0].addr()
        ),
        &format!(
            r#"codis_proxy_backend_inflight{{product="codis-demo",addr="{}",role="master"}} 0"#,
            c.servers[0].addr()
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let value = |prefix: &str| -> f64 {
        let l = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        l.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    // the histogram's buckets only grow, and SETs on loopback mostly take under 5 ms
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(r#"codis_proxy_command_duration_seconds_bucket{product="codis-demo",cmd="SET""#))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), codis_proxy::stats::LATENCY_BUCKETS_US.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(
        value(r#"codis_proxy_command_duration_seconds_bucket{product="codis-demo",cmd="SET",le="0.005"}"#) >= 100.0
    );
    let backend = format!(
        r#"codis_proxy_backend_requests_total{{product="codis-demo",addr="{}",role="master"}}"#,
        c.servers[0].addr()
    );
    assert!(value(&backend) >= 205.0, "the server got every SET");
    let slot = codis_core::slot_of(b"hot");
    let sampled = value(&format!(r#"codis_proxy_slot_requests_sampled_total{{product="codis-demo",slot="{slot}"}}"#));
    assert!((128.0..=256.0).contains(&sampled), "200 requests sampled one in 64: {sampled}");
    // every sample line is `name{labels} number`
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        assert!(series.starts_with("codis_proxy_") && series.ends_with('}'), "{l}");
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

/// `SLOWLOG` is answered by the proxy from its own log: requests over the threshold,
/// newest first, long arguments cut as Redis cuts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_of_the_proxy() {
    let c = Cluster::start_with(1, &[], |cfg| {
        cfg.slowlog_log_slower_than = 0; // every request
        cfg.slowlog_max_len = 3;
    })
    .await;
    let mut cl = c.client().await;
    assert_eq!(cl.cmd(&["CLIENT", "SETNAME", "reporter"]).await.unwrap(), Value::ok());
    let long = "x".repeat(100);
    assert_eq!(cl.cmd(&["SET", &long, "v", "EX", "100"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["GET", "k"]).await.unwrap(), Value::Nil);
    let Value::Array(entries) = cl.cmd(&["SLOWLOG", "GET", "2"]).await.unwrap() else { panic!("not a list") };
    assert_eq!(entries.len(), 2);
    let Value::Array(newest) = &entries[0] else { panic!("entry is not a list") };
    assert_eq!(newest.len(), 6, "id, time, microseconds, arguments, client, name: {newest:?}");
    assert_eq!(newest[3], Value::Array(vec![Value::bulk("GET"), Value::bulk("k")]));
    assert!(newest[4].as_str().unwrap().starts_with("127.0.0.1:"), "{:?}", newest[4]);
    assert_eq!(newest[5], Value::bulk("reporter"));
    let Value::Array(older) = &entries[1] else { panic!("entry is not a list") };
    let want = vec![
        Value::bulk("SET"),
        Value::bulk(&format!("{}... (60 more bytes)", "x".repeat(40))),
        Value::bulk("... (3 more arguments)"),
    ];
    assert_eq!(older[3], Value::Array(want));
    assert!(newest[0].as_int().unwrap() > older[0].as_int().unwrap(), "ids grow");
    assert_eq!(cl.cmd(&["SLOWLOG", "LEN"]).await.unwrap(), Value::Int(3), "kept to slowlog_max_len");
    assert_eq!(cl.cmd(&["SLOWLOG", "RESET"]).await.unwrap(), Value::ok());
    // the RESET itself is logged once it is answered
    assert_eq!(cl.cmd(&["SLOWLOG", "LEN"]).await.unwrap(), Value::Int(1));
    let e = cl.cmd(&["SLOWLOG", "GET", "x"]).await.unwrap();
    assert_eq!(e, Value::Error("ERR count should be greater than or equal to -1".into()));
    assert!(cl.cmd(&["SLOWLOG", "NOPE"]).await.unwrap().as_str().unwrap().contains("SLOWLOG HELP"));
}
