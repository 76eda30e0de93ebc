//! Proxies: registration, (re)initialisation with the full routing, removal.

use codis_core::models::{Proxy, SlotMapping};

use super::{Cache, Result, Topom, TopomError};
use crate::proxy_client::ProxyClient;

impl Topom {
    /// Registers a new proxy by its admin address and brings it online.
    pub async fn create_proxy(&self, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let mut p = self.fetch_proxy(addr).await?;
        if cache.proxies.contains_key(&p.token) {
            return Err(TopomError::msg(format!("proxy-[{}] already exists", p.token)));
        }
        p.id = cache.max_proxy_id() + 1;
        self.store().update_proxy(&p).await?;
        cache.proxies.insert(p.token.clone(), p.clone());
        self.reinit(&cache, &p).await
    }

    /// Registers a proxy, or refreshes a known one (a proxy calls this when it starts).
    pub async fn online_proxy(&self, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let mut p = self.fetch_proxy(addr).await?;
        p.id = match cache.proxies.get(&p.token) {
            Some(known) => known.id,
            None => cache.max_proxy_id() + 1,
        };
        self.store().update_proxy(&p).await?;
        cache.proxies.insert(p.token.clone(), p.clone());
        self.reinit(&cache, &p).await
    }

    pub async fn reinit_proxy(&self, token: &str) -> Result<()> {
        let cache = self.lock().await?;
        let p = cache.proxy(token)?.clone();
        self.reinit(&cache, &p).await
    }

    /// Shuts a proxy down and forgets it; with `force`, even if it cannot be reached.
    pub async fn remove_proxy(&self, token: &str, force: bool) -> Result<()> {
        let mut cache = self.lock().await?;
        let p = cache.proxy(token)?.clone();
        if let Err(e) = self.proxy_client(&p).shutdown().await {
            if !force {
                return Err(TopomError::msg(format!(
                    "proxy-[{token}] shutdown failed ({e}); remove it with force to forget it anyway"
                )));
            }
            tracing::warn!(token, error = %e, "proxy shutdown failed, removing anyway");
        }
        self.store().delete_proxy(token).await?;
        cache.proxies.remove(token);
        Ok(())
    }

    async fn fetch_proxy(&self, addr: &str) -> Result<Proxy> {
        let p = ProxyClient::model(&self.http, addr).await?;
        if p.product_name != self.config.product_name {
            return Err(TopomError::msg(format!(
                "proxy@{addr} belongs to product {:?}, not {:?}",
                p.product_name, self.config.product_name
            )));
        }
        self.proxy_client(&p)
            .xping()
            .await
            .map_err(|e| TopomError::msg(format!("{e} (is its product_auth the same as the dashboard's?)")))?;
        Ok(p)
    }

    /// Gives a proxy the whole routing, starts it, and tells it the sentinels.
    async fn reinit(&self, cache: &Cache, p: &Proxy) -> Result<()> {
        let c = self.proxy_client(p);
        let all: Vec<&SlotMapping> = cache.slots.iter().collect();
        c.fill_slots(&self.slots_for(cache, &all, Some(p))).await?;
        c.start().await?;
        c.set_sentinels(&cache.sentinel).await?;
        tracing::info!(token = %p.token, addr = %p.admin_addr, "proxy initialised");
        Ok(())
    }

    /// Re-onlines a registered proxy that reports it is not online (it restarted).
    pub(super) async fn reonline_if_needed(&self, token: &str, online: bool) {
        if online {
            return;
        }
        let Ok(cache) = self.lock().await else { return };
        let Some(p) = cache.proxies.get(token).cloned() else { return };
        match self.reinit(&cache, &p).await {
            Ok(()) => tracing::warn!(token, "proxy was offline, re-initialised"),
            Err(e) => tracing::warn!(token, error = %e, "proxy re-online failed"),
        }
    }
}
