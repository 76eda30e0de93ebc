//! The product lock over time: taking it (at start, or later as a standby), noticing its
//! loss, and standing by until it can be taken again.
//!
//! The lock is the ephemeral topom node, so a dashboard that dies (or loses the
//! coordinator for longer than `coordinator_lease`) lets it go by itself. A dashboard
//! that takes the lock re-reads the whole state, pushes it to the proxies, and its
//! migration loop resumes the actions where they stood.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codis_core::models::SlotMapping;
use codis_store::Store;

use super::{Result, Topom, TopomError, load};

/// How often a standby tries to take the lock.
const RETRY: Duration = Duration::from_millis(250);

impl Topom {
    /// Takes the product lock, loads the state from the coordinator and becomes the
    /// active dashboard; fails (naming the holder) if another dashboard has the lock.
    pub(super) async fn take_over(self: &Arc<Self>) -> Result<()> {
        let node = self.base.lock(&self.model).await?;
        let fenced = Store::new(node.fenced(), self.base.product());
        let cache = match load(&self.base).await {
            Ok(c) => c,
            Err(e) => {
                let _ = node.release().await;
                return Err(e);
            }
        };
        {
            let mut state = self.state.lock().await;
            *state = cache;
            *self.store.write() = fenced;
            *self.lock_node.lock().await = Some(node);
            self.active.store(true, Ordering::Release);
        }
        tracing::warn!(
            product = %self.config.product_name,
            admin = %self.model.admin_addr,
            "dashboard holds the product lock"
        );
        // Proxies get the routing as stored now (a predecessor may have died half-way
        // through a push); the migration loop carries on from the stored states.
        let topom = self.clone();
        tokio::spawn(async move {
            let Ok(state) = topom.lock().await else { return };
            let all: Vec<i64> = state.slots.iter().map(|m: &SlotMapping| m.id).collect();
            if let Err(e) = topom.resync(&state, &all).await {
                tracing::warn!(error = %e, "pushing the routing to proxies after taking the lock");
            }
        });
        Ok(())
    }

    /// Stops acting on the lock's loss: no more writes or pushes (the fenced store
    /// refuses them already), then waits for operations under way to end.
    async fn step_down(&self) {
        self.active.store(false, Ordering::Release);
        let _state = self.state.lock().await;
        if let Some(node) = self.lock_node.lock().await.take() {
            let _ = node.release().await;
        }
        tracing::warn!(
            product = %self.config.product_name,
            "lost the product lock: stopped writing, standing by to take it again"
        );
    }

    /// The error of an operation refused while not holding the lock.
    pub(super) async fn standby_error(&self) -> TopomError {
        let holder = match self.base.topom().await {
            Ok(Some(t)) if t.token != self.model.token => format!("; the dashboard at {} holds it", t.admin_addr),
            _ => String::new(),
        };
        TopomError::Standby(format!(
            "this dashboard does not hold the lock of product {} (standing by){holder}",
            self.config.product_name
        ))
    }
}

/// Watches the lock while held, and tries to take it while not, until shutdown.
pub(super) async fn run(topom: Arc<Topom>) {
    let mut shutdown = topom.shutdown_signal();
    let mut last_error = String::new();
    loop {
        let lost = topom.lock_node.lock().await.as_ref().map(|n| n.lost());
        match lost {
            Some(lost) => {
                let shut = tokio::select! {
                    _ = lost => false,
                    _ = shutdown.wait_for(|&c| c) => true,
                };
                if shut {
                    return;
                }
                topom.step_down().await;
            }
            None if topom.is_closed() => return,
            None => {
                match topom.take_over().await {
                    Ok(()) => {
                        last_error.clear();
                        continue;
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if e != last_error {
                            tracing::info!(error = %e, "product lock not taken yet");
                            last_error = e;
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.wait_for(|&c| c) => return,
                }
            }
        }
    }
}
