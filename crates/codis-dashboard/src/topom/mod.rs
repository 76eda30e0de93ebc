//! The dashboard's core ("topom"): the single writer of a product's cluster state.
//!
//! All changes go through [`Topom`] under one lock: the in-memory [`Cache`] is changed
//! only after the coordinator accepted the write, and proxies are told about routing
//! changes (every proxy must acknowledge) before an operation returns. Long work (slot
//! migration, stats polling) runs in background loops that take the lock only for
//! their state transitions.
//!
//! The product lock is an ephemeral topom node ([`lease`]): while the dashboard holds it,
//! every coordinator write goes through the lock's fenced view, and the moment it is
//! lost the dashboard stops writing and pushing routing, and waits to take it again.

mod action;
pub mod context;
mod group;
mod lease;
mod metrics;
mod proxy;
mod replication;
mod sentinel;
mod slots;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use codis_core::auth::{dashboard_xauth, new_token};
use codis_core::models::{self, Slot, SlotMapping};
use codis_store::{Ephemeral, Store, StoreError};
use futures_util::future::join_all;
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::config::Config;
use crate::proxy_client::{ProxyCallError, ProxyClient, http_client};
pub use action::SlotProgress;
pub use context::{Cache, Hosts};
pub use sentinel::Failover;
pub use stats::{GroupState, Overview, ReplicaState, ServerMode, Stats};

/// An operation the dashboard refused or could not complete; the message is for users.
#[derive(Debug, thiserror::Error)]
pub enum TopomError {
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Proxy(#[from] ProxyCallError),
    #[error(transparent)]
    Redis(#[from] codis_client::ClientError),
    #[error("use of closed topom")]
    Closed,
    #[error("{0}")]
    Standby(String),
}

impl TopomError {
    pub fn msg(s: impl Into<String>) -> TopomError {
        TopomError::Msg(s.into())
    }
}

pub type Result<T, E = TopomError> = std::result::Result<T, E>;

/// Controls of the migration loop (Codis's `slot_action`).
#[derive(Default)]
pub struct ActionControl {
    /// Pause between migration steps, in microseconds.
    pub interval_us: AtomicI64,
    /// No new migrations start, and running ones pause between steps.
    pub disabled: AtomicBool,
    /// Migration executors running.
    pub executors: AtomicI64,
    /// The last step's outcome, as Codis reports it (`[OK] Slot[0001]@DB[0]=12`).
    pub status: parking_lot::Mutex<String>,
    /// Progress of every slot migrating now or recently.
    pub progress: parking_lot::Mutex<BTreeMap<i64, SlotProgress>>,
    /// Slots whose migration finished, and the keys they moved, since the start (for
    /// `/metrics`).
    pub slots_migrated: std::sync::atomic::AtomicU64,
    pub keys_moved: std::sync::atomic::AtomicU64,
}

pub struct Topom {
    pub config: Config,
    /// The coordinator without fencing: reads, and taking the lock.
    base: Store,
    /// Writes: through the held lock's fenced view (the base store while standing by,
    /// when nothing writes).
    store: parking_lot::RwLock<Store>,
    /// The product lock, while held.
    lock_node: Mutex<Option<Ephemeral>>,
    /// Holds the lock: operations run, loops work, proxies are told about changes.
    active: AtomicBool,
    model: models::Topom,
    xauth: String,
    state: Mutex<Cache>,
    hosts: parking_lot::Mutex<Hosts>,
    http: reqwest::Client,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    pub action: ActionControl,
    stats: parking_lot::Mutex<stats::StatsCache>,
    modes: parking_lot::Mutex<HashMap<String, ServerMode>>,
    ha: parking_lot::Mutex<sentinel::HaState>,
}

impl Topom {
    /// Takes the product's dashboard lock and loads the state; with `standby`, waits
    /// instead (the loops started by [`Topom::start_loops`] take the lock once it is
    /// free). `admin_addr` is the address the REST API listens on (advertised in the
    /// lock node).
    pub async fn open(
        config: Config,
        store: Store,
        admin_addr: &str,
        listen_addr: &str,
        standby: bool,
    ) -> Result<Arc<Topom>> {
        let token = new_token(&[&config.product_name, listen_addr]);
        let model = models::Topom {
            token,
            start_time: codis_core::clock::now_string(),
            admin_addr: admin_addr.to_string(),
            product_name: config.product_name.clone(),
            pid: std::process::id() as i64,
            pwd: std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            sys: uname(),
        };
        let xauth = dashboard_xauth(&config.product_name, &config.product_auth);
        let empty = Cache {
            slots: (0..codis_core::MAX_SLOT_NUM as i64).map(|id| SlotMapping { id, ..Default::default() }).collect(),
            ..Default::default()
        };
        let topom = Arc::new(Topom {
            store: parking_lot::RwLock::new(store.clone()),
            base: store,
            lock_node: Mutex::new(None),
            active: AtomicBool::new(false),
            model,
            xauth,
            state: Mutex::new(empty),
            hosts: parking_lot::Mutex::new(Hosts::default()),
            http: http_client(Duration::from_secs(5)),
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            action: ActionControl::default(),
            stats: parking_lot::Mutex::new(stats::StatsCache::default()),
            modes: parking_lot::Mutex::new(HashMap::new()),
            ha: parking_lot::Mutex::new(sentinel::HaState::default()),
            config,
        });
        if standby {
            tracing::warn!(product = %topom.config.product_name, "standing by: waiting for the product lock");
        } else {
            topom.take_over().await?;
        }
        Ok(topom)
    }

    /// Starts the background loops (migrations, stats, proxy re-online, sync actions,
    /// following the sentinels).
    pub fn start_loops(self: &Arc<Self>) {
        tokio::spawn(lease::run(self.clone()));
        tokio::spawn(action::run(self.clone()));
        tokio::spawn(stats::run(self.clone()));
        tokio::spawn(replication::run(self.clone()));
        tokio::spawn(sentinel::run(self.clone()));
    }

    pub fn model(&self) -> &models::Topom {
        &self.model
    }

    pub fn xauth(&self) -> &str {
        &self.xauth
    }

    /// Where writes go: the held lock's fenced view of the coordinator.
    pub fn store(&self) -> Store {
        self.store.read().clone()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether this dashboard holds the product lock (false while standing by).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops the loops and releases the product lock.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown.send_replace(true);
        // Take the state lock so no operation is half-way when the lock goes.
        let _state = self.state.lock().await;
        self.active.store(false, Ordering::Release);
        if let Some(node) = self.lock_node.lock().await.take() {
            node.release().await?;
        }
        tracing::warn!("dashboard closed, product lock released");
        Ok(())
    }

    /// The state lock, refused once closed or while not holding the product lock.
    async fn lock(&self) -> Result<MutexGuard<'_, Cache>> {
        if self.is_closed() {
            return Err(TopomError::Closed);
        }
        let guard = self.state.lock().await;
        if !self.is_active() {
            return Err(self.standby_error().await);
        }
        Ok(guard)
    }

    /// A snapshot of the state (for reads and the API).
    pub async fn cache(&self) -> Cache {
        self.state.lock().await.clone()
    }

    /// Replaces the in-memory state by what the coordinator holds (`reload` route).
    pub async fn reload(&self) -> Result<()> {
        let mut state = self.lock().await?;
        *state = load(&self.base).await?;
        Ok(())
    }

    fn proxy_client(&self, p: &models::Proxy) -> ProxyClient {
        ProxyClient::new(&self.http, p, &self.config.product_name, &self.config.product_auth)
    }

    /// Routing of `slots` as proxy `p` must see it.
    fn slots_for(&self, cache: &Cache, slots: &[&SlotMapping], p: Option<&models::Proxy>) -> Vec<Slot> {
        let mut hosts = self.hosts.lock();
        slots.iter().map(|m| cache.to_slot(m, p, self.forward_method(cache, m), &mut hosts)).collect()
    }

    /// How proxies forward requests of a migrating slot: the configured method when
    /// both ends have the SLOTS* commands, else key-by-key MIGRATE (stock servers).
    fn forward_method(&self, cache: &Cache, m: &SlotMapping) -> i64 {
        if m.action.state.is_empty() {
            return self.config.forward_method();
        }
        match self.pair_mode(cache, m.group_id, m.action.target_id) {
            ServerMode::Slots => self.config.forward_method(),
            ServerMode::Stock => models::FORWARD_MIGRATE,
        }
    }

    /// The migration mode of a (source, target) pair: with SLOTS* commands only if both
    /// masters have them (a server not probed yet counts as having them).
    fn pair_mode(&self, cache: &Cache, from: i64, to: i64) -> ServerMode {
        let modes = self.modes.lock();
        let stock = |gid: i64| {
            let master = cache.group_master(gid);
            !master.is_empty() && modes.get(&master) == Some(&ServerMode::Stock)
        };
        if stock(from) || stock(to) { ServerMode::Stock } else { ServerMode::Slots }
    }

    /// The routing of all 1024 slots (what `/topom/slots` shows).
    pub async fn slots(&self) -> Vec<Slot> {
        let cache = self.state.lock().await;
        let all: Vec<&SlotMapping> = cache.slots.iter().collect();
        self.slots_for(&cache, &all, None)
    }

    /// Pushes the routing of `slots` to every proxy and waits for all of them; fails
    /// naming the proxies that did not acknowledge.
    async fn resync(&self, cache: &Cache, slots: &[i64]) -> Result<()> {
        if slots.is_empty() || cache.proxies.is_empty() {
            return Ok(());
        }
        if !self.is_active() {
            // A dashboard that lost its lock must not overwrite its successor's routing.
            return Err(self.standby_error().await);
        }
        let ms: Vec<&SlotMapping> = slots.iter().filter_map(|&sid| cache.slots.get(sid as usize)).collect();
        self.on_every_proxy(cache, "resync slots", |client, p| {
            let routing = self.slots_for(cache, &ms, Some(p));
            async move { client.fill_slots(&routing).await }
        })
        .await
    }

    /// Makes the same call on every proxy at once; fails naming those that did not
    /// acknowledge it.
    async fn on_every_proxy<F, Fut>(&self, cache: &Cache, what: &str, call: F) -> Result<()>
    where
        F: Fn(ProxyClient, &models::Proxy) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), crate::proxy_client::ProxyCallError>>,
    {
        let calls = cache.proxies.values().map(|p| {
            let done = call(self.proxy_client(p), p);
            async move { (p.token.clone(), done.await) }
        });
        let failed: Vec<String> = join_all(calls)
            .await
            .into_iter()
            .filter_map(|(token, r)| r.err().map(|e| format!("proxy-[{token}]: {e}")))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(TopomError::msg(format!("{what} failed on {} proxies: {}", failed.len(), failed.join("; "))))
        }
    }

    /// Stores a slot mapping, then updates the cache.
    async fn put_slot(&self, cache: &mut Cache, m: SlotMapping) -> Result<()> {
        self.store().update_slot_mapping(&m).await?;
        let id = m.id as usize;
        cache.slots[id] = m;
        Ok(())
    }

    /// Stores several mappings at once, so a round of migration pays for one durable
    /// coordinator write rather than one per slot.
    async fn put_slots(&self, cache: &mut Cache, ms: Vec<SlotMapping>) -> Result<()> {
        if ms.is_empty() {
            return Ok(());
        }
        self.store().update_slot_mappings(&ms).await?;
        for m in ms {
            let id = m.id as usize;
            cache.slots[id] = m;
        }
        Ok(())
    }

    async fn put_group(&self, cache: &mut Cache, g: models::Group) -> Result<()> {
        self.store().update_group(&g).await?;
        cache.groups.insert(g.id, g);
        Ok(())
    }
}

async fn load(store: &Store) -> Result<Cache> {
    Ok(Cache {
        slots: store.slot_mappings().await?,
        groups: store.groups().await?,
        proxies: store.proxies().await?,
        sentinel: store.sentinel().await?,
    })
}

fn uname() -> String {
    std::process::Command::new("uname")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
