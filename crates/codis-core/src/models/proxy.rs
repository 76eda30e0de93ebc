//! A proxy's identity as registered with the dashboard.

use serde::{Deserialize, Serialize};

use super::is_zero_i64;

/// Stored at `/codis3/<product>/proxy/proxy-<token>` and served by `/api/proxy/model`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Proxy {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub id: i64,
    pub token: String,
    pub start_time: String,
    pub admin_addr: String,
    pub proto_type: String,
    pub proxy_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jodis_path: String,
    pub product_name: String,
    pub pid: i64,
    pub pwd: String,
    pub sys: String,
    pub hostname: String,
    pub datacenter: String,
}
