//! Where cluster state lives: the coordinator.
//!
//! [`Coordinator`] is the one interface the dashboard, codis-admin and (for discovery)
//! the proxy use, whatever the backend: the embedded filesystem backend ([`fs`]) here,
//! etcd and ZooKeeper behind the same trait. [`Store`] layers Codis 3.2's layout and
//! JSON on top (`/codis3/<product>/{topom,slots,group,proxy,sentinel}`), so a codis-rs
//! dashboard and Codis tools read each other's state.

pub mod fs;
mod layout;
mod store;

use std::time::Duration;

use async_trait::async_trait;

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

    /// Creates `path` for as long as this client lives (jodis registration).
    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<()>;

    /// Resolves when `path` or its children change (or the client closes).
    async fn watch(&self, path: &str) -> Result<()>;

    async fn close(&self);
}

/// Opens a coordinator by Codis's names: `filesystem`/`fs`, `etcd`, `zookeeper`/`zk`.
pub async fn connect(name: &str, addr: &str, auth: &str, timeout: Duration) -> Result<Box<dyn Coordinator>> {
    let _ = (auth, timeout);
    match name {
        "filesystem" | "fs" => Ok(Box::new(fs::FsCoordinator::open(addr)?)),
        "etcd" | "zookeeper" | "zk" => Err(StoreError::Unsupported {
            what: "this backend",
            backend: if name == "etcd" { "etcd" } else { "zookeeper" },
            hint: " yet in this build; use --filesystem",
        }),
        other => Err(StoreError::UnknownBackend { name: other.to_string() }),
    }
}
