//! Slot ownership: direct assignment, migration actions, rebalance plans.

use std::collections::{BTreeMap, BTreeSet};

use codis_core::MAX_SLOT_NUM;
use codis_core::models::{SlotAction, SlotMapping, action};

use super::{Cache, Result, Topom, TopomError};

impl Topom {
    /// Maps slots to groups directly, without moving data (for empty slots, or a fresh
    /// cluster). Slots with a migration in progress are refused.
    pub async fn slots_assign(&self, mappings: &[SlotMapping]) -> Result<()> {
        let mut cache = self.lock().await?;
        for m in mappings {
            cache.slot(m.id)?;
            let g = cache.group(m.group_id)?;
            if g.servers.is_empty() {
                return Err(TopomError::msg(format!("group-[{}] is empty", g.id)));
            }
            if !cache.slots[m.id as usize].action.state.is_empty() || !m.action.state.is_empty() {
                return Err(TopomError::msg(format!(
                    "slot-[{}] has a migration action; wait for it or remove it",
                    m.id
                )));
            }
        }
        self.assign(&mut cache, mappings.iter().map(|m| (m.id, m.group_id))).await
    }

    /// Takes slots offline (group 0): requests for them fail until reassigned.
    pub async fn slots_assign_offline(&self, mappings: &[SlotMapping]) -> Result<()> {
        let mut cache = self.lock().await?;
        for m in mappings {
            cache.slot(m.id)?;
            if m.group_id != 0 {
                return Err(TopomError::msg(format!("group of slot-[{}] should be 0", m.id)));
            }
        }
        self.assign(&mut cache, mappings.iter().map(|m| (m.id, 0))).await
    }

    async fn assign(&self, cache: &mut Cache, pairs: impl Iterator<Item = (i64, i64)>) -> Result<()> {
        let ms: Vec<SlotMapping> =
            pairs.map(|(sid, gid)| SlotMapping { id: sid, group_id: gid, ..Default::default() }).collect();
        let ids: Vec<i64> = ms.iter().map(|m| m.id).collect();
        self.put_slots(cache, ms).await?;
        self.resync(cache, &ids).await
    }

    /// Queues the migration of slot `sid` to group `gid`.
    pub async fn slot_create_action(&self, sid: i64, gid: i64) -> Result<()> {
        self.create_actions(
            |cache| {
                let m = cache.slot(sid)?;
                if !m.action.state.is_empty() {
                    return Err(TopomError::msg(format!("slot-[{sid}] action already exists")));
                }
                if m.group_id == gid {
                    return Err(TopomError::msg(format!("slot-[{sid}] already in group-[{gid}]")));
                }
                Ok(vec![sid])
            },
            gid,
        )
        .await
    }

    /// Queues up to `num` idle slots of group `from` to move to group `to`.
    pub async fn slot_create_action_some(&self, from: i64, to: i64, num: usize) -> Result<()> {
        self.create_actions(
            |cache| {
                Ok(cache
                    .slots
                    .iter()
                    .filter(|m| m.action.state.is_empty() && m.group_id == from && m.group_id != to)
                    .take(num)
                    .map(|m| m.id)
                    .collect())
            },
            to,
        )
        .await
    }

    /// Queues slots `beg..=end` to move to group `gid` (slots already there or already
    /// moving are skipped).
    pub async fn slot_create_action_range(&self, beg: i64, end: i64, gid: i64) -> Result<()> {
        if !(0 <= beg && beg <= end && end < MAX_SLOT_NUM as i64) {
            return Err(TopomError::msg(format!("invalid slot range [{beg},{end}]")));
        }
        self.create_actions(
            |cache| {
                Ok((beg..=end)
                    .filter(|&sid| {
                        let m = &cache.slots[sid as usize];
                        m.action.state.is_empty() && m.group_id != gid
                    })
                    .collect())
            },
            gid,
        )
        .await
    }

    async fn create_actions(&self, pick: impl FnOnce(&Cache) -> Result<Vec<i64>>, gid: i64) -> Result<()> {
        let mut cache = self.lock().await?;
        let g = cache.group(gid)?;
        if g.servers.is_empty() {
            return Err(TopomError::msg(format!("group-[{gid}] is empty")));
        }
        for sid in pick(&cache)? {
            let mut m = cache.slots[sid as usize].clone();
            m.action =
                SlotAction { index: cache.max_action_index() + 1, state: action::PENDING.into(), target_id: gid };
            self.put_slot(&mut cache, m).await?;
        }
        Ok(())
    }

    /// Cancels a migration that has not started.
    pub async fn slot_remove_action(&self, sid: i64) -> Result<()> {
        let mut cache = self.lock().await?;
        let m = cache.slot(sid)?;
        match m.action.state.as_str() {
            "" => return Err(TopomError::msg(format!("slot-[{sid}] action doesn't exist"))),
            action::PENDING => {}
            state => return Err(TopomError::msg(format!("slot-[{sid}] action isn't pending (it is {state})"))),
        }
        let m = SlotMapping { id: sid, group_id: m.group_id, ..Default::default() };
        self.put_slot(&mut cache, m).await
    }

    /// Microseconds to pause between migration steps (0..=1s), to spare busy servers.
    pub fn set_action_interval(&self, us: i64) -> Result<()> {
        if !(0..=1_000_000).contains(&us) {
            return Err(TopomError::msg(format!(
                "invalid action interval {us}: use 0 to 1000000 microseconds between migration steps"
            )));
        }
        self.action.interval_us.store(us, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("set action interval = {us}us");
        Ok(())
    }

    /// Pauses (true) or resumes (false) migrations.
    pub fn set_action_disabled(&self, disabled: bool) {
        self.action.disabled.store(disabled, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("set action disabled = {disabled}");
    }

    /// Plans an even spread of slots over the groups that have servers; with `confirm`,
    /// queues the moves. Returns `{slot: target group}`.
    pub async fn slots_rebalance(&self, confirm: bool) -> Result<BTreeMap<i64, i64>> {
        let mut cache = self.lock().await?;
        let plan = rebalance_plan(&cache)?;
        if confirm {
            let first = cache.max_action_index() + 1;
            let ms = (first..)
                .zip(&plan)
                .map(|(index, (&sid, &gid))| {
                    let mut m = cache.slots[sid as usize].clone();
                    m.action = SlotAction { index, state: action::PENDING.into(), target_id: gid };
                    m
                })
                .collect();
            self.put_slots(&mut cache, ms).await?;
        }
        Ok(plan)
    }
}

/// Codis's rebalance: groups end with ⌊1024/n⌋ or ⌈1024/n⌉ slots; slots already moving
/// count for their target, offline slots go to the smallest groups, and moves go from
/// the largest group to the smallest one at a time, highest slot ids first.
pub fn rebalance_plan(cache: &Cache) -> Result<BTreeMap<i64, i64>> {
    let gids: Vec<i64> = cache.groups.values().filter(|g| !g.servers.is_empty()).map(|g| g.id).collect();
    if gids.is_empty() {
        return Err(TopomError::msg("no valid group could be found: create a group with servers first"));
    }
    let n = gids.len() as i64;
    let lower = MAX_SLOT_NUM as i64 / n;
    let upper = (MAX_SLOT_NUM as i64 + n - 1) / n;
    let mut assigned: BTreeMap<i64, i64> = BTreeMap::new();
    let mut pending: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut moveout: BTreeMap<i64, i64> = BTreeMap::new();
    let size = |gid: i64, a: &BTreeMap<i64, i64>, p: &BTreeMap<i64, Vec<i64>>, mo: &BTreeMap<i64, i64>| {
        a.get(&gid).copied().unwrap_or(0) + p.get(&gid).map_or(0, |v| v.len() as i64)
            - mo.get(&gid).copied().unwrap_or(0)
    };
    for m in cache.slots.iter().filter(|m| !m.action.state.is_empty()) {
        *assigned.entry(m.action.target_id).or_default() += 1;
    }
    for m in cache.slots.iter().filter(|m| m.action.state.is_empty() && m.group_id != 0) {
        if size(m.group_id, &assigned, &pending, &moveout) < lower {
            *assigned.entry(m.group_id).or_default() += 1;
        } else {
            pending.entry(m.group_id).or_default().push(m.id);
        }
    }
    // Groups ordered by (current size, id): smallest first.
    let mut tree: BTreeSet<(i64, i64)> = gids.iter().map(|&g| (size(g, &assigned, &pending, &moveout), g)).collect();
    let mut docking: Vec<i64> = Vec::new();
    for m in cache.slots.iter().filter(|m| m.action.state.is_empty() && m.group_id == 0) {
        let (s, dest) = tree.pop_first().expect("at least one group");
        docking.push(m.id);
        *moveout.entry(dest).or_default() -= 1;
        tree.insert((s + 1, dest));
    }
    while tree.len() >= 2 {
        let (from_size, from) = tree.pop_last().expect("two groups");
        if pending.get(&from).map_or(0, |v| v.len() as i64) == moveout.get(&from).copied().unwrap_or(0) {
            continue;
        }
        let (dest_size, dest) = tree.pop_first().expect("two groups");
        if from_size <= lower || dest_size >= upper || from_size - dest_size <= 1 {
            break;
        }
        *moveout.entry(from).or_default() += 1;
        *moveout.entry(dest).or_default() -= 1;
        tree.insert((from_size - 1, from));
        tree.insert((dest_size + 1, dest));
    }
    for (&gid, &out) in &moveout {
        if out > 0 {
            let mut sids = pending.get(&gid).cloned().unwrap_or_default();
            sids.sort_unstable_by(|a, b| b.cmp(a));
            docking.extend(sids.into_iter().take(out as usize));
        }
    }
    docking.sort_unstable();
    let mut plan = BTreeMap::new();
    let mut docking = docking.into_iter();
    for &gid in &gids {
        let incoming = -moveout.get(&gid).copied().unwrap_or(0);
        for _ in 0..incoming.max(0) {
            match docking.next() {
                Some(sid) => {
                    plan.insert(sid, gid);
                }
                None => break,
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_core::models::{Group, GroupServer};

    fn cache(groups: &[i64]) -> Cache {
        let mut c = Cache {
            slots: (0..1024).map(|id| SlotMapping { id, ..Default::default() }).collect(),
            ..Default::default()
        };
        for &g in groups {
            let servers = vec![GroupServer { addr: format!("127.0.0.1:{}", 6000 + g), ..Default::default() }];
            c.groups.insert(g, Group { id: g, servers, ..Default::default() });
        }
        c
    }

    fn sizes_after(c: &Cache, plan: &BTreeMap<i64, i64>) -> BTreeMap<i64, i64> {
        let mut sizes = BTreeMap::new();
        for m in &c.slots {
            let g = plan.get(&m.id).copied().unwrap_or(m.group_id);
            *sizes.entry(g).or_insert(0) += 1;
        }
        sizes
    }

    #[test]
    fn offline_slots_are_spread() {
        let c = cache(&[1, 2, 3]);
        let plan = rebalance_plan(&c).unwrap();
        assert_eq!(plan.len(), 1024);
        let sizes = sizes_after(&c, &plan);
        assert_eq!(sizes.values().copied().collect::<Vec<_>>(), vec![342, 341, 341]);
    }

    #[test]
    fn a_new_group_gets_an_even_share_from_the_others() {
        let mut c = cache(&[1, 2, 3]);
        for m in c.slots.iter_mut() {
            m.group_id = if m.id < 512 { 1 } else { 2 };
        }
        let plan = rebalance_plan(&c).unwrap();
        let sizes = sizes_after(&c, &plan);
        for (&g, &n) in &sizes {
            assert!((341..=342).contains(&n), "group {g} ends with {n} slots");
        }
        // moves leave from the highest slot ids of their group and never stay put
        assert!(plan.iter().all(|(&sid, &gid)| c.slots[sid as usize].group_id != gid));
        assert!(plan.contains_key(&511) && plan.contains_key(&1023));
        // a balanced cluster needs no move
        let mut balanced = c.clone();
        for (&sid, &gid) in &plan {
            balanced.slots[sid as usize].group_id = gid;
        }
        assert!(rebalance_plan(&balanced).unwrap().is_empty());
    }

    #[test]
    fn no_group_no_plan() {
        assert!(rebalance_plan(&cache(&[])).is_err());
    }
}
