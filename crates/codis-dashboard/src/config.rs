//! `dashboard.toml`: Codis 3.2's keys and defaults, validated with messages that name the key.

use std::path::Path;

use codis_core::size::{ByteSize, TimeSize};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {key} = {value}: {hint}")]
    Invalid { key: &'static str, value: String, hint: &'static str },
}

/// The default `dashboard.toml`, printed by `codis-dashboard --default-config`.
pub const DEFAULT_CONFIG: &str = r#"
##################################################
#                                                #
#                  codis-dashboard               #
#                                                #
##################################################

# Where cluster state lives: "filesystem" (a directory), "etcd" or "zookeeper".
coordinator_name = "filesystem"
coordinator_addr = "/tmp/codis"
# "user:password" for etcd or zookeeper.
coordinator_auth = ""
# The dashboard's lock (the topom node) lives as long as the dashboard renews it: a
# dashboard that dies, or loses the coordinator, lets it go after this long, and a
# standby (codis-dashboard --standby) takes over. Also the session timeout with ZooKeeper.
coordinator_lease = "10s"

# Product name, and the password shared by dashboard, proxies and redis servers.
# When product_auth is set, the dashboard's mutating API calls require it as well.
product_name = "codis-demo"
product_auth = ""

# REST API.
admin_addr = "0.0.0.0:18080"

# How proxies forward requests for migrating slots: "semi-async" or "sync".
migration_method = "semi-async"
# Most slots in migration at once.
migration_parallel_slots = 100
# Async migration batches: elements per message, unacknowledged bytes, keys per call.
migration_async_maxbulks = 200
migration_async_maxbytes = "32mb"
migration_async_numkeys = 500
# Deadline of one migration call on a source server.
migration_timeout = "30s"

# redis-sentinel settings written by the dashboard.
sentinel_client_timeout = "10s"
sentinel_quorum = 2
sentinel_parallel_syncs = 1
sentinel_down_after = "30s"
sentinel_failover_timeout = "5m"
sentinel_notification_script = ""
sentinel_client_reconfig_script = ""
"#;

/// Every key of Codis 3.2's `dashboard.toml`. Unknown keys are rejected by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub coordinator_name: String,
    pub coordinator_addr: String,
    #[serde(skip_serializing)]
    pub coordinator_auth: String,
    pub coordinator_lease: TimeSize,
    /// Wait for the product lock instead of failing when it is held (`--standby`).
    #[serde(skip)]
    pub standby: bool,
    pub admin_addr: String,
    /// Address to advertise instead of an unspecified `admin_addr` (`--host-admin`).
    #[serde(skip)]
    pub host_admin: String,
    pub product_name: String,
    #[serde(skip_serializing)]
    pub product_auth: String,
    pub migration_method: String,
    pub migration_parallel_slots: i64,
    pub migration_async_maxbulks: i64,
    pub migration_async_maxbytes: ByteSize,
    pub migration_async_numkeys: i64,
    pub migration_timeout: TimeSize,
    pub sentinel_client_timeout: TimeSize,
    pub sentinel_quorum: i64,
    pub sentinel_parallel_syncs: i64,
    pub sentinel_down_after: TimeSize,
    pub sentinel_failover_timeout: TimeSize,
    pub sentinel_notification_script: String,
    pub sentinel_client_reconfig_script: String,
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str(DEFAULT_CONFIG).expect("the default config parses")
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.display().to_string(), message },
            other => other,
        })
    }

    /// Parses config text over the defaults, then validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("the default config parses");
        let given: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: String::new(), message: e.to_string() })?;
        merged.extend(given);
        let config: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { path: String::new(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl ToString, hint: &'static str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { key, value: value.to_string(), hint })
        }
        if !matches!(self.coordinator_name.as_str(), "filesystem" | "fs" | "etcd" | "zookeeper" | "zk") {
            return bad("coordinator_name", &self.coordinator_name, "use \"filesystem\", \"etcd\" or \"zookeeper\"");
        }
        if self.coordinator_addr.is_empty() {
            return bad("coordinator_addr", "\"\"", "set a directory (filesystem) or server addresses");
        }
        if self.admin_addr.is_empty() {
            return bad("admin_addr", "\"\"", "set the REST API address, like \"0.0.0.0:18080\"");
        }
        if codis_core::validate_product(&self.product_name).is_err() {
            return bad("product_name", &self.product_name, "use letters, digits, '_', '.' and '-'");
        }
        if codis_core::models::parse_forward_method(&self.migration_method).is_none() {
            return bad("migration_method", &self.migration_method, "use \"semi-async\" or \"sync\"");
        }
        for (key, v) in [
            ("migration_parallel_slots", self.migration_parallel_slots),
            ("migration_async_maxbulks", self.migration_async_maxbulks),
            ("migration_async_numkeys", self.migration_async_numkeys),
            ("sentinel_quorum", self.sentinel_quorum),
            ("sentinel_parallel_syncs", self.sentinel_parallel_syncs),
        ] {
            if v < 1 {
                return bad(key, v, "must be at least 1");
            }
        }
        if self.migration_async_maxbytes.bytes() < 1 {
            return bad("migration_async_maxbytes", self.migration_async_maxbytes, "must be positive, like \"32mb\"");
        }
        if self.coordinator_lease.duration() < std::time::Duration::from_secs(2) {
            return bad("coordinator_lease", self.coordinator_lease, "must be at least 2s, like \"10s\"");
        }
        if self.migration_timeout.is_zero() {
            return bad("migration_timeout", self.migration_timeout, "must be positive, like \"30s\"");
        }
        Ok(())
    }

    /// The forwarding method proxies use for migrating slots.
    pub fn forward_method(&self) -> i64 {
        codis_core::models::parse_forward_method(&self.migration_method)
            .unwrap_or(codis_core::models::FORWARD_SEMI_ASYNC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_codis_defaults() {
        let c = Config::default();
        assert_eq!(c.coordinator_name, "filesystem");
        assert_eq!(c.coordinator_addr, "/tmp/codis");
        assert_eq!(c.admin_addr, "0.0.0.0:18080");
        assert_eq!(c.migration_method, "semi-async");
        assert_eq!(c.migration_parallel_slots, 100);
        assert_eq!(c.migration_async_maxbytes.bytes(), 32 << 20);
        assert_eq!(c.migration_timeout.duration().as_secs(), 30);
        assert_eq!(c.sentinel_failover_timeout.duration().as_secs(), 300);
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("migration_method = \"fast\"", "migration_method"),
            ("coordinator_name = \"consul\"", "coordinator_name"),
            ("product_name = \"a/b\"", "product_name"),
            ("migration_timeout = \"0\"", "migration_timeout"),
            ("coordinator_lease = \"1s\"", "coordinator_lease"),
            ("admin_adr = \"x\"", "admin_adr"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
