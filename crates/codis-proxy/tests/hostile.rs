//! Hostile clients against a codis-proxy process: 10,000 connections, slowloris
//! partial frames, 100 MB bulk headers with no body, deep pipelines that never read
//! their replies, HTTP requests to the RESP port. A well-behaved client must keep
//! getting answers quickly throughout, and the proxy's memory must stay bounded:
//! [`rss_bound`] = what it used before + 16 KiB per hostile connection + 64 MiB per
//! non-reading pipeline client. What such a client can make the proxy hold is its
//! requests in flight (at most `session_max_pipeline`, 10000 here, each with its reply
//! of 1 KiB) plus 4 MiB of replies waiting to be written: past either, the proxy
//! stops reading it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use codis_testkit::{Client, RedisServer, Value, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_codis-proxy");

/// Raises this process's open-files limit to its hard limit (the proxy inherits it)
/// and returns how many connections the test can open with room to spare.
fn raise_nofile(want: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    let room = (lim.rlim_cur as usize).saturating_sub(500);
    if room < want {
        println!("open-files limit {}: using {room} connections instead of {want}", lim.rlim_cur);
    }
    want.min(room)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct ProxyProcess {
    child: Child,
    addr: String,
    admin: String,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_proxy(redis: &RedisServer) -> ProxyProcess {
    let dir = redis.dir().to_path_buf();
    let (port, admin) = (free_port(), free_port());
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "proxy_addr = \"127.0.0.1:{port}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nproduct_name = \"hostile\"\n\
             proxy_max_clients = 20000\n"
        ),
    )
    .unwrap();
    let slots: Vec<_> = (0..1024).map(|i| serde_json::json!({"id": i, "backend_addr": redis.addr()})).collect();
    std::fs::write(dir.join("slots.json"), serde_json::to_string(&slots).unwrap()).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .arg("--fillslots")
        .arg(dir.join("slots.json"))
        .args(["--ncpu", "1", "--log"])
        .arg(dir.join("proxy.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = ProxyProcess { child, addr: format!("127.0.0.1:{port}"), admin: format!("127.0.0.1:{admin}") };
    let addr = p.addr.clone();
    wait_until("the proxy to serve", Duration::from_secs(20), || {
        let addr = addr.clone();
        async move {
            (Client::connect(&addr).await.ok()?.cmd(&["PING"]).await.ok()? == Value::Simple("PONG".into()))
                .then_some(())
        }
    })
    .await;
    p
}

async fn sessions(admin: &str) -> i64 {
    let v: serde_json::Value = reqwest::get(format!("http://{admin}/proxy/stats")).await.unwrap().json().await.unwrap();
    v["sessions"]["alive"].as_i64().unwrap_or(-1)
}

/// A client that does SET/GET round trips until told to stop; returns every round
/// trip's latency and the failures.
fn well_behaved(addr: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)> {
    tokio::spawn(async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let (mut lat, mut errors) = (Vec::new(), Vec::new());
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                let v = i.to_string();
                let set = c.cmd(&["SET", "good", &v]).await?;
                let get = c.cmd(&["GET", "good"]).await?;
                Ok::<_, std::io::Error>((set, get, v))
            })
            .await;
            match r {
                Ok(Ok((Value::Simple(_), Value::Bulk(b), v))) if b == v.as_bytes() => lat.push(t.elapsed()),
                other => errors.push(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (lat, errors)
    })
}

/// Opens `n` connections in batches (so the listen backlog never overflows), each
/// proven accepted by a PING round trip.
async fn open_idle(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(500);
        let opened = futures_util::future::join_all((0..batch).map(|_| async {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"PING\r\n").await.unwrap();
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"+PONG\r\n");
            s
        }))
        .await;
        conns.extend(opened);
    }
    conns
}

/// One wave of hostile clients; returns the proxy's RSS (KiB) at its peak, after
/// checking it against [`rss_bound`]. They all leave before it returns.
async fn wave(proxy: &ProxyProcess, total: usize, base: u64) -> u64 {
    let pid = proxy.child.id();
    // 10k connections: most idle, a fifth slowloris, a tenth 100 MB bulk headers
    let (n_slow, n_big) = (total / 5, total / 10);
    let mut conns = open_idle(&proxy.addr, total).await;
    println!("RSS with {total} idle connections: {} MiB", rss_kib(pid) / 1024);
    for s in conns.iter_mut().take(n_slow) {
        s.write_all(b"*3\r\n$3\r\nSET\r\n$5\r\nslo").await.unwrap();
    }
    for s in conns.iter_mut().skip(n_slow).take(n_big) {
        s.write_all(b"*2\r\n$3\r\nGET\r\n$104857600\r\nabc").await.unwrap();
    }
    // slowloris: a byte at a time, never finishing the frame
    for round in 0..3 {
        for s in conns.iter_mut().take(n_slow) {
            s.write_all(&[b'w' + round]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("RSS with slowloris and 100 MB headers too: {} MiB", rss_kib(pid) / 1024);
    let alive = sessions(&proxy.admin).await;
    assert!(alive as usize >= total, "every connection is a session: {alive}");

    // deep pipelines of GETs of a 1 KiB value that never read a reply: once a client
    // has session_max_pipeline requests in flight or 4 MiB of replies waiting, the proxy
    // stops reading it (backpressure), so its writes stall (after the socket buffers,
    // a few MiB, fill up) instead of the proxy buffering without end
    const CAP: usize = 2_000_000;
    let pipeliners: Vec<_> = (0..4)
        .map(|_| {
            let addr = proxy.addr.clone();
            tokio::spawn(async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                let chunk = "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(1000);
                let mut sent = 0usize;
                while sent < CAP {
                    match tokio::time::timeout(Duration::from_secs(2), s.write_all(chunk.as_bytes())).await {
                        Ok(Ok(())) => sent += 1000,
                        Ok(Err(e)) => panic!("the proxy dropped a client that does not read: {e}"),
                        Err(_) => break, // stalled: the proxy stopped reading
                    }
                }
                (s, sent)
            })
        })
        .collect();
    let mut stuck = Vec::new();
    for p in pipeliners {
        stuck.push(p.await.unwrap());
    }
    for (_, sent) in &stuck {
        assert!(*sent < CAP, "the proxy kept reading a client that never reads: {sent} requests");
    }

    // HTTP to the RESP port: the connection is closed
    for req in
        [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"]
    {
        let mut s = TcpStream::connect(&proxy.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut all = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        assert!(matches!(closed, Ok(Ok(_))), "the proxy closes an HTTP client: {closed:?}");
        assert!(String::from_utf8_lossy(&all).contains("HTTP requests are not accepted"), "{all:?}");
    }

    let peak = rss_kib(pid);
    let bound = rss_bound(base, total, stuck.len());
    println!(
        "{total} connections ({n_slow} slowloris, {n_big} 100 MB headers), {} unread pipelines of {:?} requests: RSS {} MiB before, {} MiB at peak (bound {} MiB)",
        stuck.len(),
        stuck.iter().map(|s| s.1).collect::<Vec<_>>(),
        base / 1024,
        peak / 1024,
        bound / 1024
    );
    assert!(peak <= bound, "proxy RSS {peak} KiB over the bound {bound} KiB");

    // they leave: every session closes
    drop(conns);
    drop(stuck);
    let admin = proxy.admin.clone();
    wait_until("the hostile sessions to close", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move { (sessions(&admin).await <= 2).then_some(()) }
    })
    .await;
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_neither_starve_others_nor_grow_memory() {
    let total = raise_nofile(10_000);
    let started = Instant::now();
    let redis = RedisServer::start(&[]);
    let proxy = start_proxy(&redis).await;
    let mut c = Client::connect(&proxy.addr).await.unwrap();
    assert_eq!(c.cmd(&["SET", "big", &"b".repeat(1024)]).await.unwrap(), Value::ok());
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(proxy.addr.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await; // a baseline of round trips
    let base = rss_kib(proxy.child.id());

    // two waves: the second must not need more memory than the first (nothing leaks
    // per connection or per request)
    let first = wave(&proxy, total, base).await;
    let second = wave(&proxy, total, base).await;
    println!("peak RSS: first wave {} MiB, second wave {} MiB", first / 1024, second / 1024);
    assert!(second <= first + first / 10 + 16 * 1024, "memory grew from wave to wave: {first} -> {second} KiB");

    // the well-behaved client never waited long and never failed
    stop.store(true, Ordering::Relaxed);
    let (mut lat, errors) = good.await.unwrap();
    assert!(errors.is_empty(), "the well-behaved client failed: {errors:?}");
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "well-behaved client: {} round trips, p50 {:?}, p99 {:?}, max {:?}; test took {:?}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        started.elapsed()
    );
    assert!(lat.len() > 50, "it kept going: {} round trips", lat.len());
    assert!(pct(0.99) < Duration::from_millis(200), "p99 {:?}", pct(0.99));
    assert!(matches!(c.cmd(&["GET", "good"]).await.unwrap(), Value::Bulk(_)), "the proxy still serves");
}

/// The memory the proxy may use, in KiB (see the module header).
fn rss_bound(base_kib: u64, connections: usize, pipelines: usize) -> u64 {
    base_kib + connections as u64 * 16 + pipelines as u64 * 64 * 1024
}
