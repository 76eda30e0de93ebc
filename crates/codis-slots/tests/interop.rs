//! Interop with the original codis-server 3.2, both directions, sync and async.
//!
//! Runs only when `CODIS_SERVER` names a codis-server 3.2 binary (built from
//! CodisLabs/codis `extern/redis-3.2.11`); otherwise each test returns at once.

mod common;

use codis_core::slot_of;
use common::migrate::*;
use common::*;

fn codis_server(extra: &[&str]) -> Option<Server> {
    let bin = std::env::var("CODIS_SERVER").ok()?;
    Some(Server::start_with(Opts {
        module: false,
        binary: bin,
        modern: false,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    }))
}

/// Values codis-server 3.2 has too (no streams), small and big, some with TTLs.
fn fill_both(c: &mut Client, keys: &[String]) {
    fill(c, keys);
    let mut args = vec!["RPUSH".to_string(), keys[1].clone()];
    args.extend((0..700).map(|i| format!("e{i}")));
    c.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let mut args = vec!["ZADD".to_string(), keys[4].clone()];
    for i in 0..700 {
        args.push(format!("{}", i as f64 / 3.0 - 50.0));
        args.push(format!("z{i}"));
    }
    c.cmd(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    c.cmd(&["SET", &keys[5], "12345"]); // an int-encoded string
}

fn move_slot(src: &Server, dst: &Server, tag: &str, asynchronous: bool, db: usize, auth: Option<&str>) {
    let slot = slot_of(format!("{{{tag}}}").as_bytes());
    let keys = keys_in_slot(slot, tag, 20);
    let mut s = src.client();
    let mut d = dst.client();
    if let Some(p) = auth {
        s.cmd(&["AUTH", p]).ok();
        d.cmd(&["AUTH", p]).ok();
    }
    select(&mut s, db);
    select(&mut d, db);
    fill_both(&mut s, &keys);
    let before = snapshot(&mut s, &keys);
    let port = dst.port.to_string();
    let slot_s = slot.to_string();
    let mut moved = 0;
    for _ in 0..10_000 {
        let r = if asynchronous {
            s.cmd(&["SLOTSMGRTTAGSLOT-ASYNC", "127.0.0.1", &port, "3000", "100", "0", &slot_s, "10"])
        } else {
            s.cmd(&["SLOTSMGRTTAGSLOT", "127.0.0.1", &port, "3000", &slot_s])
        };
        assert!(!r.is_err(), "migration failed: {r:?}");
        moved += r.arr()[0].int();
        if r.arr()[1].int() == 0 {
            break;
        }
    }
    assert_eq!(moved, keys.len() as i64);
    assert_eq!(snapshot(&mut d, &keys), before, "values and TTLs on the target");
    for k in &keys {
        assert_eq!(s.cmd(&["EXISTS", k]).int(), 0);
    }
    let info = d.cmd(&["SLOTSINFO"]);
    assert!(
        info.arr().iter().any(|r| r.arr()[0].int() == slot as i64 && r.arr()[1].int() == keys.len() as i64),
        "SLOTSINFO on the target: {info:?}"
    );
}

#[test]
fn codis_to_module_and_back() {
    let Some(codis) = codis_server(&[]) else {
        eprintln!("CODIS_SERVER not set: skipped");
        return;
    };
    let ours = Server::start();
    // codis-server -> Redis 7 + module
    move_slot(&codis, &ours, "p", false, 0, None);
    move_slot(&codis, &ours, "q", true, 1, None);
    // Redis 7 + module -> codis-server (collections go element-wise)
    move_slot(&ours, &codis, "r", false, 0, None);
    move_slot(&ours, &codis, "s", true, 1, None);
    let mut o = ours.client();
    o.cmd(&["SLOTSCHECK"]).ok();
}

#[test]
fn with_requirepass() {
    let Some(codis) = codis_server(&["--requirepass", "pw"]) else {
        eprintln!("CODIS_SERVER not set: skipped");
        return;
    };
    let ours = Server::start_args(&["--requirepass", "pw"]);
    move_slot(&codis, &ours, "pa", true, 2, Some("pw"));
    move_slot(&ours, &codis, "pb", true, 2, Some("pw"));
    move_slot(&codis, &ours, "pc", false, 0, Some("pw"));
    move_slot(&ours, &codis, "pd", false, 0, Some("pw"));
}
