//! Groups: one master (`servers[0]`) and its replicas.

use serde::{Deserialize, Serialize};

use super::is_zero_i64;

/// A replica-sync action on one server (`pending` → `syncing` → `synced`/`synced_failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupServerAction {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub index: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// One redis server of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupServer {
    #[serde(rename = "server")]
    pub addr: String,
    pub datacenter: String,
    pub action: GroupServerAction,
    pub replica_group: bool,
}

/// The state of a manual promotion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Promoting {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub index: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// A group as stored at `/codis3/<product>/group/group-NNNN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    pub id: i64,
    pub servers: Vec<GroupServer>,
    pub promoting: Promoting,
    pub out_of_sync: bool,
}
