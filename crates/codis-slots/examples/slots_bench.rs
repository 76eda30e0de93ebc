//! Benchmarks for the codis-slots module (issue targets), all in one run:
//!
//! 1. pipelined new-key SET throughput, redis-server with the module vs without
//!    (redis-benchmark, alternating rounds, medians);
//! 2. memory per key (DEBUG POPULATE 1M keys on both);
//! 3. migrating a slot of 100k small keys: sync one key per call (Codis dashboard),
//!    sync batched (`numkeys` extension), async (dashboard defaults);
//! 4. PING latency on the source while a 1M-field hash migrates async (and, for
//!    contrast, sync).
//!
//! Run through `bench/slots_bench.sh` (release build). Sections can be chosen with
//! `SLOTS_BENCH=set,mem,mgrt,ping`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use codis_core::slot_of;
use common::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn plain() -> Server {
    Server::start_with(Opts { module: false, ..Default::default() })
}

/// Pins a process to one CPU (the machine has two: server on 0, load on 1).
fn pin(pid: u32, cpu: u32) {
    let _ = Command::new("taskset").args(["-pc", &cpu.to_string(), &pid.to_string()]).output();
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn redis_benchmark_set(port: u16, n: usize) -> f64 {
    let out = Command::new("taskset")
        .args(["-c", "1", "redis-benchmark"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "set", "-n", &n.to_string(), "-P", "16", "-c", "50"])
        .args(["-r", "1000000000", "-d", "16", "--csv"])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("\"SET\"")).expect("SET line");
    line.split(',').nth(1).unwrap().trim_matches('"').parse().unwrap()
}

fn bench_set() {
    println!(
        "== 1. pipelined new-key SET (taskset -c 1 redis-benchmark -t set -n 1000000 -P 16 -c 50 -r 1e9 -d 16; servers on CPU 0; FLUSHALL before each round)"
    );
    let a = plain();
    let b = Server::start();
    pin(a.pid().unwrap(), 0);
    pin(b.pid().unwrap(), 0);
    let n = 1_000_000;
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let (mut ca, mut cb) = (Vec::new(), Vec::new());
    for round in 0..9 {
        for (srv, out, cpu) in [(&a, &mut ra, &mut ca), (&b, &mut rb, &mut cb)] {
            srv.client().cmd(&["FLUSHALL"]);
            let pid = srv.pid().unwrap();
            let c0 = cpu_seconds(pid);
            let v = redis_benchmark_set(srv.port, n);
            out.push(v);
            // server CPU microseconds per SET
            cpu.push((cpu_seconds(pid) - c0) * 1e6 / n as f64);
        }
        println!(
            "   round {round}: plain {:.0} req/s ({:.3} us CPU/SET), module {:.0} req/s ({:.3} us CPU/SET)",
            ra[round], ca[round], rb[round], cb[round]
        );
    }
    let (ma, mb) = (median(ra), median(rb));
    let (mca, mcb) = (median(ca), median(cb));
    println!("   median wall: plain {ma:.0}, module {mb:.0} req/s, ratio {:.3}", mb / ma);
    println!(
        "   median server CPU per SET: plain {mca:.3} us, module {mcb:.3} us, throughput ratio at saturation {:.3}",
        mca / mcb
    );
    let mut c = b.client();
    let keys: i64 = slotsinfo(&mut c).values().sum();
    let dbsize = c.cmd(&["DBSIZE"]).int();
    println!("   check: SLOTSINFO sum {keys} == DBSIZE {dbsize}");
}

fn used_memory(c: &mut Client) -> i64 {
    field(&c.cmd(&["INFO", "memory"]).str(), "used_memory").unwrap()
}

fn bench_mem() {
    println!("== 2. memory per key (DEBUG POPULATE 1000000 key 16)");
    let a = plain();
    let b = Server::start();
    let (mut ca, mut cb) = (a.client(), b.client());
    let (a0, b0) = (used_memory(&mut ca), used_memory(&mut cb));
    ca.cmd(&["DEBUG", "POPULATE", "1000000", "key", "16"]);
    cb.cmd(&["DEBUG", "POPULATE", "1000000", "key", "16"]);
    let (a1, b1) = (used_memory(&mut ca), used_memory(&mut cb));
    println!("   plain:  {a0} -> {a1} bytes ({:.2} B/key)", (a1 - a0) as f64 / 1e6);
    println!("   module: {b0} -> {b1} bytes ({:.2} B/key)", (b1 - b0) as f64 / 1e6);
    println!("   module overhead: fixed {} bytes, per key {:.3} bytes", b0 - a0, ((b1 - b0) - (a1 - a0)) as f64 / 1e6);
    // Key sets exist only for slots being scanned or migrated. SLOTSSCAN from
    // cursor 0 builds 64 slots at once (1/16 of the keys here).
    cb.cmd(&["SLOTSSCAN", "0", "0"]);
    let b2 = used_memory(&mut cb);
    let info = cb.cmd(&["INFO", "codis_slots"]).str();
    let n = field(&info, "codis_slots_slot_set_keys").unwrap();
    println!(
        "   key sets of 64 slots ({n} keys) after SLOTSSCAN 0 0: +{} bytes ({:.1} B per key in those slots)",
        b2 - b1,
        (b2 - b1) as f64 / n as f64
    );
}

fn keys_of_slot(slot: u16, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let k = format!("key:{i}");
        if slot_of(k.as_bytes()) == slot {
            out.push(k);
        }
        i += 1;
    }
    out
}

fn load(c: &mut Client, keys: &[String]) {
    for chunk in keys.chunks(1000) {
        let cmds: Vec<Vec<Vec<u8>>> =
            chunk.iter().map(|k| vec![b"SET".to_vec(), k.clone().into_bytes(), b"0123456789abcdef".to_vec()]).collect();
        c.pipeline(&cmds);
    }
}

fn migrate_loop(c: &mut Client, cmd: &[String]) -> (Duration, i64, usize) {
    let refs: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
    let t = Instant::now();
    let mut moved = 0;
    let mut calls = 0;
    loop {
        let r = c.cmd(&refs);
        let a = r.arr();
        moved += a[0].int();
        calls += 1;
        if a[1].int() == 0 {
            break;
        }
    }
    (t.elapsed(), moved, calls)
}

fn bench_mgrt() {
    println!("== 3. migrating a slot of 100k small keys (16-byte values), loopback");
    let slot = 42u16;
    let keys = keys_of_slot(slot, 100_000);
    let src = Server::start();
    let dst = Server::start();
    let (mut s, mut d) = (src.client(), dst.client());
    let port = dst.port.to_string();
    let slot_s = slot.to_string();
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "sync, 1 key per call (SLOTSMGRTTAGSLOT, as the Codis dashboard)",
            ["SLOTSMGRTTAGSLOT", "127.0.0.1", &port, "3000", &slot_s].iter().map(|s| s.to_string()).collect(),
        ),
        (
            "sync, batched (SLOTSMGRTTAGSLOT ... 1000)",
            ["SLOTSMGRTTAGSLOT", "127.0.0.1", &port, "3000", &slot_s, "1000"].iter().map(|s| s.to_string()).collect(),
        ),
        (
            "async, dashboard defaults (SLOTSMGRTTAGSLOT-ASYNC maxbulks 200 maxbytes 32mb numkeys 500)",
            ["SLOTSMGRTTAGSLOT-ASYNC", "127.0.0.1", &port, "5000", "200", "33554432", &slot_s, "500"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        (
            "async, numkeys 5000",
            ["SLOTSMGRTTAGSLOT-ASYNC", "127.0.0.1", &port, "5000", "200", "33554432", &slot_s, "5000"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    ];
    for (name, cmd) in runs {
        s.cmd(&["FLUSHALL"]);
        d.cmd(&["FLUSHALL"]);
        load(&mut s, &keys);
        // The slot's key set is built on first use; build it first so the timing is
        // the transfer alone (the build is reported separately below).
        s.cmd(&["SLOTSSCAN", &slot_s, "0"]);
        let (el, moved, calls) = migrate_loop(&mut s, &cmd);
        assert_eq!(moved, 100_000);
        assert_eq!(d.cmd(&["DBSIZE"]).int(), 100_000);
        println!("   {name}: {:.0} keys/s ({:.3} s, {calls} calls)", moved as f64 / el.as_secs_f64(), el.as_secs_f64());
    }
    // Cost of building a slot set by scanning, with 1M other keys around.
    s.cmd(&["FLUSHALL"]);
    s.cmd(&["DEBUG", "POPULATE", "1000000", "other", "16"]);
    load(&mut s, &keys);
    // Slot 777 was never scanned or migrated: its set gets built now.
    let (pings, t) = {
        let port = src.port;
        let h = thread::spawn(move || {
            let mut c = Client::connect(port);
            let t = Instant::now();
            c.cmd(&["SLOTSSCAN", "777", "1"]);
            t.elapsed()
        });
        let mut p = Client::connect(src.port);
        let mut worst = Duration::ZERO;
        while !h.is_finished() {
            let t = Instant::now();
            p.cmd(&["PING"]);
            worst = worst.max(t.elapsed());
        }
        (worst, h.join().unwrap())
    };
    println!(
        "   building one slot's key set by scanning 1.1M keys: {:.3} s (client blocked; other clients served, slowest PING meanwhile {:.3} ms)",
        t.as_secs_f64(),
        pings.as_secs_f64() * 1000.0
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ping_while(port: u16, mut busy: impl FnMut() -> bool) -> Vec<f64> {
    let mut c = Client::connect(port);
    let mut rtts = Vec::new();
    while busy() {
        let t = Instant::now();
        c.cmd(&["PING"]);
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rtts
}

fn report(name: &str, rtts: &[f64], took: Duration) {
    if rtts.is_empty() {
        println!("   {name}: no PING answered during {:.3} s", took.as_secs_f64());
        return;
    }
    println!(
        "   {name}: migration {:.3} s; {} PINGs, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        took.as_secs_f64(),
        rtts.len(),
        percentile(rtts, 0.5),
        percentile(rtts, 0.99),
        percentile(rtts, 0.999),
        rtts[rtts.len() - 1]
    );
}

fn big_hash(c: &mut Client, key: &str, fields: usize) {
    for chunk in 0..fields / 1000 {
        let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), key.as_bytes().to_vec()];
        for f in 0..1000 {
            args.push(format!("field:{}", chunk * 1000 + f).into_bytes());
            args.push(b"0123456789abcdef".to_vec());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        c.cmdb(&refs);
    }
}

fn bench_ping() {
    println!("== 4. PING on the source while a 1M-field hash migrates");
    let src = Server::start();
    let dst = Server::start();
    let mut s = src.client();
    let port = dst.port.to_string();
    let idle = {
        let t = Instant::now();
        ping_while(src.port, || t.elapsed() < Duration::from_secs(1))
    };
    report("idle baseline (1 s)", &idle, Duration::from_secs(1));
    for (name, cmd) in [
        (
            "async (SLOTSMGRTTAGONE-ASYNC maxbulks 200 maxbytes 32mb)",
            vec!["SLOTSMGRTTAGONE-ASYNC", "127.0.0.1", &port, "30000", "200", "33554432", "bighash"],
        ),
        (
            "sync, for contrast (SLOTSMGRTONE: MIGRATE blocks the server)",
            vec!["SLOTSMGRTONE", "127.0.0.1", &port, "30000", "bighash"],
        ),
    ] {
        s.cmd(&["FLUSHALL"]);
        dst.client().cmd(&["FLUSHALL"]);
        big_hash(&mut s, "bighash", 1_000_000);
        let sport = src.port;
        let args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done2 = done.clone();
        let mover = thread::spawn(move || {
            let mut m = Client::connect(sport);
            let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let t = Instant::now();
            let r = m.cmd(&refs);
            let took = t.elapsed();
            done2.store(true, std::sync::atomic::Ordering::SeqCst);
            (r, took)
        });
        let rtts = ping_while(src.port, || !done.load(std::sync::atomic::Ordering::SeqCst));
        let (r, took) = mover.join().unwrap();
        assert_eq!(r.int(), 1, "{r:?}");
        assert_eq!(dst.client().cmd(&["HLEN", "bighash"]).int(), 1_000_000);
        report(name, &rtts, took);
    }
}

/// Instructions per SET under callgrind (deterministic), with and without the module.
fn bench_cg() {
    println!(
        "== 1b. instructions per new-key SET under callgrind (valgrind --tool=callgrind --instr-atstart=no; instrumentation on only around redis-benchmark -t set -n 200000 -P 16 -c 10 -r 1e9 -d 16)"
    );
    let dir = std::env::temp_dir().join(format!("codis-slots-cg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let so = module_path();
    let mut per_set = Vec::new();
    for with_module in [false, true] {
        let port = free_port();
        let out = dir.join(if with_module { "cg.module" } else { "cg.plain" });
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg("--instr-atstart=no")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .args(["redis-server", "--port", &port.to_string(), "--save", ""])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if with_module {
            cmd.arg("--loadmodule").arg(&so);
        }
        let mut child = cmd.spawn().expect("valgrind (apt-get install valgrind)");
        let mut c = poll_until("redis under valgrind", Duration::from_secs(120), || Client::try_connect(port));
        c.cmd(&["PING"]);
        let pid = child.id().to_string();
        Command::new("callgrind_control").args(["-i", "on", &pid]).output().unwrap();
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "set", "-n", "200000", "-P", "16", "-c", "10", "-r", "1000000000", "-d", "16", "-q"])
            .output()
            .unwrap();
        Command::new("callgrind_control").args(["-i", "off", &pid]).output().unwrap();
        let keys = c.cmd(&["DBSIZE"]).int();
        c.send(&[b"SHUTDOWN", b"NOSAVE"]);
        let _ = child.wait();
        let ann = Command::new("callgrind_annotate").arg(&out).output().unwrap();
        let text = String::from_utf8_lossy(&ann.stdout);
        let total: f64 = text
            .lines()
            .find(|l| l.contains("PROGRAM TOTALS"))
            .and_then(|l| l.split_whitespace().next())
            .map(|n| n.replace(',', "").parse().unwrap())
            .unwrap();
        let ps = total / 200_000.0;
        println!(
            "   {}: {total:.0} instructions, {ps:.0} per SET ({keys} keys)",
            if with_module { "module" } else { "plain" }
        );
        per_set.push(ps);
    }
    println!(
        "   module adds {:.0} instructions per new key; instruction ratio plain/module {:.3}",
        per_set[1] - per_set[0],
        per_set[0] / per_set[1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if let Ok(p) = std::env::var("CODIS_SLOTS_SO") {
        // Used by the harness's module_path() through the exe-relative lookup; a
        // symlink next to the binary keeps that lookup simple.
        let exe = std::env::current_exe().unwrap();
        let link = exe.parent().unwrap().join("libcodis_slots.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(p, &link).expect("symlink module");
    }
    let which = std::env::var("SLOTS_BENCH").unwrap_or_else(|_| "set,cg,mem,mgrt,ping".into());
    println!(
        "codis-slots bench: module {}, {}",
        module_path().display(),
        String::from_utf8_lossy(&Command::new("redis-server").arg("--version").output().unwrap().stdout).trim()
    );
    for part in which.split(',') {
        match part {
            "set" => bench_set(),
            "cg" => bench_cg(),
            "mem" => bench_mem(),
            "mgrt" => bench_mgrt(),
            "ping" => bench_ping(),
            other => eprintln!("unknown section {other}"),
        }
    }
}
