//! Redis command metadata (arity, flags, key specs) and the key-spec walk that finds a
//! command's keys, following Redis 7's own algorithm.

/// Command flags, as `COMMAND` reports them.
pub const WRITE: u32 = 1 << 0;
pub const READONLY: u32 = 1 << 1;
pub const DENYOOM: u32 = 1 << 2;
pub const ADMIN: u32 = 1 << 3;
pub const PUBSUB: u32 = 1 << 4;
pub const NOSCRIPT: u32 = 1 << 5;
pub const BLOCKING: u32 = 1 << 6;
pub const LOADING: u32 = 1 << 7;
pub const STALE: u32 = 1 << 8;
pub const FAST: u32 = 1 << 9;
pub const MOVABLEKEYS: u32 = 1 << 10;
pub const NO_AUTH: u32 = 1 << 11;
pub const NO_MULTI: u32 = 1 << 12;
pub const SKIP_MONITOR: u32 = 1 << 13;
pub const SKIP_SLOWLOG: u32 = 1 << 14;
pub const ASKING: u32 = 1 << 15;
pub const ALLOW_BUSY: u32 = 1 << 16;
pub const NO_MANDATORY_KEYS: u32 = 1 << 17;
pub const NO_ASYNC_LOADING: u32 = 1 << 18;

/// Key-spec flags.
pub const KS_RO: u16 = 1 << 0;
pub const KS_RW: u16 = 1 << 1;
pub const KS_OW: u16 = 1 << 2;
pub const KS_RM: u16 = 1 << 3;
pub const KS_ACCESS: u16 = 1 << 4;
pub const KS_UPDATE: u16 = 1 << 5;
pub const KS_INSERT: u16 = 1 << 6;
pub const KS_DELETE: u16 = 1 << 7;
pub const KS_NOT_KEY: u16 = 1 << 8;
pub const KS_INCOMPLETE: u16 = 1 << 9;
pub const KS_VARIABLE_FLAGS: u16 = 1 << 10;

/// Where the search for a spec's keys begins.
#[derive(Debug, Clone, Copy)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i16),
    /// After `keyword`, searched from `start_from` (negative: backwards from the end).
    Keyword {
        keyword: &'static str,
        start_from: i16,
    },
    Unknown,
}

/// How the keys continue from where the search began.
#[derive(Debug, Clone, Copy)]
pub enum FindKeys {
    /// `last_key` relative to the first (negative: from the end), every `key_step`.
    Range {
        last_key: i16,
        key_step: i16,
        limit: i16,
    },
    /// The key count is argument `key_num_idx`; keys start `first_key` after the search start.
    KeyNum {
        key_num_idx: i16,
        first_key: i16,
        key_step: i16,
    },
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub begin: BeginSearch,
    pub find: FindKeys,
    pub flags: u16,
}

/// One command (or subcommand) as Redis describes it.
#[derive(Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Exact argument count when positive, minimum when negative (the name included).
    pub arity: i16,
    pub flags: u32,
    pub keys: &'static [KeySpec],
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity as isize;
        let n = argc as isize;
        if a >= 0 { n == a } else { n >= -a }
    }

    /// The subcommand named by `arg` (case-insensitive), if this is a container command.
    pub fn subcommand(&self, arg: &[u8]) -> Option<&'static CommandSpec> {
        self.subcommands.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(arg))
    }

    /// Calls `f` with the index of every key argument, in spec order. Specs that do not
    /// apply (keyword absent, bad key count) are skipped, as with Redis's partial walk;
    /// the server reports the syntax error itself.
    pub fn for_each_key<'a>(&self, argc: usize, arg: impl Fn(usize) -> Option<&'a [u8]>, mut f: impl FnMut(usize)) {
        let argc = argc as isize;
        for spec in self.keys {
            if spec.flags & KS_NOT_KEY != 0 {
                continue;
            }
            let first = match spec.begin {
                BeginSearch::Index(i) => i as isize,
                BeginSearch::Keyword { keyword, start_from } => {
                    let s = start_from as isize;
                    let hit = if s > 0 {
                        (s..argc).find(|&i| arg(i as usize).is_some_and(|a| a.eq_ignore_ascii_case(keyword.as_bytes())))
                    } else {
                        (1..=argc + s)
                            .rev()
                            .find(|&i| arg(i as usize).is_some_and(|a| a.eq_ignore_ascii_case(keyword.as_bytes())))
                    };
                    match hit {
                        Some(i) => i + 1,
                        None => continue,
                    }
                }
                BeginSearch::Unknown => continue,
            };
            let (first, last, step) = match spec.find {
                FindKeys::Range { last_key, key_step, limit } => {
                    let last = if last_key >= 0 {
                        first + last_key as isize
                    } else if limit <= 1 {
                        argc + last_key as isize
                    } else {
                        first + ((argc - first) / limit as isize + last_key as isize)
                    };
                    (first, last, key_step as isize)
                }
                FindKeys::KeyNum { key_num_idx, first_key, key_step } => {
                    let Some(n) = arg((first + key_num_idx as isize) as usize)
                        .and_then(|a| std::str::from_utf8(a).ok())
                        .and_then(|s| s.parse::<isize>().ok())
                        .filter(|&n| n >= 0)
                    else {
                        continue;
                    };
                    // A client's key count can be anything: saturate rather than wrap
                    // (or panic), and the range checks below drop what does not fit.
                    let first = first + first_key as isize;
                    let last = (n - 1).saturating_mul(key_step as isize).saturating_add(first);
                    (first, last, key_step as isize)
                }
                FindKeys::Unknown => continue,
            };
            if first >= argc || last >= argc || last < first || step <= 0 {
                continue;
            }
            let mut i = first;
            while i <= last {
                f(i as usize);
                i += step;
            }
        }
        // SORT's STORE destination has no key spec Redis can describe; without it a
        // SORT ... STORE would write its result on the source key's group.
        if self.flags & MOVABLEKEYS != 0
            && self.name == "SORT"
            && let Some(i) = sort_store_key(argc as usize, &arg)
        {
            f(i);
        }
    }
}

/// The argument index of `SORT key ... STORE dest`'s destination (the last STORE
/// wins, as in Redis), skipping the arguments of LIMIT, BY and GET.
fn sort_store_key<'a>(argc: usize, arg: &impl Fn(usize) -> Option<&'a [u8]>) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < argc {
        let a = arg(i)?;
        if a.eq_ignore_ascii_case(b"LIMIT") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"BY") || a.eq_ignore_ascii_case(b"GET") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"STORE") && i + 1 < argc {
            found = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    found
}
