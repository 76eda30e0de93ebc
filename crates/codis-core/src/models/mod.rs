//! Codis 3.2 models with their exact JSON field names and omitempty rules.
//!
//! Serialisation follows Go's `encoding/json` as Codis uses it: fields in declaration
//! order, `omitempty` fields left out at their zero value. Deserialisation is lenient
//! (missing fields take their zero value, unknown fields are ignored), as Go's is.

mod group;
mod proxy;
mod slot;
mod topom;

pub use group::{Group, GroupServer, GroupServerAction, Promoting};
pub use proxy::Proxy;
pub use slot::{
    FORWARD_MIGRATE, FORWARD_SEMI_ASYNC, FORWARD_SYNC, Slot, SlotAction, SlotMapping, parse_forward_method,
};
pub use topom::{Sentinel, Topom};

/// The error body of Codis's admin APIs (sent with HTTP status 800).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteError {
    #[serde(rename = "Cause")]
    pub cause: String,
    #[serde(rename = "Stack", default)]
    pub stack: Option<Vec<serde_json::Value>>,
}

impl RemoteError {
    pub fn new(cause: &str) -> RemoteError {
        RemoteError { cause: cause.to_string(), stack: None }
    }
}

/// Action states shared by slot migrations, promotions and replica syncs.
pub mod action {
    pub const NOTHING: &str = "";
    pub const PENDING: &str = "pending";
    pub const PREPARING: &str = "preparing";
    pub const PREPARED: &str = "prepared";
    pub const MIGRATING: &str = "migrating";
    pub const FINISHED: &str = "finished";
    pub const SYNCING: &str = "syncing";
    pub const SYNCED: &str = "synced";
    pub const SYNCED_FAILED: &str = "synced_failed";
}

pub(crate) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_string_pretty;

    #[test]
    fn slot_json_omits_zero_fields() {
        let s = Slot { id: 7, ..Default::default() };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"id":7}"#);
        let s = Slot {
            id: 579,
            locked: true,
            backend_addr: "127.0.0.1:6380".into(),
            backend_addr_group_id: 2,
            migrate_from: "127.0.0.1:6379".into(),
            migrate_from_group_id: 1,
            forward_method: FORWARD_SEMI_ASYNC,
            replica_groups: vec![vec!["127.0.0.1:6381".into()]],
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"id":579,"locked":true,"backend_addr":"127.0.0.1:6380","backend_addr_group_id":2,"migrate_from":"127.0.0.1:6379","migrate_from_group_id":1,"forward_method":1,"replica_groups":[["127.0.0.1:6381"]]}"#
        );
        let back: Slot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn slot_mapping_json() {
        let mut m = SlotMapping { id: 579, group_id: 2, ..Default::default() };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"id":579,"group_id":2,"action":{}}"#);
        m.action = SlotAction { index: 1, state: action::PENDING.into(), target_id: 1 };
        assert_eq!(
            to_string_pretty(&m).unwrap(),
            "{\n    \"id\": 579,\n    \"group_id\": 2,\n    \"action\": {\n        \"index\": 1,\n        \"state\": \"pending\",\n        \"target_id\": 1\n    }\n}"
        );
    }

    #[test]
    fn group_and_proxy_json() {
        let g = Group {
            id: 1,
            servers: vec![GroupServer { addr: "127.0.0.1:6379".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"id":1,"servers":[{"server":"127.0.0.1:6379","datacenter":"","action":{},"replica_group":false}],"promoting":{},"out_of_sync":false}"#
        );
        let p = Proxy { token: "t".into(), ..Default::default() };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"token":"t","start_time":"","admin_addr":"","proto_type":"","proxy_addr":"","product_name":"","pid":0,"pwd":"","sys":"","hostname":"","datacenter":""}"#
        );
        let t = Topom::default();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"token":"","start_time":"","admin_addr":"","product_name":"","pid":0,"pwd":"","sys":""}"#
        );
        assert_eq!(serde_json::to_string(&Sentinel::default()).unwrap(), r#"{"out_of_sync":false}"#);
    }
}
