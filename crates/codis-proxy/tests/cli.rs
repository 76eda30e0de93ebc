//! The codis-proxy binary: flags, config errors, static mode.

use std::process::{Command, Stdio};
use std::time::Duration;

use codis_testkit::{Client, RedisServer, Value, free_port, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_codis-proxy");

#[test]
fn default_config_is_complete_and_loadable() {
    let out = Command::new(BIN).arg("--default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let config = codis_proxy::Config::from_toml(&text).unwrap();
    assert_eq!(config.proxy_addr, "0.0.0.0:19000");
    for key in ["session_max_pipeline", "backend_primary_parallel", "metrics_report_statsd_prefix", "jodis_compatible"]
    {
        assert!(text.contains(key), "{key} missing from --default-config");
    }
}

#[test]
fn bad_configs_fail_with_the_key_named() {
    let dir = std::env::temp_dir().join(format!("codis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, key) in [
        ("proxy_adr = \"x\"\n", "proxy_adr"),
        ("backend_ping_period = \"soon\"\n", "backend_ping_period"),
        ("[section]\n", "section"),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{text}: {err}");
    }
    let out = Command::new(BIN).args(["--config", "/nonexistent/proxy.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent/proxy.toml"));
    let out = Command::new(BIN).args(["--fillslots", "/nonexistent/slots.json"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read slots file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_serves_without_a_dashboard() {
    let redis = RedisServer::start(&[]);
    let dir = redis.dir().to_path_buf();
    let port = free_port();
    let admin = free_port();
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "proxy_addr = \"127.0.0.1:{port}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nproduct_name = \"static-test\"\n"
        ),
    )
    .unwrap();
    let slots: Vec<_> = (0..1024).map(|i| serde_json::json!({"id": i, "backend_addr": redis.addr()})).collect();
    std::fs::write(dir.join("slots.json"), serde_json::to_string(&slots).unwrap()).unwrap();
    let pidfile = dir.join("proxy.pid");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .arg("--fillslots")
        .arg(dir.join("slots.json"))
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--log")
        .arg(dir.join("proxy.log"))
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut cl = wait_until("proxy online", Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            let mut cl = Client::connect(&addr).await.ok()?;
            (cl.cmd(&["PING"]).await.ok()? == Value::Simple("PONG".into())).then_some(cl)
        }
    })
    .await;
    assert_eq!(cl.cmd(&["SET", "k", "v"]).await.unwrap(), Value::ok());
    assert_eq!(Client::connect(&redis.addr()).await.unwrap().cmd(&["GET", "k"]).await.unwrap(), Value::bulk("v"));
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), child.id().to_string());
    let model: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{admin}/proxy/model")).await.unwrap().json().await.unwrap();
    assert_eq!(model["product_name"], "static-test");
    // SIGTERM: clean exit, pidfile removed
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!pidfile.exists());
    // --log-format json: one object per line, with the level and the event's fields
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{log}");
    assert!(lines.iter().any(|l| l["message"].is_string()), "{log}");
}
