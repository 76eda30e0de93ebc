//! The ZooKeeper coordinator: nodes are znodes, as in Codis.
//!
//! With `user:password`, the session authenticates with the digest scheme and creates
//! every node readable and writable by that user only (Codis's digest ACLs). Ephemeral
//! nodes belong to the session; a session that expires (the client gives it up after
//! 7/5 of its timeout without the servers) is replaced by a new one, and the holders of
//! its ephemeral nodes are told they lost them. A holder also gives a node up once it has
//! been disconnected for two thirds of the session timeout, before the servers could
//! expire it. Fenced writes go through the session that owns the node and check the
//! node's version in the same `multi`: exact against expiry (the session is gone, no
//! write passes), and against removal; a node removed *and* re-created by another holder
//! in the moment before the old holder's watch fires has the same version, so that one
//! case is caught by the watch (writes stop when it fires) rather than by the check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use zookeeper_client as zk;

use crate::{Coordinator, Ephemeral, Result, StoreError, check_path, split_auth};

/// Operations per `multi` request (far below ZooKeeper's 1 MB request limit for
/// Codis's small JSON nodes).
const MULTI_OPS: usize = 100;

#[derive(Clone)]
pub struct ZkCoordinator {
    inner: Arc<Inner>,
    fence: Option<Arc<Fence>>,
}

struct Inner {
    addr: String,
    auth: Option<(String, String)>,
    timeout: Duration,
    acls: zk::Acls<'static>,
    /// The current session (replaced when one expires).
    client: Mutex<zk::Client>,
    closed: AtomicBool,
}

/// What a fenced view's writes depend on: the owning session and the node's version.
struct Fence {
    client: zk::Client,
    path: String,
    version: i32,
    lost: watch::Receiver<bool>,
}

impl ZkCoordinator {
    /// Connects to `addr` (`host:port[,host:port...][/chroot]`). An unreachable address,
    /// or credentials that cannot read existing Codis nodes, fail here with one line.
    pub async fn connect(addr: &str, auth: &str, timeout: Duration) -> Result<ZkCoordinator> {
        let fail = |message: String| StoreError::Backend { backend: "zookeeper", addr: addr.to_string(), message };
        let hosts = addr.split('/').next().unwrap_or("");
        if hosts.trim().is_empty() {
            return Err(fail("no address: pass host:port[,host:port...]".into()));
        }
        reachable(hosts).await.map_err(|e| fail(format!("cannot connect: {e}")))?;
        let auth = split_auth(auth).map(|(u, p)| (u.to_string(), p.to_string()));
        let acls = match &auth {
            Some(_) => zk::Acls::creator_all(),
            None => zk::Acls::anyone_all(),
        };
        let client = new_session(addr, &auth, timeout).await.map_err(|e| fail(format!("cannot connect: {e}")))?;
        for root in ["/codis3", "/jodis", "/zk"] {
            match client.list_children(root).await {
                Ok(_) | Err(zk::Error::NoNode) => {}
                Err(zk::Error::NoAuth) => {
                    return Err(fail(format!(
                        "not allowed to read {root}: {}",
                        if auth.is_some() {
                            "wrong coordinator user:password"
                        } else {
                            "its nodes need a user:password (coordinator_auth)"
                        }
                    )));
                }
                Err(e) => return Err(fail(format!("cannot read {root}: {e}"))),
            }
        }
        let inner = Arc::new(Inner {
            addr: addr.to_string(),
            auth,
            timeout,
            acls,
            client: Mutex::new(client),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(supervise(Arc::downgrade(&inner)));
        Ok(ZkCoordinator { inner, fence: None })
    }

    /// The session writes go through: the fence's for a fenced view.
    fn client(&self) -> zk::Client {
        match &self.fence {
            Some(f) => f.client.clone(),
            None => self.inner.client.lock().expect("zk client lock").clone(),
        }
    }

    fn err(&self, e: zk::Error) -> StoreError {
        let message = match e {
            zk::Error::NoAuth => "not allowed (check the coordinator's user:password)".to_string(),
            zk::Error::SessionExpired | zk::Error::ClientClosed => {
                "session expired (the servers were unreachable for too long); reconnecting".to_string()
            }
            zk::Error::ConnectionLoss => "connection lost; retry once the servers answer".to_string(),
            other => other.to_string(),
        };
        StoreError::Backend { backend: "zookeeper", addr: self.inner.addr.clone(), message }
    }

    fn ready(&self, path: &str) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if let Some(f) = &self.fence
            && *f.lost.borrow()
        {
            return Err(StoreError::Fenced { path: f.path.clone() });
        }
        check_path("zookeeper", &self.inner.addr, path)
    }

    fn options(&self, mode: zk::CreateMode) -> zk::CreateOptions<'static> {
        mode.with_acls(self.inner.acls)
    }

    fn failed(&self, f: Failed) -> StoreError {
        match f {
            Failed::Fenced => {
                StoreError::Fenced { path: self.fence.as_ref().map(|f| f.path.clone()).unwrap_or_default() }
            }
            Failed::Zk(e) => self.err(e),
        }
    }

    /// Creates the parents of `path` (persistent, empty).
    async fn mkdir_parent(&self, client: &zk::Client, path: &str) -> Result<()> {
        match path.rfind('/') {
            Some(i) if i > 0 => {
                client.mkdir(&path[..i], &self.options(zk::CreateMode::Persistent)).await.map_err(|e| self.err(e))
            }
            _ => Ok(()),
        }
    }

    /// Runs `add` on a multi-write that first checks the fence.
    async fn multi(
        &self,
        client: &zk::Client,
        add: impl Fn(&mut zk::MultiWriter<'_>) -> std::result::Result<(), zk::Error>,
    ) -> std::result::Result<(), Failed> {
        let mut w = client.new_multi_writer();
        if let Some(f) = &self.fence {
            w.add_check_version(&f.path, f.version).map_err(Failed::Zk)?;
        }
        add(&mut w).map_err(Failed::Zk)?;
        match w.commit().await {
            Ok(_) => Ok(()),
            Err(zk::MultiWriteError::OperationFailed { index: 0, .. }) if self.fence.is_some() => Err(Failed::Fenced),
            Err(e) => Err(Failed::Zk(e.into())),
        }
    }

    /// Creates `path` with `data` (parents as needed), fenced; `Exists` if it is there.
    async fn create_node(&self, client: &zk::Client, path: &str, data: &[u8], mode: zk::CreateMode) -> Result<()> {
        let mut made_parents = false;
        loop {
            match self.multi(client, |w| w.add_create(path, data, &self.options(mode))).await {
                Ok(()) => return Ok(()),
                Err(Failed::Zk(zk::Error::NoNode)) if !made_parents => {
                    self.mkdir_parent(client, path).await?;
                    made_parents = true;
                }
                Err(Failed::Zk(zk::Error::NodeExists)) => return Err(StoreError::Exists { path: path.to_string() }),
                Err(f) => return Err(self.failed(f)),
            }
        }
    }

    async fn set_or_create(&self, client: &zk::Client, path: &str, data: &[u8]) -> Result<()> {
        loop {
            match self.multi(client, |w| w.add_set_data(path, data, None)).await {
                Ok(()) => return Ok(()),
                Err(Failed::Zk(zk::Error::NoNode)) => {
                    match self.create_node(client, path, data, zk::CreateMode::Persistent).await {
                        Err(StoreError::Exists { .. }) => continue, // created meanwhile: set it
                        other => return other,
                    }
                }
                Err(f) => return Err(self.failed(f)),
            }
        }
    }

    /// Every node under `path` (children before parents), `path` last.
    async fn subtree(&self, client: &zk::Client, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(path.to_string(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if expanded {
                out.push(p);
                continue;
            }
            match client.list_children(&p).await {
                Ok(children) => {
                    stack.push((p.clone(), true));
                    for c in children {
                        stack.push((format!("{}/{c}", p.trim_end_matches('/')), false));
                    }
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(out)
    }
}

/// Why a multi-write failed.
enum Failed {
    /// The fence's check failed: the ephemeral node is gone or changed.
    Fenced,
    Zk(zk::Error),
}

/// Checks that at least one host of `hosts` accepts TCP connections, so a wrong address
/// fails at once instead of after a session timeout.
async fn reachable(hosts: &str) -> std::result::Result<(), String> {
    let mut last = String::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let host = host.rsplit_once("://").map_or(host, |(_, h)| h);
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(host)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = format!("{host}: {e}"),
            Err(_) => last = format!("{host}: no answer within 3s"),
        }
    }
    Err(last)
}

async fn new_session(
    addr: &str,
    auth: &Option<(String, String)>,
    timeout: Duration,
) -> std::result::Result<zk::Client, String> {
    let mut connector =
        zk::Client::connector().with_session_timeout(timeout).with_connection_timeout(Duration::from_secs(3));
    if let Some((user, password)) = auth {
        connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
    }
    match tokio::time::timeout(timeout + Duration::from_secs(3), connector.connect(addr)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session within {timeout:?}")),
    }
}

/// Replaces the session when it ends (expired after an outage), until the coordinator
/// is closed or dropped.
async fn supervise(inner: std::sync::Weak<Inner>) {
    loop {
        let mut state = match inner.upgrade() {
            Some(i) => i.client.lock().expect("zk client lock").state_watcher(),
            None => return,
        };
        loop {
            let s = state.changed().await;
            if s.is_terminated() {
                break;
            }
        }
        loop {
            let Some(i) = inner.upgrade() else { return };
            if i.closed.load(Ordering::Acquire) {
                return;
            }
            match new_session(&i.addr, &i.auth, i.timeout).await {
                Ok(c) => {
                    tracing::warn!(addr = %i.addr, "zookeeper session replaced");
                    *i.client.lock().expect("zk client lock") = c;
                    break;
                }
                Err(e) => {
                    tracing::warn!(addr = %i.addr, error = %e, "zookeeper reconnect failed, retrying");
                    drop(i);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    fn addr(&self) -> &str {
        &self.inner.addr
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<()> {
        self.ready(path)?;
        self.create_node(&self.client(), path, data, zk::CreateMode::Persistent).await
    }

    async fn update(&self, path: &str, data: &[u8]) -> Result<()> {
        self.ready(path)?;
        self.set_or_create(&self.client(), path, data).await
    }

    async fn update_many(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        for (path, _) in nodes {
            self.ready(path)?;
        }
        let client = self.client();
        for chunk in nodes.chunks(MULTI_OPS) {
            let all = self.multi(&client, |w| chunk.iter().try_for_each(|(p, d)| w.add_set_data(p, d, None))).await;
            match all {
                Err(Failed::Zk(zk::Error::NoNode)) => {
                    // Some node does not exist yet: one at a time.
                    for (p, d) in chunk {
                        self.set_or_create(&client, p, d).await?;
                    }
                }
                other => other.map_err(|f| self.failed(f))?,
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.ready(path)?;
        let client = self.client();
        for _ in 0..5 {
            let nodes = self.subtree(&client, path).await?;
            if nodes.is_empty() {
                return Ok(());
            }
            match self.multi(&client, |w| nodes.iter().try_for_each(|p| w.add_delete(p, None))).await {
                Err(Failed::Zk(zk::Error::NoNode | zk::Error::NotEmpty)) => continue, // changed meanwhile
                other => return other.map_err(|f| self.failed(f)),
            }
        }
        Err(StoreError::Backend {
            backend: "zookeeper",
            addr: self.inner.addr.clone(),
            message: format!("{path} keeps changing; cannot delete it"),
        })
    }

    async fn read(&self, path: &str, must: bool) -> Result<Option<Vec<u8>>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        check_path("zookeeper", &self.inner.addr, path)?;
        match self.client().get_data(path).await {
            Ok((data, _)) => Ok(Some(data)),
            Err(zk::Error::NoNode) if !must => Ok(None),
            Err(zk::Error::NoNode) => Err(StoreError::NotFound { path: path.to_string() }),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn list(&self, path: &str, must: bool) -> Result<Vec<String>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        check_path("zookeeper", &self.inner.addr, path)?;
        match self.client().list_children(path).await {
            Ok(children) => {
                let mut out: Vec<String> = children.into_iter().map(|c| format!("{path}/{c}")).collect();
                out.sort();
                Ok(out)
            }
            Err(zk::Error::NoNode) if !must => Ok(Vec::new()),
            Err(zk::Error::NoNode) => Err(StoreError::NotFound { path: path.to_string() }),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn read_children(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let children = self.list(path, false).await?;
        let client = self.client();
        let mut out = Vec::with_capacity(children.len());
        for chunk in children.chunks(MULTI_OPS * 2) {
            let mut r = client.new_multi_reader();
            for c in chunk {
                r.add_get_data(c).map_err(|e| self.err(e))?;
            }
            for (c, result) in chunk.iter().zip(r.commit().await.map_err(|e| self.err(e))?) {
                match result {
                    zk::MultiReadResult::Data { data, .. } => out.push((c.clone(), data)),
                    zk::MultiReadResult::Error { err: zk::Error::NoNode } => {}
                    zk::MultiReadResult::Error { err } => return Err(self.err(err)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<Ephemeral> {
        self.ready(path)?;
        let client = self.client();
        let mut attempt = 0;
        let stat = loop {
            attempt += 1;
            match self.create_node(&client, path, data, zk::CreateMode::Ephemeral).await {
                Ok(()) => match client.check_stat(path).await {
                    Ok(Some(stat)) => break stat,
                    Ok(None) => return Err(StoreError::Fenced { path: path.to_string() }),
                    Err(e) => return Err(self.err(e)),
                },
                Err(StoreError::Exists { .. }) if attempt == 1 => match client.get_data(path).await {
                    // Our own leftover (same token): ours if this session owns it, else replaced.
                    Ok((existing, stat)) if existing == data => {
                        if stat.ephemeral_owner == client.session_id().0 {
                            break stat;
                        }
                        match client.delete(path, Some(stat.version)).await {
                            Ok(()) | Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(self.err(e)),
                        }
                    }
                    Ok(_) => return Err(StoreError::Exists { path: path.to_string() }),
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(self.err(e)),
                },
                Err(e) => return Err(e),
            }
        };
        let (lost_tx, lost_rx) = watch::channel(false);
        let stop = Arc::new(Notify::new());
        let grace = self.inner.timeout * 2 / 3;
        tokio::spawn(keep(client.clone(), path.to_string(), stat.czxid, grace, lost_tx, stop.clone()));
        let fenced = ZkCoordinator {
            inner: self.inner.clone(),
            fence: Some(Arc::new(Fence {
                client: client.clone(),
                path: path.to_string(),
                version: stat.version,
                lost: lost_rx.clone(),
            })),
        };
        let (key, czxid, this) = (path.to_string(), stat.czxid, self.clone());
        Ok(Ephemeral::new(path, lost_rx, Arc::new(fenced), move || {
            Box::pin(async move {
                stop.notify_one();
                // Only our node: a successor's has another creation zxid.
                let version = match client.check_stat(&key).await {
                    Ok(Some(s)) if s.czxid == czxid => s.version,
                    Ok(_) => return Ok(()),
                    Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => return Ok(()),
                    Err(e) => return Err(this.err(e)),
                };
                match client.delete(&key, Some(version)).await {
                    Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(()),
                    // The session is gone, and the node with it.
                    Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => Ok(()),
                    Err(e) => Err(this.err(e)),
                }
            })
        }))
    }

    async fn watch(&self, path: &str) -> Result<()> {
        check_path("zookeeper", &self.inner.addr, path)?;
        let client = self.client();
        let mut w = client.watch(path, zk::AddWatchMode::PersistentRecursive).await.map_err(|e| self.err(e))?;
        w.changed().await;
        Ok(())
    }

    /// Refuses further calls; the session itself ends when its last handle is dropped.
    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// Watches ephemeral `path` (created with zxid `czxid` on `client`'s session) until
/// stopped or lost: removed or replaced, the session ended, or disconnected for `grace`.
async fn keep(
    client: zk::Client,
    path: String,
    czxid: i64,
    grace: Duration,
    lost: watch::Sender<bool>,
    stop: Arc<Notify>,
) {
    let mut state = client.state_watcher();
    let mut disconnected_until: Option<tokio::time::Instant> = None;
    let mut node_watch: Option<zk::OneshotWatcher> = None;
    let why = loop {
        if node_watch.is_none() && disconnected_until.is_none() {
            match client.check_and_watch_stat(&path).await {
                Ok((Some(stat), w)) if stat.czxid == czxid => node_watch = Some(w),
                Ok(_) => break "removed or replaced".to_string(),
                Err(e) if matches!(e, zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed) => {
                    break format!("session ended: {e}");
                }
                Err(_) => {} // connection trouble: the state watcher tells what follows
            }
        }
        let deadline = disconnected_until;
        tokio::select! {
            _ = stop.notified() => return,
            _ = async { node_watch.take().expect("checked").changed().await }, if node_watch.is_some() => {}
            s = state.changed() => match s {
                zk::SessionState::Disconnected => {
                    disconnected_until.get_or_insert(tokio::time::Instant::now() + grace);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    disconnected_until = None;
                    node_watch = None;
                }
                other => break format!("session {other}"),
            },
            _ = async { tokio::time::sleep_until(deadline.expect("checked")).await }, if deadline.is_some() => {
                break format!("disconnected for {grace:?}");
            }
        }
    };
    tracing::warn!(node = %path, "lost ephemeral node: {why}");
    lost.send_replace(true);
}
