//! The filesystem coordinator: one file per node under `<root>/data`.
//!
//! Layout and behaviour follow Codis's: node `/a/b` is the file `<root>/data/a/b`, and
//! writes go to `<root>/temp` first and are renamed into place. In addition every write
//! is fsynced (file, then directory) so a crash never leaves a torn or lost node, and
//! operations serialise on an exclusive `flock` of `<root>/data.lck`, waiting for it
//! rather than failing as Codis did, so a dashboard and codis-admin can share a root.
//!
//! Codis has no ephemeral nodes here. This backend has them for the dashboard lock: the
//! holder keeps an exclusive `flock` on `<root>/leases/<path>` for as long as it lives,
//! and writes the node's data there too. The node file itself stays when the holder
//! dies, but a later `create_ephemeral` finds the lease unlocked with the same data and
//! takes the node over; a node whose data does not match (a lock left by Codis) stays
//! locked until removed. Fenced writes compare the node with its holder's data under the
//! data lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Coordinator, Ephemeral, Result, StoreError};

/// How often a holder looks whether its ephemeral node was removed or replaced.
const POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct FsCoordinator {
    inner: Arc<Inner>,
    fence: Option<Arc<Fence>>,
}

/// What a fenced view's writes depend on: the node still holds its holder's data.
struct Fence {
    path: String,
    data: Vec<u8>,
    lost: watch::Receiver<bool>,
}

struct Inner {
    root: String,
    data: PathBuf,
    temp: PathBuf,
    lock_file: PathBuf,
    closed: AtomicBool,
    seq: AtomicU64,
}

impl FsCoordinator {
    /// Opens (creating if needed) a coordinator rooted at `root`.
    pub fn open(root: &str) -> Result<FsCoordinator> {
        if root.is_empty() {
            return Err(StoreError::Backend {
                backend: "filesystem",
                addr: root.to_string(),
                message: "empty root directory: pass a directory like /tmp/codis".into(),
            });
        }
        let abs = std::path::absolute(root).map_err(|e| io_error(root, e))?;
        let inner = Inner {
            root: abs.display().to_string(),
            data: abs.join("data"),
            temp: abs.join("temp"),
            lock_file: abs.join("data.lck"),
            closed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        };
        fs::create_dir_all(&inner.data).map_err(|e| io_error(&inner.root, e))?;
        fs::create_dir_all(&inner.temp).map_err(|e| io_error(&inner.root, e))?;
        Ok(FsCoordinator { inner: Arc::new(inner), fence: None })
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let inner = self.inner.clone();
        let fence = self.fence.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = inner.lock()?;
            if let Some(f) = fence {
                let current = inner.real(&f.path).map(|r| fs::read(r).ok())?;
                if *f.lost.borrow() || current.as_deref() != Some(&f.data[..]) {
                    return Err(StoreError::Fenced { path: f.path.clone() });
                }
            }
            f(&inner)
        })
        .await
        .map_err(|e| StoreError::Backend {
            backend: "filesystem",
            addr: self.inner.root.clone(),
            message: e.to_string(),
        })?
    }
}

fn io_error(root: &str, e: io::Error) -> StoreError {
    StoreError::Backend { backend: "filesystem", addr: root.to_string(), message: e.to_string() }
}

/// An exclusive `flock`, released on drop.
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by the file, which is still open.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Inner {
    fn lock(&self) -> Result<FileLock> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_file)
            .map_err(|e| self.err(e))?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is free.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(self.err(io::Error::last_os_error()));
        }
        Ok(FileLock(f))
    }

    fn err(&self, e: io::Error) -> StoreError {
        io_error(&self.root, e)
    }

    /// The lease file of ephemeral node `path`.
    fn lease_file(&self, path: &str) -> Result<PathBuf> {
        self.real(path)?;
        let name = path.trim_start_matches('/').replace('/', "%");
        Ok(self.data.with_file_name("leases").join(format!("{name}.lck")))
    }

    /// The file of node `path`; `..` and other escapes are refused.
    fn real(&self, path: &str) -> Result<PathBuf> {
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(StoreError::Backend {
                backend: "filesystem",
                addr: self.root.clone(),
                message: format!("invalid node path {path:?}"),
            });
        }
        Ok(self.data.join(rel))
    }

    /// Writes `data` to `real` atomically and durably.
    fn write(&self, real: &Path, data: &[u8]) -> Result<()> {
        self.write_many(&[(real.to_path_buf(), data)])
    }

    /// Writes each node atomically and all of them durably, paying for about one
    /// flush: the temporary files are synced from parallel threads (the filesystem
    /// journal commits them together), then renamed, then each directory synced once.
    fn write_many(&self, nodes: &[(PathBuf, &[u8])]) -> Result<()> {
        let mut temps = Vec::with_capacity(nodes.len());
        let result = (|| {
            for (real, data) in nodes {
                fs::create_dir_all(real.parent().unwrap_or(&self.data))?;
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let tmp = self.temp.join(format!("{}.{}.tmp", std::process::id(), n));
                let mut f = File::create(&tmp)?;
                temps.push(tmp);
                f.write_all(data)?;
                f.flush()?;
            }
            sync_files(&temps)?;
            let mut dirs = Vec::new();
            for (tmp, (real, _)) in temps.iter().zip(nodes) {
                fs::rename(tmp, real)?;
                let dir = real.parent().unwrap_or(&self.data);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            temps.clear();
            dirs.iter().try_for_each(|d| File::open(d)?.sync_all())
        })();
        for tmp in &temps {
            let _ = fs::remove_file(tmp);
        }
        result.map_err(|e| self.err(e))
    }
}

/// fsyncs `files`, several at a time.
fn sync_files(files: &[PathBuf]) -> io::Result<()> {
    const THREADS: usize = 8;
    let sync = |chunk: &[PathBuf]| chunk.iter().try_for_each(|p| File::open(p)?.sync_all());
    if files.len() <= 1 {
        return sync(files);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = files.chunks(files.len().div_ceil(THREADS)).map(|c| s.spawn(move || sync(c))).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked"))))
    })
}

#[async_trait]
impl Coordinator for FsCoordinator {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn addr(&self) -> &str {
        &self.inner.root
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<()> {
        let (path, data) = (path.to_string(), data.to_vec());
        self.run(move |inner| {
            let real = inner.real(&path)?;
            if real.exists() {
                return Err(StoreError::Exists { path });
            }
            inner.write(&real, &data)
        })
        .await
    }

    async fn update(&self, path: &str, data: &[u8]) -> Result<()> {
        let (path, data) = (path.to_string(), data.to_vec());
        self.run(move |inner| inner.write(&inner.real(&path)?, &data)).await
    }

    async fn update_many(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        let nodes = nodes.to_vec();
        self.run(move |inner| {
            let reals = nodes.iter().map(|(p, _)| inner.real(p)).collect::<Result<Vec<_>>>()?;
            let pairs: Vec<(PathBuf, &[u8])> = reals.into_iter().zip(nodes.iter().map(|(_, d)| &d[..])).collect();
            inner.write_many(&pairs)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let path = path.to_string();
        self.run(move |inner| {
            let real = inner.real(&path)?;
            let r = if real.is_dir() { fs::remove_dir_all(&real) } else { fs::remove_file(&real) };
            match r {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(inner.err(e)),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn read(&self, path: &str, must: bool) -> Result<Option<Vec<u8>>> {
        let path = path.to_string();
        self.run(move |inner| match fs::read(inner.real(&path)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !must => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound { path }),
            Err(e) => Err(inner.err(e)),
        })
        .await
    }

    async fn list(&self, path: &str, must: bool) -> Result<Vec<String>> {
        let path = path.to_string();
        self.run(move |inner| {
            let real = inner.real(&path)?;
            let entries = match fs::read_dir(&real) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !must => return Ok(Vec::new()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound { path }),
                Err(e) => return Err(inner.err(e)),
            };
            let base = path.trim_end_matches('/');
            let mut out: Vec<String> =
                entries.flatten().map(|e| format!("{base}/{}", e.file_name().to_string_lossy())).collect();
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<Ephemeral> {
        let (path_s, data_v) = (path.to_string(), data.to_vec());
        let lease = self
            .run(move |inner| {
                let file = inner.lease_file(&path_s)?;
                fs::create_dir_all(file.parent().unwrap_or(&inner.data)).map_err(|e| inner.err(e))?;
                let mut lease = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&file)
                    .map_err(|e| inner.err(e))?;
                // SAFETY: flock on a descriptor we own; fails at once if another holder has it.
                if unsafe { libc::flock(lease.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                    return Err(StoreError::Exists { path: path_s });
                }
                let real = inner.real(&path_s)?;
                if let Ok(existing) = fs::read(&real) {
                    // A dead holder's node (its lease says the same) or our own leftover.
                    let left = fs::read(&file).unwrap_or_default();
                    if existing != left && existing != data_v {
                        return Err(StoreError::Exists { path: path_s });
                    }
                }
                inner.write(&real, &data_v)?;
                lease.set_len(0).and_then(|_| lease.write_all(&data_v)).map_err(|e| inner.err(e))?;
                Ok(lease)
            })
            .await?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let stop = Arc::new(tokio::sync::Notify::new());
        let fence = Arc::new(Fence { path: path.to_string(), data: data.to_vec(), lost: lost_rx.clone() });
        let fenced = FsCoordinator { inner: self.inner.clone(), fence: Some(fence) };
        // Shared with the watcher, which lets the flock go as soon as the node is lost.
        let lease = Arc::new(std::sync::Mutex::new(Some(lease)));
        tokio::spawn(watch_node(fenced.clone(), lease.clone(), lost_tx, stop.clone()));
        let this = fenced.clone();
        Ok(Ephemeral::new(path, lost_rx, Arc::new(fenced), move || {
            Box::pin(async move {
                stop.notify_one();
                let fence = this.fence.clone().expect("fenced view");
                let r = match this.delete(&fence.path).await {
                    Err(StoreError::Fenced { .. }) => Ok(()), // not ours any more: leave it
                    other => other,
                };
                unlock(&lease);
                r
            })
        }))
    }

    async fn watch(&self, _path: &str) -> Result<()> {
        Err(StoreError::Unsupported { what: "watching", backend: "filesystem", hint: "" })
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// Empties and closes a lease file, which lets its flock go.
fn unlock(lease: &std::sync::Mutex<Option<File>>) {
    if let Some(f) = lease.lock().expect("lease lock").take() {
        let _ = f.set_len(0);
    }
}

/// Sets `lost` (and lets the lease go) once the fenced view's node no longer holds its
/// holder's data.
async fn watch_node(
    c: FsCoordinator,
    lease: Arc<std::sync::Mutex<Option<File>>>,
    lost: watch::Sender<bool>,
    stop: Arc<tokio::sync::Notify>,
) {
    let fence = c.fence.clone().expect("fenced view");
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let unfenced = FsCoordinator { inner: c.inner.clone(), fence: None };
        match unfenced.read(&fence.path, false).await {
            Ok(Some(d)) if d == fence.data => continue,
            Err(StoreError::Closed) => return,
            Err(_) => continue,
            Ok(_) => break,
        }
    }
    tracing::warn!(node = %fence.path, "lost ephemeral node: removed or replaced");
    unlock(&lease);
    lost.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (FsCoordinator, PathBuf) {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir =
            std::env::temp_dir().join(format!("codis-fs-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&dir);
        (FsCoordinator::open(dir.to_str().unwrap()).unwrap(), dir)
    }

    #[tokio::test]
    async fn update_many_writes_every_node_and_refuses_escapes_whole() {
        let (c, dir) = tmp();
        let nodes: Vec<(String, Vec<u8>)> =
            (0..40).map(|i| (format!("/codis3/p/slots/slot-{i:04}"), format!("{{\"id\":{i}}}").into_bytes())).collect();
        c.update_many(&nodes).await.unwrap();
        let listed = c.list("/codis3/p/slots", true).await.unwrap();
        assert_eq!(listed.len(), 40);
        assert_eq!(c.read("/codis3/p/slots/slot-0039", true).await.unwrap().unwrap(), b"{\"id\":39}");
        // A bad path anywhere fails the call before anything is written.
        let bad = vec![("/codis3/p/x".to_string(), b"1".to_vec()), ("/../escape".to_string(), b"2".to_vec())];
        assert!(c.update_many(&bad).await.is_err());
        assert_eq!(c.read("/codis3/p/x", false).await.unwrap(), None);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.join("temp")).unwrap().count(), 0);
        let _ = fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn create_update_read_list_delete() {
        let (c, dir) = tmp();
        c.create("/codis3/p/topom", b"one").await.unwrap();
        assert!(matches!(c.create("/codis3/p/topom", b"two").await, Err(StoreError::Exists { .. })));
        assert_eq!(c.read("/codis3/p/topom", true).await.unwrap().unwrap(), b"one");
        c.update("/codis3/p/topom", b"three").await.unwrap();
        assert_eq!(c.read("/codis3/p/topom", false).await.unwrap().unwrap(), b"three");
        assert_eq!(c.read("/codis3/p/none", false).await.unwrap(), None);
        assert!(matches!(c.read("/codis3/p/none", true).await, Err(StoreError::NotFound { .. })));
        c.update("/codis3/p/slots/slot-0001", b"{}").await.unwrap();
        c.update("/codis3/p/slots/slot-0000", b"{}").await.unwrap();
        assert_eq!(
            c.list("/codis3/p/slots", true).await.unwrap(),
            vec!["/codis3/p/slots/slot-0000", "/codis3/p/slots/slot-0001"]
        );
        assert_eq!(c.list("/codis3", true).await.unwrap(), vec!["/codis3/p"]);
        assert!(c.list("/codis3/q", false).await.unwrap().is_empty());
        // Codis's file layout: <root>/data/<path>
        assert_eq!(fs::read(dir.join("data/codis3/p/topom")).unwrap(), b"three");
        c.delete("/codis3/p/slots").await.unwrap();
        c.delete("/codis3/p/slots").await.unwrap();
        assert!(c.list("/codis3/p/slots", false).await.unwrap().is_empty());
        assert!(c.read("/../etc/passwd", false).await.is_err());
        c.close().await;
        assert!(matches!(c.read("/codis3/p/topom", false).await, Err(StoreError::Closed)));
        let _ = fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn concurrent_creates_have_one_winner() {
        let (c, dir) = tmp();
        let c = Arc::new(c);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let c = c.clone();
            tasks.push(tokio::spawn(
                async move { c.create("/codis3/p/topom", format!("{i}").as_bytes()).await.is_ok() },
            ));
        }
        let mut wins = 0;
        for t in tasks {
            wins += t.await.unwrap() as usize;
        }
        assert_eq!(wins, 1);
        let _ = fs::remove_dir_all(dir);
    }
}
