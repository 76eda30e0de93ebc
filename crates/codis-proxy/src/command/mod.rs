//! The command table: for every command name, how the proxy treats it.
//!
//! Redis's own metadata (arity, flags, key specs) is generated from a live server into
//! [`table`]; this module overlays what only the proxy decides: Codis's classes
//! (not-allowed, master-only, write, may-write) and which commands the proxy answers
//! itself or splits across backends. Lookup is by the upper-cased name; unlike Codis,
//! names with `-` are upper-cased too, so `SLOTSMGRT-EXEC-WRAPPER` is found and refused.

pub mod spec;
#[rustfmt::skip]
mod table;

use std::sync::LazyLock;

use codis_resp::RequestRef;

pub use spec::CommandSpec;

use crate::backend::SubKind;

/// Codis's command classes.
pub mod class {
    /// Changes data: never sent to a replica.
    pub const WRITE: u8 = 1;
    /// Reads that must see the master (cursors, slot introspection).
    pub const MASTER_ONLY: u8 = 2;
    /// Might change data (scripts, commands the proxy does not know).
    pub const MAY_WRITE: u8 = 4;
    /// Refused by the proxy; the session continues.
    pub const NOT_ALLOWED: u8 = 8;
    /// Served only in its forms that name a key (`MEMORY USAGE key`): the others
    /// describe one server, and one group's answer would pass for the cluster's.
    pub const KEYED_ONLY: u8 = 16;
}

/// What the session does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Route by its keys (or to any backend if it has none).
    Forward,
    /// Split across backends by key and merge the replies.
    Split(SplitKind),
    Ping,
    Echo,
    Quit,
    Auth,
    Select,
    Info,
    SlotsInfo,
    SlotsScan,
    SlotsMapping,
    SlotsHashKey,
    /// Sent to every group's master, replies merged (see [`broadcast_merge`]).
    Broadcast,
    /// `SCAN` across groups, one group after another.
    Scan,
    /// `CLIENT SETNAME/GETNAME/ID/INFO`, answered by the proxy.
    Client,
    /// `SLOWLOG GET/LEN/RESET`: the proxy's own slow log.
    Slowlog,
    Hello,
    Reset,
    /// Blocking commands (BLPOP...): on the session's own connection.
    Blocking,
    Wait,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`: on the session's pub/sub links.
    Subscribe(SubKind),
    Unsubscribe(SubKind),
    /// `PUBLISH`, `SPUBLISH`: to the master of the channel's slot.
    Publish,
    /// `PUBSUB`: by channel, or on every group master.
    Pubsub,
}

/// Why the proxy refuses a request whatever the slot table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An HTTP request line or header (`POST`, `Host:`) sent to the RESP port: the
    /// session answers once and closes.
    Http,
    /// A command the proxy does not serve (server administration, replication, ...).
    NotAllowed(String),
    /// Wrong number of arguments, named as Redis names it (`get`, `client|setname`).
    Arity(&'static str),
    /// A form that describes one server (`MEMORY STATS`): only the keyed forms are served.
    KeyedOnly(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Http => write!(f, "ERR HTTP requests are not accepted on the RESP port, closing"),
            Refusal::NotAllowed(name) => write!(f, "ERR handle request, command '{name}' is not allowed"),
            Refusal::Arity(name) => f.write_str(&arity_error(name)),
            Refusal::KeyedOnly(form) => write!(
                f,
                "ERR '{form}' describes one redis-server: run it on the servers (the proxy serves the forms with a key)"
            ),
        }
    }
}

pub fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase())
}

/// The spec that describes `req`: the subcommand's for container commands.
pub fn resolve_spec(cmd: &Command, req: &RequestRef<'_>) -> Option<&'static CommandSpec> {
    let spec = cmd.spec?;
    if spec.subcommands.is_empty() {
        return Some(spec);
    }
    req.get(1).and_then(|a| spec.subcommand(a))
}

/// Whether the proxy refuses `req` outright (checked before any routing).
pub fn refusal(cmd: &Command, req: &RequestRef<'_>) -> Option<Refusal> {
    if cmd.is_not_allowed() {
        if matches!(cmd.name, "POST" | "HOST:") {
            return Some(Refusal::Http);
        }
        return Some(Refusal::NotAllowed(String::from_utf8_lossy(req.arg(0)).to_ascii_uppercase()));
    }
    if let Some(spec) = cmd.spec
        && !spec.arity_ok(req.argc())
    {
        return Some(Refusal::Arity(spec.name));
    }
    if cmd.is_keyed_only() && resolve_spec(cmd, req).is_none_or(|s| s.keys.is_empty() && s.name != "HELP") {
        let sub = String::from_utf8_lossy(req.get(1).unwrap_or_default()).to_ascii_uppercase();
        return Some(Refusal::KeyedOnly(format!("{} {sub}", cmd.name)));
    }
    None
}

/// The decision the proxy takes for a request before it looks at the slot table: for
/// the router's fuzz target and its tests (the session takes the same steps inline,
/// without building this).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Refused(Refusal),
    /// Served by the handler, with the key arguments and their slots, in spec order.
    Handled {
        handler: Handler,
        keys: Vec<(usize, u16)>,
    },
}

#[doc(hidden)]
pub fn route(req: &RequestRef<'_>) -> Route {
    let cmd = lookup(req.arg(0));
    if let Some(r) = refusal(cmd, req) {
        return Route::Refused(r);
    }
    let mut keys = Vec::new();
    if let Some(spec) = resolve_spec(cmd, req) {
        spec.for_each_key(req.argc(), |i| req.get(i), |i| keys.push((i, codis_core::slot_of(req.arg(i)))));
    }
    Route::Handled { handler: cmd.handler, keys }
}

/// The router fuzz target's checks (`fuzz/fuzz_targets/router.rs`), shared with the
/// test that replays its corpus.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Arguments from fuzz bytes: split on NUL; when the first byte is below 0xF0 it
    /// picks a real command name (so the fuzzer reaches every key spec) and the rest
    /// are the arguments.
    pub fn args_of(data: &[u8]) -> Vec<Vec<u8>> {
        let Some((&pick, rest)) = data.split_first() else { return Vec::new() };
        let mut args: Vec<Vec<u8>> = rest.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        if pick < 0xF0 {
            let name = name_of((pick as usize % count()) as u16).as_bytes();
            let name = if pick & 1 == 0 { name.to_vec() } else { name.to_ascii_lowercase() };
            args.insert(0, name);
        }
        args
    }

    pub fn check_route(data: &[u8]) {
        let args = args_of(data);
        if args.is_empty() {
            return;
        }
        let req = codis_resp::Request::from_args(args.iter());
        let req = req.as_ref();
        match route(&req) {
            Route::Refused(Refusal::NotAllowed(name)) => {
                assert_eq!(name.as_bytes(), String::from_utf8_lossy(&args[0]).to_ascii_uppercase().as_bytes())
            }
            Route::Refused(Refusal::Arity(name)) => assert!(!name.is_empty()),
            Route::Refused(Refusal::Http) => assert!(matches!(lookup(&args[0]).name, "POST" | "HOST:")),
            Route::Refused(Refusal::KeyedOnly(form)) => assert!(form.starts_with(lookup(&args[0]).name)),
            Route::Handled { handler, keys } => {
                for &(i, slot) in &keys {
                    assert!(i >= 1 && i < args.len(), "key index {i} of {} arguments", args.len());
                    assert_eq!(slot, codis_core::slot_of(&args[i]));
                    assert!((slot as usize) < codis_core::MAX_SLOT_NUM);
                }
                if let Handler::Split(kind) = handler {
                    // MGET/DEL keys are every argument, MSET's every other one.
                    let want: Vec<usize> = (1..args.len()).step_by(kind.stride()).collect();
                    let got: Vec<usize> = keys.iter().map(|k| k.0).collect();
                    assert_eq!(got, want, "the keys a split command is cut by");
                }
            }
        }
    }
}

/// How the replies of a command sent to several backends become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `MGET`: values put back in key order.
    Mget,
    /// `OK` when every part is `OK`, else the first other reply.
    AllOk,
    /// Sum of integer replies.
    Sum,
    /// Every part must give the same reply (`SCRIPT LOAD`'s SHA, `FUNCTION LOAD`'s name).
    Same,
    /// Integer arrays combined element-wise with AND (`SCRIPT EXISTS`).
    And,
    /// Arrays concatenated (`KEYS`).
    Concat,
    /// The first part's reply (listings that every group holds the same way).
    First,
    /// The first reply that is not nil (`RANDOMKEY`).
    NonNil,
    /// `OK` when any part is `OK` (`SCRIPT KILL`: the script runs on one group only).
    AnyOk,
    /// The smallest integer (`WAIT`: replicas that acknowledged, in every group).
    Min,
    /// The largest integer (`PUBSUB NUMPAT`: a session's patterns are on every group).
    Max,
    /// Arrays concatenated without repeats (`PUBSUB CHANNELS`).
    Union,
}

/// Why a broadcast command is refused.
pub enum BroadcastRefusal {
    /// Needs `session_allow_keyspace_commands`.
    Disabled,
    /// A subcommand that makes no sense through the proxy.
    Unsupported,
}

/// The merge for a command sent to every group, by command and subcommand. KEYS,
/// FLUSHDB and FLUSHALL touch every key of every group, so they need `allow_keyspace`.
pub fn broadcast_merge(name: &str, sub: Option<&[u8]>, allow_keyspace: bool) -> Result<Merge, BroadcastRefusal> {
    let sub = sub.map(|s| s.to_ascii_uppercase());
    Ok(match (name, sub.as_deref()) {
        ("DBSIZE", _) => Merge::Sum,
        ("RANDOMKEY", _) => Merge::NonNil,
        ("KEYS" | "FLUSHDB" | "FLUSHALL", _) if !allow_keyspace => return Err(BroadcastRefusal::Disabled),
        ("KEYS", _) => Merge::Concat,
        ("FLUSHDB" | "FLUSHALL", _) => Merge::AllOk,
        ("SCRIPT", Some(b"LOAD")) | ("FUNCTION", Some(b"LOAD")) => Merge::Same,
        ("SCRIPT", Some(b"EXISTS")) => Merge::And,
        ("SCRIPT", Some(b"FLUSH")) | ("FUNCTION", Some(b"FLUSH" | b"DELETE" | b"RESTORE")) => Merge::AllOk,
        ("SCRIPT" | "FUNCTION", Some(b"KILL")) => Merge::AnyOk,
        ("SCRIPT" | "FUNCTION" | "PUBSUB", Some(b"HELP")) | ("FUNCTION", Some(b"LIST" | b"DUMP" | b"STATS")) => {
            Merge::First
        }
        ("PUBSUB", Some(b"CHANNELS" | b"SHARDCHANNELS")) => Merge::Union,
        ("PUBSUB", Some(b"NUMPAT")) => Merge::Max,
        _ => return Err(BroadcastRefusal::Unsupported),
    })
}

/// Multi-key commands the proxy splits, and how it merges their replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// `MGET k...`: array of values in key order.
    Mget,
    /// `MSET k v ...`: `OK` when every part is `OK`.
    Mset,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: sum of the integer replies.
    Sum,
}

impl SplitKind {
    /// Arguments per key (`MSET` carries a value with each key).
    pub fn stride(self) -> usize {
        if self == SplitKind::Mset { 2 } else { 1 }
    }

    pub fn merge(self) -> Merge {
        match self {
            SplitKind::Mget => Merge::Mget,
            SplitKind::Mset => Merge::AllOk,
            SplitKind::Sum => Merge::Sum,
        }
    }
}

/// One entry of the table.
#[derive(Debug)]
pub struct Command {
    /// Upper-case name, as shown in stats.
    pub name: &'static str,
    /// Dense index, used by per-command statistics.
    pub id: u16,
    pub class: u8,
    pub handler: Handler,
    /// Redis's description; `None` for commands only codis-server or the proxy knows.
    pub spec: Option<&'static CommandSpec>,
}

impl Command {
    pub fn is_not_allowed(&self) -> bool {
        self.class & class::NOT_ALLOWED != 0
    }

    pub fn is_keyed_only(&self) -> bool {
        self.class & class::KEYED_ONLY != 0
    }

    /// Neither a write nor a possible write: may be served by a replica.
    pub fn is_read_only(&self) -> bool {
        self.class & (class::WRITE | class::MAY_WRITE) == 0
    }

    /// Must be served by the master.
    pub fn is_master_only(&self) -> bool {
        self.class & (class::WRITE | class::MAY_WRITE | class::MASTER_ONLY) != 0
    }
}

/// Codis 3.2's refused commands that codis-rs still refuses, plus what newer Redis
/// versions added in the same spirit (server administration, replication, cluster).
/// Commands of Redis's `admin` category are refused as well without being listed.
/// (Codis also refused DBSIZE, KEYS, FLUSHDB, FLUSHALL, RANDOMKEY, SCAN, SCRIPT,
/// FUNCTION, FCALL, CLIENT, HELLO, RESET, MULTI/EXEC/WATCH, WAIT, the blocking commands,
/// pub/sub, RESTORE, TIME (any group's clock), and the multi-key RENAME, RENAMENX,
/// MSETNX, BITOP and keyed OBJECT and MEMORY USAGE; the proxy serves them, multi-key
/// ones when their keys share a group, blocking ones and subscriptions on connections
/// of their own.)
const NOT_ALLOWED: &[&str] = &[
    "ASKING",
    "BGREWRITEAOF",
    "BGSAVE",
    "CLUSTER",
    "CONFIG",
    "DEBUG",
    "HOST:",
    "LASTSAVE",
    "LATENCY",
    "MIGRATE",
    "MONITOR",
    "MOVE",
    "POST",
    "PSYNC",
    "READONLY",
    "READWRITE",
    "REPLCONF",
    "RESTORE-ASKING",
    "SAVE",
    "SHUTDOWN",
    "SLAVEOF",
    "REPLICAOF",
    "SYNC",
    "ACL",
    "MODULE",
    "SWAPDB",
    "FAILOVER",
    "WAITAOF",
    "SLOTSCHECK",
    "SLOTSDEL",
    "SLOTSRESTORE",
    "SLOTSMGRTONE",
    "SLOTSMGRTSLOT",
    "SLOTSMGRTTAGONE",
    "SLOTSMGRTTAGSLOT",
    "SLOTSMGRTONE-ASYNC",
    "SLOTSMGRTSLOT-ASYNC",
    "SLOTSMGRTTAGONE-ASYNC",
    "SLOTSMGRTTAGSLOT-ASYNC",
    "SLOTSMGRTONE-ASYNC-DUMP",
    "SLOTSMGRTTAGONE-ASYNC-DUMP",
    "SLOTSMGRT-ASYNC-FENCE",
    "SLOTSMGRT-ASYNC-CANCEL",
    "SLOTSMGRT-ASYNC-STATUS",
    "SLOTSMGRT-EXEC-WRAPPER",
    "SLOTSRESTORE-ASYNC",
    "SLOTSRESTORE-ASYNC-AUTH",
    "SLOTSRESTORE-ASYNC-SELECT",
    "SLOTSRESTORE-ASYNC-ACK",
];

/// Reads that never go to a replica.
/// (PUBLISH and PUBSUB count as reads for Redis, but a replica's subscribers are not
/// the master's.)
const MASTER_ONLY: &[&str] = &[
    "HSCAN",
    "SSCAN",
    "ZSCAN",
    "SLOTSINFO",
    "SLOTSSCAN",
    "SCAN",
    "KEYS",
    "DBSIZE",
    "RANDOMKEY",
    "FCALL_RO",
    "PUBLISH",
    "SPUBLISH",
    "PUBSUB",
];

/// Commands whose effect Redis cannot know in advance.
const MAY_WRITE: &[&str] = &["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"];

/// Commands that exist only on codis-server (or only in the proxy).
const EXTRA: &[&str] = &[
    "SLOTSINFO",
    "SLOTSSCAN",
    "SLOTSMAPPING",
    "SLOTSHASHKEY",
    "SLOTSCHECK",
    "SLOTSDEL",
    "SLOTSRESTORE",
    "SLOTSMGRTONE",
    "SLOTSMGRTSLOT",
    "SLOTSMGRTTAGONE",
    "SLOTSMGRTTAGSLOT",
    "SLOTSMGRTONE-ASYNC",
    "SLOTSMGRTSLOT-ASYNC",
    "SLOTSMGRTTAGONE-ASYNC",
    "SLOTSMGRTTAGSLOT-ASYNC",
    "SLOTSMGRTONE-ASYNC-DUMP",
    "SLOTSMGRTTAGONE-ASYNC-DUMP",
    "SLOTSMGRT-ASYNC-FENCE",
    "SLOTSMGRT-ASYNC-CANCEL",
    "SLOTSMGRT-ASYNC-STATUS",
    "SLOTSMGRT-EXEC-WRAPPER",
    "SLOTSRESTORE-ASYNC",
    "SLOTSRESTORE-ASYNC-AUTH",
    "SLOTSRESTORE-ASYNC-SELECT",
    "SLOTSRESTORE-ASYNC-ACK",
    "HOST:",
    "POST",
];

fn handler_of(name: &str) -> Handler {
    match name {
        "MGET" => Handler::Split(SplitKind::Mget),
        "MSET" => Handler::Split(SplitKind::Mset),
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" => Handler::Split(SplitKind::Sum),
        "PING" => Handler::Ping,
        "ECHO" => Handler::Echo,
        "QUIT" => Handler::Quit,
        "AUTH" => Handler::Auth,
        "SELECT" => Handler::Select,
        "INFO" => Handler::Info,
        "SLOTSINFO" => Handler::SlotsInfo,
        "SLOTSSCAN" => Handler::SlotsScan,
        "SLOTSMAPPING" => Handler::SlotsMapping,
        "SLOTSHASHKEY" => Handler::SlotsHashKey,
        "DBSIZE" | "RANDOMKEY" | "KEYS" | "FLUSHDB" | "FLUSHALL" | "SCRIPT" | "FUNCTION" => Handler::Broadcast,
        "SCAN" => Handler::Scan,
        "CLIENT" => Handler::Client,
        "SLOWLOG" => Handler::Slowlog,
        "HELLO" => Handler::Hello,
        "RESET" => Handler::Reset,
        "WAIT" => Handler::Wait,
        "MULTI" => Handler::Multi,
        "EXEC" => Handler::Exec,
        "DISCARD" => Handler::Discard,
        "WATCH" => Handler::Watch,
        "UNWATCH" => Handler::Unwatch,
        "SUBSCRIBE" => Handler::Subscribe(SubKind::Channel),
        "PSUBSCRIBE" => Handler::Subscribe(SubKind::Pattern),
        "SSUBSCRIBE" => Handler::Subscribe(SubKind::Shard),
        "UNSUBSCRIBE" => Handler::Unsubscribe(SubKind::Channel),
        "PUNSUBSCRIBE" => Handler::Unsubscribe(SubKind::Pattern),
        "SUNSUBSCRIBE" => Handler::Unsubscribe(SubKind::Shard),
        "PUBLISH" | "SPUBLISH" => Handler::Publish,
        "PUBSUB" => Handler::Pubsub,
        _ => Handler::Forward,
    }
}

/// Commands by name: an open-addressing table hashed on case-folded names, so a lookup
/// neither copies nor upper-cases the name it is given.
struct Table {
    commands: Vec<Command>,
    /// Index into `commands`, or `EMPTY`.
    buckets: Box<[u16]>,
}

const EMPTY: u16 = u16::MAX;
const BUCKETS: usize = 1024;

/// Hash of a name with ASCII case folded (bit 5 cleared in every byte: consistent for
/// every byte, exact for letters; equality is checked separately).
#[inline]
fn fold_hash(name: &[u8]) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes")) & 0xDFDF_DFDF_DFDF_DFDF;
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let w = u64::from_le_bytes(tail) & 0xDFDF_DFDF_DFDF_DFDF;
    h = (h ^ w).wrapping_mul(K);
    (h >> 40) as usize
}

impl Table {
    fn insert(&mut self, cmd: Command) {
        let mut i = fold_hash(cmd.name.as_bytes()) % BUCKETS;
        while self.buckets[i] != EMPTY {
            i = (i + 1) % BUCKETS;
        }
        self.buckets[i] = self.commands.len() as u16;
        self.commands.push(cmd);
    }

    #[inline]
    fn get(&self, name: &[u8]) -> Option<&Command> {
        let mut i = fold_hash(name) % BUCKETS;
        loop {
            let c = self.commands.get(*self.buckets.get(i)? as usize)?;
            if c.name.len() == name.len() && c.name.as_bytes().eq_ignore_ascii_case(name) {
                return Some(c);
            }
            i = (i + 1) % BUCKETS;
        }
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut table = Table { commands: Vec::new(), buckets: vec![EMPTY; BUCKETS].into_boxed_slice() };
    let specs = table::COMMANDS.iter().map(|s| (s.name, Some(s)));
    let extra = EXTRA.iter().filter(|n| !table::COMMANDS.iter().any(|s| s.name == **n)).map(|n| (*n, None));
    for (name, spec) in specs.chain(extra) {
        let flags = spec.map_or(0, |s| s.flags);
        let mut class = 0;
        if flags & spec::WRITE != 0 {
            class |= class::WRITE;
        }
        if MAY_WRITE.contains(&name) {
            class |= class::MAY_WRITE;
        }
        if MASTER_ONLY.contains(&name) {
            class |= class::MASTER_ONLY;
        }
        let admin = flags & spec::ADMIN != 0 && spec.is_none_or(|s| s.subcommands.is_empty());
        if NOT_ALLOWED.contains(&name) || admin {
            class |= class::NOT_ALLOWED;
        }
        if name == "MEMORY" {
            class |= class::KEYED_ONLY;
        }
        // XREAD/XREADGROUP block only with BLOCK, which the session checks per request.
        let blocking = flags & spec::BLOCKING != 0 && !matches!(name, "XREAD" | "XREADGROUP");
        let handler = if blocking { Handler::Blocking } else { handler_of(name) };
        let id = table.commands.len() as u16;
        table.insert(Command { name, id, class, handler, spec });
    }
    table
});

/// The entry for commands the table does not know: forwarded by their first argument,
/// as Codis does, so that commands of newer servers keep working.
pub static UNKNOWN: Command =
    Command { name: "UNKNOWN", id: u16::MAX, class: class::MAY_WRITE, handler: Handler::Forward, spec: None };

/// Looks a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> &'static Command {
    TABLE.get(name).unwrap_or(&UNKNOWN)
}

/// Number of known commands (ids are `0..count()`).
pub fn count() -> usize {
    TABLE.commands.len()
}

/// The name of command `id`.
pub fn name_of(id: u16) -> &'static str {
    TABLE.commands.get(id as usize).map_or(UNKNOWN.name, |c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(args: &[&str]) -> Vec<String> {
        let c = lookup(args[0].as_bytes());
        let spec = c.spec.unwrap();
        let mut out = Vec::new();
        spec.for_each_key(args.len(), |i| args.get(i).map(|s| s.as_bytes()), |i| out.push(args[i].to_string()));
        out
    }

    #[test]
    fn classes() {
        assert!(lookup(b"get").is_read_only());
        assert!(!lookup(b"SET").is_read_only());
        assert!(lookup(b"monitor").is_not_allowed());
        assert_eq!(lookup(b"keys").handler, Handler::Broadcast);
        assert!(!lookup(b"keys").is_not_allowed() && !lookup(b"script").is_not_allowed());
        assert!(lookup(b"scan").is_master_only() && !lookup(b"fcall").is_read_only());
        assert!(lookup(b"Slotsmgrt-Exec-Wrapper").is_not_allowed(), "hyphenated names are classified");
        assert!(lookup(b"SLOTSRESTORE-ASYNC-ACK").is_not_allowed());
        assert!(lookup(b"config").is_not_allowed(), "admin commands are refused");
        assert!(lookup(b"hscan").is_master_only() && lookup(b"hscan").is_read_only());
        assert!(lookup(b"eval").is_master_only() && !lookup(b"eval").is_read_only());
        assert_eq!(lookup(b"mget").handler, Handler::Split(SplitKind::Mget));
        assert_eq!(lookup(b"NOSUCHCOMMAND").name, "UNKNOWN");
        assert_eq!(lookup(&[b'a'; 40]).name, "UNKNOWN");
        assert!(!lookup(b"xadd").is_not_allowed());
        assert_eq!(lookup(b"blpop").handler, Handler::Blocking);
        assert_eq!(lookup(b"bzmpop").handler, Handler::Blocking);
        assert!(!lookup(b"blpop").is_not_allowed());
        assert!(!lookup(b"xread").is_not_allowed());
        assert_eq!(name_of(lookup(b"get").id), "GET");
        // every command is found under its own name, whatever the case
        for id in 0..count() as u16 {
            let name = name_of(id);
            assert_eq!(lookup(name.as_bytes()).id, id, "{name}");
            assert_eq!(lookup(name.to_ascii_lowercase().as_bytes()).id, id, "{name}");
        }
        // folding bit 5 must not make different names equal
        assert_eq!(lookup(b"GE\x14").name, "UNKNOWN");
        assert_eq!(lookup(b"").name, "UNKNOWN");
    }

    #[test]
    fn key_specs() {
        assert_eq!(keys(&["GET", "k"]), ["k"]);
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(keys(&["EVAL", "s", "2", "x", "y", "arg"]), ["x", "y"]);
        assert!(keys(&["EVAL", "s", "0", "arg"]).is_empty());
        assert_eq!(keys(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]), ["d", "a", "b"]);
        assert_eq!(keys(&["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]), ["s1", "s2"]);
        assert_eq!(keys(&["SINTER", "a", "b", "c"]), ["a", "b", "c"]);
        assert!(keys(&["PING"]).is_empty());
        assert_eq!(keys(&["SORT", "l", "STORE", "d"]), ["l", "d"]);
        assert_eq!(keys(&["SORT", "l", "BY", "store", "LIMIT", "0", "1", "GET", "#", "store", "d"]), ["l", "d"]);
        assert_eq!(keys(&["sort", "l", "by", "nosort"]), ["l"]);
        let object = lookup(b"OBJECT").spec.unwrap().subcommand(b"encoding").unwrap();
        assert_eq!(object.name, "ENCODING");
        assert!(lookup(b"GET").spec.unwrap().arity_ok(2));
        assert!(!lookup(b"GET").spec.unwrap().arity_ok(3));
        assert!(lookup(b"MGET").spec.unwrap().arity_ok(5));
    }

    /// A key count near `isize::MAX` overflowed the last key's index (a panic in debug
    /// builds, a wrapped index in release); found writing the router fuzz target.
    #[test]
    fn huge_key_counts_name_no_keys() {
        let max = isize::MAX.to_string();
        assert!(keys(&["EVAL", "s", &max, "x"]).is_empty());
        assert!(keys(&["ZUNIONSTORE", "d", &max, "a"]) == ["d"]);
        assert!(keys(&["LMPOP", &max, "a", "LEFT"]).is_empty());
        assert_eq!(keys(&["EVAL", "s", "-1", "x"]), Vec::<String>::new());
    }

    #[test]
    fn routes() {
        let req = |args: &[&str]| codis_resp::Request::from_args(args.iter().copied());
        let r = |args: &[&str]| route(&req(args).as_ref());
        assert_eq!(r(&["POST", "/", "HTTP/1.1"]), Route::Refused(Refusal::Http));
        assert_eq!(r(&["config", "get", "x"]), Route::Refused(Refusal::NotAllowed("CONFIG".into())));
        assert_eq!(r(&["get"]), Route::Refused(Refusal::Arity("GET")));
        assert_eq!(r(&["memory", "stats"]), Route::Refused(Refusal::KeyedOnly("MEMORY STATS".into())));
        let slot = codis_core::slot_of(b"{t}b");
        assert_eq!(
            r(&["MSET", "{t}a", "1", "{t}b", "2"]),
            Route::Handled { handler: Handler::Split(SplitKind::Mset), keys: vec![(1, slot), (3, slot)] }
        );
        assert_eq!(r(&["PING"]), Route::Handled { handler: Handler::Ping, keys: vec![] });
        assert_eq!(
            Refusal::Arity("client|setname").to_string(),
            "ERR wrong number of arguments for 'client|setname' command"
        );
    }
}
