//! Test harness: real `redis-server` processes with the module loaded, and a tiny
//! blocking RESP client.
#![allow(dead_code)]

pub mod migrate;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// RESP values and client

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Status(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Arr(Vec<V>),
}

impl V {
    pub fn int(&self) -> i64 {
        match self {
            V::Int(i) => *i,
            V::Bulk(b) => String::from_utf8_lossy(b).parse().expect("integer bulk"),
            other => panic!("expected integer, got {other:?}"),
        }
    }
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            V::Bulk(b) => b.clone(),
            V::Status(s) => s.clone().into_bytes(),
            other => panic!("expected bulk, got {other:?}"),
        }
    }
    pub fn str(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    pub fn arr(&self) -> &[V] {
        match self {
            V::Arr(a) => a,
            other => panic!("expected array, got {other:?}"),
        }
    }
    pub fn is_err(&self) -> bool {
        matches!(self, V::Err(_))
    }
    pub fn err(&self) -> String {
        match self {
            V::Err(e) => e.clone(),
            other => panic!("expected error, got {other:?}"),
        }
    }
    pub fn ok(&self) {
        assert_eq!(self, &V::Status("OK".into()), "expected OK");
    }
}

pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    pub port: u16,
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s, port }
    }

    pub fn try_connect(port: u16) -> Option<Client> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        Some(Client { r: BufReader::new(s.try_clone().unwrap()), w: s, port })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.w.set_read_timeout(Some(d)).ok();
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        self.w.write_all(&encode(args)).expect("write");
    }

    pub fn read(&mut self) -> V {
        read_value(&mut self.r).expect("read reply")
    }

    pub fn try_read(&mut self) -> std::io::Result<V> {
        read_value(&mut self.r)
    }

    pub fn cmd(&mut self, args: &[&str]) -> V {
        let b: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmdb(&b)
    }

    pub fn cmdb(&mut self, args: &[&[u8]]) -> V {
        self.send(args);
        self.read()
    }

    /// Sends many commands at once and reads all replies.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<V> {
        let mut buf = Vec::new();
        for c in cmds {
            let refs: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
            buf.extend(encode(&refs));
        }
        self.w.write_all(&buf).expect("write");
        (0..cmds.len()).map(|_| self.read()).collect()
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(line.trim_end_matches("\r\n").to_string())
}

pub fn read_value(r: &mut impl BufRead) -> std::io::Result<V> {
    let line = read_line(r)?;
    let (t, rest) = line.split_at(1);
    Ok(match t {
        "+" => V::Status(rest.into()),
        "-" => V::Err(rest.into()),
        ":" => V::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                V::Nil
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                V::Bulk(b)
            }
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                V::Nil
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_value(r)?);
                }
                V::Arr(v)
            }
        }
        "_" => V::Nil,
        other => panic!("unexpected reply type {other:?} in {line:?}"),
    })
}

// ---------------------------------------------------------------------------------------
// Servers

/// The module cargo built for this test run: next to the test binary in
/// `target/<profile>/deps` (where cargo leaves a library built as a dependency of
/// the tests), else `target/<profile>`.
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join("libcodis_slots.so");
        if p.exists() {
            return p;
        }
    }
    panic!("libcodis_slots.so not found near {}", exe.display());
}

pub fn free_port() -> u16 {
    // Ports from the ephemeral range are handed out by the kernel; binding port 0 and
    // closing again is racy but retried by `Server::start`.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    keep_dir: bool,
    pub binary: String,
}

pub struct Opts {
    pub module: bool,
    pub extra: Vec<String>,
    pub binary: String,
    /// Pass options only Redis 7 knows (enable-debug-command, enable-module-command).
    pub modern: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { module: true, extra: vec![], binary: "redis-server".into(), modern: true }
    }
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(Opts::default())
    }

    pub fn start_args(extra: &[&str]) -> Server {
        Self::start_with(Opts { extra: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() })
    }

    pub fn start_with(opts: Opts) -> Server {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join("codis-slots-tests").join(format!("{}-{}", std::process::id(), n));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.to_string_lossy().into(),
            "--logfile".into(),
            "redis.log".into(),
        ];
        if opts.modern {
            for a in ["--enable-debug-command", "yes", "--enable-module-command", "yes"] {
                args.push(a.into());
            }
        }
        if opts.module {
            args.push("--loadmodule".into());
            args.push(module_path().to_string_lossy().into());
        }
        args.extend(opts.extra);
        let mut s = Server { port: 0, dir, child: None, args, keep_dir: false, binary: opts.binary };
        s.launch();
        s
    }

    fn launch(&mut self) {
        for _attempt in 0..5 {
            let port = if self.port == 0 { free_port() } else { self.port };
            let child = Command::new(&self.binary)
                .arg("--port")
                .arg(port.to_string())
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            self.child = Some(child);
            self.port = port;
            if self.wait_ready(Duration::from_secs(20)) {
                return;
            }
            self.kill();
            if self.port != 0 && _attempt > 2 {
                break;
            }
        }
        panic!(
            "redis-server did not start; log:\n{}",
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Some(mut c) = Client::try_connect(self.port) {
                c.set_read_timeout(Duration::from_secs(5));
                if let Ok(v) = {
                    c.send(&[b"PING"]);
                    c.try_read()
                } {
                    match v {
                        V::Status(_) => return true,
                        V::Err(e) if e.starts_with("NOAUTH") => return true,
                        V::Err(e) if e.starts_with("LOADING") => {}
                        _ => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Stops the server (SHUTDOWN without saving unless `save`), keeping its directory.
    pub fn stop(&mut self, save: bool) {
        if let Some(mut c) = Client::try_connect(self.port) {
            c.send(&[b"SHUTDOWN", if save { b"SAVE" } else { b"NOSAVE" }]);
            let _ = c.try_read();
        }
        if let Some(mut ch) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = ch.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = ch.kill();
                    let _ = ch.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the same server again (same port, dir and arguments).
    pub fn restart(&mut self) {
        self.stop(false);
        self.launch();
    }

    pub fn kill(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    pub fn keep(&mut self) {
        self.keep_dir = true;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// True while an async migration batch is in progress in the client's DB.
pub fn async_batch_running(c: &mut Client) -> bool {
    match c.cmd(&["SLOTSMGRT-ASYNC-STATUS"]) {
        V::Arr(a) => a.get(17).is_some_and(|v| *v != V::Nil),
        _ => false,
    }
}

pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SLOTSINFO of the selected DB as a map slot -> count.
pub fn slotsinfo(c: &mut Client) -> std::collections::BTreeMap<u16, i64> {
    c.cmd(&["SLOTSINFO"]).arr().iter().map(|r| (r.arr()[0].int() as u16, r.arr()[1].int())).collect()
}

/// All keys of the selected DB through SCAN (which also expires what is due).
pub fn scan_keys(c: &mut Client) -> Vec<Vec<u8>> {
    let mut cursor = "0".to_string();
    let mut out = Vec::new();
    loop {
        let r = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
        let a = r.arr();
        cursor = a[0].str();
        for k in a[1].arr() {
            out.push(k.bytes());
        }
        if cursor == "0" {
            break;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Client-side count of keys per slot over SCAN.
pub fn scan_counts(c: &mut Client) -> std::collections::BTreeMap<u16, i64> {
    let mut m = std::collections::BTreeMap::new();
    for k in scan_keys(c) {
        *m.entry(codis_core::slot_of(&k)).or_insert(0) += 1;
    }
    m
}

pub fn select(c: &mut Client, db: usize) {
    c.cmd(&["SELECT", &db.to_string()]).ok();
}

/// A comparable rendering of a key's type, value and whether it has a TTL.
pub fn describe(c: &mut Client, key: &[u8]) -> (String, Vec<Vec<u8>>, bool) {
    let t = c.cmdb(&[b"TYPE", key]).str();
    let mut v: Vec<Vec<u8>> = match t.as_str() {
        "none" => vec![],
        "string" => vec![c.cmdb(&[b"GET", key]).bytes()],
        "list" => c.cmdb(&[b"LRANGE", key, b"0", b"-1"]).arr().iter().map(|x| x.bytes()).collect(),
        "hash" => {
            let a: Vec<Vec<u8>> = c.cmdb(&[b"HGETALL", key]).arr().iter().map(|x| x.bytes()).collect();
            let mut pairs: Vec<Vec<u8>> =
                a.chunks(2).map(|p| [p[0].clone(), b"=".to_vec(), p[1].clone()].concat()).collect();
            pairs.sort();
            pairs
        }
        "set" => {
            let mut a: Vec<Vec<u8>> = c.cmdb(&[b"SMEMBERS", key]).arr().iter().map(|x| x.bytes()).collect();
            a.sort();
            a
        }
        "zset" => c.cmdb(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]).arr().iter().map(|x| x.bytes()).collect(),
        other => vec![other.as_bytes().to_vec()],
    };
    if t == "set" {
        v.sort();
    }
    let ttl = c.cmdb(&[b"PTTL", key]).int();
    (t, v, ttl > 0)
}

/// Waits until `replica` has processed everything `master` sent it.
pub fn wait_replica_synced(master: &mut Client, replica: &mut Client) {
    poll_until("replica in sync", Duration::from_secs(60), || {
        let info = replica.cmd(&["INFO", "replication"]).str();
        if !info.contains("master_link_status:up") {
            return None;
        }
        let m = master.cmd(&["INFO", "replication"]).str();
        let moff = field(&m, "master_repl_offset")?;
        let roff = field(&info, "slave_repl_offset")?;
        (moff == roff).then_some(())
    });
}

pub fn field(info: &str, name: &str) -> Option<i64> {
    info.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).and_then(|v| v.trim().parse().ok())
}

/// Deterministic pseudo-random numbers for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
