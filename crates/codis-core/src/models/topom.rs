//! The dashboard's identity (and lock) and the sentinel list.

use serde::{Deserialize, Serialize};

/// Stored at `/codis3/<product>/topom`; its presence is the dashboard lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topom {
    pub token: String,
    pub start_time: String,
    pub admin_addr: String,
    pub product_name: String,
    pub pid: i64,
    pub pwd: String,
    pub sys: String,
}

/// Stored at `/codis3/<product>/sentinel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sentinel {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    pub out_of_sync: bool,
}
