//! The admin HTTP API, with Codis 3.2's routes and JSON.
//!
//! Read-only views (`/proxy`, `/proxy/model`, `/proxy/stats`, `/proxy/slots`, and
//! `/metrics` for Prometheus) need no credentials; everything under `/api/proxy` except `model` requires the proxy's xauth
//! in the path. Errors use Codis's convention: HTTP status 800 with `{"Cause", "Stack"}`,
//! which Codis's dashboard and codis-admin understand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, put};
use codis_core::models::{Sentinel, Slot};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::proxy::Shared;
use crate::stats::{OpStats, Rusage};

type S = State<Arc<Shared>>;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let app = routes(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|&c| c).await;
        })
        .await;
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/proxy") }))
        .route("/proxy", get(overview))
        .route("/proxy/model", get(model))
        .route("/proxy/stats", get(stats_open))
        .route("/proxy/slots", get(slots_open))
        .route("/metrics", get(metrics))
        .route("/api/proxy/model", get(model))
        .route("/api/proxy/xping/{xauth}", get(xping))
        .route("/api/proxy/stats/{xauth}", get(stats))
        .route("/api/proxy/stats/{xauth}/{flags}", get(stats_flags))
        .route("/api/proxy/slots/{xauth}", get(slots))
        .route("/api/proxy/start/{xauth}", put(start))
        .route("/api/proxy/stats/reset/{xauth}", put(reset_stats))
        .route("/api/proxy/forcegc/{xauth}", put(forcegc))
        .route("/api/proxy/shutdown/{xauth}", put(shutdown))
        .route("/api/proxy/loglevel/{xauth}/{value}", put(loglevel))
        .route("/api/proxy/fillslots/{xauth}", put(fillslots))
        .route("/api/proxy/sentinels/{xauth}", put(set_sentinels))
        .route("/api/proxy/sentinels/{xauth}/rewatch", put(rewatch_sentinels))
        .with_state(shared)
}

/// JSON as Codis writes it (Go's MarshalIndent layout).
fn json<T: Serialize>(v: &T) -> Response {
    match codis_core::json::to_vec_pretty(v) {
        Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body)
            .into_response(),
        Err(e) => error(&e.to_string()),
    }
}

/// A Codis-style error: status 800, `{"Cause": ..., "Stack": null}`.
fn error(cause: &str) -> Response {
    let body = codis_core::json::to_vec_pretty(&codis_core::models::RemoteError::new(cause)).unwrap_or_default();
    let status = StatusCode::from_u16(800).expect("800 is a valid status code");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body)
        .into_response()
}

/// Checks the xauth path segment; the error is the response to send.
fn verify(shared: &Shared, xauth: &str) -> Result<(), Box<Response>> {
    let cause = if shared.is_closed() {
        "use of closed proxy"
    } else if xauth.is_empty() {
        "missing xauth, please check product name & auth"
    } else if xauth != shared.xauth {
        "invalid xauth, please check product name & auth"
    } else {
        return Ok(());
    };
    Err(Box::new(error(cause)))
}

const STATS_CMDS: u32 = 1;
const STATS_SLOTS: u32 = 2;
const STATS_FULL: u32 = u32::MAX;

#[derive(Serialize)]
struct SentinelStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    servers: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    masters: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    switched: bool,
}

#[derive(Serialize)]
struct RedisStats {
    errors: i64,
}

#[derive(Serialize)]
struct OpsStats {
    total: i64,
    fails: i64,
    redis: RedisStats,
    qps: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cmd: Vec<OpStats>,
}

#[derive(Serialize)]
struct SessionStats {
    total: i64,
    alive: i64,
}

#[derive(Serialize)]
struct BackendStats {
    primary_only: bool,
}

/// `/proxy/stats`, field for field as Codis.
#[derive(Serialize)]
struct StatsView {
    online: bool,
    closed: bool,
    sentinels: SentinelStats,
    ops: OpsStats,
    sessions: SessionStats,
    rusage: Rusage,
    backend: BackendStats,
}

fn stats_view(shared: &Shared, flags: u32) -> StatsView {
    let s = &shared.stats;
    StatsView {
        online: shared.is_online(),
        closed: shared.is_closed(),
        sentinels: SentinelStats {
            servers: shared.sentinel.servers(),
            masters: shared.sentinel.masters().into_iter().map(|(gid, addr)| (gid.to_string(), addr)).collect(),
            switched: shared.sentinel.switched(),
        },
        ops: OpsStats {
            total: s.total.load(Ordering::Relaxed),
            fails: s.fails.load(Ordering::Relaxed),
            redis: RedisStats { errors: s.redis_errors.load(Ordering::Relaxed) },
            qps: s.qps.load(Ordering::Relaxed),
            cmd: if flags & STATS_CMDS != 0 { s.op_stats() } else { Vec::new() },
        },
        sessions: SessionStats {
            total: s.sessions_total.load(Ordering::Relaxed),
            alive: s.sessions_alive.load(Ordering::Relaxed),
        },
        rusage: shared.rusage.get(),
        backend: BackendStats { primary_only: shared.config.backend_primary_only },
    }
}

#[derive(Serialize)]
struct Overview<'a> {
    version: &'static str,
    compile: &'static str,
    config: &'a Config,
    model: &'a codis_core::models::Proxy,
    stats: StatsView,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    slots: Vec<Slot>,
}

async fn overview(State(shared): S) -> Response {
    let flags = STATS_FULL;
    json(&Overview {
        version: concat!("codis-rs ", env!("CARGO_PKG_VERSION")),
        compile: "",
        config: &shared.config,
        model: &shared.model,
        stats: stats_view(&shared, flags),
        slots: if flags & STATS_SLOTS != 0 { shared.router.slots() } else { Vec::new() },
    })
}

async fn model(State(shared): S) -> Response {
    json(&shared.model)
}

async fn stats_open(State(shared): S) -> Response {
    json(&stats_view(&shared, STATS_FULL))
}

/// `/metrics`: the same counters as `/proxy/stats`, in Prometheus's text format
/// (read-only, like `/proxy/stats`, so a scraper needs no secret).
async fn metrics(State(shared): S) -> Response {
    let (usage, backends, slot_ops) = (shared.rusage.get(), shared.router.pool_stats(), shared.router.slot_ops());
    let body = crate::stats::prometheus(&crate::stats::Exposition {
        stats: &shared.stats,
        usage: &usage,
        online: shared.is_online(),
        product: &shared.model.product_name,
        backends: &backends,
        slot_ops: &slot_ops,
    });
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], body)
        .into_response()
}

async fn slots_open(State(shared): S) -> Response {
    json(&shared.router.slots())
}

async fn xping(State(shared): S, Path(xauth): Path<String>) -> Response {
    match verify(&shared, &xauth) {
        Ok(()) => json(&"OK"),
        Err(e) => *e,
    }
}

async fn stats(State(shared): S, Path(xauth): Path<String>) -> Response {
    match verify(&shared, &xauth) {
        Ok(()) => json(&stats_view(&shared, 0)),
        Err(e) => *e,
    }
}

async fn stats_flags(State(shared): S, Path((xauth, flags)): Path<(String, String)>) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    match flags.parse::<u32>() {
        Ok(flags) => json(&stats_view(&shared, flags)),
        Err(_) => error(&format!("invalid stats flags {flags:?}: use a number (1 = per-command stats)")),
    }
}

async fn slots(State(shared): S, Path(xauth): Path<String>) -> Response {
    match verify(&shared, &xauth) {
        Ok(()) => json(&shared.router.slots()),
        Err(e) => *e,
    }
}

async fn start(State(shared): S, Path(xauth): Path<String>) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    match shared.start() {
        Ok(()) => json(&"OK"),
        Err(e) => error(&e.to_string()),
    }
}

async fn reset_stats(State(shared): S, Path(xauth): Path<String>) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    shared.stats.reset();
    json(&"OK")
}

/// Codis's Go runtime hook; there is no garbage collector here, so it only checks xauth.
async fn forcegc(State(shared): S, Path(xauth): Path<String>) -> Response {
    match verify(&shared, &xauth) {
        Ok(()) => json(&"OK"),
        Err(e) => *e,
    }
}

async fn shutdown(State(shared): S, Path(xauth): Path<String>) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    let s = shared.clone();
    tokio::spawn(async move { s.close().await });
    json(&"OK")
}

async fn loglevel(State(shared): S, Path((xauth, value)): Path<(String, String)>) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    let Some(control) = &shared.log_control else {
        return error("log level cannot be changed in this process");
    };
    match control(&value) {
        Ok(()) => {
            tracing::warn!("set loglevel to {value}");
            json(&"OK")
        }
        Err(e) => error(&e),
    }
}

async fn fillslots(State(shared): S, Path(xauth): Path<String>, body: Bytes) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    let slots: Vec<Slot> = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(&format!("invalid slots JSON: {e} (expected an array of slots)"));
        }
    };
    match shared.fill_slots(&slots).await {
        Ok(()) => json(&"OK"),
        Err(e) => error(&e.to_string()),
    }
}

async fn set_sentinels(State(shared): S, Path(xauth): Path<String>, body: Bytes) -> Response {
    if let Err(e) = verify(&shared, &xauth) {
        return *e;
    }
    match serde_json::from_slice::<Sentinel>(&body) {
        Ok(s) => {
            if s.servers.iter().any(|a| !a.contains(':')) {
                return error(&format!("invalid sentinel list {:?}: use host:port addresses", s.servers));
            }
            shared.sentinel.set(s.servers);
            json(&"OK")
        }
        Err(e) => error(&format!("invalid sentinel JSON: {e}")),
    }
}

async fn rewatch_sentinels(State(shared): S, Path(xauth): Path<String>) -> Response {
    match verify(&shared, &xauth) {
        Ok(()) => {
            shared.sentinel.rewatch();
            json(&"OK")
        }
        Err(e) => *e,
    }
}
