//! The command line: Codis 3.2's `codis-admin` flags (long options, `-a`, `-x`, `-t`,
//! `-g`, `-v`), plus `--json`.
//!
//! Like Codis, one target flag (`--proxy`, `--dashboard`, or a coordinator command)
//! picks what to talk to and at most one action flag says what to do; the remaining
//! flags are that action's parameters. Clap checks what it can express (one target,
//! one action, proxy-only and dashboard-only actions); the rest is checked where the
//! action runs, with messages naming the missing flag.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  codis-admin --dashboard=127.0.0.1:18080 --create-group --gid=1
  codis-admin --dashboard=127.0.0.1:18080 --group-add --gid=1 --addr=127.0.0.1:6379
  codis-admin --dashboard=127.0.0.1:18080 --create-proxy --addr=127.0.0.1:11080
  codis-admin --dashboard=127.0.0.1:18080 --slots-assign --beg=0 --end=1023 --gid=1 --confirm
  codis-admin --dashboard=127.0.0.1:18080 --slot-action --create-range --beg=0 --end=511 --gid=2
  codis-admin --dashboard=127.0.0.1:18080 --slots-status
  codis-admin --dashboard=127.0.0.1:18080 --rebalance --confirm
  codis-admin --proxy=127.0.0.1:11080 stats --json
  codis-admin --remove-lock --product=codis-demo --filesystem=/tmp/codis
  codis-admin --config-dump --product=codis-demo --filesystem=/tmp/codis > codis-demo.json

When the product has a password (product_auth), pass it with --auth for commands that
change something. Lists and status need no password. --config-dump and --dashboard-list
always print JSON (files for restores and codis-fe).";

// Actions of one target conflict with the others. (Clap's `requires` cannot say this:
// it waives a requirement that conflicts with an argument given, and the targets
// conflict with each other.)
const COORDINATOR_TARGETS: [&str; 5] =
    ["remove_lock", "config_dump", "config_convert", "config_restore", "dashboard_list"];
const NOT_PROXY: [&str; 6] =
    ["dashboard", "remove_lock", "config_dump", "config_convert", "config_restore", "dashboard_list"];
const NOT_DASHBOARD: [&str; 6] =
    ["proxy", "remove_lock", "config_dump", "config_convert", "config_restore", "dashboard_list"];

/// Which part of a dashboard's or proxy's overview to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum View {
    Config,
    Model,
    Stats,
    Slots,
    /// Dashboards only: groups and their servers.
    Group,
    /// Dashboards only: proxies.
    Proxy,
}

#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "codis-admin",
    version,
    about = "Administer codis-rs (and Codis 3.2) dashboards, proxies and coordinators",
    after_help = AFTER_HELP,
    group(ArgGroup::new("target").required(true).multiple(false).args([
        "proxy", "dashboard", "remove_lock", "config_dump", "config_convert", "config_restore", "dashboard_list",
    ])),
    group(ArgGroup::new("coordinator").multiple(false).args(["zookeeper", "etcd", "filesystem"])),
    group(ArgGroup::new("action").multiple(false).args([
        "start", "shutdown", "reload", "log_level", "fillslots", "reset_stats", "forcegc",
        "slots_assign", "slots_status", "list_proxy", "create_proxy", "online_proxy", "remove_proxy",
        "reinit_proxy", "proxy_status", "list_group", "create_group", "remove_group", "resync_group",
        "group_add", "group_del", "group_status", "replica_groups", "promote_server", "sync_action",
        "slot_action", "rebalance", "sentinel_add", "sentinel_del", "sentinel_resync",
    ])),
)]
pub struct Cli {
    // ---- what to talk to ----
    /// A proxy's admin address (its admin_addr, default port 11080).
    #[arg(long, value_name = "ADDR", help_heading = "Targets")]
    pub proxy: Option<String>,
    /// A dashboard's admin address (its admin_addr, default port 18080).
    #[arg(long, value_name = "ADDR", help_heading = "Targets")]
    pub dashboard: Option<String>,
    /// Remove the dashboard lock of --product from the coordinator (after a crash).
    #[arg(long, requires_all = ["product", "coordinator"], help_heading = "Targets")]
    pub remove_lock: bool,
    /// Print --product's slots, groups and proxies as JSON.
    #[arg(long, requires_all = ["product", "coordinator"], help_heading = "Targets")]
    pub config_dump: bool,
    /// Codis 2.x conversion (not supported by codis-rs).
    #[arg(long, value_name = "FILE", help_heading = "Targets")]
    pub config_convert: Option<PathBuf>,
    /// Write a --config-dump file into --product, which must be empty (needs --confirm).
    #[arg(long, value_name = "FILE", requires_all = ["product", "coordinator"], help_heading = "Targets")]
    pub config_restore: Option<PathBuf>,
    /// Print every product in the coordinator and its dashboard, as JSON.
    #[arg(long, requires = "coordinator", help_heading = "Targets")]
    pub dashboard_list: bool,

    /// Part of the overview to show (without an action flag).
    #[arg(value_enum, conflicts_with = "action")]
    pub view: Option<View>,

    // ---- common ----
    /// The product's password (product_auth), needed to change anything when it is set.
    #[arg(short = 'a', long, value_name = "AUTH")]
    pub auth: Option<String>,
    /// Print the raw JSON the dashboard or proxy answered instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Show each call made.
    #[arg(short = 'v')]
    pub verbose: bool,

    // ---- proxy actions ----
    /// Bring the proxy online (after its slots are filled).
    #[arg(long, conflicts_with_all = NOT_PROXY, help_heading = "Proxy actions")]
    pub start: bool,
    /// Fill the proxy's slots from a JSON file of Codis slots ([{"id":0,"backend_addr":"host:port"},...]).
    #[arg(long, value_name = "FILE", conflicts_with_all = NOT_PROXY, help_heading = "Proxy actions")]
    pub fillslots: Option<PathBuf>,
    /// With --fillslots: fill the slots locked (requests wait until they are filled again).
    #[arg(long, requires = "fillslots", help_heading = "Proxy actions")]
    pub locked: bool,
    /// Reset the proxy's counters.
    #[arg(long, conflicts_with_all = NOT_PROXY, help_heading = "Proxy actions")]
    pub reset_stats: bool,
    /// Codis's Go GC hook (accepted; codis-rs has no garbage collector).
    #[arg(long, conflicts_with_all = NOT_PROXY, help_heading = "Proxy actions")]
    pub forcegc: bool,

    // ---- proxy or dashboard actions ----
    /// Shut the proxy or dashboard down.
    #[arg(long, conflicts_with_all = COORDINATOR_TARGETS, help_heading = "Proxy or dashboard actions")]
    pub shutdown: bool,
    /// Set the log level: none, error, warn, info or debug.
    #[arg(long, value_name = "LEVEL", conflicts_with_all = COORDINATOR_TARGETS, help_heading = "Proxy or dashboard actions")]
    pub log_level: Option<String>,

    // ---- dashboard actions ----
    /// Reload the dashboard's state from the coordinator.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub reload: bool,
    /// Map slots --beg..--end to --gid (or --offline) without moving data; needs --confirm.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub slots_assign: bool,
    /// Slot ranges per group, migrations and their progress.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub slots_status: bool,
    /// Registered proxies.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub list_proxy: bool,
    /// Register the proxy whose admin address is --addr, and bring it online.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub create_proxy: bool,
    /// Register or refresh the proxy at --addr, and bring it online.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub online_proxy: bool,
    /// Shut down and forget a proxy (--addr, --token or --pid); --force if it is unreachable.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub remove_proxy: bool,
    /// Push the whole routing to a proxy again (--addr, --token, --pid or --all).
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub reinit_proxy: bool,
    /// Proxies with their state, sessions and ops.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub proxy_status: bool,
    /// Groups, their servers and slot counts.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub list_group: bool,
    /// Create group --gid.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub create_group: bool,
    /// Remove group --gid (it must have no servers).
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub remove_group: bool,
    /// Push a group's routing to every proxy again (--gid or --all).
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub resync_group: bool,
    /// Add server --addr to group --gid (the first server is the master).
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub group_add: bool,
    /// Remove server --addr from group --gid.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub group_del: bool,
    /// Every server: role, replication, migration mode, keys, memory.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub group_status: bool,
    /// Allow (--enable) or stop (--disable) reads from server --addr of group --gid.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub replica_groups: bool,
    /// Make server --addr the master of group --gid.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub promote_server: bool,
    /// Queue (--create) or drop (--remove) a replication sync of server --addr.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub sync_action: bool,
    /// Slot migrations: --create, --remove, --create-some, --create-range, --interval, --disabled.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub slot_action: bool,
    /// Plan an even spread of slots over the groups; --confirm queues the migrations.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub rebalance: bool,
    /// Add the redis-sentinel at --addr.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub sentinel_add: bool,
    /// Remove the redis-sentinel at --addr (--force if it is unreachable).
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub sentinel_del: bool,
    /// Make every sentinel monitor the groups again.
    #[arg(long, conflicts_with_all = NOT_DASHBOARD, help_heading = "Dashboard actions")]
    pub sentinel_resync: bool,

    // ---- parameters ----
    /// First slot of a range.
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub beg: Option<i64>,
    /// Last slot of a range (included).
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub end: Option<i64>,
    /// Group id.
    #[arg(short = 'g', long, value_name = "ID", help_heading = "Parameters")]
    pub gid: Option<i64>,
    /// With --slots-assign: take the slots offline.
    #[arg(long, conflicts_with = "gid", help_heading = "Parameters")]
    pub offline: bool,
    /// Apply (--slots-assign, --rebalance, --config-restore show what would change without it).
    #[arg(long, help_heading = "Parameters")]
    pub confirm: bool,
    /// A server's or proxy's address.
    #[arg(short = 'x', long, value_name = "ADDR", help_heading = "Parameters")]
    pub addr: Option<String>,
    /// A proxy's token.
    #[arg(short = 't', long, value_name = "TOKEN", help_heading = "Parameters")]
    pub token: Option<String>,
    /// A proxy's id.
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub pid: Option<i64>,
    /// Every proxy (--reinit-proxy) or group (--resync-group).
    #[arg(long, help_heading = "Parameters")]
    pub all: bool,
    /// Go on when a proxy, sentinel or dashboard cannot be reached.
    #[arg(long, help_heading = "Parameters")]
    pub force: bool,
    /// With --group-add: the server's datacenter.
    #[arg(long, value_name = "DC", help_heading = "Parameters")]
    pub datacenter: Option<String>,
    /// With --replica-groups: allow reads.
    #[arg(long, conflicts_with = "disable", help_heading = "Parameters")]
    pub enable: bool,
    /// With --replica-groups: stop reads.
    #[arg(long, help_heading = "Parameters")]
    pub disable: bool,
    /// With --slot-action (--sid --gid) or --sync-action (--addr).
    #[arg(long, help_heading = "Parameters")]
    pub create: bool,
    /// With --slot-action (--sid) or --sync-action (--addr).
    #[arg(long, help_heading = "Parameters")]
    pub remove: bool,
    /// Slot id.
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub sid: Option<i64>,
    /// With --slot-action: move --num-slots slots from --gid-from to --gid-to.
    #[arg(long, help_heading = "Parameters")]
    pub create_some: bool,
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub gid_from: Option<i64>,
    #[arg(long, value_name = "ID", help_heading = "Parameters")]
    pub gid_to: Option<i64>,
    #[arg(long, value_name = "N", help_heading = "Parameters")]
    pub num_slots: Option<i64>,
    /// With --slot-action: move slots --beg..--end to --gid.
    #[arg(long, help_heading = "Parameters")]
    pub create_range: bool,
    /// With --slot-action: microseconds to pause between migration steps (0..1000000).
    #[arg(long, value_name = "US", help_heading = "Parameters")]
    pub interval: Option<i64>,
    /// With --slot-action: 1 pauses migrations, 0 resumes them.
    #[arg(long, value_name = "0|1", help_heading = "Parameters")]
    pub disabled: Option<String>,

    // ---- coordinator ----
    /// Product name.
    #[arg(long, value_name = "NAME", help_heading = "Coordinator")]
    pub product: Option<String>,
    /// ZooKeeper addresses.
    #[arg(long, value_name = "ADDR", help_heading = "Coordinator")]
    pub zookeeper: Option<String>,
    #[arg(long, value_name = "USR:PWD", requires = "zookeeper", help_heading = "Coordinator")]
    pub zookeeper_auth: Option<String>,
    /// etcd addresses.
    #[arg(long, value_name = "ADDR", help_heading = "Coordinator")]
    pub etcd: Option<String>,
    #[arg(long, value_name = "USR:PWD", requires = "etcd", help_heading = "Coordinator")]
    pub etcd_auth: Option<String>,
    /// Filesystem coordinator root directory (the dashboard's coordinator_addr).
    #[arg(long, value_name = "ROOT", help_heading = "Coordinator")]
    pub filesystem: Option<String>,
    /// With --config-dump: Codis 2.x layout (not supported by codis-rs).
    #[arg(short = '1', requires = "config_dump", help_heading = "Coordinator")]
    pub v1: bool,
}

impl Cli {
    /// The coordinator named by the flags: (name, address, auth).
    pub fn coordinator(&self) -> Option<(&'static str, &str, &str)> {
        fn auth(a: &Option<String>) -> &str {
            a.as_deref().unwrap_or("")
        }
        if let Some(addr) = &self.zookeeper {
            return Some(("zookeeper", addr, auth(&self.zookeeper_auth)));
        }
        if let Some(addr) = &self.etcd {
            return Some(("etcd", addr, auth(&self.etcd_auth)));
        }
        self.filesystem.as_deref().map(|root| ("filesystem", root, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("codis-admin").chain(args.iter().copied()))
    }

    #[test]
    fn codis_forms_parse() {
        let c = parse(&["--dashboard=127.0.0.1:18080", "--group-add", "-g", "1", "-x", "127.0.0.1:6379"]).unwrap();
        assert_eq!(c.gid, Some(1));
        assert_eq!(c.addr.as_deref(), Some("127.0.0.1:6379"));
        let c = parse(&["--proxy=h:1", "-a", "pw", "slots"]).unwrap();
        assert_eq!(c.view, Some(View::Slots));
        assert_eq!(c.auth.as_deref(), Some("pw"));
        let c = parse(&["--remove-proxy", "--dashboard=h:1", "-t", "abc", "--force"]).unwrap();
        assert!(c.remove_proxy && c.force);
        let c = parse(&["--config-dump", "--product=p", "--filesystem=/tmp/x", "-1"]).unwrap();
        assert!(c.v1);
        let c = parse(&["--dashboard=h:1", "--slot-action", "--disabled=1"]).unwrap();
        assert_eq!(c.disabled.as_deref(), Some("1"));
    }

    #[test]
    fn misuse_is_refused() {
        // no target, two targets, two actions, an action of the other target
        assert!(parse(&["--list-group"]).is_err());
        assert!(parse(&["--proxy=a", "--dashboard=b"]).is_err());
        assert!(parse(&["--dashboard=b", "--list-group", "--list-proxy"]).is_err());
        assert!(parse(&["--dashboard=b", "--start"]).is_err());
        assert!(parse(&["--proxy=b", "--create-group", "--gid=1"]).is_err());
        assert!(parse(&["--remove-lock", "--product=p"]).is_err());
        assert!(parse(&["--dashboard=b", "--list-group", "slots"]).is_err());
        assert!(parse(&["--dashboard=b", "--slots-assign", "--gid=1", "--offline"]).is_err());
    }
}
