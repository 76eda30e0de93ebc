//! codis-admin's coordinator commands on etcd and ZooKeeper: `--dashboard-list` (what
//! codis-fe reads), `--remove-lock` and `--config-dump`, and one-line errors for a wrong
//! address or wrong credentials.

use codis_dashboard::{Config, Dashboard};
use codis_testkit::{Backend, Coordinator, free_port};
use serde_json::{Value as Json, json};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn admin(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codis-admin"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run codis-admin");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{}{}", self.stderr, self.stdout);
        &self.stdout
    }

    /// One line on standard error, exit status 1.
    fn err(&self) -> &str {
        assert_eq!(self.code, 1, "{}{}", self.stdout, self.stderr);
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line: {:?}", self.stderr);
        self.stderr.trim_end()
    }
}

async fn dashboard(coord: &Coordinator, product: &str, auth: &str) -> Dashboard {
    Dashboard::start(Config {
        coordinator_name: coord.name().into(),
        coordinator_addr: coord.addr().into(),
        coordinator_auth: auth.into(),
        admin_addr: "127.0.0.1:0".into(),
        product_name: product.into(),
        coordinator_lease: "3s".parse().unwrap(),
        ..Config::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_commands_on_etcd_and_zookeeper() {
    for backend in [Backend::Etcd, Backend::Zookeeper] {
        let coord = Coordinator::start(backend);
        let flag = coord.flag();
        let (a, b) = (dashboard(&coord, "alpha", "").await, dashboard(&coord, "beta", "").await);
        let list: Json = serde_json::from_str(admin(&["--dashboard-list", &flag]).await.ok()).unwrap();
        assert_eq!(
            list,
            json!([{"name": "alpha", "dashboard": a.admin_addr}, {"name": "beta", "dashboard": b.admin_addr}]),
            "{}",
            backend.name()
        );
        let dump = admin(&["--config-dump", "--product=alpha", &flag]).await;
        assert!(dump.err().contains("product alpha has no groups or proxies"), "{}", dump.stderr);
        let e = admin(&["--remove-lock", "--product=alpha", &flag]).await;
        assert!(e.err().contains("still holds product alpha and answers"), "{}", e.stderr);
        // A dashboard that stops lets its lock go; the list shows no dashboard for it (an
        // empty product is not listed at all on etcd, which has no directories).
        b.topom.close().await.unwrap();
        let list: Json = serde_json::from_str(admin(&["--dashboard-list", &flag]).await.ok()).unwrap();
        let beta = list.as_array().unwrap().iter().find(|e| e["name"] == "beta");
        assert!(beta.is_none_or(|e| e["dashboard"] == ""), "{}: {list}", backend.name());
        assert_eq!(list[0], json!({"name": "alpha", "dashboard": a.admin_addr}), "{}", backend.name());
        a.topom.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_coordinators_and_credentials_are_one_line() {
    let nobody = format!("127.0.0.1:{}", free_port());
    for flag in [format!("--etcd={nobody}"), format!("--zookeeper={nobody}")] {
        let e = admin(&["--dashboard-list", &flag]).await;
        assert!(e.err().contains(&nobody) && e.stderr.contains("cannot connect"), "{}", e.stderr);
    }
    // ZooKeeper nodes made with a password refuse another one.
    let zk = Coordinator::start(Backend::Zookeeper);
    let d = dashboard(&zk, "secret", "codis:s3cret").await;
    let flag = zk.flag();
    let list = admin(&["--dashboard-list", &flag, "--zookeeper-auth=codis:s3cret"]).await;
    assert!(list.ok().contains(&d.admin_addr), "{}", list.stdout);
    let e = admin(&["--dashboard-list", &flag, "--zookeeper-auth=codis:wrong"]).await;
    assert!(e.err().contains("wrong coordinator user:password"), "{}", e.stderr);
    d.topom.close().await.unwrap();
    // etcd with authentication on refuses a wrong password.
    let etcd = Coordinator::start(Backend::Etcd);
    etcd.enable_auth("s3cret");
    let flag = etcd.flag();
    let e = admin(&["--dashboard-list", &flag, "--etcd-auth=root:wrong"]).await;
    assert!(e.err().contains("authentication failed"), "{}", e.stderr);
    admin(&["--dashboard-list", &flag, "--etcd-auth=root:s3cret"]).await.ok();
}
