//! Async migration: whole slots with replicas on both sides, big values in chunks,
//! EXEC-WRAPPER codes under a concurrent writer, failures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use codis_core::slot_of;
use common::migrate::*;
use common::*;

fn async_slot(c: &mut Client, port: u16, slot: u16, maxbulks: &str, maxbytes: &str, numkeys: &str) -> (i64, i64) {
    let r = c.cmd(&[
        "SLOTSMGRTTAGSLOT-ASYNC",
        "127.0.0.1",
        &port.to_string(),
        "5000",
        maxbulks,
        maxbytes,
        &slot.to_string(),
        numkeys,
    ]);
    let a = r.arr();
    (a[0].int(), a[1].int())
}

#[test]
fn tagslot_async_moves_everything_with_replicas() {
    let src = pair();
    let dst = pair();
    let db = 2;
    let slot = slot_of(b"{amig}");
    let keys = keys_in_slot(slot, "amig", 40);
    let other: Vec<String> = (0..30).map(|i| format!("other{i}")).filter(|k| slot_of(k.as_bytes()) != slot).collect();
    let mut sm = src.master.client();
    select(&mut sm, db);
    fill(&mut sm, &keys);
    // A big list, set and zset too (the hash in `fill` has 3000 fields).
    let mut args = vec!["RPUSH".to_string(), keys[1].clone()];
    args.extend((0..2500).map(|i| format!("e{i}")));
    sm.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let mut args = vec!["SADD".to_string(), keys[3].clone()];
    args.extend((0..2500).map(|i| format!("m{i}")));
    sm.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let mut args = vec!["ZADD".to_string(), keys[4].clone()];
    for i in 0..2500 {
        args.push(format!("{}", i as f64 * 0.1 - 7.0));
        args.push(format!("z{i}"));
    }
    sm.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    for k in &other {
        sm.cmd(&["SET", k, "stay"]);
    }
    let before = snapshot(&mut sm, &keys);
    let mut moved = 0;
    let mut calls = 0;
    loop {
        // small maxbulks/maxbytes: big values go in many chunks
        let (n, remaining) = async_slot(&mut sm, dst.master.port, slot, "100", "20000", "10");
        moved += n;
        calls += 1;
        if remaining == 0 {
            break;
        }
        assert!(calls < 1000);
    }
    assert_eq!(moved, keys.len() as i64);
    assert!(calls > 3, "numkeys bounds each batch");
    check_moved(&src, &dst, db, slot, &before, &other);
    // The slot is empty: one more call answers at once.
    assert_eq!(async_slot(&mut sm, dst.master.port, slot, "0", "0", "0"), (0, 0));
}

#[test]
fn key_forms_status_fence_cancel() {
    let src = Server::start();
    let dst = Server::start();
    let port = dst.port.to_string();
    let mut s = src.client();
    let mut d = dst.client();
    for i in 0..5 {
        s.cmd(&["SET", &format!("{{g}}{i}"), &i.to_string()]);
    }
    s.cmd(&["SET", "a", "1"]);
    s.cmd(&["SET", "b", "2"]);
    assert_eq!(s.cmd(&["SLOTSMGRT-ASYNC-STATUS"]), V::Nil);
    assert_eq!(s.cmd(&["SLOTSMGRT-ASYNC-FENCE"]), V::Status("OK".into()));
    let r = s.cmd(&["SLOTSMGRTONE-ASYNC", "127.0.0.1", &port, "1000", "0", "0", "a", "b", "missing"]);
    assert_eq!(r, V::Int(2));
    let r = s.cmd(&["SLOTSMGRTTAGONE-ASYNC", "127.0.0.1", &port, "1000", "0", "0", "{g}2"]);
    assert_eq!(r, V::Int(5));
    assert_eq!(s.cmd(&["DBSIZE"]).int(), 0);
    assert_eq!(d.cmd(&["MGET", "a", "b", "{g}4"]).arr()[2].str(), "4");
    // The connection stays cached: STATUS shows it, without a batch.
    let st = s.cmd(&["SLOTSMGRT-ASYNC-STATUS"]);
    let a = st.arr();
    assert_eq!(a[0].str(), "host");
    assert_eq!(a[3].str(), port);
    assert_eq!(a[16].str(), "batched_iterator");
    assert_eq!(a[17], V::Nil);
    assert_eq!(s.cmd(&["SLOTSMGRT-ASYNC-CANCEL"]), V::Int(1));
    assert_eq!(s.cmd(&["SLOTSMGRT-ASYNC-CANCEL"]), V::Int(0));
    // Argument errors, as codis-server words them.
    assert!(
        s.cmd(&["SLOTSMGRTONE-ASYNC", "127.0.0.1", "0", "1000", "0", "0", "a"]).err().contains("invalid value of port")
    );
    assert!(
        s.cmd(&["SLOTSMGRTSLOT-ASYNC", "127.0.0.1", &port, "1000", "0", "0", "1024", "1"])
            .err()
            .contains("invalid value of slot")
    );
    assert!(s.cmd(&["SLOTSMGRTSLOT-ASYNC", "127.0.0.1", &port, "1000", "0", "0", "1"]).is_err());
    // The target refuses a restore stream while its own DB is migrating out.
    assert_eq!(d.cmd(&["SLOTSRESTORE-ASYNC-ACK", "0", "x"]).err(), "ERR invalid client, permission denied");
    let r = d.cmd(&["SLOTSRESTORE-ASYNC", "bogus", "k"]);
    assert_eq!(r.arr()[0].str(), "SLOTSRESTORE-ASYNC-ACK");
    assert_eq!(r.arr()[1].str(), "-1");
}

/// A big hash to migrate with small chunks, so the batch stays in progress a while.
fn big_hash(c: &mut Client, key: &str, fields: usize) {
    for chunk in 0..fields / 1000 {
        let mut args = vec!["HSET".to_string(), key.to_string()];
        for f in 0..1000 {
            args.push(format!("f{}", chunk * 1000 + f));
            args.push("v".repeat(20));
        }
        c.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
}

#[test]
fn exec_wrapper_codes_under_concurrent_writer() {
    let src = Server::start();
    let dst = Server::start();
    let mut s = src.client();
    big_hash(&mut s, "{w}big", 200_000);
    s.cmd(&["SET", "{w}cnt", "0"]);
    s.cmd(&["SET", "elsewhere", "0"]);
    // Static codes.
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "elsewhere", "incr", "elsewhere"]);
    assert_eq!(r, V::Arr(vec![V::Int(2), V::Int(1)]));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "nokey", "get", "nokey"]);
    assert_eq!(r.arr()[0], V::Int(0));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "elsewhere", "nosuchcmd", "x"]);
    assert_eq!(r.arr()[0], V::Int(-1));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "elsewhere", "get"]);
    assert_eq!(r.arr()[0], V::Int(-1));
    assert_eq!(s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "x"]).arr()[0], V::Int(-1));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "elsewhere", "hset", "elsewhere", "f", "v"]);
    assert_eq!(r.arr()[0], V::Int(2));
    assert!(r.arr()[1].is_err(), "WRONGTYPE comes back inside the reply");

    // A writer that behaves like the proxy: code 2 done, 1 retry, 0 go to the target.
    let stop = Arc::new(AtomicBool::new(false));
    let (sport, dport) = (src.port, dst.port);
    let stop2 = stop.clone();
    let writer = thread::spawn(move || {
        let mut s = Client::connect(sport);
        let mut d = Client::connect(dport);
        let (mut done, mut retries, mut on_target) = (0, 0, 0);
        let mut codes_seen = [false; 3];
        // Until the migration is over and a few increments went to the target.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(stop2.load(Ordering::Relaxed) && on_target >= 50) && Instant::now() < deadline {
            let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "{w}cnt", "incr", "{w}cnt"]);
            match r.arr()[0].int() {
                2 => {
                    codes_seen[2] = true;
                    done += 1;
                }
                1 => {
                    codes_seen[1] = true;
                    retries += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                0 => {
                    codes_seen[0] = true;
                    d.cmd(&["INCR", "{w}cnt"]);
                    on_target += 1;
                    done += 1;
                }
                c => panic!("code {c}"),
            }
        }
        (done, retries, on_target, codes_seen)
    });
    // Let the writer run on the source for a moment, then migrate the tag group.
    poll_until("writer running", Duration::from_secs(10), || (s.cmd(&["GET", "{w}cnt"]).int() > 20).then_some(()));
    let mut m = src.client();
    m.send(&[
        b"SLOTSMGRTTAGONE-ASYNC",
        b"127.0.0.1",
        dst.port.to_string().as_bytes(),
        b"10000",
        b"200",
        b"65536",
        b"{w}big",
    ]);
    // While the batch is in progress: reads run (2), writes are refused (1).
    poll_until("batch in progress", Duration::from_secs(10), || async_batch_running(&mut s).then_some(()));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "{w}big", "hlen", "{w}big"]);
    assert_eq!(r, V::Arr(vec![V::Int(2), V::Int(200_000)]));
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "{w}big", "hset", "{w}big", "x", "y"]);
    assert_eq!(r.arr()[0], V::Int(1));
    assert_eq!(r.arr()[1].err(), "ERR the specified key is being migrated");
    // Another key of the same tag is protected too.
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "{w}cnt", "set", "{w}cnt", "0"]);
    assert_eq!(r.arr()[0], V::Int(1));
    // PING answers while the big hash moves.
    let t = Instant::now();
    s.cmd(&["PING"]);
    assert!(t.elapsed() < Duration::from_millis(500));
    let reply = m.read();
    assert_eq!(reply, V::Int(2), "the whole tag group moved");
    stop.store(true, Ordering::Relaxed);
    let (done, retries, on_target, codes) = writer.join().unwrap();
    assert!(codes[2] && codes[0], "writer saw executed and absent codes: {codes:?}");
    assert!(retries > 0 || codes[1], "writer was held off during the batch");
    let mut d = dst.client();
    assert_eq!(d.cmd(&["GET", "{w}cnt"]).int(), done, "no increment lost ({on_target} on the target)");
    assert_eq!(d.cmd(&["HLEN", "{w}big"]).int(), 200_000);
    assert_eq!(d.cmd(&["PTTL", "{w}big"]).int(), -1, "temporary chunk TTL removed");
    assert_eq!(s.cmd(&["EXISTS", "{w}big", "{w}cnt"]).int(), 0);
    let r = s.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "{w}big", "hlen", "{w}big"]);
    assert_eq!(r.arr()[0], V::Int(0));
}

#[test]
fn dead_target_async_keeps_keys() {
    let src = Server::start();
    let mut s = src.client();
    s.cmd(&["SET", "k", "v"]);
    let dead = free_port().to_string();
    let r = s.cmd(&["SLOTSMGRTONE-ASYNC", "127.0.0.1", &dead, "1000", "0", "0", "k"]);
    assert!(r.err().contains("create client to"), "{r:?}");
    assert_eq!(s.cmd(&["GET", "k"]).str(), "v");

    // Target dies in the middle of a big transfer.
    let mut dst = Server::start();
    big_hash(&mut s, "{d}big", 100_000);
    let mut m = src.client();
    m.send(&[
        b"SLOTSMGRTTAGONE-ASYNC",
        b"127.0.0.1",
        dst.port.to_string().as_bytes(),
        b"10000",
        b"100",
        b"8192",
        b"{d}big",
    ]);
    poll_until("batch in progress", Duration::from_secs(10), || async_batch_running(&mut s).then_some(()));
    dst.kill();
    let r = m.read();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(s.cmd(&["HLEN", "{d}big"]).int(), 100_000, "the key stays on the source");
    assert_eq!(s.cmd(&["SLOTSMGRT-ASYNC-STATUS"]), V::Nil);
    s.cmd(&["SLOTSCHECK"]).ok();
}

#[test]
fn timeout_cancels_a_stuck_batch() {
    // A "target" that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let src = Server::start();
    let mut s = src.client();
    s.cmd(&["SET", "k", "v"]);
    let t = Instant::now();
    let r = s.cmd(&["SLOTSMGRTONE-ASYNC", "127.0.0.1", &port, "300", "0", "0", "k"]);
    assert_eq!(r.err(), "ERR interrupted: migration timeout");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(s.cmd(&["GET", "k"]).str(), "v");
    drop(l);
}

#[test]
fn with_passwords() {
    let src = Server::start_args(&["--requirepass", "pw"]);
    let dst = Server::start_args(&["--requirepass", "pw"]);
    let mut s = src.client();
    s.cmd(&["AUTH", "pw"]).ok();
    let mut d = dst.client();
    d.cmd(&["AUTH", "pw"]).ok();
    s.cmd(&["SELECT", "3"]).ok();
    s.cmd(&["SET", "k", "v"]);
    let r = s.cmd(&["SLOTSMGRTONE-ASYNC", "127.0.0.1", &dst.port.to_string(), "1000", "0", "0", "k"]);
    assert_eq!(r, V::Int(1));
    s.cmd(&["SET", "k2", "v"]);
    let r = s.cmd(&["SLOTSMGRTONE", "127.0.0.1", &dst.port.to_string(), "1000", "k2"]);
    assert_eq!(r, V::Int(1));
    d.cmd(&["SELECT", "3"]).ok();
    assert_eq!(d.cmd(&["MGET", "k", "k2"]), V::Arr(vec![V::Bulk(b"v".to_vec()), V::Bulk(b"v".to_vec())]));
    // A wrong password is refused.
    let mut raw = Client::connect(dst.port);
    let r = raw.cmd(&["SLOTSRESTORE-ASYNC-AUTH", "nope"]);
    assert_eq!(r.arr()[1].str(), "-1");
    assert!(raw.cmd(&["GET", "k"]).err().starts_with("NOAUTH"));
    let r = raw.cmd(&["SLOTSRESTORE-ASYNC-AUTH", "pw"]);
    assert_eq!(r.arr()[1].str(), "0");
    raw.cmd(&["SLOTSRESTORE-ASYNC-SELECT", "3"]);
    assert_eq!(raw.cmd(&["GET", "k"]).str(), "v");
}

#[test]
fn moves_reach_the_aof_on_both_sides() {
    let mut src = Server::start_args(&["--appendonly", "yes"]);
    let mut dst = Server::start_args(&["--appendonly", "yes"]);
    let mut s = src.client();
    select(&mut s, 1);
    let slot = slot_of(b"{aof}");
    let keys = keys_in_slot(slot, "aof", 10);
    fill(&mut s, &keys);
    let before = snapshot(&mut s, &keys);
    // Half with the sync commands, the rest async.
    for _ in 0..5 {
        let r = s.cmd(&["SLOTSMGRTSLOT", "127.0.0.1", &dst.port.to_string(), "3000", &slot.to_string()]);
        assert_eq!(r.arr()[0].int(), 1);
    }
    loop {
        let (_, remaining) = async_slot(&mut s, dst.port, slot, "100", "0", "20");
        if remaining == 0 {
            break;
        }
    }
    drop(s);
    src.restart();
    dst.restart();
    let mut s = src.client();
    let mut d = dst.client();
    select(&mut s, 1);
    select(&mut d, 1);
    assert_eq!(snapshot(&mut d, &keys), before, "target after AOF reload");
    assert_eq!(slotsinfo(&mut s).get(&slot), None, "source after AOF reload");
    assert_eq!(slotsinfo(&mut d).get(&slot), Some(&(keys.len() as i64)));
}

#[test]
fn async_dump_helpers() {
    let s = Server::start();
    let mut c = s.client();
    c.cmd(&["SET", "s", "v"]);
    c.cmd(&["RPUSH", "l", "1", "2", "3", "4", "5"]);
    let r = c.cmd(&["SLOTSMGRTONE-ASYNC-DUMP", "1000", "2", "s", "l", "missing"]);
    let msgs: Vec<Vec<String>> = r.arr().iter().map(|m| m.arr().iter().map(|p| p.str()).collect()).collect();
    let expect: Vec<Vec<&str>> = vec![
        vec!["SLOTSRESTORE-ASYNC", "delete", "s"],
        vec!["SLOTSRESTORE-ASYNC", "string", "s", "0", "v"],
        vec!["SLOTSRESTORE-ASYNC", "delete", "l"],
        vec!["SLOTSRESTORE-ASYNC", "list", "l", "3000", "5", "1", "2"],
        vec!["SLOTSRESTORE-ASYNC", "list", "l", "3000", "5", "3", "4"],
        vec!["SLOTSRESTORE-ASYNC", "list", "l", "3000", "5", "5"],
        vec!["SLOTSRESTORE-ASYNC", "expire", "l", "0"],
    ];
    assert_eq!(msgs, expect);
    // The tag form follows the tag group; the keys stay where they are.
    c.cmd(&["SET", "{t}a", "1"]);
    c.cmd(&["SET", "{t}b", "2"]);
    let r = c.cmd(&["SLOTSMGRTTAGONE-ASYNC-DUMP", "0", "0", "{t}a"]);
    assert_eq!(r.arr().len(), 4);
    assert_eq!(c.cmd(&["DBSIZE"]).int(), 4);
}

#[test]
fn exec_wrapper_respects_acl_and_maxmemory() {
    let s = Server::start();
    let mut c = s.client();
    c.cmd(&["SET", "k", "1"]);
    c.cmd(&["ACL", "SETUSER", "ro", "on", ">pw", "~*", "+get", "+slotsmgrt-exec-wrapper"]).ok();
    let mut ro = s.client();
    ro.cmd(&["AUTH", "ro", "pw"]).ok();
    let r = ro.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "k", "get", "k"]);
    assert_eq!(r, V::Arr(vec![V::Int(2), V::Bulk(b"1".to_vec())]));
    let r = ro.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "k", "set", "k", "2"]);
    assert_eq!(r.arr()[0], V::Int(2));
    let e = r.arr()[1].err();
    assert!(e.starts_with("NOPERM") || e.contains("acl verification failed"), "{r:?}");
    c.cmd(&["CONFIG", "SET", "maxmemory", "1"]).ok();
    let r = c.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "k", "set", "k", "3"]);
    assert!(r.arr()[1].err().starts_with("OOM"), "{r:?}");
    let r = c.cmd(&["SLOTSMGRT-EXEC-WRAPPER", "k", "get", "k"]);
    assert_eq!(r, V::Arr(vec![V::Int(2), V::Bulk(b"1".to_vec())]));
}
