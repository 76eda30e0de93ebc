//! Jodis registration by the codis-proxy process on real etcd and ZooKeeper: the node
//! appears when the proxy goes online, with Codis's path and JSON, goes at once on a
//! clean stop, and within the jodis timeout after kill -9.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codis_testkit::{Backend, Coordinator, free_port, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_codis-proxy");
const TIMEOUT: Duration = Duration::from_secs(3);

struct ProxyProcess {
    child: Child,
    admin: String,
    dir: std::path::PathBuf,
}

impl ProxyProcess {
    async fn start(coord: &Coordinator, compatible: bool) -> ProxyProcess {
        let dir = std::env::temp_dir().join(format!("codis-jodis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            dir.join("proxy.toml"),
            format!(
                "proxy_addr = \"127.0.0.1:{}\"\nadmin_addr = \"{admin}\"\nproduct_name = \"jodis-test\"\n\
                 jodis_name = \"{}\"\njodis_addr = \"{}\"\njodis_timeout = \"{}s\"\njodis_compatible = {compatible}\n",
                free_port(),
                coord.name(),
                coord.addr(),
                TIMEOUT.as_secs()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("slots.json"), "[]").unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(dir.join("proxy.toml"))
            .arg("--fillslots")
            .arg(dir.join("slots.json"))
            .arg("--log")
            .arg(dir.join("proxy.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        ProxyProcess { child, admin, dir }
    }

    async fn model(&self) -> codis_core::models::Proxy {
        let url = format!("http://{}/api/proxy/model", self.admin);
        wait_until("the proxy's admin API", Duration::from_secs(20), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok()?.json().await.ok() }
        })
        .await
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_node(c: &Arc<dyn codis_store::Coordinator>, path: &str, present: bool, within: Duration) -> Duration {
    let start = Instant::now();
    wait_until(&format!("{path} present={present}"), within, || {
        let (c, path) = (c.clone(), path.to_string());
        async move { (c.read(&path, false).await.ok()?.is_some() == present).then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jodis_nodes_follow_the_proxy_process() {
    for (backend, compatible) in [(Backend::Etcd, false), (Backend::Zookeeper, false), (Backend::Zookeeper, true)] {
        let coord = Coordinator::start(backend);
        let name = format!("{} compatible={compatible}", backend.name());
        let c: Arc<dyn codis_store::Coordinator> =
            codis_store::connect(coord.name(), coord.addr(), "", TIMEOUT).await.unwrap().into();

        let mut proxy = ProxyProcess::start(&coord, compatible).await;
        let model = proxy.model().await;
        let path = if compatible {
            format!("/zk/codis/db_jodis-test/proxy/{}", model.token)
        } else {
            format!("/jodis/jodis-test/proxy-{}", model.token)
        };
        assert_eq!(model.jodis_path, path, "{name}");
        wait_node(&c, &path, true, Duration::from_secs(10)).await;
        let data = c.read(&path, true).await.unwrap().unwrap();
        assert_eq!(data, codis_proxy::jodis::data(&model), "{name}");
        let json: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(json["addr"], model.proxy_addr, "{name}");
        assert_eq!(json["state"], "online", "{name}");

        // kill -9: the node goes when the lease or session runs out.
        proxy.child.kill().unwrap();
        proxy.child.wait().unwrap();
        let gone = wait_node(&c, &path, false, TIMEOUT * 3).await;
        eprintln!("{name}: jodis node gone {gone:?} after kill -9 (jodis_timeout {TIMEOUT:?})");

        // A clean stop (SIGTERM) removes it at once.
        let proxy = ProxyProcess::start(&coord, compatible).await;
        let model = proxy.model().await;
        wait_node(&c, &model.jodis_path, true, Duration::from_secs(10)).await;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(proxy.child.id() as i32, libc::SIGTERM) };
        let gone = wait_node(&c, &model.jodis_path, false, TIMEOUT / 2).await;
        eprintln!("{name}: jodis node gone {gone:?} after SIGTERM");
    }
}
