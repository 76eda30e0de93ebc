//! Sync migration between two servers, each with a replica.

mod common;

use std::collections::BTreeMap;

use codis_core::slot_of;
use common::*;

type Snapshot = BTreeMap<Vec<u8>, (String, Vec<Vec<u8>>, bool)>;

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
            2 => c.cmd(&["HSET", k, "f1", "v1", "f2", &i.to_string()]),
            3 => c.cmd(&["SADD", k, "x", "y", &i.to_string()]),
            _ => c.cmd(&[
                "ZADD",
                k,
                "1.5",
                "m1",
                "-2",
                "m2",
                "3.25e10",
                &i.to_string(),
            ]),
        };
        if i % 4 == 0 {
            c.cmd(&["PEXPIRE", k, "600000"]);
        }
    }
    // A few big collections (chunked by the async path).
    c.cmd(&["DEL", &keys[0]]);
    for chunk in 0..10 {
        let mut args = vec!["HSET".to_string(), keys[0].clone()];
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
    keys.iter()
        .map(|k| (k.clone().into_bytes(), describe(c, k.as_bytes())))
        .collect()
}

/// Common checks after a slot moved from `src` to `dst` in `db`.
pub fn check_moved(
    src: &Pair,
    dst: &Pair,
    db: usize,
    slot: u16,
    before: &Snapshot,
    other: &[String],
) {
    let keys: Vec<String> = before
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    let (mut sm, mut sr) = (src.master.client(), src.replica.client());
    let (mut dm, mut dr) = (dst.master.client(), dst.replica.client());
    for c in [&mut sm, &mut sr, &mut dm, &mut dr] {
        select(c, db);
    }
    wait_replica_synced(&mut sm, &mut sr);
    wait_replica_synced(&mut dm, &mut dr);
    assert_eq!(
        &snapshot(&mut dm, &keys),
        before,
        "target master has every key, value and TTL"
    );
    assert_eq!(&snapshot(&mut dr, &keys), before, "target replica agrees");
    assert_eq!(slotsinfo(&mut sm).get(&slot), None, "slot empty on source");
    assert_eq!(
        slotsinfo(&mut sr).get(&slot),
        None,
        "slot empty on source replica"
    );
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

#[test]
fn tagslot_moves_everything_with_replicas() {
    let src = pair();
    let dst = pair();
    let db = 1;
    let slot = slot_of(b"{mig}");
    let keys = keys_in_slot(slot, "mig", 40);
    let other: Vec<String> = (0..30)
        .map(|i| format!("other{i}"))
        .filter(|k| slot_of(k.as_bytes()) != slot)
        .collect();
    let mut sm = src.master.client();
    select(&mut sm, db);
    fill(&mut sm, &keys);
    for k in &other {
        sm.cmd(&["SET", k, "stay"]);
    }
    let before = snapshot(&mut sm, &keys);
    let mut moved = 0;
    let mut calls = 0;
    loop {
        let r = sm.cmd(&[
            "SLOTSMGRTTAGSLOT",
            "127.0.0.1",
            &dst.master.port.to_string(),
            "3000",
            &slot.to_string(),
        ]);
        let a = r.arr();
        moved += a[0].int();
        calls += 1;
        if a[1].int() == 0 {
            break;
        }
    }
    assert_eq!(moved, keys.len() as i64);
    // 60 tagged keys go in one call, each untagged key in a call of its own.
    assert_eq!(calls, 1 + 40);
    check_moved(&src, &dst, db, slot, &before, &other);
    // Nothing left: one more call reports [0, 0].
    let r = sm.cmd(&[
        "SLOTSMGRTTAGSLOT",
        "127.0.0.1",
        &dst.master.port.to_string(),
        "3000",
        &slot.to_string(),
    ]);
    assert_eq!(r, V::Arr(vec![V::Int(0), V::Int(0)]));
}

#[test]
fn slot_one_and_batched() {
    let src = Server::start();
    let dst = Server::start();
    let port = dst.port.to_string();
    let mut s = src.client();
    let mut d = dst.client();
    let slot = slot_of(b"{b}");
    let keys = keys_in_slot(slot, "b", 10);
    for k in &keys {
        s.cmd(&["SET", k, "v"]);
    }
    // SLOTSMGRTSLOT: one key per call, tag or not.
    let r = s.cmd(&[
        "SLOTSMGRTSLOT",
        "127.0.0.1",
        &port,
        "1000",
        &slot.to_string(),
    ]);
    assert_eq!(r, V::Arr(vec![V::Int(1), V::Int(69)]));
    // Extension: numkeys moves at least that many per call.
    let r = s.cmd(&[
        "SLOTSMGRTSLOT",
        "127.0.0.1",
        &port,
        "1000",
        &slot.to_string(),
        "50",
    ]);
    assert_eq!(r, V::Arr(vec![V::Int(50), V::Int(19)]));
    let r = s.cmd(&[
        "SLOTSMGRTTAGSLOT",
        "127.0.0.1",
        &port,
        "1000",
        &slot.to_string(),
        "1000",
    ]);
    assert_eq!(r, V::Arr(vec![V::Int(19), V::Int(0)]));
    assert_eq!(d.cmd(&["DBSIZE"]).int(), 70);
    // SLOTSMGRTONE / SLOTSMGRTTAGONE
    s.cmd(&["SET", "plain", "1"]);
    for i in 0..5 {
        s.cmd(&["SET", &format!("{{g}}{i}"), "1"]);
    }
    assert_eq!(
        s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]),
        V::Int(1)
    );
    assert_eq!(
        s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]),
        V::Int(0)
    );
    assert_eq!(
        s.cmd(&["SLOTSMGRTTAGONE", "127.0.0.1", &port, "1000", "{g}3"]),
        V::Int(5)
    );
    assert_eq!(s.cmd(&["DBSIZE"]).int(), 0);
    assert_eq!(d.cmd(&["DBSIZE"]).int(), 76);
    // Keys that already exist on the target are replaced (as SLOTSRESTORE does).
    s.cmd(&["SET", "plain", "2"]);
    assert_eq!(
        s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]),
        V::Int(1)
    );
    assert_eq!(d.cmd(&["GET", "plain"]).str(), "2");
    // Errors
    assert!(
        s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "-1", "1"])
            .err()
            .contains("invalid timeout")
    );
    assert!(
        s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "0", "1024"])
            .err()
            .contains("invalid slot number")
    );
    assert!(s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "0"]).is_err());
}

#[test]
fn dead_target_keeps_keys() {
    let src = Server::start();
    let mut s = src.client();
    let dead = free_port().to_string();
    s.cmd(&["SET", "k", "v"]);
    s.cmd(&["SET", "{t}a", "v"]);
    let r = s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &dead, "100", "k"]);
    assert!(r.is_err(), "got {r:?}");
    assert_eq!(s.cmd(&["GET", "k"]).str(), "v");
    let slot = slot_of(b"{t}").to_string();
    let r = s.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &dead, "100", &slot]);
    assert!(r.is_err(), "got {r:?}");
    assert_eq!(s.cmd(&["EXISTS", "{t}a"]).int(), 1);
    assert_eq!(slotsinfo(&mut s).values().sum::<i64>(), 2);
}

#[test]
fn slotsrestore_shapes() {
    let s = Server::start();
    let mut c = s.client();
    c.cmd(&["RPUSH", "l", "1", "2"]);
    c.cmd(&["SET", "s", "x"]);
    let pl = c.cmd(&["DUMP", "l"]).bytes();
    let ps = c.cmd(&["DUMP", "s"]).bytes();
    c.cmd(&["DEL", "l"]);
    // multi-key, replaces the existing "s", ttl applied
    let r = c.cmdb(&[b"SLOTSRESTORE", b"l", b"0", &pl, b"s", b"100000", &ps]);
    r.ok();
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]),
        V::Arr(vec![V::Bulk(b"1".to_vec()), V::Bulk(b"2".to_vec())])
    );
    assert!(c.cmd(&["PTTL", "s"]).int() > 90_000);
    assert!(
        c.cmdb(&[b"SLOTSRESTORE", b"x", b"-1", &ps])
            .err()
            .contains("invalid ttl")
    );
    assert!(c.cmdb(&[b"SLOTSRESTORE", b"x", b"0", b"garbage"]).is_err());
    assert!(c.cmd(&["SLOTSRESTORE", "x", "0"]).is_err());
    assert_eq!(slotsinfo(&mut c), scan_counts(&mut c));
}
