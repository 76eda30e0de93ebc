//! Sync migration between two servers, each with a replica.

mod common;

use codis_core::slot_of;
use common::migrate::*;
use common::*;

#[test]
fn tagslot_moves_everything_with_replicas() {
    let src = pair();
    let dst = pair();
    let db = 1;
    let slot = slot_of(b"{mig}");
    let keys = keys_in_slot(slot, "mig", 40);
    let other: Vec<String> = (0..30).map(|i| format!("other{i}")).filter(|k| slot_of(k.as_bytes()) != slot).collect();
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
        let r = sm.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &dst.master.port.to_string(), "3000", &slot.to_string()]);
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
    let r = sm.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &dst.master.port.to_string(), "3000", &slot.to_string()]);
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
    let r = s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "1000", &slot.to_string()]);
    assert_eq!(r, V::Arr(vec![V::Int(1), V::Int(69)]));
    // Extension: numkeys moves at least that many per call.
    let r = s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "1000", &slot.to_string(), "50"]);
    assert_eq!(r, V::Arr(vec![V::Int(50), V::Int(19)]));
    let r = s.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &port, "1000", &slot.to_string(), "1000"]);
    assert_eq!(r, V::Arr(vec![V::Int(19), V::Int(0)]));
    assert_eq!(d.cmd(&["DBSIZE"]).int(), 70);
    // SLOTSMGRTONE / SLOTSMGRTTAGONE
    s.cmd(&["SET", "plain", "1"]);
    for i in 0..5 {
        s.cmd(&["SET", &format!("{{g}}{i}"), "1"]);
    }
    assert_eq!(s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]), V::Int(1));
    assert_eq!(s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]), V::Int(0));
    assert_eq!(s.cmd(&["SLOTSMGRTTAGONE", "127.0.0.1", &port, "1000", "{g}3"]), V::Int(5));
    assert_eq!(s.cmd(&["DBSIZE"]).int(), 0);
    assert_eq!(d.cmd(&["DBSIZE"]).int(), 76);
    // Keys that already exist on the target are replaced (as SLOTSRESTORE does).
    s.cmd(&["SET", "plain", "2"]);
    assert_eq!(s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &port, "1000", "plain"]), V::Int(1));
    assert_eq!(d.cmd(&["GET", "plain"]).str(), "2");
    // Errors
    assert!(s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "-1", "1"]).err().contains("invalid timeout"));
    assert!(s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &port, "0", "1024"]).err().contains("invalid slot number"));
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
    assert_eq!(c.cmd(&["LRANGE", "l", "0", "-1"]), V::Arr(vec![V::Bulk(b"1".to_vec()), V::Bulk(b"2".to_vec())]));
    assert!(c.cmd(&["PTTL", "s"]).int() > 90_000);
    assert!(c.cmdb(&[b"SLOTSRESTORE", b"x", b"-1", &ps]).err().contains("invalid ttl"));
    assert!(c.cmdb(&[b"SLOTSRESTORE", b"x", b"0", b"garbage"]).is_err());
    assert!(c.cmd(&["SLOTSRESTORE", "x", "0"]).is_err());
    assert_eq!(slotsinfo(&mut c), scan_counts(&mut c));
}
