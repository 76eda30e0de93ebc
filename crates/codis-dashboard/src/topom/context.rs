//! The cluster state the dashboard holds, and the pure rules over it: which routing a
//! proxy gets for a slot in each migration state, which slots are locked, the replica
//! tiers a proxy reads from.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, ToSocketAddrs};

use codis_core::MAX_SLOT_NUM;
use codis_core::models::{Group, Proxy, Sentinel, Slot, SlotMapping, action};

use super::TopomError;

/// Everything the dashboard keeps in memory (and writes through to the coordinator).
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub slots: Vec<SlotMapping>,
    pub groups: BTreeMap<i64, Group>,
    pub proxies: BTreeMap<String, Proxy>,
    pub sentinel: Sentinel,
}

/// Highest group id, as in Codis.
pub const MAX_GROUP_ID: i64 = 9999;

impl Cache {
    pub fn slot(&self, sid: i64) -> Result<&SlotMapping, TopomError> {
        if self.slots.len() != MAX_SLOT_NUM {
            return Err(TopomError::msg(format!("invalid number of slots = {}/{MAX_SLOT_NUM}", self.slots.len())));
        }
        usize::try_from(sid)
            .ok()
            .and_then(|i| self.slots.get(i))
            .ok_or_else(|| TopomError::msg(format!("slot-[{sid}] doesn't exist")))
    }

    pub fn group(&self, gid: i64) -> Result<&Group, TopomError> {
        self.groups.get(&gid).ok_or_else(|| TopomError::msg(format!("group-[{gid}] doesn't exist")))
    }

    /// Where `addr` is in group `g` (index 0 is the master).
    pub fn server_index(g: &Group, addr: &str) -> Result<usize, TopomError> {
        g.servers
            .iter()
            .position(|s| s.addr == addr)
            .ok_or_else(|| TopomError::msg(format!("group-[{}] doesn't have server-[{addr}]", g.id)))
    }

    pub fn proxy(&self, token: &str) -> Result<&Proxy, TopomError> {
        self.proxies.get(token).ok_or_else(|| TopomError::msg(format!("proxy-[{token}] doesn't exist")))
    }

    pub fn group_master(&self, gid: i64) -> String {
        self.groups.get(&gid).and_then(|g| g.servers.first()).map(|s| s.addr.clone()).unwrap_or_default()
    }

    /// The group holding `addr`, and its index in the group.
    pub fn group_by_server(&self, addr: &str) -> Option<(&Group, usize)> {
        self.groups.values().find_map(|g| g.servers.iter().position(|s| s.addr == addr).map(|i| (g, i)))
    }

    pub fn max_action_index(&self) -> i64 {
        self.slots.iter().filter(|m| !m.action.state.is_empty()).map(|m| m.action.index).max().unwrap_or(0)
    }

    pub fn max_proxy_id(&self) -> i64 {
        self.proxies.values().map(|p| p.id).max().unwrap_or(0)
    }

    /// Whether any slot lives in, or moves to, group `gid`.
    pub fn group_in_use(&self, gid: i64) -> bool {
        self.slots.iter().any(|m| m.group_id == gid || m.action.target_id == gid)
    }

    pub fn is_group_promoting(&self, gid: i64) -> bool {
        self.groups.get(&gid).is_some_and(|g| !g.promoting.state.is_empty())
    }

    /// A group is locked (its slots hold requests) while a promotion is `prepared`.
    pub fn is_group_locked(&self, gid: i64) -> bool {
        self.groups.get(&gid).is_some_and(|g| g.promoting.state == action::PREPARED)
    }

    pub fn is_slot_locked(&self, m: &SlotMapping) -> bool {
        match m.action.state.as_str() {
            action::PREPARED => true,
            action::MIGRATING => self.is_group_locked(m.group_id) || self.is_group_locked(m.action.target_id),
            action::FINISHED => self.is_group_locked(m.action.target_id),
            _ => self.is_group_locked(m.group_id),
        }
    }

    /// The routing of slot `m` for proxy `p` (whose datacenter and host order the
    /// replicas), with migrating slots forwarded by `method`.
    pub fn to_slot(&self, m: &SlotMapping, p: Option<&Proxy>, method: i64, hosts: &mut Hosts) -> Slot {
        let mut slot = Slot { id: m.id, locked: self.is_slot_locked(m), forward_method: method, ..Default::default() };
        match m.action.state.as_str() {
            action::PREPARED | action::MIGRATING => {
                slot.backend_addr = self.group_master(m.action.target_id);
                slot.backend_addr_group_id = m.action.target_id;
                slot.migrate_from = self.group_master(m.group_id);
                slot.migrate_from_group_id = m.group_id;
            }
            action::FINISHED => {
                slot.backend_addr = self.group_master(m.action.target_id);
                slot.backend_addr_group_id = m.action.target_id;
            }
            action::PREPARING => {
                slot.backend_addr = self.group_master(m.group_id);
                slot.backend_addr_group_id = m.group_id;
            }
            _ => {
                slot.backend_addr = self.group_master(m.group_id);
                slot.backend_addr_group_id = m.group_id;
                slot.replica_groups = self.replica_groups(m.group_id, p, hosts);
            }
        }
        if slot.backend_addr.is_empty() {
            slot.backend_addr_group_id = 0;
        }
        slot
    }

    /// The group's replicas enabled for reads, in three tiers for proxy `p`: same
    /// datacenter and host, same datacenter, the rest (empty tiers left out).
    pub fn replica_groups(&self, gid: i64, p: Option<&Proxy>, hosts: &mut Hosts) -> Vec<Vec<String>> {
        let Some(g) = self.groups.get(&gid) else { return Vec::new() };
        if !g.promoting.state.is_empty() || g.servers.len() <= 1 {
            return Vec::new();
        }
        let (dc, ip) = match p {
            Some(p) => (p.datacenter.as_str(), hosts.ip(&p.admin_addr)),
            None => ("", None),
        };
        let mut tiers: [Vec<String>; 3] = Default::default();
        for s in g.servers.iter().filter(|s| s.replica_group) {
            let tier = match ip {
                Some(ip) if dc == s.datacenter => {
                    if hosts.ip(&s.addr) == Some(ip) {
                        0
                    } else {
                        1
                    }
                }
                _ => 2,
            };
            tiers[tier].push(s.addr.clone());
        }
        tiers.into_iter().filter(|t| !t.is_empty()).collect()
    }

    /// Slot mappings that involve group `gid`.
    pub fn slots_of_group(&self, gid: i64) -> Vec<&SlotMapping> {
        self.slots.iter().filter(|m| m.group_id == gid || m.action.target_id == gid).collect()
    }
}

/// Resolved host addresses, remembered (routing is computed often, DNS is slow).
#[derive(Debug, Default)]
pub struct Hosts {
    cache: HashMap<String, Option<IpAddr>>,
}

impl Hosts {
    pub fn ip(&mut self, addr: &str) -> Option<IpAddr> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(|c| c == '[' || c == ']').to_string();
        self.cache
            .entry(host.clone())
            .or_insert_with(|| match host.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => (host.as_str(), 0).to_socket_addrs().ok().and_then(|mut a| a.next()).map(|a| a.ip()),
            })
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_core::models::{GroupServer, SlotAction};

    fn cache() -> Cache {
        let mut c = Cache {
            slots: (0..1024).map(|id| SlotMapping { id, ..Default::default() }).collect(),
            ..Default::default()
        };
        let server = |addr: &str, dc: &str, replica: bool| GroupServer {
            addr: addr.into(),
            datacenter: dc.into(),
            replica_group: replica,
            ..Default::default()
        };
        c.groups.insert(
            1,
            Group {
                id: 1,
                servers: vec![
                    server("10.0.0.1:6379", "dc1", false),
                    server("10.0.0.9:6380", "dc1", true),
                    server("10.0.0.2:6381", "dc1", true),
                    server("10.0.0.3:6382", "dc2", true),
                    server("10.0.0.4:6383", "dc1", false),
                ],
                ..Default::default()
            },
        );
        c.groups.insert(2, Group { id: 2, servers: vec![server("10.0.0.5:6379", "", false)], ..Default::default() });
        c
    }

    #[test]
    fn routing_per_migration_state() {
        let mut c = cache();
        let mut hosts = Hosts::default();
        let mut m = SlotMapping { id: 7, group_id: 1, action: SlotAction::default() };
        let s = c.to_slot(&m, None, 1, &mut hosts);
        assert_eq!((s.backend_addr.as_str(), s.migrate_from.as_str(), s.locked), ("10.0.0.1:6379", "", false));
        assert!(!s.replica_groups.is_empty());
        m.action = SlotAction { index: 1, state: action::PREPARING.into(), target_id: 2 };
        let s = c.to_slot(&m, None, 1, &mut hosts);
        assert_eq!(s.backend_addr, "10.0.0.1:6379");
        assert!(s.replica_groups.is_empty(), "no replica reads once a migration is being prepared");
        m.action.state = action::PREPARED.into();
        let s = c.to_slot(&m, None, 1, &mut hosts);
        assert_eq!(
            (s.backend_addr.as_str(), s.migrate_from.as_str(), s.locked),
            ("10.0.0.5:6379", "10.0.0.1:6379", true)
        );
        m.action.state = action::MIGRATING.into();
        let s = c.to_slot(&m, None, 1, &mut hosts);
        assert_eq!(
            (s.backend_addr.as_str(), s.migrate_from.as_str(), s.locked),
            ("10.0.0.5:6379", "10.0.0.1:6379", false)
        );
        assert_eq!(s.migrate_from_group_id, 1);
        m.action.state = action::FINISHED.into();
        let s = c.to_slot(&m, None, 1, &mut hosts);
        assert_eq!((s.backend_addr.as_str(), s.migrate_from.as_str()), ("10.0.0.5:6379", ""));
        // a group in the prepared step of a promotion locks its slots
        c.groups.get_mut(&2).unwrap().promoting.state = action::PREPARED.into();
        assert!(c.to_slot(&m, None, 1, &mut hosts).locked);
        // offline slots have no backend
        let off = c.to_slot(&SlotMapping { id: 9, ..Default::default() }, None, 1, &mut hosts);
        assert_eq!((off.backend_addr.as_str(), off.backend_addr_group_id), ("", 0));
    }

    #[test]
    fn replica_tiers_follow_the_proxy() {
        let c = cache();
        let mut hosts = Hosts::default();
        let p = Proxy { admin_addr: "10.0.0.2:11080".into(), datacenter: "dc1".into(), ..Default::default() };
        assert_eq!(
            c.replica_groups(1, Some(&p), &mut hosts),
            vec![
                vec!["10.0.0.2:6381".to_string()],
                vec!["10.0.0.9:6380".to_string()],
                vec!["10.0.0.3:6382".to_string()]
            ]
        );
        // without a known proxy, every replica is in the last tier
        assert_eq!(
            c.replica_groups(1, None, &mut hosts),
            vec![vec!["10.0.0.9:6380", "10.0.0.2:6381", "10.0.0.3:6382"]]
        );
        assert!(c.replica_groups(2, Some(&p), &mut hosts).is_empty());
    }
}
