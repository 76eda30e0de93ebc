//! The REST API: every Codis 3.2 `/topom` and `/api/topom` route with Codis's JSON,
//! errors as HTTP 800 `{"Cause": ...}`. Mutating routes need the dashboard's xauth,
//! which includes `product_auth` when one is set.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, put};
use codis_core::models::SlotMapping;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::topom::{Result, Topom, TopomError};

type S = State<Arc<Topom>>;

pub async fn serve(listener: TcpListener, topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    let app = routes(topom);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|&c| c).await;
        })
        .await;
}

pub fn routes(topom: Arc<Topom>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/topom") }))
        .route("/topom", get(overview))
        .route("/topom/model", get(model))
        .route("/topom/stats", get(stats))
        .route("/topom/slots", get(slots))
        .route("/metrics", get(metrics))
        .route("/api/topom/model", get(model))
        .route("/api/topom/xping/{xauth}", get(xping))
        .route("/api/topom/stats/{xauth}", get(stats_auth))
        .route("/api/topom/slots/{xauth}", get(slots_auth))
        .route("/api/topom/reload/{xauth}", put(reload))
        .route("/api/topom/shutdown/{xauth}", put(shutdown))
        .route("/api/topom/loglevel/{xauth}/{value}", put(loglevel))
        .route("/api/topom/proxy/create/{xauth}/{addr}", put(proxy_create))
        .route("/api/topom/proxy/online/{xauth}/{addr}", put(proxy_online))
        .route("/api/topom/proxy/reinit/{xauth}/{token}", put(proxy_reinit))
        .route("/api/topom/proxy/remove/{xauth}/{token}/{force}", put(proxy_remove))
        .route("/api/topom/group/create/{xauth}/{gid}", put(group_create))
        .route("/api/topom/group/remove/{xauth}/{gid}", put(group_remove))
        .route("/api/topom/group/resync/{xauth}/{gid}", put(group_resync))
        .route("/api/topom/group/resync-all/{xauth}", put(group_resync_all))
        .route("/api/topom/group/add/{xauth}/{gid}/{addr}", put(group_add))
        .route("/api/topom/group/add/{xauth}/{gid}/{addr}/{datacenter}", put(group_add_dc))
        .route("/api/topom/group/del/{xauth}/{gid}/{addr}", put(group_del))
        .route("/api/topom/group/promote/{xauth}/{gid}/{addr}", put(group_promote))
        .route("/api/topom/group/replica-groups/{xauth}/{gid}/{addr}/{value}", put(replica_groups))
        .route("/api/topom/group/replica-groups-all/{xauth}/{value}", put(replica_groups_all))
        .route("/api/topom/group/action/create/{xauth}/{addr}", put(sync_create))
        .route("/api/topom/group/action/remove/{xauth}/{addr}", put(sync_remove))
        .route("/api/topom/group/info/{addr}", get(server_info))
        .route("/api/topom/slots/action/create/{xauth}/{sid}/{gid}", put(action_create))
        .route("/api/topom/slots/action/create-some/{xauth}/{src}/{dst}/{num}", put(action_create_some))
        .route("/api/topom/slots/action/create-range/{xauth}/{beg}/{end}/{gid}", put(action_create_range))
        .route("/api/topom/slots/action/remove/{xauth}/{sid}", put(action_remove))
        .route("/api/topom/slots/action/interval/{xauth}/{value}", put(action_interval))
        .route("/api/topom/slots/action/disabled/{xauth}/{value}", put(action_disabled))
        .route("/api/topom/slots/assign/{xauth}", put(slots_assign))
        .route("/api/topom/slots/assign/{xauth}/offline", put(slots_assign_offline))
        .route("/api/topom/slots/rebalance/{xauth}/{confirm}", put(rebalance))
        .route("/api/topom/sentinels/add/{xauth}/{addr}", put(sentinel_add))
        .route("/api/topom/sentinels/del/{xauth}/{addr}/{force}", put(sentinel_del))
        .route("/api/topom/sentinels/resync-all/{xauth}", put(sentinel_resync))
        .route("/api/topom/sentinels/info/{addr}", get(sentinel_info))
        .route("/api/topom/sentinels/info/{addr}/monitored", get(sentinel_monitored))
        .with_state(topom)
}

fn json<T: Serialize>(v: &T) -> Response {
    match codis_core::json::to_vec_pretty(v) {
        Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body)
            .into_response(),
        Err(e) => error(&e.to_string()),
    }
}

fn error(cause: &str) -> Response {
    let body = codis_core::json::to_vec_pretty(&codis_core::models::RemoteError::new(cause)).unwrap_or_default();
    let status = StatusCode::from_u16(800).expect("800 is a valid status code");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body)
        .into_response()
}

fn done(r: Result<()>) -> Response {
    match r {
        Ok(()) => json(&"OK"),
        Err(e) => error(&e.to_string()),
    }
}

fn verify(t: &Topom, xauth: &str) -> Result<()> {
    if t.is_closed() {
        return Err(TopomError::Closed);
    }
    if xauth.is_empty() {
        return Err(TopomError::msg("missing xauth, please check product name & auth"));
    }
    if xauth != t.xauth() {
        return Err(TopomError::msg("invalid xauth, please check product name & auth"));
    }
    Ok(())
}

/// Runs `f` if the xauth is right.
async fn authed<F, Fut>(t: &Topom, xauth: &str, f: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    match verify(t, xauth) {
        Ok(()) => done(f().await),
        Err(e) => error(&e.to_string()),
    }
}

fn int(v: &str, what: &str) -> Result<i64> {
    v.parse().map_err(|_| TopomError::msg(format!("invalid {what} {v:?}: expected a number")))
}

fn flag(v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        v => int(v, "value").map(|n| n != 0),
    }
}

async fn overview(State(t): S) -> Response {
    json(&t.overview().await)
}

async fn model(State(t): S) -> Response {
    json(t.model())
}

/// `/metrics` for Prometheus (no credentials, like `/topom/stats`).
async fn metrics(State(t): S) -> Response {
    let body = t.prometheus().await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn stats(State(t): S) -> Response {
    json(&t.stats().await)
}

async fn slots(State(t): S) -> Response {
    json(&t.slots().await)
}

async fn xping(State(t): S, Path(xauth): Path<String>) -> Response {
    authed(&t, &xauth, || async { Ok(()) }).await
}

async fn stats_auth(State(t): S, Path(xauth): Path<String>) -> Response {
    match verify(&t, &xauth) {
        Ok(()) => json(&t.stats().await),
        Err(e) => error(&e.to_string()),
    }
}

async fn slots_auth(State(t): S, Path(xauth): Path<String>) -> Response {
    match verify(&t, &xauth) {
        Ok(()) => json(&t.slots().await),
        Err(e) => error(&e.to_string()),
    }
}

async fn reload(State(t): S, Path(xauth): Path<String>) -> Response {
    authed(&t, &xauth, || t.reload()).await
}

async fn shutdown(State(t): S, Path(xauth): Path<String>) -> Response {
    authed(&t, &xauth, || async {
        let t2 = t.clone();
        tokio::spawn(async move { t2.close().await });
        Ok(())
    })
    .await
}

async fn loglevel(State(t): S, Path((xauth, value)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { codis_log::set_level(&value).map_err(TopomError::msg) }).await
}

async fn proxy_create(State(t): S, Path((xauth, addr)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.create_proxy(&addr)).await
}

async fn proxy_online(State(t): S, Path((xauth, addr)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.online_proxy(&addr)).await
}

async fn proxy_reinit(State(t): S, Path((xauth, token)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.reinit_proxy(&token)).await
}

async fn proxy_remove(State(t): S, Path((xauth, token, force)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.remove_proxy(&token, flag(&force)?).await }).await
}

async fn group_create(State(t): S, Path((xauth, gid)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.create_group(int(&gid, "group id")?).await }).await
}

async fn group_remove(State(t): S, Path((xauth, gid)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.remove_group(int(&gid, "group id")?).await }).await
}

async fn group_resync(State(t): S, Path((xauth, gid)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.resync_group(int(&gid, "group id")?).await }).await
}

async fn group_resync_all(State(t): S, Path(xauth): Path<String>) -> Response {
    authed(&t, &xauth, || t.resync_group_all()).await
}

async fn group_add(State(t): S, Path((xauth, gid, addr)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.group_add_server(int(&gid, "group id")?, "", &addr).await }).await
}

async fn group_add_dc(State(t): S, Path((xauth, gid, addr, dc)): Path<(String, String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.group_add_server(int(&gid, "group id")?, &dc, &addr).await }).await
}

async fn group_del(State(t): S, Path((xauth, gid, addr)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.group_del_server(int(&gid, "group id")?, &addr).await }).await
}

async fn group_promote(State(t): S, Path((xauth, gid, addr)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.promote_server(int(&gid, "group id")?, &addr).await }).await
}

async fn sync_create(State(t): S, Path((xauth, addr)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.sync_create_action(&addr)).await
}

async fn sync_remove(State(t): S, Path((xauth, addr)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.sync_remove_action(&addr)).await
}

async fn replica_groups(
    State(t): S,
    Path((xauth, gid, addr, value)): Path<(String, String, String, String)>,
) -> Response {
    authed(&t, &xauth, || async { t.enable_replica_groups(int(&gid, "group id")?, &addr, flag(&value)?).await }).await
}

async fn replica_groups_all(State(t): S, Path((xauth, value)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.enable_replica_groups_all(flag(&value)?).await }).await
}

async fn server_info(State(t): S, Path(addr): Path<String>) -> Response {
    let known = t.cache().await.group_by_server(&addr).is_some();
    if !known {
        return error(&format!("server-[{addr}] doesn't exist"));
    }
    let r = async {
        let mut c = codis_client::Conn::open(&addr, &t.config.product_auth, std::time::Duration::from_secs(3)).await?;
        let mut info: BTreeMap<String, String> = c.info(None).await?.into_iter().collect();
        if let Ok(codis_client::Value::Array(v)) = c.cmd(&["CONFIG", "GET", "maxmemory"]).await
            && let Some(m) = v.get(1).and_then(|m| m.as_str())
        {
            info.insert("maxmemory".into(), m.to_string());
        }
        Ok::<_, codis_client::ClientError>(info)
    };
    match r.await {
        Ok(info) => json(&info),
        Err(e) => error(&e.to_string()),
    }
}

async fn action_create(State(t): S, Path((xauth, sid, gid)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.slot_create_action(int(&sid, "slot id")?, int(&gid, "group id")?).await }).await
}

async fn action_create_some(
    State(t): S,
    Path((xauth, src, dst, num)): Path<(String, String, String, String)>,
) -> Response {
    authed(&t, &xauth, || async {
        let num = usize::try_from(int(&num, "number of slots")?)
            .map_err(|_| TopomError::msg("number of slots must be positive"))?;
        t.slot_create_action_some(int(&src, "group id")?, int(&dst, "group id")?, num).await
    })
    .await
}

async fn action_create_range(
    State(t): S,
    Path((xauth, beg, end, gid)): Path<(String, String, String, String)>,
) -> Response {
    authed(&t, &xauth, || async {
        t.slot_create_action_range(int(&beg, "slot id")?, int(&end, "slot id")?, int(&gid, "group id")?).await
    })
    .await
}

async fn action_remove(State(t): S, Path((xauth, sid)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.slot_remove_action(int(&sid, "slot id")?).await }).await
}

async fn action_interval(State(t): S, Path((xauth, value)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async { t.set_action_interval(int(&value, "interval")?) }).await
}

async fn action_disabled(State(t): S, Path((xauth, value)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || async {
        t.set_action_disabled(flag(&value)?);
        Ok(())
    })
    .await
}

fn mappings(body: &[u8]) -> Result<Vec<SlotMapping>> {
    serde_json::from_slice(body).map_err(|e| {
        TopomError::msg(format!("invalid slot mappings JSON: {e} (expected [{{\"id\":0,\"group_id\":1}}])"))
    })
}

async fn slots_assign(State(t): S, Path(xauth): Path<String>, body: Bytes) -> Response {
    authed(&t, &xauth, || async { t.slots_assign(&mappings(&body)?).await }).await
}

async fn slots_assign_offline(State(t): S, Path(xauth): Path<String>, body: Bytes) -> Response {
    authed(&t, &xauth, || async { t.slots_assign_offline(&mappings(&body)?).await }).await
}

async fn rebalance(State(t): S, Path((xauth, confirm)): Path<(String, String)>) -> Response {
    if let Err(e) = verify(&t, &xauth) {
        return error(&e.to_string());
    }
    let r = async { t.slots_rebalance(flag(&confirm)?).await };
    match r.await {
        Ok(plan) => json(&plan),
        Err(e) => error(&e.to_string()),
    }
}

async fn sentinel_add(State(t): S, Path((xauth, addr)): Path<(String, String)>) -> Response {
    authed(&t, &xauth, || t.add_sentinel(&addr)).await
}

async fn sentinel_del(State(t): S, Path((xauth, addr, force)): Path<(String, String, String)>) -> Response {
    authed(&t, &xauth, || async { t.del_sentinel(&addr, flag(&force)?).await }).await
}

async fn sentinel_resync(State(t): S, Path(xauth): Path<String>) -> Response {
    authed(&t, &xauth, || t.resync_sentinels()).await
}

async fn sentinel_info(State(t): S, Path(addr): Path<String>) -> Response {
    match t.sentinel_info(&addr).await {
        Ok(info) => json(&info),
        Err(e) => error(&e.to_string()),
    }
}

async fn sentinel_monitored(State(t): S, Path(addr): Path<String>) -> Response {
    match t.sentinel_monitored(&addr).await {
        Ok(m) => json(&m),
        Err(e) => error(&e.to_string()),
    }
}
