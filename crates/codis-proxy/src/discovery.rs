//! Finding and joining the dashboard: `--dashboard ADDR`, or Codis's
//! `--zookeeper/--etcd/--filesystem`, which read the dashboard's address from the
//! product's lock node (`/codis3/<product>/topom`) in the coordinator.

use std::time::Duration;

use anyhow::{Result, bail};

/// Tries `attempts` times, `pause` apart.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub pause: Duration,
}

/// The admin address of the dashboard holding `product` in the coordinator.
pub async fn dashboard_from_coordinator(
    name: &str,
    addr: &str,
    auth: &str,
    product: &str,
    retry: Retry,
) -> Result<String> {
    let client = codis_store::connect(name, addr, auth, Duration::from_secs(30)).await?;
    let store = codis_store::Store::new(client.into(), product);
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        match store.topom().await {
            Ok(Some(t)) if !t.admin_addr.is_empty() => {
                store.client().close().await;
                return Ok(t.admin_addr);
            }
            Ok(_) => last = format!("product {product} has no dashboard in the {name} coordinator at {addr}"),
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, "{last}; retrying in {:?}", retry.pause);
        if attempt < retry.attempts {
            tokio::time::sleep(retry.pause).await;
        }
    }
    store.client().close().await;
    bail!("{last}")
}

/// Asks the dashboard to register this proxy (it then fills the slots and starts it).
pub async fn online_with_dashboard(
    dashboard: &str,
    product: &str,
    product_auth: &str,
    admin_addr: &str,
    retry: Retry,
) -> Result<()> {
    let xauth = codis_core::auth::dashboard_xauth(product, product_auth);
    let url = format!("http://{dashboard}/api/topom/proxy/online/{xauth}/{admin_addr}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        match http.put(&url).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::warn!(dashboard, "registered with the dashboard");
                return Ok(());
            }
            Ok(r) => {
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                last =
                    body.get("Cause").and_then(|c| c.as_str()).map_or_else(|| format!("HTTP {status}"), str::to_string);
            }
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(dashboard, attempt, error = %last, "registering with the dashboard failed, retrying in {:?}", retry.pause);
        if attempt < retry.attempts {
            tokio::time::sleep(retry.pause).await;
        }
    }
    bail!("cannot register with the dashboard at {dashboard}: {last}")
}
