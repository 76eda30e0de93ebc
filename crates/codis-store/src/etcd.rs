//! The etcd v3 coordinator: node `/a/b` is the key `/a/b`, its children the keys under
//! `/a/b/` (etcd has no directories; a listing is a prefix scan).
//!
//! Ephemeral nodes are keys attached to a lease of their own, renewed every third of its
//! time; the holder gives the node up locally once two thirds of the lease passed without
//! a renewal, so it stops before anyone else can take the key over. A fenced write is a
//! transaction that also compares the ephemeral key's create revision: once the key has
//! expired, been removed or re-created by someone else, the write is refused by etcd.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::watch;

use crate::{Coordinator, Ephemeral, Result, StoreError, check_path, direct_children, split_auth};

/// Most operations etcd takes in one transaction (its `--max-txn-ops` default is 128).
const TXN_OPS: usize = 100;

#[derive(Clone)]
pub struct EtcdCoordinator {
    client: Client,
    addr: String,
    /// Lease time of ephemeral nodes, in seconds.
    ttl: i64,
    closed: Arc<AtomicBool>,
    fence: Option<Arc<Fence>>,
}

/// What a fenced view's writes depend on.
struct Fence {
    key: String,
    create_revision: i64,
    lost: watch::Receiver<bool>,
}

impl EtcdCoordinator {
    /// Connects to `addr` (comma-separated `host:port` or URLs) and checks that etcd
    /// answers, so a wrong address or password fails here with one clear line.
    pub async fn connect(addr: &str, auth: &str, timeout: Duration) -> Result<EtcdCoordinator> {
        let endpoints: Vec<String> = addr
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| if e.contains("://") { e.to_string() } else { format!("http://{e}") })
            .collect();
        let fail = |message: String| StoreError::Backend { backend: "etcd", addr: addr.to_string(), message };
        if endpoints.is_empty() {
            return Err(fail("no address: pass host:port of etcd's client URL, like 127.0.0.1:2379".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some((user, password)) = split_auth(auth) {
            options = options.with_user(user, password);
        }
        let connect = async {
            let mut client = Client::connect(&endpoints, Some(options)).await?;
            client.status().await?;
            Ok::<_, etcd_client::Error>(client)
        };
        let client = match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(fail(format!("cannot connect: {}", describe(&e)))),
            Err(_) => return Err(fail("cannot connect: no answer within 10s".into())),
        };
        let ttl = timeout.as_secs().max(2) as i64;
        Ok(EtcdCoordinator {
            client,
            addr: addr.to_string(),
            ttl,
            closed: Arc::new(AtomicBool::new(false)),
            fence: None,
        })
    }

    fn err(&self, e: etcd_client::Error) -> StoreError {
        StoreError::Backend { backend: "etcd", addr: self.addr.clone(), message: describe(&e) }
    }

    fn ready(&self, path: &str) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if let Some(f) = &self.fence
            && *f.lost.borrow()
        {
            return Err(StoreError::Fenced { path: f.key.clone() });
        }
        check_path("etcd", &self.addr, path)
    }

    fn compares(&self) -> Vec<Compare> {
        self.fence
            .iter()
            .map(|f| Compare::create_revision(f.key.as_str(), CompareOp::Equal, f.create_revision))
            .collect()
    }

    /// Runs `ops` in one transaction, conditioned on the fence (if any).
    async fn write(&self, ops: Vec<TxnOp>) -> Result<()> {
        let txn = Txn::new().when(self.compares()).and_then(ops);
        let resp = self.client.kv_client().txn(txn).await.map_err(|e| self.err(e))?;
        match (&self.fence, resp.succeeded()) {
            (_, true) => Ok(()),
            (Some(f), false) => Err(StoreError::Fenced { path: f.key.clone() }),
            (None, false) => Err(StoreError::Backend {
                backend: "etcd",
                addr: self.addr.clone(),
                message: "unconditional transaction failed".into(),
            }),
        }
    }

    /// Puts `path` if absent (and the fence holds): whether it was created, the header
    /// revision, and the existing key's value and mod revision otherwise.
    async fn put_if_absent(
        &self,
        path: &str,
        data: &[u8],
        lease: Option<i64>,
    ) -> Result<(bool, i64, Option<(Vec<u8>, i64)>)> {
        let mut when = self.compares();
        when.push(Compare::create_revision(path, CompareOp::Equal, 0));
        let put = TxnOp::put(path, data, lease.map(|id| PutOptions::new().with_lease(id)));
        let txn = Txn::new().when(when).and_then(vec![put]).or_else(vec![TxnOp::get(path, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(|e| self.err(e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            return Ok((true, revision, None));
        }
        let existing = resp.op_responses().into_iter().find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            _ => None,
        });
        if existing.is_none()
            && let Some(f) = &self.fence
        {
            return Err(StoreError::Fenced { path: f.key.clone() });
        }
        Ok((false, revision, existing))
    }
}

/// One line for an etcd error: the server's message for gRPC errors, the cause chain
/// for transport errors (tonic's top level says only "transport error").
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message().trim();
            if msg.contains("authentication failed") || msg.contains("invalid auth token") {
                format!("{msg} (check the coordinator's user:password)")
            } else if msg.contains("user name is empty") || msg.contains("user name not found") {
                format!("{msg} (authentication is enabled on this etcd: pass user:password)")
            } else if msg.is_empty() {
                format!("{:?}", s.code())
            } else {
                msg.to_string()
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text.replace('\n', " ")
        }
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn addr(&self) -> &str {
        &self.addr
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<()> {
        self.ready(path)?;
        match self.put_if_absent(path, data, None).await? {
            (true, ..) => Ok(()),
            _ => Err(StoreError::Exists { path: path.to_string() }),
        }
    }

    async fn update(&self, path: &str, data: &[u8]) -> Result<()> {
        self.update_many(&[(path.to_string(), data.to_vec())]).await
    }

    async fn update_many(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        for (path, _) in nodes {
            self.ready(path)?;
        }
        for chunk in nodes.chunks(TXN_OPS) {
            self.write(chunk.iter().map(|(p, d)| TxnOp::put(p.as_str(), d.as_slice(), None)).collect()).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.ready(path)?;
        let below = format!("{path}/");
        self.write(vec![TxnOp::delete(path, None), TxnOp::delete(below, Some(DeleteOptions::new().with_prefix()))])
            .await
    }

    async fn read(&self, path: &str, must: bool) -> Result<Option<Vec<u8>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        check_path("etcd", &self.addr, path)?;
        let resp = self.client.kv_client().get(path, None).await.map_err(|e| self.err(e))?;
        match resp.kvs().first() {
            Some(kv) => Ok(Some(kv.value().to_vec())),
            None if must => Err(StoreError::NotFound { path: path.to_string() }),
            None => Ok(None),
        }
    }

    async fn list(&self, path: &str, must: bool) -> Result<Vec<String>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        check_path("etcd", &self.addr, path)?;
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let resp = self.client.kv_client().get(format!("{path}/"), Some(opts)).await.map_err(|e| self.err(e))?;
        let keys: Vec<&str> = resp.kvs().iter().filter_map(|kv| kv.key_str().ok()).collect();
        let out = direct_children(path, keys.into_iter());
        if out.is_empty() && must && self.read(path, false).await?.is_none() {
            return Err(StoreError::NotFound { path: path.to_string() });
        }
        Ok(out)
    }

    async fn read_children(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        check_path("etcd", &self.addr, path)?;
        let prefix = format!("{path}/");
        let resp = self
            .client
            .kv_client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.err(e))?;
        let mut out: Vec<(String, Vec<u8>)> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?;
                let name = key.strip_prefix(&prefix)?;
                (!name.is_empty() && !name.contains('/')).then(|| (key.to_string(), kv.value().to_vec()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<Ephemeral> {
        self.ready(path)?;
        let mut lease_client = self.client.lease_client();
        let lease = lease_client.grant(self.ttl, None).await.map_err(|e| self.err(e))?.id();
        let granted = Instant::now();
        let mut attempt = 0;
        let create_revision = loop {
            attempt += 1;
            match self.put_if_absent(path, data, Some(lease)).await {
                Ok((true, revision, _)) => break revision,
                Ok((false, _, Some((existing, mod_revision)))) if existing == data && attempt == 1 => {
                    // Our own leftover (same token): remove it if it did not change meanwhile.
                    let txn = Txn::new()
                        .when(vec![Compare::mod_revision(path, CompareOp::Equal, mod_revision)])
                        .and_then(vec![TxnOp::delete(path, None)]);
                    self.client.kv_client().txn(txn).await.map_err(|e| self.err(e))?;
                }
                other => {
                    let _ = lease_client.revoke(lease).await;
                    return match other {
                        Ok(_) => Err(StoreError::Exists { path: path.to_string() }),
                        Err(e) => Err(e),
                    };
                }
            }
        };
        let (lost_tx, lost_rx) = watch::channel(false);
        let stop = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(keep(self.clone(), path.to_string(), lease, create_revision, granted, lost_tx, stop.clone()));
        let fenced = EtcdCoordinator {
            fence: Some(Arc::new(Fence { key: path.to_string(), create_revision, lost: lost_rx.clone() })),
            ..self.clone()
        };
        let (client, key) = (self.clone(), path.to_string());
        Ok(Ephemeral::new(path, lost_rx, Arc::new(fenced), move || {
            Box::pin(async move {
                stop.notify_one();
                let txn = Txn::new()
                    .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, create_revision)])
                    .and_then(vec![TxnOp::delete(key.as_str(), None)]);
                let r = client.client.kv_client().txn(txn).await.map(|_| ()).map_err(|e| client.err(e));
                let _ = client.client.lease_client().revoke(lease).await;
                r
            })
        }))
    }

    async fn watch(&self, path: &str) -> Result<()> {
        check_path("etcd", &self.addr, path)?;
        // The range [path, path + '0') holds the node and everything under "path/".
        let end = format!("{path}0");
        let mut stream = self
            .client
            .watch_client()
            .watch(path, Some(WatchOptions::new().with_range(end)))
            .await
            .map_err(|e| self.err(e))?;
        loop {
            match stream.message().await.map_err(|e| self.err(e))? {
                Some(resp) if resp.canceled() => return Ok(()),
                Some(resp) if resp.events().is_empty() => continue, // "created" notice
                _ => return Ok(()),
            }
        }
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Keeps lease `lease` of ephemeral `key` alive until stopped or lost; sets `lost` when
/// the key is gone or re-created, the lease expired, or renewals failed for two thirds
/// of the lease time (the server's expiry comes a third later: nobody else can have the
/// key before its holder knows it lost it).
async fn keep(
    c: EtcdCoordinator,
    key: String,
    lease: i64,
    create_revision: i64,
    granted: Instant,
    lost: watch::Sender<bool>,
    stop: Arc<tokio::sync::Notify>,
) {
    let ttl = Duration::from_secs(c.ttl as u64);
    let mut renewed = granted;
    let mut keeper = None;
    let mut watcher = None;
    let mut tick = tokio::time::interval(ttl / 3);
    let why = loop {
        if renewed.elapsed() >= ttl * 2 / 3 {
            break "no renewal of its lease in time".to_string();
        }
        if watcher.is_none() {
            watcher = c.client.watch_client().watch(key.as_str(), None).await.ok();
            // The key may have gone while there was no watch.
            match c.client.kv_client().get(key.as_str(), None).await {
                Ok(r) if r.kvs().first().is_none_or(|kv| kv.create_revision() != create_revision) => {
                    break "removed or replaced".to_string();
                }
                Ok(_) => {}
                Err(_) => watcher = None,
            }
        }
        let deadline = tokio::time::Instant::from_std(renewed + ttl * 2 / 3);
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep_until(deadline) => {}
            _ = tick.tick() => {
                if keeper.is_none() {
                    keeper = c.client.lease_client().keep_alive(lease).await.ok();
                }
                if let Some((k, s)) = keeper.as_mut() {
                    let renew = async {
                        k.keep_alive().await?;
                        s.message().await
                    };
                    match tokio::time::timeout(ttl / 3, renew).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => renewed = Instant::now(),
                        Ok(Ok(Some(_))) => break "its lease expired".to_string(),
                        _ => keeper = None,
                    }
                }
            }
            msg = async { watcher.as_mut().expect("set above").message().await }, if watcher.is_some() => match msg {
                Ok(Some(resp)) => {
                    let gone = resp.events().iter().any(|e| {
                        e.event_type() == EventType::Delete
                            || e.kv().is_some_and(|kv| kv.create_revision() != create_revision)
                    });
                    if gone {
                        break "removed or replaced".to_string();
                    }
                    if resp.canceled() {
                        watcher = None;
                    }
                }
                _ => watcher = None,
            },
        }
    };
    tracing::warn!(node = %key, "lost ephemeral node: {why}");
    lost.send_replace(true);
    // If the lease is still alive on the server, let the key go now.
    let _ = tokio::time::timeout(Duration::from_secs(1), c.client.lease_client().revoke(lease)).await;
}
