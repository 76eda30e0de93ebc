//! Where the FE finds products and their dashboards: a list file
//! (`[{"name": .., "dashboard": ..}]`, as Codis's `--dashboard-list`) or the coordinator
//! (every `/codis3/<product>/topom` node). Reloaded at most every [`RELOAD_EVERY`], so
//! a page polling `/list` does not hammer the coordinator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codis_store::Coordinator;
use serde::Deserialize;

use crate::FeError;

/// How often the product list may be reloaded.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Where products come from.
pub enum Source {
    /// A JSON file listing products and their dashboards.
    ListFile(PathBuf),
    /// A coordinator holding products' `topom` nodes.
    Coordinator(Arc<dyn Coordinator>),
}

#[derive(Deserialize)]
struct ListEntry {
    name: String,
    dashboard: String,
}

/// Product name → dashboard address.
pub type ProductList = Arc<BTreeMap<String, String>>;

/// The product list, cached.
pub struct Products {
    source: Source,
    cache: tokio::sync::Mutex<Option<(Instant, ProductList)>>,
}

impl Products {
    pub fn new(source: Source) -> Products {
        Products { source, cache: tokio::sync::Mutex::new(None) }
    }

    /// Product name → dashboard address, reloaded if older than [`RELOAD_EVERY`]. A
    /// failed reload keeps serving the last good list (and logs why).
    pub async fn all(&self) -> Result<ProductList, FeError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.as_ref()
            && at.elapsed() < RELOAD_EVERY
        {
            return Ok(list.clone());
        }
        match self.load().await {
            Ok(list) => {
                let list = Arc::new(list);
                *cache = Some((Instant::now(), list.clone()));
                Ok(list)
            }
            Err(e) => match cache.as_mut() {
                Some((at, list)) => {
                    tracing::warn!(error = %e, "cannot reload the product list; keeping the last one");
                    *at = Instant::now();
                    Ok(list.clone())
                }
                None => Err(e),
            },
        }
    }

    /// The dashboard address of `product`.
    pub async fn dashboard(&self, product: &str) -> Result<String, FeError> {
        self.all().await?.get(product).cloned().ok_or_else(|| FeError::UnknownProduct(product.to_string()))
    }

    async fn load(&self) -> Result<BTreeMap<String, String>, FeError> {
        match &self.source {
            Source::ListFile(path) => {
                let text = tokio::fs::read(path)
                    .await
                    .map_err(|e| FeError::ListFile { path: path.display().to_string(), cause: e.to_string() })?;
                let entries: Vec<ListEntry> = serde_json::from_slice(&text).map_err(|e| FeError::ListFile {
                    path: path.display().to_string(),
                    cause: format!("{e} (expected [{{\"name\": \"codis-demo\", \"dashboard\": \"127.0.0.1:18080\"}}])"),
                })?;
                Ok(entries.into_iter().map(|e| (e.name, e.dashboard)).collect())
            }
            Source::Coordinator(c) => {
                let mut out = BTreeMap::new();
                for dir in c.list(codis_store::CODIS_DIR, false).await? {
                    let name = dir.rsplit('/').next().unwrap_or_default().to_string();
                    let Some(data) = c.read(&codis_store::topom_path(&name), false).await? else { continue };
                    match serde_json::from_slice::<codis_core::models::Topom>(&data) {
                        Ok(t) => {
                            out.insert(name, t.admin_addr);
                        }
                        Err(e) => tracing::warn!(product = %name, error = %e, "unreadable topom node; skipping"),
                    }
                }
                Ok(out)
            }
        }
    }
}
