//! Real `redis-server` processes for tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768..60999), so
/// that an outgoing connection of another test can never take a port between this
/// probe and the server's own bind (that raced once: etcd exited with "address
/// already in use"). A process-wide counter, started at an offset from the pid,
/// keeps two tests of one binary from being handed the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind an ephemeral port")
}

/// Whether `redis-server` is on the PATH (tests fail with a clear message otherwise).
pub fn redis_available() -> bool {
    Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The codis-slots module cargo built for this test run: next to the test binary in
/// `target/<profile>/deps` (where a library built as a dependency of the tests lands),
/// else `target/<profile>`; `CODIS_SLOTS_MODULE` names another. Test crates that load it list `codis-slots` as a
/// dev-dependency so that it is built first.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CODIS_SLOTS_MODULE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().unwrap_or(deps), &deps.join("deps")] {
        let p = dir.join("libcodis_slots.so");
        if p.exists() {
            return p;
        }
    }
    panic!("libcodis_slots.so not found near {}: add codis-slots as a dev-dependency", exe.display());
}

/// A `redis-server` child process on 127.0.0.1, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with no persistence and the given extra arguments
    /// (e.g. `["--requirepass", "x"]`).
    pub fn start(extra: &[&str]) -> RedisServer {
        assert!(redis_available(), "redis-server not found: install Debian's redis-server package (see .ci/run)");
        let dir = std::env::temp_dir().join(format!("codis-testkit-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("create server dir");
        let mut s = RedisServer { port: 0, dir, extra: extra.iter().map(|s| s.to_string()).collect(), child: None };
        s.spawn_on_free_port();
        s
    }

    /// Starts a server with the codis-slots module loaded.
    pub fn start_with_module(extra: &[&str]) -> RedisServer {
        let module = module_path();
        let mut args = vec!["--loadmodule", module.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        RedisServer::start(&args)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn spawn_on_free_port(&mut self) {
        for _ in 0..20 {
            self.port = free_port();
            if self.spawn().is_ok() {
                return;
            }
        }
        panic!("could not start redis-server on a free port; see {}", self.dir.display());
    }

    fn spawn(&mut self) -> Result<(), ()> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn_listening(cmd, self.port)?);
        Ok(())
    }

    /// Kills the server abruptly (SIGKILL).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        respawn("redis-server", self.port, || self.spawn());
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Spawns `cmd` and waits until it accepts connections on `port`; `Err` if it exited
/// (port taken, bad arguments) or never listened.
/// Kills a child process abruptly (SIGKILL) and reaps it.
pub(crate) fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Spawns again until the port can be listened on (the old process may still hold it
/// for a moment after being killed).
pub(crate) fn respawn(what: &str, port: u16, mut spawn: impl FnMut() -> Result<(), ()>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while spawn().is_err() {
        assert!(Instant::now() < deadline, "could not restart {what} on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn spawn_listening(mut cmd: Command, port: u16) -> Result<Child, ()> {
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(())
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
