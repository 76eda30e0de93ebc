//! `proxy.toml`: Codis 3.2's keys and defaults, validated with messages that name the key.

use std::path::Path;

use codis_core::size::{ByteSize, TimeSize};
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {key} = {value}: {hint}")]
    Invalid { key: &'static str, value: String, hint: &'static str },
}

/// The default `proxy.toml`, printed by `codis-proxy --default-config`.
pub const DEFAULT_CONFIG: &str = r#"
##################################################
#                                                #
#                  codis-proxy                   #
#                                                #
##################################################

# Product name and the password shared by dashboard, proxies and redis servers
# (sent as AUTH to every backend).
product_name = "codis-demo"
product_auth = ""

# Password clients must send with AUTH before any other command ("" = none).
session_auth = ""

# Admin HTTP API (tcp only).
admin_addr = "0.0.0.0:11080"

# Client listener: proto_type is "tcp", "tcp4", "tcp6" or "unix".
proto_type = "tcp4"
proxy_addr = "0.0.0.0:19000"

# Jodis registration (jodis_name: "zookeeper" or "etcd"; jodis_auth: "user:password").
jodis_name = ""
jodis_addr = ""
jodis_auth = ""
jodis_timeout = "20s"
jodis_compatible = false

# Datacenter of this proxy, used to prefer replicas in the same datacenter.
proxy_datacenter = ""

# Most client connections at once.
proxy_max_clients = 1000

# Kept for compatibility with Codis configs; codis-rs has no garbage collector to tune.
proxy_max_offheap_size = "1024mb"
proxy_heap_placeholder = "256mb"

# Health-check PING to idle backend connections ("0" disables).
backend_ping_period = "5s"

# Backend read buffer, and how long a backend may leave requests unanswered.
backend_recv_bufsize = "128kb"
backend_recv_timeout = "30s"

# Backend write buffer, and how long a write to a backend may block.
backend_send_bufsize = "128kb"
backend_send_timeout = "30s"

# Most requests in flight on one backend connection.
backend_max_pipeline = 20480

# Never read from replicas, even for slots that have replica groups.
backend_primary_only = false

# Connections per backend server and database.
backend_primary_parallel = 1
backend_replica_parallel = 1

# TCP keepalive on backend connections ("0" disables).
backend_keepalive_period = "75s"

# Databases a client may SELECT (0 .. n-1); connections per database open on first use.
backend_number_databases = 16

# Client read buffer, and idle time after which a client is disconnected ("0" disables).
session_recv_bufsize = "128kb"
session_recv_timeout = "30m"

# Client write buffer, and how long a write to a client may block before it is dropped.
session_send_bufsize = "64kb"
session_send_timeout = "30s"

# Requests one client may have in flight; beyond it the proxy stops reading from that
# client until replies drain (backpressure; the client is not disconnected).
session_max_pipeline = 10000

# TCP keepalive on client connections ("0" disables).
session_keepalive_period = "75s"

# Close a client's connection after a failed request instead of replying with an error.
session_break_on_failure = false

# codis-rs: allow KEYS, FLUSHDB and FLUSHALL, which the proxy runs on every group.
session_allow_keyspace_commands = false

# codis-rs: SLOWLOG GET/LEN/RESET answered by the proxy: requests slower than this many
# microseconds from request to reply ("-1" disables, 0 logs every request), the newest
# slowlog_max_len of them kept.
slowlog_log_slower_than = 10000
slowlog_max_len = 128

# Metrics reporting (JSON over HTTP, InfluxDB, StatsD).
metrics_report_server = ""
metrics_report_period = "1s"
metrics_report_influxdb_server = ""
metrics_report_influxdb_period = "1s"
metrics_report_influxdb_username = ""
metrics_report_influxdb_password = ""
metrics_report_influxdb_database = ""
metrics_report_statsd_server = ""
metrics_report_statsd_period = "1s"
metrics_report_statsd_prefix = ""
"#;

/// Every key of Codis 3.2's `proxy.toml`. Unknown keys are rejected by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proto_type: String,
    pub proxy_addr: String,
    pub admin_addr: String,

    /// Address to advertise instead of an unspecified `proxy_addr` (`--host-proxy`).
    #[serde(skip)]
    pub host_proxy: String,
    /// Address to advertise instead of an unspecified `admin_addr` (`--host-admin`).
    #[serde(skip)]
    pub host_admin: String,

    pub jodis_name: String,
    pub jodis_addr: String,
    #[serde(skip_serializing)]
    pub jodis_auth: String,
    pub jodis_timeout: TimeSize,
    pub jodis_compatible: bool,

    pub product_name: String,
    #[serde(skip_serializing)]
    pub product_auth: String,
    #[serde(skip_serializing)]
    pub session_auth: String,

    pub proxy_datacenter: String,
    pub proxy_max_clients: i64,
    pub proxy_max_offheap_size: ByteSize,
    pub proxy_heap_placeholder: ByteSize,

    pub backend_ping_period: TimeSize,
    pub backend_recv_bufsize: ByteSize,
    pub backend_recv_timeout: TimeSize,
    pub backend_send_bufsize: ByteSize,
    pub backend_send_timeout: TimeSize,
    pub backend_max_pipeline: i64,
    pub backend_primary_only: bool,
    pub backend_primary_parallel: i64,
    pub backend_replica_parallel: i64,
    pub backend_keepalive_period: TimeSize,
    pub backend_number_databases: i64,

    pub session_recv_bufsize: ByteSize,
    pub session_recv_timeout: TimeSize,
    pub session_send_bufsize: ByteSize,
    pub session_send_timeout: TimeSize,
    pub session_max_pipeline: i64,
    pub session_keepalive_period: TimeSize,
    pub session_break_on_failure: bool,
    /// codis-rs: KEYS, FLUSHDB and FLUSHALL are refused unless this is set.
    pub session_allow_keyspace_commands: bool,
    /// codis-rs: the proxy's slow log (microseconds; negative disables).
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: i64,

    pub metrics_report_server: String,
    pub metrics_report_period: TimeSize,
    pub metrics_report_influxdb_server: String,
    pub metrics_report_influxdb_period: TimeSize,
    pub metrics_report_influxdb_username: String,
    #[serde(skip_serializing)]
    pub metrics_report_influxdb_password: String,
    pub metrics_report_influxdb_database: String,
    pub metrics_report_statsd_server: String,
    pub metrics_report_statsd_period: TimeSize,
    pub metrics_report_statsd_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str(DEFAULT_CONFIG).expect("the default config parses")
    }
}

impl Config {
    /// Reads a config file; keys it leaves out keep their defaults.
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

    /// The config as TOML, secrets left out (shown by the admin API and at start-up).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl ToString, hint: &'static str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { key, value: value.to_string(), hint })
        }
        if !matches!(self.proto_type.as_str(), "tcp" | "tcp4" | "tcp6" | "unix") {
            return bad("proto_type", &self.proto_type, "use \"tcp\", \"tcp4\", \"tcp6\" or \"unix\"");
        }
        if self.proxy_addr.is_empty() {
            return bad("proxy_addr", "\"\"", "set the client listen address, like \"0.0.0.0:19000\"");
        }
        if self.admin_addr.is_empty() {
            return bad("admin_addr", "\"\"", "set the admin listen address, like \"0.0.0.0:11080\"");
        }
        if let Err(e) = codis_core::validate_product(&self.product_name) {
            return Err(ConfigError::Invalid {
                key: "product_name",
                value: e.0,
                hint: "use letters, digits, '_', '.' and '-'",
            });
        }
        if !matches!(self.jodis_name.as_str(), "" | "zookeeper" | "etcd") {
            return bad("jodis_name", &self.jodis_name, "use \"zookeeper\" or \"etcd\" (or \"\" to disable)");
        }
        if !self.jodis_name.is_empty() && self.jodis_addr.is_empty() {
            return bad("jodis_addr", "\"\"", "set the coordinator address when jodis_name is set");
        }
        let positive: [(&'static str, i64); 5] = [
            ("backend_number_databases", self.backend_number_databases),
            ("session_max_pipeline", self.session_max_pipeline),
            ("backend_max_pipeline", self.backend_max_pipeline),
            ("backend_primary_parallel", self.backend_primary_parallel),
            ("backend_replica_parallel", self.backend_replica_parallel),
        ];
        for (key, v) in positive {
            if v < 1 {
                return bad(key, v, "must be at least 1");
            }
        }
        if self.backend_number_databases > 1 << 16 {
            return bad("backend_number_databases", self.backend_number_databases, "must be at most 65536");
        }
        if !(0..=1 << 20).contains(&self.slowlog_max_len) {
            return bad("slowlog_max_len", self.slowlog_max_len, "must be 0 (no slow log) to 1048576");
        }
        if self.proxy_max_clients < 0 {
            return bad("proxy_max_clients", self.proxy_max_clients, "must be 0 (no limit) or more");
        }
        let sizes = [
            ("proxy_max_offheap_size", self.proxy_max_offheap_size),
            ("proxy_heap_placeholder", self.proxy_heap_placeholder),
            ("backend_recv_bufsize", self.backend_recv_bufsize),
            ("backend_send_bufsize", self.backend_send_bufsize),
            ("session_recv_bufsize", self.session_recv_bufsize),
            ("session_send_bufsize", self.session_send_bufsize),
        ];
        for (key, v) in sizes {
            if v.bytes() < 0 {
                return bad(key, v, "must not be negative");
            }
        }
        Ok(())
    }

    /// Buffer size hint clamped to something sane for per-connection allocations.
    pub fn clamp_buf(size: ByteSize) -> usize {
        (size.bytes().max(0) as usize).clamp(4 << 10, 16 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_are_codis_defaults() {
        let c = Config::default();
        assert_eq!(c.product_name, "codis-demo");
        assert_eq!(c.proxy_addr, "0.0.0.0:19000");
        assert_eq!(c.admin_addr, "0.0.0.0:11080");
        assert_eq!(c.proto_type, "tcp4");
        assert_eq!(c.proxy_max_clients, 1000);
        assert_eq!(c.backend_ping_period.duration(), Duration::from_secs(5));
        assert_eq!(c.backend_recv_bufsize.bytes(), 128 << 10);
        assert_eq!(c.backend_max_pipeline, 20480);
        assert_eq!(c.backend_number_databases, 16);
        assert_eq!(c.session_recv_timeout.duration(), Duration::from_secs(1800));
        assert_eq!(c.session_max_pipeline, 10000);
        assert_eq!(c.jodis_timeout.duration(), Duration::from_secs(20));
        assert!(!c.session_break_on_failure);
        c.validate().unwrap();
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = Config::from_toml("product_name = \"p1\"\nsession_max_pipeline = 5\n").unwrap();
        assert_eq!(c.product_name, "p1");
        assert_eq!(c.session_max_pipeline, 5);
        assert_eq!(c.backend_max_pipeline, 20480);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("prodcut_name = \"x\"").unwrap_err().to_string();
        assert!(e.contains("prodcut_name"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("backend_ping_period = \"5 parsecs\"", "backend_ping_period"),
            ("session_max_pipeline = 0", "session_max_pipeline"),
            ("proto_type = \"udp\"", "proto_type"),
            ("product_name = \"a b\"", "product_name"),
            ("backend_number_databases = 0", "backend_number_databases"),
            ("jodis_name = \"consul\"", "jodis_name"),
            ("proxy_max_clients = \"many\"", "proxy_max_clients"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_toml("product_auth = \"s3cret\"\nsession_auth = \"x9\"").unwrap();
        let t = c.to_toml();
        assert!(!t.contains("s3cret") && !t.contains("x9"));
        assert!(t.contains("product_name"));
    }
}
