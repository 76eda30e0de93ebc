//! Slots: the routing entry pushed to proxies, and the mapping stored in the coordinator.

use serde::{Deserialize, Serialize};

use super::{is_false, is_zero_i64};

/// Migration forwarding: the proxy moves a key with `SLOTSMGRTTAGONE` before forwarding.
pub const FORWARD_SYNC: i64 = 0;
/// Migration forwarding: the proxy runs the command through `SLOTSMGRT-EXEC-WRAPPER`.
pub const FORWARD_SEMI_ASYNC: i64 = 1;
/// Migration forwarding for stock servers (a codis-rs addition): the proxy moves the
/// keys a command names with `MIGRATE ... KEYS` before forwarding it to the target.
pub const FORWARD_MIGRATE: i64 = 2;

/// Parses Codis's `migration_method` names (case-insensitive).
pub fn parse_forward_method(s: &str) -> Option<i64> {
    match s.to_ascii_uppercase().as_str() {
        "SYNC" => Some(FORWARD_SYNC),
        "SEMI-ASYNC" => Some(FORWARD_SEMI_ASYNC),
        _ => None,
    }
}

/// Routing of one slot, as the dashboard pushes it to proxies (`PUT /api/proxy/fillslots`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slot {
    pub id: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub locked: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub backend_addr: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub backend_addr_group_id: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub migrate_from: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub migrate_from_group_id: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub forward_method: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replica_groups: Vec<Vec<String>>,
}

/// The migration action attached to a slot mapping; empty when idle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotAction {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub index: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub target_id: i64,
}

/// Slot ownership as stored at `/codis3/<product>/slots/slot-NNNN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotMapping {
    pub id: i64,
    pub group_id: i64,
    pub action: SlotAction,
}
