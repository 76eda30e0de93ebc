//! Jodis registration: while online, the proxy keeps an ephemeral node (ZooKeeper) or a
//! leased key (etcd) naming its addresses, where Jodis clients find the product's proxies.
//!
//! Path and JSON are Codis's: `/jodis/<product>/proxy-<token>` (or, with
//! `jodis_compatible`, Codis 2's `/zk/codis/db_<product>/proxy/<token>`) holding
//! `{"addr","admin","start","state":"online","token"}`. A node lost to a coordinator
//! outage is created again once the coordinator answers; the proxy serves clients
//! throughout, since the registration is only for discovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use codis_core::models;
use codis_store::StoreError;

use crate::config::Config;
use crate::proxy::Shared;

/// Where the proxy with `token` registers (empty when jodis is off).
pub fn path(config: &Config, token: &str) -> String {
    match (config.jodis_name.as_str(), config.jodis_compatible) {
        ("", _) => String::new(),
        (_, true) => format!("/zk/codis/db_{}/proxy/{token}", config.product_name),
        (_, false) => codis_store::jodis_path(&config.product_name, token),
    }
}

/// The node's data, as Codis writes it (sorted keys, 4-space indent).
pub fn data(model: &models::Proxy) -> Vec<u8> {
    let m: BTreeMap<&str, &str> = [
        ("addr", model.proxy_addr.as_str()),
        ("admin", model.admin_addr.as_str()),
        ("start", model.start_time.as_str()),
        ("token", model.token.as_str()),
        ("state", "online"),
    ]
    .into_iter()
    .collect();
    codis_core::json::to_vec_pretty(&m).expect("a map of strings serializes")
}

/// Keeps the registration until the proxy closes, then removes it.
pub(crate) async fn run(shared: Arc<Shared>) {
    let c = &shared.config;
    let (path, data) = (shared.model.jodis_path.clone(), data(&shared.model));
    let mut shutdown = shared.shutdown.subscribe();
    let retry = Duration::from_secs(1);
    let mut client = None;
    let mut last_error = String::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if client.is_none() {
            match codis_store::connect(&c.jodis_name, &c.jodis_addr, &c.jodis_auth, c.jodis_timeout.duration()).await {
                Ok(cl) => client = Some(cl),
                Err(e) => log_once(&mut last_error, format!("jodis: {e}")),
            }
        }
        if let Some(cl) = &client {
            match cl.create_ephemeral(&path, &data).await {
                Ok(node) => {
                    tracing::warn!(path, "jodis node created");
                    last_error.clear();
                    let closing = tokio::select! {
                        _ = node.lost() => false,
                        _ = shutdown.wait_for(|&s| s) => true,
                    };
                    if closing {
                        match node.release().await {
                            Ok(()) => tracing::warn!(path, "jodis node removed"),
                            Err(e) => tracing::warn!(path, error = %e, "jodis node not removed"),
                        }
                        cl.close().await;
                        return;
                    }
                    tracing::warn!(path, "jodis node lost, creating it again");
                }
                // Our previous incarnation's node (same token) until its lease ends.
                Err(e @ StoreError::Exists { .. }) => log_once(&mut last_error, format!("jodis: {e}")),
                Err(e) => log_once(&mut last_error, format!("jodis: {e}")),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.wait_for(|&s| s) => return,
        }
    }
}

fn log_once(last: &mut String, e: String) {
    if *last != e {
        tracing::warn!("{e}; retrying");
        *last = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codis_path_and_json() {
        let mut c = Config { product_name: "demo".into(), ..Config::default() };
        assert_eq!(path(&c, "t1"), "");
        c.jodis_name = "zookeeper".into();
        assert_eq!(path(&c, "t1"), "/jodis/demo/proxy-t1");
        c.jodis_compatible = true;
        assert_eq!(path(&c, "t1"), "/zk/codis/db_demo/proxy/t1");
        let m = models::Proxy {
            token: "t1".into(),
            proxy_addr: "10.0.0.1:19000".into(),
            admin_addr: "10.0.0.1:11080".into(),
            start_time: "2026-11-22 10:00:00.000000000 +0000 UTC".into(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(data(&m)).unwrap(),
            "{\n    \"addr\": \"10.0.0.1:19000\",\n    \"admin\": \"10.0.0.1:11080\",\n    \"start\": \
             \"2026-11-22 10:00:00.000000000 +0000 UTC\",\n    \"state\": \"online\",\n    \"token\": \"t1\"\n}"
        );
    }
}
