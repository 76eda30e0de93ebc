//! codis-dashboard: the one writer of a product's cluster state.
//!
//! [`topom`] holds the state and every operation on it (proxies, groups, slots, the
//! migration loop, stats); [`api`] serves Codis's REST routes over it; [`config`] reads
//! `dashboard.toml`; [`proxy_client`] talks to proxies' admin APIs.

pub mod api;
pub mod config;
pub mod proxy_client;
pub mod topom;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use topom::Topom;

/// A running dashboard: state loaded, lock held, API and loops started.
pub struct Dashboard {
    pub topom: Arc<Topom>,
    pub admin_addr: String,
}

impl Dashboard {
    /// Opens the coordinator, takes the product lock (or, with `config.standby`, waits
    /// for it in the background), and serves the API on `config.admin_addr`.
    pub async fn start(config: Config) -> anyhow::Result<Dashboard> {
        config.validate()?;
        let listener = TcpListener::bind(&config.admin_addr).await.with_context(|| {
            format!("cannot listen on admin_addr {} (is another process using it?)", config.admin_addr)
        })?;
        let local = listener.local_addr()?.to_string();
        let admin_addr = advertised(&local, &config.host_admin);
        let client = codis_store::connect(
            &config.coordinator_name,
            &config.coordinator_addr,
            &config.coordinator_auth,
            config.coordinator_lease.duration(),
        )
        .await?;
        let store = codis_store::Store::new(client.into(), &config.product_name);
        let standby = config.standby;
        let topom = Topom::open(config, store, &admin_addr, &local, standby).await?;
        topom.start_loops();
        tokio::spawn(api::serve(listener, topom.clone()));
        Ok(Dashboard { topom, admin_addr })
    }
}

/// The address to publish: `host` if given, else the listen address with an
/// unspecified IP replaced by this host's name (or 127.0.0.1), as Codis does.
fn advertised(local: &str, host: &str) -> String {
    if !host.is_empty() {
        return host.to_string();
    }
    match local.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.ip().is_unspecified() => {
            let name =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
            let resolves = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), sa.port()))
                .is_ok_and(|mut a| a.next().is_some());
            if resolves && !name.is_empty() {
                format!("{name}:{}", sa.port())
            } else {
                format!("127.0.0.1:{}", sa.port())
            }
        }
        _ => local.to_string(),
    }
}
