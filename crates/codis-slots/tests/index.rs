//! The per-slot index stays equal to a client-side count over SCAN under a random
//! workload, across restarts (RDB, AOF), replication, and MODULE LOAD.

mod common;

use std::time::Duration;

use common::*;

const DBS: usize = 2;

fn key(rng: &mut Rng) -> String {
    let n = rng.below(300);
    if n < 150 { format!("{{t{}}}:{}", n % 20, n) } else { format!("k{n}") }
}

/// One random command over the key pool of `db`; `volatile` allows short TTLs.
fn random_op(rng: &mut Rng, db: usize, volatile: bool) -> Vec<Vec<u8>> {
    let a = key(rng);
    let b = key(rng);
    let other = ((db + 1) % DBS).to_string();
    let v = rng.below(1000).to_string();
    let s: Vec<String> = match rng.below(32) {
        0..=3 => vec!["SET".into(), a, v],
        4 => vec!["MSET".into(), a, v.clone(), b, v],
        5 | 6 => vec!["DEL".into(), a, b],
        7 => vec!["UNLINK".into(), a],
        8 => {
            if volatile {
                vec!["PEXPIRE".into(), a, (1 + rng.below(20)).to_string()]
            } else {
                vec!["EXPIRE".into(), a, "100000".into()]
            }
        }
        9 | 10 => vec!["RENAME".into(), a, b],
        11 => vec!["RENAMENX".into(), a, b],
        12 => vec!["MOVE".into(), a, other],
        13 => vec!["COPY".into(), a, b, "REPLACE".into()],
        14 => vec!["COPY".into(), a, b, "DB".into(), other, "REPLACE".into()],
        15 => vec!["LPUSH".into(), a, v],
        16 => vec!["LPOP".into(), a],
        17 => vec!["HSET".into(), a, "f".into(), v],
        18 => vec!["HDEL".into(), a, "f".into()],
        19 => vec!["SADD".into(), a, v],
        20 => vec!["SPOP".into(), a],
        21 => vec!["ZADD".into(), a, "1".into(), v],
        22 => vec!["ZPOPMIN".into(), a],
        23 => vec!["GETDEL".into(), a],
        24 => vec!["SET".into(), a, v, "PXAT".into(), "1".into()],
        25 => vec!["SMOVE".into(), a, b, v],
        26 => vec!["LMOVE".into(), a, b, "LEFT".into(), "RIGHT".into()],
        27 => vec!["SUNIONSTORE".into(), a, b],
        28 => vec!["EXPIRE".into(), a, "-1".into()],
        29 => vec!["INCR".into(), a],
        30 => vec!["SETNX".into(), a, v],
        _ => vec!["GETEX".into(), a, "PERSIST".into()],
    };
    s.into_iter().map(String::into_bytes).collect()
}

/// Runs `n` random ops spread over the DBs (pipelined), plus an occasional RESTORE
/// REPLACE of one key onto another and rare SWAPDB/FLUSHDB.
fn workload(c: &mut Client, seed: u64, n: usize, volatile: bool, flush: bool) {
    let mut rng = Rng::new(seed);
    let mut done = 0;
    while done < n {
        let db = rng.below(DBS as u64) as usize;
        select(c, db);
        let batch: Vec<Vec<Vec<u8>>> = (0..100).map(|_| random_op(&mut rng, db, volatile)).collect();
        c.pipeline(&batch);
        done += batch.len();
        // DUMP + RESTORE REPLACE (onto an existing or a new key).
        let a = key(&mut rng);
        let b = key(&mut rng);
        if let V::Bulk(payload) = c.cmd(&["DUMP", &a]) {
            c.cmdb(&[b"RESTORE", b.as_bytes(), b"0", &payload, b"REPLACE"]);
        }
        done += 2;
        match rng.below(60) {
            0 => {
                c.cmd(&["SWAPDB", "0", "1"]).ok();
            }
            1 if flush => {
                c.cmd(&["FLUSHDB"]).ok();
            }
            _ => {}
        }
    }
}

fn assert_index_matches(c: &mut Client, what: &str) {
    for db in 0..DBS {
        select(c, db);
        let scanned = scan_counts(c);
        let info = slotsinfo(c);
        assert_eq!(info, scanned, "{what}: SLOTSINFO of DB {db} differs from SCAN");
        assert_eq!(c.cmd(&["SLOTSCHECK"]), V::Status("OK".into()), "{what}: SLOTSCHECK DB {db}");
    }
}

fn infos(c: &mut Client) -> Vec<std::collections::BTreeMap<u16, i64>> {
    (0..DBS)
        .map(|db| {
            select(c, db);
            slotsinfo(c)
        })
        .collect()
}

#[test]
fn random_workload_keeps_counts_exact() {
    let s = Server::start();
    let mut c = s.client();
    workload(&mut c, 1, 24_000, true, true);
    // Let the short TTLs run out (some are expired actively, the rest by SCAN).
    std::thread::sleep(Duration::from_millis(50));
    assert_index_matches(&mut c, "after workload");
    let total: i64 = infos(&mut c).iter().flat_map(|m| m.values()).sum();
    assert!(total > 50, "workload left too few keys ({total})");
}

#[test]
fn slot_sets_stay_exact_under_workload() {
    // Track a few slots (via SLOTSSCAN) before the workload, so their sets are
    // maintained by events, then check them with SLOTSCHECK (which compares sets too).
    let s = Server::start();
    let mut c = s.client();
    workload(&mut c, 7, 3_000, false, false);
    let slots: Vec<u16> = (0..20).map(|t| codis_core::slot_of(format!("{{t{t}}}").as_bytes())).collect();
    for db in 0..DBS {
        select(&mut c, db);
        for sl in &slots {
            c.cmd(&["SLOTSSCAN", &sl.to_string(), "0"]);
        }
    }
    workload(&mut c, 8, 20_000, true, true);
    std::thread::sleep(Duration::from_millis(50));
    assert_index_matches(&mut c, "tracked slots");
    // And SLOTSSCAN returns exactly the keys of the slot.
    for db in 0..DBS {
        select(&mut c, db);
        let keys = scan_keys(&mut c);
        for sl in &slots {
            let mut want: Vec<Vec<u8>> = keys.iter().filter(|k| codis_core::slot_of(k) == *sl).cloned().collect();
            want.sort();
            let mut got = Vec::new();
            let mut cursor = "0".to_string();
            loop {
                let r = c.cmd(&["SLOTSSCAN", &sl.to_string(), &cursor, "COUNT", "7"]);
                cursor = r.arr()[0].str();
                got.extend(r.arr()[1].arr().iter().map(|k| k.bytes()));
                if cursor == "0" {
                    break;
                }
            }
            got.sort();
            assert_eq!(got, want, "SLOTSSCAN of slot {sl} in DB {db}");
        }
    }
}

#[test]
fn evictions_keep_counts_exact() {
    let s = Server::start_args(&["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-random"]);
    let mut c = s.client();
    let big = "x".repeat(200);
    for round in 0..40 {
        let cmds: Vec<Vec<Vec<u8>>> = (0..500)
            .map(|i| vec![b"SET".to_vec(), format!("e{round}:{i}").into_bytes(), big.clone().into_bytes()])
            .collect();
        c.pipeline(&cmds);
    }
    let evicted = field(&c.cmd(&["INFO", "stats"]).str(), "evicted_keys").unwrap();
    assert!(evicted > 1000, "expected evictions, got {evicted}");
    // Every command may evict while over the limit: lift it before comparing.
    c.cmd(&["CONFIG", "SET", "maxmemory", "0"]).ok();
    select(&mut c, 0);
    assert_eq!(slotsinfo(&mut c), scan_counts(&mut c));
    c.cmd(&["SLOTSCHECK"]).ok();
}

#[test]
fn survives_rdb_restart() {
    let mut s = Server::start();
    let mut c = s.client();
    workload(&mut c, 2, 20_000, false, false);
    assert_index_matches(&mut c, "before RDB restart");
    let before = infos(&mut c);
    c.cmd(&["SAVE"]).ok();
    drop(c);
    s.restart();
    let mut c = s.client();
    assert_eq!(infos(&mut c), before, "index after RDB restart");
    assert_index_matches(&mut c, "after RDB restart");
    // DEBUG RELOAD too (flush + load in place).
    c.cmd(&["DEBUG", "RELOAD"]).ok();
    assert_eq!(infos(&mut c), before, "index after DEBUG RELOAD");
}

#[test]
fn survives_aof_restart() {
    for preamble in ["yes", "no"] {
        let mut s = Server::start_args(&["--appendonly", "yes", "--aof-use-rdb-preamble", preamble]);
        let mut c = s.client();
        workload(&mut c, 3, 10_000, false, false);
        c.cmd(&["BGREWRITEAOF"]);
        poll_until("AOF rewrite", Duration::from_secs(30), || {
            let i = c.cmd(&["INFO", "persistence"]).str();
            (field(&i, "aof_rewrite_in_progress") == Some(0) && field(&i, "aof_rewrite_scheduled") == Some(0))
                .then_some(())
        });
        // More commands after the rewrite land in the incremental AOF file.
        workload(&mut c, 4, 10_000, false, false);
        // SCAN first: keys set with a past PXAT are in the dict (and counted) until
        // something expires them, and a restart drops them.
        assert_index_matches(&mut c, "before AOF restart");
        let before = infos(&mut c);
        drop(c);
        s.restart();
        let mut c = s.client();
        assert_eq!(infos(&mut c), before, "index after AOF restart (preamble {preamble})");
        assert_index_matches(&mut c, "after AOF restart");
    }
}

#[test]
fn replica_index_matches_master() {
    let m = Server::start();
    let mut mc = m.client();
    workload(&mut mc, 5, 20_000, false, false);
    let r = Server::start_args(&["--replicaof", "127.0.0.1", &m.port.to_string()]);
    let mut rc = r.client();
    wait_replica_synced(&mut mc, &mut rc);
    assert_eq!(infos(&mut rc), infos(&mut mc), "replica after full sync");
    assert_index_matches(&mut rc, "replica after full sync");
    // Keep going: deletions and expirations reach the replica as DELs.
    workload(&mut mc, 6, 20_000, true, true);
    std::thread::sleep(Duration::from_millis(50));
    assert_index_matches(&mut mc, "master after more workload");
    wait_replica_synced(&mut mc, &mut rc);
    assert_eq!(infos(&mut rc), infos(&mut mc), "replica after streaming");
    assert_index_matches(&mut rc, "replica after streaming");
}

#[test]
fn module_load_into_populated_server() {
    let s = Server::start_with(Opts { module: false, ..Default::default() });
    let mut c = s.client();
    workload(&mut c, 9, 5_000, false, false);
    let path = module_path();
    c.cmd(&["MODULE", "LOAD", path.to_str().unwrap()]).ok();
    assert_index_matches(&mut c, "after MODULE LOAD");
}

#[test]
fn slotsscan_cursor_is_stable_and_matches() {
    let s = Server::start();
    let mut c = s.client();
    // 3000 keys of one slot (same tag), 200 of them matching "*:m*".
    let cmds: Vec<Vec<Vec<u8>>> = (0..3000)
        .map(|i| {
            let k = if i % 15 == 0 { format!("{{s}}:m{i}") } else { format!("{{s}}:{i}") };
            vec![b"SET".to_vec(), k.into_bytes(), b"v".to_vec()]
        })
        .collect();
    c.pipeline(&cmds);
    let slot = codis_core::slot_of(b"{s}").to_string();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut round = 0;
    loop {
        let r = c.cmd(&["SLOTSSCAN", &slot, &cursor, "COUNT", "50"]);
        cursor = r.arr()[0].str();
        for k in r.arr()[1].arr() {
            seen.insert(k.bytes());
        }
        // churn in the same slot while scanning
        for j in 0..10 {
            c.cmd(&["SET", &format!("{{s}}:tmp{round}:{j}"), "x"]);
        }
        c.cmd(&["DEL", &format!("{{s}}:tmp{}:{}", round, 3)]);
        round += 1;
        if cursor == "0" {
            break;
        }
    }
    for i in 0..3000 {
        let k = if i % 15 == 0 { format!("{{s}}:m{i}") } else { format!("{{s}}:{i}") };
        assert!(seen.contains(k.as_bytes()), "missed {k}");
    }
    // MATCH
    let mut matched = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = c.cmd(&["SLOTSSCAN", &slot, &cursor, "COUNT", "100", "MATCH", "{s}:m*"]);
        cursor = r.arr()[0].str();
        matched.extend(r.arr()[1].arr().iter().map(|k| k.str()));
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(matched.len(), 200);
    assert!(matched.iter().all(|k| k.starts_with("{s}:m")));
    // Errors and shapes as codis-server.
    assert!(c.cmd(&["SLOTSSCAN", "1024", "0"]).err().contains("invalid slot number"));
    assert!(c.cmd(&["SLOTSSCAN", "1", "0", "COUNT", "0"]).is_err());
    let empty = c.cmd(&["SLOTSSCAN", "5", "0"]);
    assert_eq!(empty, V::Arr(vec![V::Bulk(b"0".to_vec()), V::Arr(vec![])]));
}

#[test]
fn slotsdel_hashkey_info_shapes() {
    let s = Server::start();
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["SLOTSHASHKEY", "foo", "bar", "{user1000}.following", "user1000", "a{}b"]),
        V::Arr(vec![V::Int(289), V::Int(170), V::Int(870), V::Int(870), V::Int(0)])
    );
    for i in 0..100 {
        c.cmd(&["SET", &format!("{{a}}{i}"), "1"]);
        c.cmd(&["SET", &format!("{{b}}{i}"), "1"]);
    }
    let sa = codis_core::slot_of(b"{a}");
    let sb = codis_core::slot_of(b"{b}");
    let info = slotsinfo(&mut c);
    assert_eq!(info.get(&sa), Some(&100));
    // SLOTSINFO start count
    let r = c.cmd(&["SLOTSINFO", &sa.to_string(), "1"]);
    assert_eq!(r, V::Arr(vec![V::Arr(vec![V::Int(sa as i64), V::Int(100)])]));
    assert_eq!(c.cmd(&["SLOTSINFO", &(sa + 1).to_string(), "0"]), V::Arr(vec![]));
    let r = c.cmd(&["SLOTSDEL", &sa.to_string(), "1023"]);
    assert_eq!(r, V::Arr(vec![V::Arr(vec![V::Int(sa as i64), V::Int(0)]), V::Arr(vec![V::Int(1023), V::Int(0)])]));
    let info = slotsinfo(&mut c);
    assert_eq!(info.get(&sa), None);
    assert_eq!(info.get(&sb), Some(&100));
    c.cmd(&["SLOTSCHECK"]).ok();
    // SLOTSDEL inside MULTI (cannot block: builds synchronously).
    c.cmd(&["MULTI"]).ok();
    c.cmd(&["SLOTSDEL", &sb.to_string()]);
    let r = c.cmd(&["EXEC"]);
    assert_eq!(r.arr()[0], V::Arr(vec![V::Arr(vec![V::Int(sb as i64), V::Int(0)])]));
    assert_eq!(c.cmd(&["DBSIZE"]).int(), 0);
}

#[test]
fn slotsscan_over_every_slot_returns_every_key() {
    let s = Server::start();
    let mut c = s.client();
    let cmds: Vec<Vec<Vec<u8>>> =
        (0..20_000).map(|i| vec![b"SET".to_vec(), format!("key:{i}").into_bytes(), b"v".to_vec()]).collect();
    c.pipeline(&cmds);
    let mut got = Vec::new();
    for slot in 0..1024 {
        let mut cursor = "0".to_string();
        loop {
            let r = c.cmd(&["SLOTSSCAN", &slot.to_string(), &cursor, "COUNT", "100"]);
            cursor = r.arr()[0].str();
            for k in r.arr()[1].arr() {
                assert_eq!(codis_core::slot_of(&k.bytes()), slot as u16);
                got.push(k.bytes());
            }
            if cursor == "0" {
                break;
            }
        }
    }
    got.sort();
    assert_eq!(got, scan_keys(&mut c));
}
