//! Calls from the dashboard to a proxy's admin API (Codis routes and xauth).

use std::time::Duration;

use codis_core::auth::new_xauth;
use codis_core::models::{Proxy, Sentinel, Slot};
use serde::de::DeserializeOwned;

/// A proxy call that failed; the message names the proxy.
#[derive(Debug, thiserror::Error)]
#[error("proxy@{addr} {what} failed: {cause}")]
pub struct ProxyCallError {
    pub addr: String,
    pub what: &'static str,
    pub cause: String,
}

#[derive(Clone)]
pub struct ProxyClient {
    http: reqwest::Client,
    addr: String,
    xauth: String,
}

/// The HTTP client all proxy calls share (connection reuse, one timeout).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().expect("HTTP client")
}

impl ProxyClient {
    /// A client for `p`, authenticated the Codis way: `xauth(product, product_auth, token)`.
    pub fn new(http: &reqwest::Client, p: &Proxy, product: &str, product_auth: &str) -> ProxyClient {
        ProxyClient {
            http: http.clone(),
            addr: p.admin_addr.clone(),
            xauth: new_xauth(&[product, product_auth, &p.token]),
        }
    }

    /// Reads the model of the proxy whose admin API listens on `addr`.
    pub async fn model(http: &reqwest::Client, addr: &str) -> Result<Proxy, ProxyCallError> {
        get(http, addr, "/api/proxy/model", "fetch model").await
    }

    pub async fn xping(&self) -> Result<(), ProxyCallError> {
        get::<String>(&self.http, &self.addr, &format!("/api/proxy/xping/{}", self.xauth), "check xauth")
            .await
            .map(drop)
    }

    pub async fn fill_slots(&self, slots: &[Slot]) -> Result<(), ProxyCallError> {
        let body = serde_json::to_vec(slots).map_err(|e| self.err("fillslots", e.to_string()))?;
        self.put(&format!("/api/proxy/fillslots/{}", self.xauth), body, "fillslots").await
    }

    pub async fn start(&self) -> Result<(), ProxyCallError> {
        self.put(&format!("/api/proxy/start/{}", self.xauth), Vec::new(), "start").await
    }

    pub async fn set_sentinels(&self, s: &Sentinel) -> Result<(), ProxyCallError> {
        let body = serde_json::to_vec(s).map_err(|e| self.err("set sentinels", e.to_string()))?;
        self.put(&format!("/api/proxy/sentinels/{}", self.xauth), body, "set sentinels").await
    }

    pub async fn shutdown(&self) -> Result<(), ProxyCallError> {
        self.put(&format!("/api/proxy/shutdown/{}", self.xauth), Vec::new(), "shutdown").await
    }

    /// The proxy's stats, as its API returns them (kept as JSON: the dashboard relays them).
    pub async fn stats(&self) -> Result<serde_json::Value, ProxyCallError> {
        get(&self.http, &self.addr, &format!("/api/proxy/stats/{}", self.xauth), "fetch stats").await
    }

    fn err(&self, what: &'static str, cause: String) -> ProxyCallError {
        ProxyCallError { addr: self.addr.clone(), what, cause }
    }

    async fn put(&self, path: &str, body: Vec<u8>, what: &'static str) -> Result<(), ProxyCallError> {
        let resp = self
            .http
            .put(format!("http://{}{path}", self.addr))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.err(what, e.to_string()))?;
        check(resp, &self.addr, what).await.map(drop)
    }
}

async fn get<T: DeserializeOwned>(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    what: &'static str,
) -> Result<T, ProxyCallError> {
    let err = |cause: String| ProxyCallError { addr: addr.to_string(), what, cause };
    let resp = http.get(format!("http://{addr}{path}")).send().await.map_err(|e| err(e.to_string()))?;
    let body = check(resp, addr, what).await?;
    serde_json::from_slice(&body).map_err(|e| err(format!("bad JSON: {e}")))
}

/// Codis reports errors as HTTP 800 with `{"Cause": ...}`.
async fn check(resp: reqwest::Response, addr: &str, what: &'static str) -> Result<Vec<u8>, ProxyCallError> {
    let status = resp.status();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    let cause = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("Cause").and_then(|c| c.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(ProxyCallError { addr: addr.to_string(), what, cause })
}
