//! The filesystem coordinator: one file per node under `<root>/data`.
//!
//! Layout and behaviour follow Codis's: node `/a/b` is the file `<root>/data/a/b`, and
//! writes go to `<root>/temp` first and are renamed into place. In addition every write
//! is fsynced (file, then directory) so a crash never leaves a torn or lost node, and
//! operations serialise on an exclusive `flock` of `<root>/data.lck`, waiting for it
//! rather than failing as Codis did, so a dashboard and codis-admin can share a root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use crate::{Coordinator, Result, StoreError};

pub struct FsCoordinator {
    inner: Arc<Inner>,
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
        Ok(FsCoordinator { inner: Arc::new(inner) })
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = inner.lock()?;
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

    async fn create_ephemeral(&self, _path: &str, _data: &[u8]) -> Result<()> {
        Err(StoreError::Unsupported {
            what: "ephemeral nodes (jodis)",
            backend: "filesystem",
            hint: "; use etcd or zookeeper for jodis",
        })
    }

    async fn watch(&self, _path: &str) -> Result<()> {
        Err(StoreError::Unsupported { what: "watching", backend: "filesystem", hint: "" })
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }
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
        assert!(matches!(c.create_ephemeral("/jodis/p/x", b"").await, Err(StoreError::Unsupported { .. })));
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
