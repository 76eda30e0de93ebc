//! codis-fe against a real dashboard: the product list from each coordinator (filesystem,
//! etcd, ZooKeeper) and from a list file, forwarding, login, 401s, xauth filled in
//! server-side, dashboard errors passed through, and the monitor's history and events.

use std::sync::Arc;
use std::time::Duration;

use codis_dashboard::{Config as DashboardConfig, Dashboard};
use codis_fe::{Config, Fe, Source};
use codis_testkit::{Backend, Coordinator, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

const PRODUCT: &str = "fe-test";
const SECRET: &str = "s3cret";

struct Setup {
    _coord: Coordinator,
    dashboard: Dashboard,
    fe: String,
    http: reqwest::Client,
}

async fn start_fe(config: Config, source: Source) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fe = Fe::new(config, source);
    tokio::spawn(fe.serve(listener));
    format!("http://{addr}")
}

async fn setup(config: Config) -> Setup {
    setup_on(Backend::Filesystem, config).await
}

async fn setup_on(backend: Backend, config: Config) -> Setup {
    let coord = Coordinator::start(backend);
    let dashboard = Dashboard::start(DashboardConfig {
        coordinator_name: coord.name().into(),
        coordinator_addr: coord.addr().into(),
        admin_addr: "127.0.0.1:0".into(),
        product_name: PRODUCT.into(),
        product_auth: SECRET.into(),
        ..DashboardConfig::default()
    })
    .await
    .unwrap();
    let client = codis_store::connect(coord.name(), coord.addr(), "", Duration::from_secs(5)).await.unwrap();
    let fe = start_fe(config, Source::Coordinator(Arc::from(client))).await;
    Setup { _coord: coord, dashboard, fe, http: reqwest::Client::new() }
}

fn quick() -> Config {
    Config { sample_interval: Duration::from_millis(100), ..Config::default() }
}

impl Setup {
    async fn req(&self, method: reqwest::Method, path: &str, cookie: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.fe)).body(body.to_string());
        if let Some(c) = cookie {
            r = r.header("cookie", format!("codis_fe_session={c}"));
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Logs in and returns the session token from the Set-Cookie header.
    async fn login(&self, product: &str, secret: &str) -> Result<String, (StatusCode, String)> {
        let body = serde_json::json!({"product": product, "secret": secret}).to_string();
        let resp = self.http.post(format!("{}/fe/login", self.fe)).body(body).send().await.unwrap();
        let status = resp.status();
        let cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
        let v: Value = resp.json().await.unwrap();
        if !status.is_success() {
            return Err((status, v["Cause"].as_str().unwrap_or_default().to_string()));
        }
        let cookie = cookie.expect("login sets a cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let token = cookie.split(';').next().unwrap().strip_prefix("codis_fe_session=").unwrap();
        assert_eq!(token.len(), 32, "128-bit random token in hex");
        Ok(token.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_forward() {
    let s = setup(quick()).await;
    let (st, list) = s.req(reqwest::Method::GET, "/list", None, "").await;
    assert_eq!((st, list), (StatusCode::OK, serde_json::json!([PRODUCT])));

    let (st, model) = s.req(reqwest::Method::GET, &format!("/topom/model?forward={PRODUCT}"), None, "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(model["product_name"], PRODUCT);
    assert_eq!(model["admin_addr"], s.dashboard.admin_addr.as_str());

    let (st, err) = s.req(reqwest::Method::GET, "/topom/model?forward=nope", None, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(err["Cause"].as_str().unwrap().contains("\"nope\" is not known"), "{err}");

    // The UI is served without ?forward.
    let html = s.http.get(format!("{}/", s.fe)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("<title>codis-fe</title>"));
    let js = s.http.get(format!("{}/app.js", s.fe)).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");

    // The same product from a list file.
    let dir = std::env::temp_dir().join(format!("codis-fe-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("list.json");
    std::fs::write(&file, format!(r#"[{{"name": "other", "dashboard": "{}"}}]"#, s.dashboard.admin_addr)).unwrap();
    let fe2 = start_fe(quick(), Source::ListFile(file)).await;
    let list: Value = s.http.get(format!("{fe2}/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, serde_json::json!(["other"]));
    let model: Value =
        s.http.get(format!("{fe2}/topom/model?forward=other")).send().await.unwrap().json().await.unwrap();
    assert_eq!(model["product_name"], PRODUCT);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_gates_changes_and_fills_in_xauth() {
    let s = setup(quick()).await;
    let create = |gid: i64| format!("/api/topom/group/create/XAUTH/{gid}?forward={PRODUCT}");

    // No session: reads pass, changes and xauth routes get 401 with a readable cause.
    let (st, err) = s.req(reqwest::Method::PUT, &create(1), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err["Cause"].as_str().unwrap().starts_with("log in first"), "{err}");
    let (st, _) = s.req(reqwest::Method::GET, &format!("/api/topom/stats/XAUTH?forward={PRODUCT}"), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.req(reqwest::Method::PUT, &create(1), Some("0123456789abcdef0123456789abcdef"), "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "an unknown token is no session");

    // A wrong secret is refused (checked against the dashboard).
    let (st, cause) = s.login(PRODUCT, "wrong").await.unwrap_err();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(cause.contains("wrong secret"), "{cause}");

    let token = s.login(PRODUCT, SECRET).await.unwrap();
    let (st, v) = s.req(reqwest::Method::PUT, &create(1), Some(&token), "").await;
    assert_eq!((st, v), (StatusCode::OK, Value::from("OK")));
    assert!(s.dashboard.topom.cache().await.groups.contains_key(&1), "group created with the xauth codis-fe made");

    // Dashboard errors come back as they are: HTTP 800 with the cause.
    let (st, err) = s.req(reqwest::Method::PUT, &create(1), Some(&token), "").await;
    assert_eq!(st.as_u16(), 800);
    assert_eq!(err["Cause"], "group-[1] already exists");

    // A body is forwarded too (slots go to a group with a server).
    let server = codis_testkit::RedisServer::start(&[]);
    let add = format!("/api/topom/group/add/XAUTH/1/{}?forward={PRODUCT}", server.addr());
    let (st, v) = s.req(reqwest::Method::PUT, &add, Some(&token), "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let body = serde_json::json!([{"id": 5, "group_id": 1}]).to_string();
    let (st, v) = s
        .req(reqwest::Method::PUT, &format!("/api/topom/slots/assign/XAUTH?forward={PRODUCT}"), Some(&token), &body)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.dashboard.topom.cache().await.slots[5].group_id, 1);

    let (_, session) = s.req(reqwest::Method::GET, "/fe/session", Some(&token), "").await;
    assert_eq!(session["logged_in"], true);
    assert_eq!(session["products"], serde_json::json!([PRODUCT]));

    // Logged out: changes refused again.
    let (st, _) = s.req(reqwest::Method::POST, "/fe/logout", Some(&token), "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.req(reqwest::Method::PUT, &create(2), Some(&token), "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fe_password_and_require_login() {
    let mut config = quick();
    config.password = "fe-pw".into();
    config.product_auth.insert(PRODUCT.into(), SECRET.into());
    config.require_login = true;
    let s = setup(config).await;

    let (st, err) = s.req(reqwest::Method::GET, "/list", None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "--require-login: even the list needs a session");
    assert!(err["Cause"].as_str().unwrap().contains("log in"));
    let (st, _) = s.req(reqwest::Method::GET, &format!("/topom?forward={PRODUCT}"), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let token = s.login("", "fe-pw").await.unwrap();
    let (st, list) = s.req(reqwest::Method::GET, "/list", Some(&token), "").await;
    assert_eq!((st, list), (StatusCode::OK, serde_json::json!([PRODUCT])));
    let (st, _) = s
        .req(reqwest::Method::PUT, &format!("/api/topom/group/create/XAUTH/3?forward={PRODUCT}"), Some(&token), "")
        .await;
    assert_eq!(st, StatusCode::OK, "the FE password uses the configured product_auth");
    assert!(s.dashboard.topom.cache().await.groups.contains_key(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_events() {
    let s = setup(quick()).await;
    let token = s.login(PRODUCT, SECRET).await.unwrap();
    wait_until("first sample", Duration::from_secs(10), || async {
        let (_, h) = s.req(reqwest::Method::GET, &format!("/fe/history?forward={PRODUCT}"), None, "").await;
        (h.as_array().map_or(0, Vec::len) >= 1).then_some(())
    })
    .await;
    s.req(reqwest::Method::PUT, &format!("/api/topom/group/create/XAUTH/4?forward={PRODUCT}"), Some(&token), "").await;
    let events = wait_until("the group-4 event", Duration::from_secs(10), || async {
        let (_, e) = s.req(reqwest::Method::GET, &format!("/fe/events?forward={PRODUCT}"), None, "").await;
        let msgs: Vec<String> =
            e.as_array()?.iter().map(|e| e["message"].as_str().unwrap_or_default().to_string()).collect();
        msgs.iter().any(|m| m == "group-4 created").then_some(msgs)
    })
    .await;
    assert_eq!(events.last().unwrap(), &format!("codis-fe started watching product {PRODUCT}"), "oldest last");
    let (_, h) = s.req(reqwest::Method::GET, &format!("/fe/history?forward={PRODUCT}"), None, "").await;
    let first = &h[0];
    for k in ["t", "qps", "sessions", "memory", "keys"] {
        assert!(first[k].is_number(), "sample has {k}: {first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_console_without_login() {
    let mut config = quick();
    config.read_only_without_login = false;
    config.product_auth.insert(PRODUCT.into(), SECRET.into());
    let s = setup(config).await;
    let (st, v) =
        s.req(reqwest::Method::PUT, &format!("/api/topom/group/create/XAUTH/6?forward={PRODUCT}"), None, "").await;
    assert_eq!(st, StatusCode::OK, "--read-only-without-login=false: changes with the configured secret: {v}");
    assert!(s.dashboard.topom.cache().await.groups.contains_key(&6));
}

/// Products found in every kind of coordinator, and their dashboards reached.
async fn lists_products(backend: Backend) {
    let s = setup_on(backend, quick()).await;
    let (st, list) = s.req(reqwest::Method::GET, "/list", None, "").await;
    assert_eq!((st, list), (StatusCode::OK, serde_json::json!([PRODUCT])));
    let (_, model) = s.req(reqwest::Method::GET, &format!("/topom/model?forward={PRODUCT}"), None, "").await;
    assert_eq!(model["admin_addr"], s.dashboard.admin_addr.as_str());
}

codis_testkit::on_every_backend!(lists_products);
