//! Groups of servers: creation, membership, replica reads.

use codis_client::{Conn, Value};
use codis_core::models::{Group, GroupServer};

use super::context::MAX_GROUP_ID;
use super::{Cache, Result, ServerMode, Topom, TopomError};

impl Topom {
    pub async fn create_group(&self, gid: i64) -> Result<()> {
        let mut cache = self.lock().await?;
        if gid <= 0 || gid > MAX_GROUP_ID {
            return Err(TopomError::msg(format!("invalid group id = {gid}, out of range (1..{MAX_GROUP_ID})")));
        }
        if cache.groups.contains_key(&gid) {
            return Err(TopomError::msg(format!("group-[{gid}] already exists")));
        }
        self.put_group(&mut cache, Group { id: gid, ..Default::default() }).await
    }

    pub async fn remove_group(&self, gid: i64) -> Result<()> {
        let mut cache = self.lock().await?;
        let g = cache.group(gid)?;
        if !g.servers.is_empty() {
            return Err(TopomError::msg(format!("group-[{gid}] isn't empty: remove its servers first")));
        }
        self.store().delete_group(gid).await?;
        cache.groups.remove(&gid);
        Ok(())
    }

    /// Adds a server to a group after checking it answers as a codis data server: with
    /// the codis-slots module (or codis-server) its group migrates with SLOTS*
    /// commands; a stock redis-server is accepted and reported as such.
    pub async fn group_add_server(&self, gid: i64, datacenter: &str, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        if addr.is_empty() || !addr.contains(':') {
            return Err(TopomError::msg(format!("invalid server address {addr:?}: use host:port")));
        }
        if let Some((g, _)) = cache.group_by_server(addr) {
            return Err(TopomError::msg(format!("server-[{addr}] already exists in group-[{}]", g.id)));
        }
        let g = cache.group(gid)?;
        if !g.promoting.state.is_empty() {
            return Err(TopomError::msg(format!("group-[{gid}] is promoting")));
        }
        let mode = self.probe_server(addr).await?;
        if mode == ServerMode::Stock {
            tracing::warn!(addr, "server has no SLOTS* commands (load the codis-slots module for fast migration)");
        }
        let mut g = g.clone();
        g.servers.push(GroupServer {
            addr: addr.to_string(),
            datacenter: datacenter.to_string(),
            ..Default::default()
        });
        self.mark_sentinels_out_of_sync(&mut cache).await?;
        self.put_group(&mut cache, g).await?;
        self.modes.lock().insert(addr.to_string(), mode);
        Ok(())
    }

    pub async fn group_del_server(&self, gid: i64, addr: &str) -> Result<()> {
        let mut cache = self.lock().await?;
        let g = cache.group(gid)?;
        let index = Cache::server_index(g, addr)?;
        if !g.promoting.state.is_empty() {
            return Err(TopomError::msg(format!("group-[{gid}] is promoting")));
        }
        if index == 0 && (g.servers.len() != 1 || cache.group_in_use(gid)) {
            return Err(TopomError::msg(format!(
                "group-[{gid}] can't remove master, still in use (move its slots away, or promote another server first)"
            )));
        }
        let mut g = g.clone();
        if index != 0 && g.servers[index].replica_group {
            g.out_of_sync = true;
        }
        g.servers.remove(index);
        if g.servers.is_empty() {
            g.out_of_sync = false;
        }
        self.mark_sentinels_out_of_sync(&mut cache).await?;
        self.put_group(&mut cache, g).await?;
        self.modes.lock().remove(addr);
        Ok(())
    }

    /// Pushes the routing of the group's slots to every proxy again.
    pub async fn resync_group(&self, gid: i64) -> Result<()> {
        let mut cache = self.lock().await?;
        let mut g = cache.group(gid)?.clone();
        let slots: Vec<i64> = cache.slots_of_group(gid).iter().map(|m| m.id).collect();
        self.resync(&cache, &slots).await?;
        g.out_of_sync = false;
        self.put_group(&mut cache, g).await
    }

    pub async fn resync_group_all(&self) -> Result<()> {
        let gids: Vec<i64> = self.lock().await?.groups.keys().copied().collect();
        for gid in gids {
            self.resync_group(gid).await?;
        }
        Ok(())
    }

    /// Enables or disables reads from one server of a group (takes effect on resync).
    pub async fn enable_replica_groups(&self, gid: i64, addr: &str, enable: bool) -> Result<()> {
        let mut cache = self.lock().await?;
        let mut g = cache.group(gid)?.clone();
        let i = Cache::server_index(&g, addr)?;
        let s = &mut g.servers[i];
        if s.replica_group != enable {
            s.replica_group = enable;
            g.out_of_sync = true;
        }
        self.put_group(&mut cache, g).await
    }

    pub async fn enable_replica_groups_all(&self, enable: bool) -> Result<()> {
        let mut cache = self.lock().await?;
        let groups: Vec<Group> = cache.groups.values().cloned().collect();
        for mut g in groups {
            let mut changed = false;
            for s in g.servers.iter_mut().filter(|s| s.replica_group != enable) {
                s.replica_group = enable;
                changed = true;
            }
            if changed {
                g.out_of_sync = true;
                self.put_group(&mut cache, g).await?;
            }
        }
        Ok(())
    }

    async fn mark_sentinels_out_of_sync(&self, cache: &mut super::Cache) -> Result<()> {
        if cache.sentinel.servers.is_empty() {
            return Ok(());
        }
        let mut s = cache.sentinel.clone();
        s.out_of_sync = true;
        self.store().update_sentinel(&s).await?;
        cache.sentinel = s;
        Ok(())
    }

    /// Whether a server has the SLOTS* commands (codis-slots module or codis-server).
    pub(super) async fn probe_server(&self, addr: &str) -> Result<ServerMode> {
        let mut c = Conn::open(addr, &self.config.product_auth, std::time::Duration::from_secs(3)).await.map_err(
            |e| match e {
                codis_client::ClientError::Reply { message, .. } => TopomError::msg(format!(
                    "server-[{addr}] refused the product password: {message} (check product_auth)"
                )),
                e => TopomError::msg(format!("server-[{addr}] cannot be reached: {e}")),
            },
        )?;
        match c.cmd(&["SLOTSINFO", "0", "1"]).await? {
            Value::Error(e) if e.contains("unknown command") => Ok(ServerMode::Stock),
            Value::Error(e) if e.starts_with("NOAUTH") || e.contains("WRONGPASS") => {
                Err(TopomError::msg(format!("server-[{addr}] refused the product password: {e} (check product_auth)")))
            }
            Value::Error(e) => Err(TopomError::msg(format!("server-[{addr}] failed SLOTSINFO: {e}"))),
            _ => Ok(ServerMode::Slots),
        }
    }
}
