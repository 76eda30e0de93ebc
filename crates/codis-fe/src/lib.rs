//! codis-fe: the web console of codis-rs.
//!
//! Serves the single-page UI (embedded in the binary, see [`assets`]) and, as Codis's
//! FE does, `GET /list` (product names) and `/**?forward=<product>` (a reverse proxy
//! to that product's dashboard). Unlike Codis, the browser never computes xauth: an
//! operator logs in with the product's admin secret (or the FE's password), the FE
//! keeps it server-side behind an HttpOnly session cookie, and fills in the xauth of
//! forwarded calls whose path holds the placeholder segment [`XAUTH_PLACEHOLDER`].
//! Mutating calls without a session get 401. [`monitor`] keeps an hour of samples and
//! an event log per product, so charts and history survive a page reload.

pub mod assets;
pub mod monitor;
pub mod products;
mod session;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;

pub use monitor::Monitor;
pub use products::{Products, Source};
use session::Sessions;

/// The path segment the UI puts where a dashboard route takes its xauth; the FE
/// replaces it with the xauth of the logged-in session.
pub const XAUTH_PLACEHOLDER: &str = "XAUTH";

/// Name of the session cookie.
pub const COOKIE: &str = "codis_fe_session";

/// Errors of the FE server, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum FeError {
    #[error("product {0:?} is not known to this codis-fe (check the dashboard list or the coordinator)")]
    UnknownProduct(String),
    #[error("cannot read the dashboard list {path} (check --dashboard-list): {cause}")]
    ListFile { path: String, cause: String },
    #[error("cannot list products in the coordinator (check --filesystem/--etcd/--zookeeper and its auth): {0}")]
    Store(#[from] codis_store::StoreError),
}

/// How the FE runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// A password that logs in to every product (`--password`); empty: none.
    pub password: String,
    /// Admin secret (product_auth) of products, used with the FE password.
    pub product_auth: HashMap<String, String>,
    /// Without a session, forward reads but refuse writes (401). When false, writes
    /// without a session use `product_auth` (an open console: trusted networks only).
    pub read_only_without_login: bool,
    /// Even reads need a session.
    pub require_login: bool,
    /// Serve the UI from this directory instead of the embedded copy (UI development).
    pub assets_dir: Option<PathBuf>,
    /// How often the monitor samples each product.
    pub sample_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            password: String::new(),
            product_auth: HashMap::new(),
            read_only_without_login: true,
            require_login: false,
            assets_dir: None,
            sample_interval: Duration::from_secs(3),
        }
    }
}

/// Shared state of the server.
pub struct Fe {
    pub config: Config,
    pub products: Arc<Products>,
    pub monitor: Arc<Monitor>,
    sessions: Sessions,
    http: reqwest::Client,
}

impl Fe {
    pub fn new(config: Config, source: Source) -> Arc<Fe> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        Arc::new(Fe {
            monitor: Arc::new(Monitor::new(config.sample_interval)),
            products: Arc::new(Products::new(source)),
            sessions: Sessions::default(),
            config,
            http,
        })
    }

    /// Serves on `listener` and samples products in the background until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        tokio::spawn(self.monitor.clone().run(self.products.clone()));
        axum::serve(listener, routes(self)).await
    }

    /// The xauth for `product` that the request's session grants, if any.
    fn session_xauth(&self, headers: &HeaderMap, product: &str) -> Option<String> {
        let s = self.sessions.get(&session::cookie(headers)?)?;
        if let Some(x) = s.xauths.get(product) {
            return Some(x.clone());
        }
        s.all.then(|| self.configured_xauth(product))
    }

    fn configured_xauth(&self, product: &str) -> String {
        let auth = self.config.product_auth.get(product).map_or("", String::as_str);
        codis_core::auth::dashboard_xauth(product, auth)
    }

    fn logged_in(&self, headers: &HeaderMap) -> bool {
        session::cookie(headers).is_some_and(|t| self.sessions.get(&t).is_some())
    }
}

pub fn routes(fe: Arc<Fe>) -> Router {
    Router::new()
        .route("/list", get(list))
        .route("/fe/products", get(products_summary))
        .route("/fe/session", get(session_info))
        .route("/fe/login", post(login))
        .route("/fe/logout", post(logout))
        .route("/fe/history", get(history))
        .route("/fe/events", get(events))
        .route("/fe/proxy-stats", get(proxy_stats))
        .fallback(fallback)
        .with_state(fe)
}

type S = State<Arc<Fe>>;

/// A Codis-style error: `{"Cause": ...}` with `status`.
fn cause(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "Cause": msg }))).into_response()
}

fn need_login() -> Response {
    cause(
        StatusCode::UNAUTHORIZED,
        "log in first: changes need the product's admin secret (product_auth) or the codis-fe password",
    )
}

#[derive(Deserialize)]
struct Forward {
    forward: Option<String>,
}

async fn list(State(fe): S, headers: HeaderMap) -> Response {
    if fe.config.require_login && !fe.logged_in(&headers) {
        return need_login();
    }
    match fe.products.all().await {
        Ok(list) => axum::Json(list.keys().collect::<Vec<_>>()).into_response(),
        Err(e) => cause(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// Products with their dashboards and newest sample, for the products page.
async fn products_summary(State(fe): S, headers: HeaderMap) -> Response {
    if fe.config.require_login && !fe.logged_in(&headers) {
        return need_login();
    }
    match fe.products.all().await {
        Ok(list) => {
            let out: Vec<_> = list
                .iter()
                .map(|(name, addr)| serde_json::json!({"name": name, "dashboard": addr, "latest": fe.monitor.latest(name)}))
                .collect();
            axum::Json(out).into_response()
        }
        Err(e) => cause(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

async fn session_info(State(fe): S, headers: HeaderMap) -> Response {
    let s = session::cookie(&headers).and_then(|t| fe.sessions.get(&t));
    axum::Json(serde_json::json!({
        "logged_in": s.is_some(),
        "all_products": s.as_ref().is_some_and(|s| s.all),
        "products": s.map(|s| s.xauths.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "read_only_without_login": fe.config.read_only_without_login,
        "require_login": fe.config.require_login,
        "password_login": !fe.config.password.is_empty(),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    product: String,
    secret: String,
}

/// Logs in with the FE password (every product) or a product's admin secret, checked
/// against its dashboard (`xping`), and sets the session cookie.
async fn login(State(fe): S, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Login>(&body) else {
        return cause(StatusCode::BAD_REQUEST, "send {\"product\": \"name\", \"secret\": \"...\"}");
    };
    let existing = session::cookie(&headers).and_then(|t| fe.sessions.get(&t).map(|_| t));
    let grant = if !fe.config.password.is_empty() && req.secret == fe.config.password {
        session::Grant::All
    } else if req.product.is_empty() {
        return cause(StatusCode::UNAUTHORIZED, "wrong password; to log in with a product's secret, pick the product");
    } else {
        let addr = match fe.products.dashboard(&req.product).await {
            Ok(a) => a,
            Err(e) => return cause(StatusCode::NOT_FOUND, &e.to_string()),
        };
        let xauth = codis_core::auth::dashboard_xauth(&req.product, &req.secret);
        let url = format!("http://{addr}/api/topom/xping/{xauth}");
        match fe.http.get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => session::Grant::Product(req.product.clone(), xauth),
            Ok(_) => {
                return cause(
                    StatusCode::UNAUTHORIZED,
                    &format!("wrong secret for product {}: use its product_auth (empty if it has none)", req.product),
                );
            }
            Err(e) => {
                return cause(StatusCode::BAD_GATEWAY, &format!("cannot reach the dashboard at {addr} to check: {e}"));
            }
        }
    };
    let token = fe.sessions.grant(existing, grant);
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", session::TTL.as_secs());
    let mut resp = axum::Json(serde_json::json!({"ok": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(fe): S, headers: HeaderMap) -> Response {
    if let Some(t) = session::cookie(&headers) {
        fe.sessions.remove(&t);
    }
    let mut resp = axum::Json(serde_json::json!({"ok": true})).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("codis_fe_session=; Path=/; Max-Age=0"));
    resp
}

async fn history(State(fe): S, headers: HeaderMap, Query(q): Query<Forward>) -> Response {
    if fe.config.require_login && !fe.logged_in(&headers) {
        return need_login();
    }
    axum::Json(fe.monitor.samples(q.forward.as_deref().unwrap_or_default())).into_response()
}

async fn events(State(fe): S, headers: HeaderMap, Query(q): Query<Forward>) -> Response {
    if fe.config.require_login && !fe.logged_in(&headers) {
        return need_login();
    }
    axum::Json(fe.monitor.events(q.forward.as_deref().unwrap_or_default())).into_response()
}

#[derive(Deserialize)]
struct ProxyQuery {
    forward: String,
    token: String,
}

/// A proxy's full stats (with per-command figures, which the dashboard does not relay),
/// fetched by codis-fe so the browser need not reach the proxy.
async fn proxy_stats(State(fe): S, headers: HeaderMap, Query(q): Query<ProxyQuery>) -> Response {
    if fe.config.require_login && !fe.logged_in(&headers) {
        return need_login();
    }
    let Some(addr) = fe.monitor.proxy_admin(&q.forward, &q.token) else {
        return cause(
            StatusCode::NOT_FOUND,
            &format!("proxy {} of {} is not known yet: retry in a few seconds", q.token, q.forward),
        );
    };
    match fe.http.get(format!("http://{addr}/proxy/stats")).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => match r.json::<serde_json::Value>().await {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => cause(StatusCode::BAD_GATEWAY, &format!("proxy {addr} sent unreadable stats: {e}")),
        },
        Err(e) => cause(StatusCode::BAD_GATEWAY, &format!("cannot reach proxy {addr}: {e}")),
    }
}

/// `?forward=<product>`: the dashboard's API; anything else: the UI.
async fn fallback(State(fe): S, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query = uri.query().map(query_pairs).unwrap_or_default();
    let Some(product) = query.iter().find(|(k, _)| k == "forward").map(|(_, v)| v.clone()) else {
        if method != Method::GET && method != Method::HEAD {
            return cause(StatusCode::METHOD_NOT_ALLOWED, "only GET serves the UI; API calls need ?forward=<product>");
        }
        return assets::serve(fe.config.assets_dir.as_deref(), uri.path()).await;
    };
    forward(&fe, &product, method, &uri, &query, &headers, body).await
}

/// Query pairs, percent-decoded (`+` as space).
fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn forward(
    fe: &Fe,
    product: &str,
    method: Method,
    uri: &Uri,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mutating = method != Method::GET && method != Method::HEAD;
    let mut path: Vec<String> = uri.path().split('/').map(str::to_string).collect();
    let wants_xauth = path.iter().any(|s| s == XAUTH_PLACEHOLDER);
    if fe.config.require_login && !fe.logged_in(headers) {
        return need_login();
    }
    let session = fe.session_xauth(headers, product);
    let open = !fe.config.read_only_without_login && !fe.config.require_login;
    if session.is_none() && (mutating || wants_xauth) && !open {
        return need_login();
    }
    if wants_xauth {
        let xauth = session.unwrap_or_else(|| fe.configured_xauth(product));
        for seg in path.iter_mut().filter(|s| *s == XAUTH_PLACEHOLDER) {
            *seg = xauth.clone();
        }
    }
    let addr = match fe.products.dashboard(product).await {
        Ok(a) => a,
        Err(e) => return cause(StatusCode::NOT_FOUND, &e.to_string()),
    };
    let rest: Vec<String> =
        query.iter().filter(|(k, _)| k != "forward").map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let mut url = format!("http://{addr}{}", path.join("/"));
    if !rest.is_empty() {
        url = format!("{url}?{}", rest.join("&"));
    }
    let mut req = fe.http.request(method, &url).body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get(header::CONTENT_TYPE).cloned();
            let body = r.bytes().await.unwrap_or_default();
            if mutating && status.is_success() {
                fe.monitor.poke();
            }
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            if let Some(ct) = ct {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        Err(e) => cause(
            StatusCode::BAD_GATEWAY,
            &format!("cannot reach the dashboard of {product} at {addr}: {e} (is codis-dashboard running?)"),
        ),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_cookie_parsing() {
        assert_eq!(
            query_pairs("forward=codis%2Ddemo&a=b+c&bad=%zz&empty"),
            [("forward", "codis-demo"), ("a", "b c"), ("bad", "%zz"), ("empty", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; codis_fe_session=abc; y=2"));
        assert_eq!(session::cookie(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("codis_fe_session="));
        assert_eq!(session::cookie(&h), None);
    }
}
