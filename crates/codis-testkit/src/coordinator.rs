//! Real coordinators for tests: Debian's `etcd` and ZooKeeper, each on free loopback
//! ports with its own data directory, stopped (and the directory removed) on drop.
//! `stop` and `start_again` keep the ports and data, to play a coordinator outage.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::free_port;

/// Which coordinator a test runs against; `name()` is Codis's `coordinator_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Filesystem,
    Etcd,
    Zookeeper,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Filesystem, Backend::Etcd, Backend::Zookeeper];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Filesystem => "filesystem",
            Backend::Etcd => "etcd",
            Backend::Zookeeper => "zookeeper",
        }
    }
}

/// A running coordinator of any backend (a temporary directory for the filesystem).
pub struct Coordinator {
    pub backend: Backend,
    dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    program: String,
    /// Client address: a directory, `127.0.0.1:port` (etcd) or `127.0.0.1:port` (ZooKeeper).
    addr: String,
    port: u16,
    probe: fn(u16) -> bool,
}

impl Coordinator {
    /// Starts a coordinator of `backend` (nothing to start for the filesystem).
    pub fn start(backend: Backend) -> Coordinator {
        match backend {
            Backend::Filesystem => {
                let dir = unique_dir("fs");
                Coordinator {
                    backend,
                    addr: dir.display().to_string(),
                    dir,
                    child: None,
                    args: Vec::new(),
                    program: String::new(),
                    port: 0,
                    probe: |_| true,
                }
            }
            Backend::Etcd => Self::launch(Self::etcd),
            Backend::Zookeeper => Self::launch(Self::zookeeper),
        }
    }

    fn etcd() -> Coordinator {
        assert!(
            Command::new("etcd").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()),
            "etcd not found: install Debian's etcd-server package (see .ci/run)"
        );
        let dir = unique_dir("etcd");
        let (client, peer) = (free_port(), free_port());
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let args = vec![
            "--name".into(),
            "test".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--listen-client-urls".into(),
            c.clone(),
            "--advertise-client-urls".into(),
            c,
            "--listen-peer-urls".into(),
            p.clone(),
            "--initial-advertise-peer-urls".into(),
            p.clone(),
            "--initial-cluster".into(),
            format!("test={p}"),
            "--log-level".into(),
            "warn".into(),
        ];
        Coordinator {
            backend: Backend::Etcd,
            dir,
            child: None,
            args,
            program: "etcd".into(),
            addr: format!("127.0.0.1:{client}"),
            port: client,
            probe: etcd_healthy,
        }
    }

    fn zookeeper() -> Coordinator {
        let jar = Path::new("/usr/share/java/zookeeper.jar");
        assert!(jar.exists(), "ZooKeeper not found: install Debian's zookeeper package (see .ci/run)");
        let dir = unique_dir("zk");
        let port = free_port();
        std::fs::create_dir_all(dir.join("data")).expect("zk data dir");
        // tickTime 500 ms allows sessions from 1 s; no admin server (it takes port 8080).
        let cfg = format!(
            "tickTime=500\nminSessionTimeout=1000\nmaxSessionTimeout=60000\ndataDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxClientCnxns=0\n\
             4lw.commands.whitelist=ruok\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
        let args = vec![
            "-Xmx256m".into(),
            "-XX:+UseSerialGC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-cp".into(),
            format!("{}:/etc/zookeeper/conf", jar.display()),
            "org.apache.zookeeper.server.ZooKeeperServerMain".into(),
            dir.join("zoo.cfg").display().to_string(),
        ];
        Coordinator {
            backend: Backend::Zookeeper,
            dir,
            child: None,
            args,
            program: "java".into(),
            addr: format!("127.0.0.1:{port}"),
            port,
            probe: zk_ok,
        }
    }

    /// Starts what `make` describes; a port can be taken between `free_port`'s probe
    /// and the server's bind, so a bind failure is retried on fresh ports.
    fn launch(make: fn() -> Coordinator) -> Coordinator {
        for attempt in 1.. {
            let mut c = make();
            match c.try_spawn() {
                Ok(()) => return c,
                Err(e) if attempt < 5 && e.to_ascii_lowercase().contains("address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Codis's command-line flag naming this coordinator, like `--etcd=127.0.0.1:2379`.
    pub fn flag(&self) -> String {
        format!("--{}={}", self.name(), self.addr)
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    /// Starts the server and waits until it answers; the error quotes its log.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log");
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let path = self.dir.join("server.log");
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
                return Err(format!("{} exited ({status}); see {}:\n{tail}", self.program, path.display()));
            }
            if (self.probe)(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not answer on port {} within 30s", self.program, self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server (SIGKILL), keeping its data and ports.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered,
    /// as when a coordinator host stalls. `resume` undoes it.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    /// Starts a stopped server again on the same ports and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the coordinator is running");
        if self.backend != Backend::Filesystem {
            self.spawn();
        }
    }

    /// Turns on authentication (etcd: a `root` user with `password`; ZooKeeper needs
    /// nothing: digest credentials are set per node).
    pub fn enable_auth(&self, password: &str) {
        if self.backend != Backend::Etcd {
            return;
        }
        let endpoint = format!("http://{}", self.addr);
        for args in [vec!["user", "add", &format!("root:{password}")], vec!["auth", "enable"]] {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(&args)
                .output()
                .expect("etcdctl (Debian's etcd-client package)");
            assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique_dir(kind: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "codis-testkit-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create coordinator dir");
    dir
}

/// Sends `request` to 127.0.0.1:`port` and returns what came back (empty on failure).
fn ask(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(request).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn etcd_healthy(port: u16) -> bool {
    ask(port, b"GET /health HTTP/1.0\r\n\r\n").contains("\"health\":\"true\"")
}

fn zk_ok(port: u16) -> bool {
    ask(port, b"ruok") == "imok"
}
