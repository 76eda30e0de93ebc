//! Typed access to one product's state, in Codis's layout and JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use codis_core::MAX_SLOT_NUM;
use codis_core::json::to_vec_pretty;
use codis_core::models::{Group, Proxy, Sentinel, SlotMapping, Topom};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layout::*;
use crate::{Coordinator, Ephemeral, Result, StoreError};

/// The dashboard that holds a product's lock.
pub type LockHolder = Topom;

/// One product's state in a coordinator.
#[derive(Clone)]
pub struct Store {
    client: Arc<dyn Coordinator>,
    product: String,
}

impl Store {
    pub fn new(client: Arc<dyn Coordinator>, product: &str) -> Store {
        Store { client, product: product.to_string() }
    }

    pub fn product(&self) -> &str {
        &self.product
    }

    pub fn client(&self) -> &Arc<dyn Coordinator> {
        &self.client
    }

    /// Takes the product's dashboard lock by creating the topom node, persistent, as
    /// Codis's dashboard does (a crashed holder leaves it until `--remove-lock`).
    pub async fn acquire(&self, topom: &Topom) -> Result<()> {
        let path = topom_path(&self.product);
        match self.client.create(&path, &encode(topom)?).await {
            Err(StoreError::Exists { .. }) => Err(self.locked().await),
            other => other,
        }
    }

    /// Takes the product's dashboard lock as an ephemeral topom node (same path and JSON
    /// as Codis's lock, so Codis's tools see and remove it), which expires with its
    /// holder. Writes through `Store::new(lock.fenced(), ..)` stop the moment it is lost.
    pub async fn lock(&self, topom: &Topom) -> Result<Ephemeral> {
        let path = topom_path(&self.product);
        match self.client.create_ephemeral(&path, &encode(topom)?).await {
            Err(StoreError::Exists { .. }) => Err(self.locked().await),
            other => other,
        }
    }

    /// The error for a lock held by someone else: who holds it and what to do.
    async fn locked(&self) -> StoreError {
        let holder: Option<Topom> = self.topom().await.unwrap_or(None);
        let who = match holder {
            Some(t) => format!(
                "the dashboard at {} (pid {}, host {}, started {})",
                t.admin_addr,
                t.pid,
                t.sys.split_whitespace().nth(1).unwrap_or("?"),
                t.start_time
            ),
            None => "another dashboard".to_string(),
        };
        StoreError::Locked(format!(
            "product '{}' is locked by {who}; stop it, or start this one with --standby to take over when it \
             stops; a lock left by a crashed Codis dashboard is removed with \
             `codis-admin --remove-lock --product={} --{}={}`",
            self.product,
            self.product,
            self.client.name(),
            self.client.addr()
        ))
    }

    /// Releases the dashboard lock (also what `--remove-lock` does).
    pub async fn release(&self) -> Result<()> {
        self.client.delete(&topom_path(&self.product)).await
    }

    pub async fn topom(&self) -> Result<Option<Topom>> {
        self.read_json(&topom_path(&self.product)).await
    }

    /// All 1024 slot mappings; slots never written are offline (group 0).
    pub async fn slot_mappings(&self) -> Result<Vec<SlotMapping>> {
        let mut out: Vec<SlotMapping> =
            (0..MAX_SLOT_NUM as i64).map(|id| SlotMapping { id, ..Default::default() }).collect();
        for (path, data) in self.client.read_children(&slots_dir(&self.product)).await? {
            let m: SlotMapping = decode(&path, &data)?;
            if (0..MAX_SLOT_NUM as i64).contains(&m.id) {
                let id = m.id as usize;
                out[id] = m;
            }
        }
        Ok(out)
    }

    pub async fn update_slot_mapping(&self, m: &SlotMapping) -> Result<()> {
        self.client.update(&slot_path(&self.product, m.id), &encode(m)?).await
    }

    /// Stores several mappings with one durable write where the backend allows.
    pub async fn update_slot_mappings(&self, ms: &[SlotMapping]) -> Result<()> {
        let nodes = ms.iter().map(|m| Ok((slot_path(&self.product, m.id), encode(m)?))).collect::<Result<Vec<_>>>()?;
        self.client.update_many(&nodes).await
    }

    pub async fn groups(&self) -> Result<BTreeMap<i64, Group>> {
        let mut out = BTreeMap::new();
        for (path, data) in self.client.read_children(&group_dir(&self.product)).await? {
            let g: Group = decode(&path, &data)?;
            out.insert(g.id, g);
        }
        Ok(out)
    }

    pub async fn update_group(&self, g: &Group) -> Result<()> {
        self.client.update(&group_path(&self.product, g.id), &encode(g)?).await
    }

    pub async fn delete_group(&self, gid: i64) -> Result<()> {
        self.client.delete(&group_path(&self.product, gid)).await
    }

    /// Registered proxies by token.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>> {
        let mut out = BTreeMap::new();
        for (path, data) in self.client.read_children(&proxy_dir(&self.product)).await? {
            let p: Proxy = decode(&path, &data)?;
            out.insert(p.token.clone(), p);
        }
        Ok(out)
    }

    pub async fn update_proxy(&self, p: &Proxy) -> Result<()> {
        self.client.update(&proxy_path(&self.product, &p.token), &encode(p)?).await
    }

    pub async fn delete_proxy(&self, token: &str) -> Result<()> {
        self.client.delete(&proxy_path(&self.product, token)).await
    }

    pub async fn sentinel(&self) -> Result<Sentinel> {
        Ok(self.read_json(&sentinel_path(&self.product)).await?.unwrap_or_default())
    }

    pub async fn update_sentinel(&self, s: &Sentinel) -> Result<()> {
        self.client.update(&sentinel_path(&self.product), &encode(s)?).await
    }

    /// Products that have state in this coordinator.
    pub async fn products(client: &dyn Coordinator) -> Result<Vec<String>> {
        Ok(client
            .list(CODIS_DIR, false)
            .await?
            .into_iter()
            .filter_map(|p| p.rsplit('/').next().map(str::to_string))
            .collect())
    }

    async fn read_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.client.read(path, false).await? {
            None => Ok(None),
            Some(b) => decode(path, &b).map(Some),
        }
    }
}

fn decode<T: DeserializeOwned>(path: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|source| StoreError::Json { path: path.to_string(), source })
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    to_vec_pretty(v).map_err(|source| StoreError::Json { path: String::new(), source })
}
