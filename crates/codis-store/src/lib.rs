//! Where cluster state lives: the coordinator.
//!
//! [`Coordinator`] is the one interface the dashboard, codis-admin and the proxy (jodis,
//! dashboard discovery) use, whatever the backend: a directory ([`fs`]), etcd v3
//! ([`etcd`]) or ZooKeeper ([`zk`]). [`Store`] layers Codis 3.2's layout and JSON on top
//! (`/codis3/<product>/{topom,slots,group,proxy,sentinel}`), so a codis-rs dashboard and
//! Codis tools read each other's state.
//!
//! Ephemeral nodes ([`Coordinator::create_ephemeral`]) live as long as their holder: a
//! ZooKeeper session, an etcd lease, or on the filesystem a `flock` the holder keeps.
//! Their [`Ephemeral`] handle says when the node is lost and gives a *fenced* view of the
//! coordinator whose writes succeed only while the node is still the holder's: that is
//! what makes the dashboard lock safe to fail over.

pub mod etcd;
pub mod fs;
mod layout;
mod store;
pub mod zk;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

pub use layout::*;
pub use store::{LockHolder, Store};

/// A coordinator operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} already exists")]
    Exists { path: String },
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{what} is not supported by the {backend} coordinator{hint}")]
    Unsupported { what: &'static str, backend: &'static str, hint: &'static str },
    #[error("coordinator {backend} at {addr}: {message}")]
    Backend { backend: &'static str, addr: String, message: String },
    #[error("invalid JSON at {path}: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{0}")]
    Locked(String),
    #[error("invalid coordinator {name:?}: use filesystem (fs), etcd or zookeeper (zk)")]
    UnknownBackend { name: String },
    #[error("the coordinator client is closed")]
    Closed,
    /// A fenced write refused: the ephemeral node it depends on is no longer ours.
    #[error("{path} is no longer held by this process (expired, removed or taken over); refusing to write")]
    Fenced { path: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Operations every coordinator backend offers. Paths are absolute, `/`-separated,
/// like ZooKeeper's.
#[async_trait]
pub trait Coordinator: Send + Sync {
    /// Which backend this is (`filesystem`, `etcd`, `zookeeper`).
    fn name(&self) -> &'static str;

    /// Where it is (a directory, or server addresses).
    fn addr(&self) -> &str;

    /// Creates `path`; fails with [`StoreError::Exists`] if it exists. Parents are
    /// created as needed.
    async fn create(&self, path: &str, data: &[u8]) -> Result<()>;

    /// Creates or replaces `path`.
    async fn update(&self, path: &str, data: &[u8]) -> Result<()>;

    /// Creates or replaces several nodes, each atomically (not all together); backends
    /// that can make this one durable write do so.
    async fn update_many(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        for (path, data) in nodes {
            self.update(path, data).await?;
        }
        Ok(())
    }

    /// Removes `path` and anything below it; removing nothing is not an error.
    async fn delete(&self, path: &str) -> Result<()>;

    /// The data at `path`; `None` if absent and `must` is false.
    async fn read(&self, path: &str, must: bool) -> Result<Option<Vec<u8>>>;

    /// The full paths of the children of `path`, sorted; empty if absent and `must` is false.
    async fn list(&self, path: &str, must: bool) -> Result<Vec<String>>;

    /// The children of `path` with their data (a node removed meanwhile is left out);
    /// backends fetch them in one round trip where they can.
    async fn read_children(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for child in self.list(path, false).await? {
            if let Some(data) = self.read(&child, false).await? {
                out.push((child, data));
            }
        }
        Ok(out)
    }

    /// Creates `path` for as long as this holder lives (jodis registration, the dashboard
    /// lock); fails with [`StoreError::Exists`] if another holder has it. A node that
    /// holds exactly `data` is taken as this holder's own leftover (callers put a unique
    /// token in `data`) and replaced.
    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<Ephemeral>;

    /// Resolves when `path` or its children change (or the client closes).
    async fn watch(&self, path: &str) -> Result<()>;

    async fn close(&self);
}

/// A node created by [`Coordinator::create_ephemeral`], held until released, its holder
/// dies, or the coordinator lets it go (session expired, lease not renewed in time,
/// node removed by someone else).
pub struct Ephemeral {
    path: String,
    lost: watch::Receiver<bool>,
    fenced: Arc<dyn Coordinator>,
    release: Option<Box<dyn FnOnce() -> ReleaseFuture + Send + Sync>>,
}

/// What releasing an ephemeral node does (backend specific).
pub(crate) type ReleaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

impl Ephemeral {
    pub(crate) fn new(
        path: &str,
        lost: watch::Receiver<bool>,
        fenced: Arc<dyn Coordinator>,
        release: impl FnOnce() -> ReleaseFuture + Send + Sync + 'static,
    ) -> Ephemeral {
        Ephemeral { path: path.to_string(), lost, fenced, release: Some(Box::new(release)) }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the node is no longer (certainly) this holder's.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the node is lost. The holder learns it before anyone else can take
    /// the node over (leases are given up locally ahead of their expiry on the server).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.lost.clone();
        async move {
            let _ = rx.wait_for(|&l| l).await;
        }
    }

    /// The coordinator seen through this node: its writes succeed only while the node
    /// is still this holder's (checked by the coordinator in the same transaction).
    pub fn fenced(&self) -> Arc<dyn Coordinator> {
        self.fenced.clone()
    }

    /// Deletes the node (if still ours) and stops keeping it alive.
    pub async fn release(mut self) -> Result<()> {
        match self.release.take() {
            Some(f) => f().await,
            None => Ok(()),
        }
    }
}

impl Drop for Ephemeral {
    /// Dropped without [`Ephemeral::release`]: the node is let go in the background.
    fn drop(&mut self) {
        if let Some(f) = self.release.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(f());
        }
    }
}

/// Opens a coordinator by Codis's names: `filesystem`/`fs`, `etcd`, `zookeeper`/`zk`.
/// `auth` is `user:password` (ZooKeeper digest, etcd user); `timeout` is the session or
/// lease time of ephemeral nodes (how long a dead holder keeps them).
pub async fn connect(name: &str, addr: &str, auth: &str, timeout: Duration) -> Result<Box<dyn Coordinator>> {
    match name {
        "filesystem" | "fs" => Ok(Box::new(fs::FsCoordinator::open(addr)?)),
        "etcd" => Ok(Box::new(etcd::EtcdCoordinator::connect(addr, auth, timeout).await?)),
        "zookeeper" | "zk" => Ok(Box::new(zk::ZkCoordinator::connect(addr, auth, timeout).await?)),
        other => Err(StoreError::UnknownBackend { name: other.to_string() }),
    }
}

/// Splits `user:password` (either may be empty, the password may hold ':').
pub(crate) fn split_auth(auth: &str) -> Option<(&str, &str)> {
    (!auth.is_empty()).then(|| auth.split_once(':').unwrap_or((auth, "")))
}

/// The direct children of `dir` among `keys` (full paths, deduplicated, sorted): what
/// a flat key space (etcd) calls a directory listing.
pub(crate) fn direct_children<'a>(dir: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let base = dir.trim_end_matches('/');
    let prefix = format!("{base}/");
    let mut out: Vec<String> = keys
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next().filter(|n| !n.is_empty()))
        .map(|name| format!("{base}/{name}"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Refuses node paths that are not absolute `/`-separated names.
pub(crate) fn check_path(backend: &'static str, addr: &str, path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend { backend, addr: addr.to_string(), message: format!("invalid node path {path:?}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_of_a_flat_key_space() {
        let keys = ["/a/b/c", "/a/b/d/e", "/a/b/d/f", "/a/bb/x", "/a/b"];
        assert_eq!(direct_children("/a/b", keys.into_iter()), vec!["/a/b/c", "/a/b/d"]);
        assert_eq!(direct_children("/a", keys.into_iter()), vec!["/a/b", "/a/bb"]);
        assert!(direct_children("/z", keys.into_iter()).is_empty());
    }

    #[test]
    fn auth_and_paths() {
        assert_eq!(split_auth("u:p:q"), Some(("u", "p:q")));
        assert_eq!(split_auth("u"), Some(("u", "")));
        assert_eq!(split_auth(""), None);
        assert!(check_path("x", "", "/codis3/p/topom").is_ok());
        for bad in ["", "/", "rel", "/a/../b", "/a//b", "/a/"] {
            assert!(check_path("x", "", bad).is_err(), "{bad}");
        }
    }
}
