//! codis-admin against real parts: redis-servers with the codis-slots module, a
//! dashboard and a proxy running in this process, and the `codis-admin` binary run as
//! a user would run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codis_core::models::Topom;
use codis_core::slot_of;
use codis_dashboard::{Config, Dashboard};
use codis_proxy::{Options, Proxy};
use codis_store::fs::FsCoordinator;
use codis_store::{Coordinator, Store};
use codis_testkit::{Client, RedisServer, Value, args, free_port, wait_until};
use serde_json::Value as Json;

// ---------------------------------------------------------------- harness

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "codis-admin-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// What one run of the binary gave.
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The output of a run that must succeed.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "codis-admin {:?} failed: {}{}", self.args, self.stderr, self.stdout);
        &self.stdout
    }

    /// The message of a run that must fail: exit code 1 and one line on stderr.
    fn err(&self) -> &str {
        assert_eq!(self.code, 1, "codis-admin {:?} should fail: {}{}", self.args, self.stdout, self.stderr);
        assert!(self.stderr.starts_with("codis-admin: "), "{:?}", self.stderr);
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line: {:?}", self.stderr);
        self.stderr.trim_end()
    }

    fn json(&self) -> Json {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("{:?} printed no JSON ({e}): {}", self.args, self.stdout))
    }
}

async fn admin<S: AsRef<str>>(args: &[S]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codis-admin"))
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run codis-admin");
    Run {
        args,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs codis-admin every 200 ms until `check` accepts its output, or fails after `timeout`.
async fn admin_until<S: AsRef<str>>(args: &[S], what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let r = admin(args).await;
        let out = r.ok().to_string();
        if check(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; last output:\n{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whitespace-separated cells of the first line that has `needle` as a cell (or,
/// for a needle with spaces, contains it).
fn row(out: &str, needle: &str) -> Vec<String> {
    let has =
        |l: &str| if needle.contains(' ') { l.contains(needle) } else { l.split_whitespace().any(|c| c == needle) };
    out.lines()
        .find(|l| has(l))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

struct Cluster {
    root: TempDir,
    dashboard: Dashboard,
    proxy: Proxy,
    servers: Vec<RedisServer>,
    config: Config,
}

impl Cluster {
    /// A dashboard and a proxy of product `name` (with `auth` as product_auth), and `n`
    /// redis-servers with the module; no groups, no proxy registered.
    async fn start(name: &str, n: usize, auth: &str) -> Cluster {
        let root = temp_dir(name);
        let config = Config {
            coordinator_addr: root.0.display().to_string(),
            admin_addr: "127.0.0.1:0".into(),
            product_name: name.to_string(),
            product_auth: auth.to_string(),
            ..Config::default()
        };
        let dashboard = Dashboard::start(config.clone()).await.unwrap();
        let proxy = Proxy::bind(
            codis_proxy::Config {
                proxy_addr: "127.0.0.1:0".into(),
                admin_addr: "127.0.0.1:0".into(),
                product_name: name.to_string(),
                product_auth: auth.to_string(),
                ..Default::default()
            },
            Options { workers: 1, log_control: None },
        )
        .await
        .unwrap();
        let extra: Vec<&str> = if auth.is_empty() { vec![] } else { vec!["--requirepass", auth] };
        let servers = (0..n).map(|_| RedisServer::start_with_module(&extra)).collect();
        Cluster { root, dashboard, proxy, servers, config }
    }

    fn d(&self) -> String {
        format!("--dashboard={}", self.dashboard.admin_addr)
    }

    fn fs(&self) -> String {
        format!("--filesystem={}", self.root.0.display())
    }

    fn addr(&self, i: usize) -> String {
        self.servers[i].addr()
    }

    fn proxy_admin(&self) -> String {
        self.proxy.model().admin_addr.clone()
    }

    /// Group i+1 with server i, through codis-admin.
    async fn add_group(&self, i: usize, auth: &[&str]) {
        let gid = (i + 1).to_string();
        let out = admin(&[&[self.d().as_str(), "--create-group", "-g", &gid][..], auth].concat()).await;
        assert_eq!(out.ok(), format!("created group-{gid}\n"));
        let out =
            admin(&[&[self.d().as_str(), "--group-add", "-g", &gid, "-x", &self.addr(i)][..], auth].concat()).await;
        assert_eq!(out.ok(), format!("added {} to group-{gid}\n", self.addr(i)));
    }

    async fn wait_migrations(&self) {
        let topom = self.dashboard.topom.clone();
        wait_until("migrations to finish", Duration::from_secs(120), || {
            let topom = topom.clone();
            async move { topom.cache().await.slots.iter().all(|m| m.action.state.is_empty()).then_some(()) }
        })
        .await;
    }

    async fn groups_of_slots(&self) -> Vec<i64> {
        self.dashboard.topom.cache().await.slots.iter().map(|m| m.group_id).collect()
    }
}

async fn dbsize(addr: &str, auth: &str) -> i64 {
    let mut c = Client::connect(addr).await.unwrap();
    if !auth.is_empty() {
        c.cmd(&["AUTH", auth]).await.unwrap();
    }
    c.cmd(&["DBSIZE"]).await.unwrap().as_int().unwrap()
}

// ---------------------------------------------------------------- tests

/// Builds a cluster, assigns, migrates and rebalances slots with codis-admin alone, and
/// checks the status commands show the cluster as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drive_a_cluster() {
    let c = Cluster::start("drive", 3, "").await;
    let d = c.d();
    c.add_group(0, &[]).await;
    c.add_group(1, &[]).await;
    let proxy_admin = c.proxy_admin();
    let out = admin(&[&d, "--create-proxy", &format!("--addr={proxy_admin}")]).await;
    assert!(out.ok().contains(&format!("registered the proxy at {proxy_admin}")), "{}", out.stdout);
    let token = c.proxy.model().token.clone();
    let list = admin(&[&d, "--list-proxy"]).await;
    let r = row(list.ok(), &token);
    assert_eq!(r[..4], ["1".to_string(), token.clone(), proxy_admin.clone(), c.proxy.model().proxy_addr.clone()]);

    // Without --confirm, slots-assign shows the plan and changes nothing.
    let assign = [d.as_str(), "--slots-assign", "--beg=0", "--end=1023", "--gid=1"];
    let preview = admin(&assign).await;
    assert!(preview.err().contains("nothing changed: add --confirm"), "{}", preview.stderr);
    assert!(preview.stdout.contains("would assign 1024 slots to group-1"), "{}", preview.stdout);
    assert_eq!(row(&preview.stdout, "0000-1023"), ["0000-1023", "1024", "offline", "1"]);
    assert!(c.groups_of_slots().await.iter().all(|&g| g == 0));
    let out = admin(&[&assign[..], &["--confirm"]].concat()).await;
    assert_eq!(out.ok(), "assigned slots 0000-1023 to group-1\n");
    assert!(c.groups_of_slots().await.iter().all(|&g| g == 1));

    // Data through the proxy.
    let mut cl = Client::connect(&c.proxy.model().proxy_addr).await.unwrap();
    let cmds: Vec<_> = (0..3000).map(|i| args!["SET", format!("key:{i}"), format!("v{i}")]).collect();
    for r in cl.pipeline(&cmds).await.unwrap() {
        assert_eq!(r, Value::ok());
    }
    let in_low_half = (0..3000).filter(|i| slot_of(format!("key:{i}").as_bytes()) < 512).count();

    // Queue a migration while paused: the status shows it pending.
    assert_eq!(
        admin(&[&d, "--slot-action", "--disabled=1"]).await.ok(),
        "migrations paused (--slot-action --disabled=0 resumes them)\n"
    );
    let out = admin(&[&d, "--slot-action", "--create-range", "--beg=0", "--end=511", "-g", "2"]).await;
    assert_eq!(
        out.ok(),
        "512 slots of 0000-0511 are queued to move to group-2, 0 are there already (see --slots-status)\n"
    );
    let status = admin(&[&d, "--slots-status"]).await;
    let status = status.ok();
    assert_eq!(row(status, "0000-0511"), ["0000-0511", "512", "1", &c.addr(0), "pending", "to", "group", "2"]);
    assert_eq!(row(status, "0512-1023"), ["0512-1023", "512", "1", &c.addr(0), "-"]);
    assert!(status.contains("migrations: 512 pending, 0 in progress; PAUSED"), "{status}");

    // Resume and wait; the status then shows the new owners and what moved.
    assert_eq!(admin(&[&d, "--slot-action", "--disabled=0"]).await.ok(), "migrations resumed\n");
    c.wait_migrations().await;
    let status = admin(&[&d, "--slots-status"]).await;
    let status = status.ok();
    assert_eq!(row(status, "0000-0511"), ["0000-0511", "512", "2", &c.addr(1), "-"]);
    assert_eq!(row(status, "0512-1023"), ["0512-1023", "512", "1", &c.addr(0), "-"]);
    assert!(status.contains("slots: 1024 in 2 groups, 0 offline"), "{status}");
    assert!(
        status.contains(&format!("recently finished: 512 slots, {in_low_half} keys moved")),
        "expected {in_low_half} keys moved in:\n{status}"
    );
    // --json is Codis's routing list.
    let routing = admin(&[&d, "--slots-status", "--json"]).await.json();
    assert_eq!(routing.as_array().unwrap().len(), 1024);
    assert_eq!(routing[0]["backend_addr"], c.addr(1).as_str());
    assert_eq!(routing[1023]["backend_addr"], c.addr(0).as_str());

    // Group status: roles, modes, slot counts and key counts from INFO (refreshed each second).
    let (n0, n1) = (dbsize(&c.addr(0), "").await, dbsize(&c.addr(1), "").await);
    assert_eq!((n0 + n1) as usize, 3000);
    let (a0, a1) = (c.addr(0), c.addr(1));
    let status = admin_until(&[&d, "--group-status"], "key counts in --group-status", Duration::from_secs(20), |out| {
        let keys = |addr: &str| row(out, addr).get(5).cloned();
        keys(&a0) == Some(n0.to_string()) && keys(&a1) == Some(n1.to_string())
    })
    .await;
    let r = row(&status, &c.addr(0));
    assert_eq!(r[..6], ["1", &c.addr(0), "master", "codis-slots", "512", &n0.to_string()]);
    assert_eq!(r.last().unwrap(), "ok");
    let groups = admin(&[&d, "--group-status", "--json"]).await.json();
    assert_eq!(groups["models"].as_array().unwrap().len(), 2);
    assert_eq!(groups["modes"][c.addr(1)], "codis-slots");
    let list = admin(&[&d, "--list-group"]).await;
    assert_eq!(row(list.ok(), &format!("{} (master)", c.addr(1))), ["2", "512", &c.addr(1), "(master)"]);

    // A third group (an --auth the product does not need is accepted, as by a Codis
    // dashboard), then rebalance: a preview first, then the real thing.
    c.add_group(2, &["-a", "unneeded"]).await;
    let preview = admin(&[&d, "--rebalance"]).await;
    assert!(preview.err().contains("add --confirm to start these migrations"));
    assert!(preview.stdout.starts_with("would queue 341 slot migrations:"), "{}", preview.stdout);
    assert!(preview.stdout.lines().skip(2).all(|l| l.split_whitespace().nth(3) == Some("3")), "{}", preview.stdout);
    assert!(c.dashboard.topom.cache().await.slots.iter().all(|m| m.action.state.is_empty()));
    let out = admin(&[&d, "--rebalance", "--confirm"]).await;
    assert!(out.ok().starts_with("queued 341 slot migrations:"), "{}", out.stdout);
    c.wait_migrations().await;
    let owners = c.groups_of_slots().await;
    for gid in 1..=3 {
        let n = owners.iter().filter(|&&g| g == gid).count();
        assert!((341..=342).contains(&n), "group {gid} has {n} slots");
    }
    let again = admin(&[&d, "--rebalance"]).await;
    assert_eq!(again.ok(), "the slots are balanced already; nothing to move\n");
    let status = admin(&[&d, "--group-status"]).await;
    for (i, gid) in [(0, 1i64), (1, 2), (2, 3)] {
        let n = owners.iter().filter(|&&g| g == gid).count().to_string();
        assert_eq!(row(status.ok(), &c.addr(i))[4], n, "{}", status.stdout);
    }

    // Proxy status: online, and the ops the dashboard saw.
    let status =
        admin_until(&[&d, "--proxy-status"], "the proxy's ops in --proxy-status", Duration::from_secs(20), |out| {
            row(out, &token).get(6).and_then(|n| n.parse::<i64>().ok()) >= Some(3000)
        })
        .await;
    let r = row(&status, &token);
    assert_eq!(r[..5], ["1", &token, &proxy_admin, &c.proxy.model().proxy_addr, "online"]);
    assert!(r[5].parse::<i64>().unwrap() >= 1, "sessions: {status}");
    let proxies = admin(&[&d, "--proxy-status", "--json"]).await.json();
    assert_eq!(proxies["stats"][&token]["stats"]["online"], true);

    // Overview and its parts.
    let o = admin(&[&d]).await;
    assert!(o.ok().contains("product      drive\n"), "{}", o.stdout);
    assert!(
        o.stdout.contains("groups       3 (3 servers)") && o.stdout.contains("proxies      1 (1 online)"),
        "{}",
        o.stdout
    );
    let config = admin(&[&d, "config", "--json"]).await.json();
    assert_eq!(config["product_name"], "drive");
    assert!(config.get("product_auth").is_none());
    let model = admin(&[&d, "model"]).await;
    assert_eq!(row(model.ok(), "admin_addr"), ["admin_addr", &c.dashboard.admin_addr]);
    let stats = admin(&[&d, "stats", "--json"]).await.json();
    assert_eq!(stats["slots"].as_array().unwrap().len(), 1024);

    // The proxy's own view.
    let p = format!("--proxy={proxy_admin}");
    let o = admin(&[&p]).await;
    assert!(
        o.ok().contains("state      online")
            && o.stdout.contains("slots      1024 with a backend, 0 migrating, 0 locked"),
        "{}",
        o.stdout
    );
    let slots = admin(&[&p, "slots"]).await;
    let backends: usize = c.servers.iter().map(|s| slots.ok().lines().filter(|l| l.contains(&s.addr())).count()).sum();
    assert!(backends >= 3, "{}", slots.stdout);
    let stats = admin(&[&p, "stats", "--json"]).await.json();
    assert!(stats["ops"]["total"].as_i64().unwrap() >= 3000);
    assert_eq!(admin(&[&p, "--reset-stats"]).await.ok(), format!("reset the counters of the proxy at {proxy_admin}\n"));
    assert_eq!(admin(&[&p, "stats", "--json"]).await.json()["ops"]["total"], 0);
    assert_eq!(admin(&[&p, "--forcegc"]).await.ok(), format!("sent forcegc to the proxy at {proxy_admin}\n"));
    assert_eq!(admin(&[&p, "--start", "--json"]).await.json(), "OK");

    // Reinit by id, and every key is where the clients expect it.
    let out = admin(&[&d, "--reinit-proxy", "--pid=1"]).await;
    assert_eq!(out.ok(), format!("reinitialised proxy-1 {token} (admin {proxy_admin})\n"));
    for i in (0..3000).step_by(7) {
        assert_eq!(cl.cmd(&["GET", &format!("key:{i}")]).await.unwrap(), Value::bulk(&format!("v{i}")));
    }
}

/// Failures: one line on stderr naming what failed and what to do, exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_clear_line() {
    let c = Cluster::start("errors", 1, "s3cret").await;
    let d = c.d();
    let s = c.addr(0);

    // A product with a password: changes need --auth, reads do not.
    let e = admin(&[&d, "--create-group", "--gid=1"]).await;
    let e = e.err();
    assert!(
        e.contains(&format!(
            "the dashboard at {} refused to accept credentials for product \"errors\"",
            c.dashboard.admin_addr
        )),
        "{e}"
    );
    assert!(e.contains("invalid xauth") && e.contains("--auth"), "{e}");
    assert!(admin(&[&d, "--create-group", "--gid=1", "--auth=wrong"]).await.err().contains("invalid xauth"));
    assert_eq!(admin(&[&d, "-a", "s3cret", "--create-group", "--gid=1"]).await.ok(), "created group-1\n");
    assert_eq!(admin(&[&d, "--list-group"]).await.ok(), "GROUP  SLOTS  SERVERS\n1          0  -\n");

    // Errors from the dashboard come through as it said them.
    let a = ["-a", "s3cret"];
    let e = admin(&[&[d.as_str(), "--group-add", "--gid=9", "-x", &s][..], &a].concat()).await;
    assert!(e.err().contains(&format!("refused to add {s} to group-9: group-[9] doesn't exist")), "{}", e.stderr);
    admin(&[&[d.as_str(), "--group-add", "--gid=1", "-x", &s][..], &a].concat()).await.ok();
    let e = admin(&[&[d.as_str(), "--slot-action", "--create", "--sid=3", "--gid=7"][..], &a].concat()).await;
    assert!(e.err().contains("group-[7] doesn't exist"), "{}", e.stderr);
    let e = admin(&[&[d.as_str(), "--remove-group", "--gid=1"][..], &a].concat()).await;
    assert!(e.err().contains("refused to remove group-1: group-[1] isn't empty"), "{}", e.stderr);

    // Promoting the master already in place is refused with the dashboard's reason;
    // a sync action is queued.
    let e = admin(&[&[d.as_str(), "--promote-server", "--gid=1", "-x", s.as_str()][..], &a].concat()).await;
    let e = e.err();
    assert!(e.contains(&format!("refused to promote {s} in group-1")) && e.contains("master"), "{e}");
    admin(&[&[d.as_str(), "--sync-action", "--create", "-x", s.as_str()][..], &a].concat()).await.ok();

    // A sentinel that cannot be reached is refused with the dashboard's reason.
    let e = admin(&[&[d.as_str(), "--sentinel-add", "-x", "127.0.0.1:1"][..], &a].concat()).await;
    let e = e.err();
    assert!(e.contains("refused to add sentinel 127.0.0.1:1") && e.contains("cannot be reached"), "{e}");

    // Checks made before calling anything.
    let e =
        admin(&[&[d.as_str(), "--slots-assign", "--beg=5", "--end=2", "--gid=1", "--confirm"][..], &a].concat()).await;
    assert_eq!(e.err(), "codis-admin: --beg=5 is after --end=2: the range is empty");
    let e = admin(&[d.as_str(), "--slot-action"]).await;
    assert!(e.err().contains("--slot-action needs exactly one of --create"), "{}", e.stderr);
    let e = admin(&[d.as_str(), "--log-level=loud"]).await;
    assert!(e.err().contains("--log-level=loud: use none, error, warn, info or debug"));
    let e = admin(&[d.as_str(), "--remove-proxy", "--addr=127.0.0.1:1"]).await;
    assert!(e.err().contains("has no proxy with address 127.0.0.1:1"), "{}", e.stderr);
    let e = admin(&[d.as_str(), "--group-add", "--gid=1"]).await;
    assert_eq!(e.err(), "codis-admin: --group-add needs --addr=ADDR (the redis server)");

    // Nobody there.
    let nobody = format!("127.0.0.1:{}", free_port());
    let e = admin(&[format!("--dashboard={nobody}").as_str(), "--list-group"]).await;
    let e = e.err();
    assert!(e.contains(&format!("cannot reach the dashboard at {nobody}: Connection refused")), "{e}");
    let e = admin(&[format!("--proxy={nobody}").as_str(), "--start"]).await;
    assert!(e.err().contains(&format!("cannot reach the proxy at {nobody}")));
    // A proxy address given as a dashboard.
    let e = admin(&[format!("--dashboard={}", c.proxy_admin()).as_str(), "--list-group"]).await;
    assert!(e.err().contains("HTTP 404") && e.stderr.contains("Codis 3.2 dashboard admin address"), "{}", e.stderr);

    // The proxy: its actions need the product password too.
    let p = format!("--proxy={}", c.proxy_admin());
    let e = admin(&[&p, "--start"]).await;
    assert!(e.err().contains("invalid xauth") && e.stderr.contains("--auth"), "{}", e.stderr);
    let slots_file = c.root.0.join("slots.json");
    std::fs::write(&slots_file, format!(r#"[{{"id":0,"backend_addr":"{s}"}},{{"id":1,"backend_addr":"{s}"}}]"#))
        .unwrap();
    let fill = format!("--fillslots={}", slots_file.display());
    let out = admin(&[&p, "-a", "s3cret", &fill, "--locked"]).await;
    assert!(
        out.ok().starts_with(&format!("filled 2 slots of the proxy at {} (locked", c.proxy_admin())),
        "{}",
        out.stdout
    );
    let slots = admin(&[&p, "slots", "--json"]).await.json();
    assert_eq!(slots[1]["locked"], true);
    let e = admin(&[&p, "-a", "s3cret", "--log-level=debug"]).await;
    assert!(
        e.err().contains("refused to set the log level: log level cannot be changed in this process"),
        "{}",
        e.stderr
    );
    std::fs::write(&slots_file, r#"[{"id":4096}]"#).unwrap();
    let e = admin(&[&p, "-a", "s3cret", &fill]).await;
    assert!(e.err().contains("slot id 4096 is out of range"), "{}", e.stderr);

    // Codis 2.x conversions are refused by name.
    let e = admin(&["--config-dump", "--product=errors", &c.fs(), "-1"]).await;
    assert!(e.err().contains("-1 reads Codis 2.x's layout, which codis-rs does not support"));
    let e = admin(&["--config-convert=/nonexistent"]).await;
    assert!(e.err().contains("does not support"));
    // A coordinator that is not there (more in tests/coordinators.rs).
    let nobody = format!("127.0.0.1:{}", free_port());
    let e = admin(&["--dashboard-list", &format!("--zookeeper={nobody}")]).await;
    assert!(e.err().contains(&format!("cannot open the zookeeper coordinator at {nobody}")), "{}", e.stderr);

    // Misuse of flags is clap's usage error (exit code 2).
    let e = admin(&[d.as_str(), "--start"]).await;
    assert_eq!(e.code, 2);
    assert!(e.stderr.contains("cannot be used with"), "{}", e.stderr);

    // A proxy shut down through codis-admin goes away.
    assert_eq!(
        admin(&[&p, "-a", "s3cret", "--shutdown"]).await.ok(),
        format!("the proxy at {} is shutting down\n", c.proxy_admin())
    );
    tokio::time::timeout(Duration::from_secs(10), c.proxy.closed()).await.expect("the proxy closes");
}

/// Coordinator commands: dashboard-list, config dump and restore into a new product,
/// and removing a stale lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_commands() {
    let c = Cluster::start("src", 2, "").await;
    let d = c.d();
    let fs = c.fs();
    c.add_group(0, &[]).await;
    c.add_group(1, &[]).await;
    admin(&[&d, "--create-proxy", &format!("-x{}", c.proxy_admin())]).await.ok();
    admin(&[&d, "--slots-assign", "--beg=0", "--end=499", "--gid=1", "--confirm"]).await.ok();
    admin(&[&d, "--slots-assign", "--beg=500", "--end=1000", "--gid=2", "--confirm"]).await.ok();

    let list = admin(&["--dashboard-list", &fs]).await.json();
    assert_eq!(list, serde_json::json!([{"name": "src", "dashboard": c.dashboard.admin_addr}]));

    // Dump: Codis's ConfigV3, without the offline slots.
    let dump = admin(&["--config-dump", "--product=src", &fs]).await;
    let v = dump.json();
    assert_eq!(v["slots"].as_array().unwrap().len(), 1001);
    assert_eq!(v["group"].as_array().unwrap().len(), 2);
    assert_eq!(v["proxy"][0]["token"], c.proxy.model().token.as_str());
    assert!(dump.stdout.starts_with("{\n    \"slots\": [\n        {\n            \"id\": 0,"), "{}", dump.stdout);
    let e = admin(&["--config-dump", "--product=nothing", &fs]).await;
    assert!(e.err().contains("product nothing has no groups or proxies"), "{}", e.stderr);

    // Restore into a new product: a preview, then the real thing.
    let file = c.root.0.join("src.json");
    std::fs::write(&file, &dump.stdout).unwrap();
    let restore = [format!("--config-restore={}", file.display()), "--product=dst".into(), fs.clone()];
    let preview = admin(&restore).await;
    assert!(preview.err().contains("nothing changed: add --confirm to restore"));
    assert!(
        preview.stdout.contains("would restore into product dst")
            && preview.stdout.contains("1001 assigned slots, 2 groups, 0 proxies"),
        "{}",
        preview.stdout
    );
    assert!(preview.stdout.contains("would skip proxy-1"), "{}", preview.stdout);
    let client: Arc<dyn Coordinator> = Arc::new(FsCoordinator::open(c.root.0.to_str().unwrap()).unwrap());
    let src = Store::new(client.clone(), "src");
    let dst = Store::new(client.clone(), "dst");
    assert!(dst.groups().await.unwrap().is_empty());
    let out = admin(&[&restore[..], &["--confirm".to_string()]].concat()).await;
    assert!(
        out.ok().starts_with("restored 1001 assigned slots, 2 groups and 0 proxies into product dst\n"),
        "{}",
        out.stdout
    );
    assert_eq!(dst.groups().await.unwrap(), src.groups().await.unwrap());
    assert_eq!(dst.slot_mappings().await.unwrap(), src.slot_mappings().await.unwrap());
    assert!(dst.proxies().await.unwrap().is_empty());
    let e = admin(&[&restore[..], &["--confirm".to_string()]].concat()).await;
    assert!(e.err().contains("product dst is not empty (2 groups, 0 proxies)"), "{}", e.stderr);

    // A dashboard on the restored product serves the same slots.
    let d2 = Dashboard::start(Config { product_name: "dst".into(), ..c.config.clone() }).await.unwrap();
    let s1 = admin(&[&d, "--slots-status"]).await;
    let s2 = admin(&[format!("--dashboard={}", d2.admin_addr).as_str(), "--slots-status"]).await;
    let table = |s: &str| s.split("\n\n").next().unwrap().to_string();
    assert_eq!(table(s2.ok()), table(s1.ok()));
    assert!(s2.stdout.contains("1001 in 2 groups, 23 offline"), "{}", s2.stdout);
    let list = admin(&["--dashboard-list", &fs]).await.json();
    assert_eq!(
        list,
        serde_json::json!([{"name": "dst", "dashboard": d2.admin_addr}, {"name": "src", "dashboard": c.dashboard.admin_addr}])
    );
    // Restoring under a running dashboard is refused.
    let e = admin(&[&restore[..], &["--confirm".to_string()]].concat()).await;
    assert!(e.err().contains(&format!("the dashboard at {} holds product dst", d2.admin_addr)), "{}", e.stderr);

    // remove-lock: refused while the holder answers, done for a stale lock.
    let e = admin(&["--remove-lock", "--product=dst", &fs]).await;
    assert!(e.err().contains("still holds product dst and answers") && e.stderr.contains("--force"), "{}", e.stderr);
    d2.topom.close().await.unwrap();
    let gone = format!("127.0.0.1:{}", free_port());
    let stale = Topom {
        admin_addr: gone.clone(),
        product_name: "dst".into(),
        pid: 4242,
        token: "t".into(),
        ..Default::default()
    };
    dst.acquire(&stale).await.unwrap();
    let e = Dashboard::start(Config { product_name: "dst".into(), ..c.config.clone() }).await.err().unwrap();
    assert!(e.to_string().contains(&gone), "{e}");
    let out = admin(&["--remove-lock", "--product=dst", &fs]).await;
    assert!(
        out.ok().starts_with(&format!("removed the lock of product dst, held by the dashboard at {gone} (pid 4242")),
        "{}",
        out.stdout
    );
    assert!(dst.topom().await.unwrap().is_none());
    assert_eq!(
        admin(&["--remove-lock", "--product=dst", &fs]).await.ok(),
        "product dst has no dashboard lock; nothing to remove\n"
    );
    // A dashboard shut down through codis-admin releases its lock.
    let d3 = Dashboard::start(Config { product_name: "dst".into(), ..c.config.clone() }).await.unwrap();
    let out = admin(&[format!("--dashboard={}", d3.admin_addr).as_str(), "--shutdown"]).await;
    assert_eq!(
        out.ok(),
        format!("the dashboard at {} is shutting down (its product lock is released)\n", d3.admin_addr)
    );
    wait_until("the lock of product dst to go", Duration::from_secs(10), || {
        let dst = dst.clone();
        async move { dst.topom().await.unwrap().is_none().then_some(()) }
    })
    .await;
    // --force removes even a live dashboard's lock.
    let out = admin(&["--remove-lock", "--product=src", &fs, "--force"]).await;
    assert!(out.ok().contains(&c.dashboard.admin_addr), "{}", out.stdout);
    assert!(src.topom().await.unwrap().is_none());
    let e = admin(&["--remove-lock", "--product=bad/name", &fs]).await;
    assert!(e.err().contains("invalid product name"), "{}", e.stderr);
    check_dump_file(&file);
}

/// The dump file is what Codis's own codis-admin writes: Go's layout, no offline slots.
fn check_dump_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let v: BTreeMap<String, Json> = serde_json::from_str(&text).unwrap();
    assert_eq!(v.keys().collect::<Vec<_>>(), ["group", "proxy", "slots"]);
    assert!(v["slots"].as_array().unwrap().iter().all(|m| m["group_id"] != 0));
}

/// The other dashboard actions: proxies online/removed, single and "some" slot
/// actions, replica reads, group membership, reload and log level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_dashboard_actions() {
    let mut c = Cluster::start("more", 2, "").await;
    let replica = RedisServer::start_with_module(&["--replicaof", "127.0.0.1", &c.servers[0].port.to_string()]);
    let d = c.d();
    c.add_group(0, &[]).await;
    c.add_group(1, &[]).await;
    let out = admin(&[&d, "--group-add", "--gid=1", "-x", &replica.addr(), "--datacenter=dc2"]).await;
    assert_eq!(out.ok(), format!("added {} to group-1\n", replica.addr()));
    let proxy_admin = c.proxy_admin();
    admin(&[&d, "--create-proxy", "-x", &proxy_admin]).await.ok();
    let out = admin(&[&d, "--online-proxy", "-x", &proxy_admin]).await;
    assert_eq!(out.ok(), format!("the proxy at {proxy_admin} is registered and online\n"));
    assert_eq!(c.dashboard.topom.cache().await.proxies.len(), 1);
    admin(&[&d, "--slots-assign", "--beg=0", "--end=1023", "-g", "1", "--confirm"]).await.ok();

    // One slot queued and cancelled while paused, then some slots moved.
    admin(&[&d, "--slot-action", "--disabled=1"]).await.ok();
    let out = admin(&[&d, "--slot-action", "--create", "--sid=5", "--gid=2"]).await;
    assert_eq!(out.ok(), "queued the migration of slot 0005 to group-2 (see --slots-status)\n");
    let status = admin(&[&d, "--slots-status"]).await;
    assert_eq!(row(status.ok(), "0005"), ["0005", "1", "1", &c.addr(0), "pending", "to", "group", "2"]);
    let out = admin(&[&d, "--slot-action", "--remove", "--sid=5"]).await;
    assert_eq!(out.ok(), "cancelled the pending migration of slot 0005\n");
    let e = admin(&[&d, "--slot-action", "--remove", "--sid=5"]).await;
    assert!(e.err().contains("slot-[5] action doesn't exist"), "{}", e.stderr);
    let out = admin(&[&d, "--slot-action", "--create-some", "--gid-from=1", "--gid-to=2", "--num-slots=10"]).await;
    assert_eq!(out.ok(), "queued 10 slots of group-1 to move to group-2 (see --slots-status)\n");
    let e = admin(&[&d, "--slot-action", "--interval=2000000"]).await;
    assert_eq!(e.err(), "codis-admin: --interval=2000000: use 0..1000000 microseconds");
    admin(&[&d, "--slot-action", "--disabled=0"]).await.ok();
    c.wait_migrations().await;
    let owners = c.groups_of_slots().await;
    assert_eq!(owners.iter().filter(|&&g| g == 2).count(), 10);

    // Replica reads: enabled, pushed to the proxy with a resync.
    let status = admin_until(&[&d, "--group-status"], "the replica's link", Duration::from_secs(20), |out| {
        out.contains("ok, link up; dc dc2")
    })
    .await;
    let r = row(&status, &replica.addr());
    assert_eq!(r[..4], ["1", &replica.addr(), "replica", "codis-slots"]);
    let out = admin(&[&d, "--replica-groups", "--gid=1", "-x", &replica.addr(), "--enable"]).await;
    assert!(out.ok().starts_with(&format!("enabled reads from {} in group-1", replica.addr())));
    let status = admin(&[&d, "--group-status"]).await;
    assert!(
        status.ok().contains("serves reads") && status.stdout.contains("run --resync-group --gid=1"),
        "{}",
        status.stdout
    );
    assert_eq!(admin(&[&d, "--resync-group", "--gid=1"]).await.ok(), "pushed the routing of group-1 to every proxy\n");
    assert!(!admin(&[&d, "--group-status"]).await.ok().contains("--resync-group"));
    let slots = admin(&[format!("--proxy={proxy_admin}").as_str(), "slots"]).await;
    assert_eq!(row(slots.ok(), "0010-1023")[5], replica.addr(), "{}", slots.stdout);
    let e = admin(&[&d, "--replica-groups", "--gid=1", "-x", &replica.addr()]).await;
    assert_eq!(e.err(), "codis-admin: --replica-groups needs --enable or --disable");
    assert_eq!(
        admin(&[&d, "--resync-group", "--all"]).await.ok(),
        "pushed the routing of every group to every proxy\n"
    );

    // Membership, reload, log level.
    let out = admin(&[&d, "--group-del", "--gid=1", "-x", &replica.addr()]).await;
    assert_eq!(out.ok(), format!("removed {} from group-1\n", replica.addr()));
    let e = admin(&[&d, "--group-del", "--gid=1", "-x", &c.addr(0)]).await;
    assert!(e.err().contains("can't remove master, still in use"), "{}", e.stderr);
    assert_eq!(
        admin(&[&d, "--reload"]).await.ok(),
        format!("the dashboard at {} reloaded its state from the coordinator\n", c.dashboard.admin_addr)
    );
    let e = admin(&[&d, "--log-level=info"]).await;
    assert!(e.err().contains("refused to set the log level"), "{}", e.stderr);

    // Removing the proxy shuts it down.
    let out = admin(&[&d, "--remove-proxy", "-x", &proxy_admin]).await;
    assert_eq!(out.ok(), format!("removed proxy-1 {} (admin {proxy_admin})\n", c.proxy.model().token));
    tokio::time::timeout(Duration::from_secs(10), c.proxy.closed()).await.expect("the proxy closes");
    assert_eq!(
        admin(&[&d, "--list-proxy"]).await.ok(),
        "no proxies (register one with --create-proxy --addr=ADMIN_ADDR)\n"
    );
    let out = admin(&[&d, "--remove-proxy", "-x", &proxy_admin, "--force"]).await;
    assert_eq!(out.ok(), format!("no proxy with address {proxy_admin}; nothing to do\n"));
    c.servers.push(replica);
}
