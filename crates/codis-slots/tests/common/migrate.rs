//! Helpers shared by the migration tests.

use std::collections::BTreeMap;

use codis_core::slot_of;

use super::*;

pub type Snapshot = BTreeMap<Vec<u8>, (String, Vec<Vec<u8>>, bool)>;

pub struct Pair {
    pub master: Server,
    pub replica: Server,
}

pub fn pair() -> Pair {
    let master = Server::start();
    let replica = Server::start_args(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let (mut m, mut r) = (master.client(), replica.client());
    wait_replica_synced(&mut m, &mut r);
    Pair { master, replica }
}

/// Keys of `slot`: tag groups, and untagged keys that hash to the slot.
pub fn keys_in_slot(slot: u16, tag: &str, untagged: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..60).map(|i| format!("{{{tag}}}:{i}")).collect();
    let mut i = 0;
    while out.len() < 60 + untagged {
        let k = format!("u{i}");
        if slot_of(k.as_bytes()) == slot {
            out.push(k);
        }
        i += 1;
    }
    out
}

/// Writes a value of a type chosen by `i` under `key`; every fourth gets a TTL.
pub fn fill(c: &mut Client, keys: &[String]) {
    for (i, k) in keys.iter().enumerate() {
        match i % 5 {
            0 => c.cmd(&["SET", k, &format!("value-{i}")]),
            1 => c.cmd(&["RPUSH", k, "a", "b", &i.to_string(), "a"]),
            // HMSET: codis-server 3.2's HSET takes one pair only
            2 => c.cmd(&["HMSET", k, "f1", "v1", "f2", &i.to_string()]),
            3 => c.cmd(&["SADD", k, "x", "y", &i.to_string()]),
            _ => c.cmd(&["ZADD", k, "1.5", "m1", "-2", "m2", "3.25e10", &i.to_string()]),
        };
        if i % 4 == 0 {
            c.cmd(&["PEXPIRE", k, "600000"]);
        }
    }
    // A few big collections (chunked by the async path).
    c.cmd(&["DEL", &keys[0]]);
    for chunk in 0..10 {
        let mut args = vec!["HMSET".to_string(), keys[0].clone()];
        for f in 0..300 {
            args.push(format!("field{}", chunk * 300 + f));
            args.push(format!("v{f}"));
        }
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        c.cmd(&refs);
    }
    c.cmd(&["PEXPIRE", &keys[0], "500000"]);
}

pub fn snapshot(c: &mut Client, keys: &[String]) -> Snapshot {
    keys.iter().map(|k| (k.clone().into_bytes(), describe(c, k.as_bytes()))).collect()
}

/// Common checks after a slot moved from `src` to `dst` in `db`.
pub fn check_moved(src: &Pair, dst: &Pair, db: usize, slot: u16, before: &Snapshot, other: &[String]) {
    let keys: Vec<String> = before.keys().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
    let (mut sm, mut sr) = (src.master.client(), src.replica.client());
    let (mut dm, mut dr) = (dst.master.client(), dst.replica.client());
    for c in [&mut sm, &mut sr, &mut dm, &mut dr] {
        select(c, db);
    }
    wait_replica_synced(&mut sm, &mut sr);
    wait_replica_synced(&mut dm, &mut dr);
    assert_eq!(&snapshot(&mut dm, &keys), before, "target master has every key, value and TTL");
    assert_eq!(&snapshot(&mut dr, &keys), before, "target replica agrees");
    assert_eq!(slotsinfo(&mut sm).get(&slot), None, "slot empty on source");
    assert_eq!(slotsinfo(&mut sr).get(&slot), None, "slot empty on source replica");
    for k in &keys {
        assert_eq!(sm.cmd(&["EXISTS", k]).int(), 0);
        assert_eq!(sr.cmd(&["EXISTS", k]).int(), 0);
    }
    for k in other {
        assert_eq!(sm.cmd(&["EXISTS", k]).int(), 1, "key of another slot stays");
        assert_eq!(sr.cmd(&["EXISTS", k]).int(), 1);
    }
    assert_eq!(slotsinfo(&mut dm).get(&slot), Some(&(keys.len() as i64)));
    for c in [&mut sm, &mut sr, &mut dm, &mut dr] {
        assert_eq!(slotsinfo(c), scan_counts(c));
        c.cmd(&["SLOTSCHECK"]).ok();
    }
    // TTLs are carried (approximately).
    for (k, (_, _, has_ttl)) in before {
        let ttl = dm.cmdb(&[b"PTTL", k]).int();
        if *has_ttl {
            assert!(ttl > 400_000 && ttl <= 600_000, "ttl {ttl}");
        } else {
            assert_eq!(ttl, -1);
        }
    }
}
