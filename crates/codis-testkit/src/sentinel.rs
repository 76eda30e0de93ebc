//! Real `redis-sentinel` processes for tests, in the style of [`crate::RedisServer`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::server::{free_port, kill_child, respawn, spawn_listening, unique};

/// Whether `redis-sentinel` is on the PATH.
pub fn sentinel_available() -> bool {
    Command::new("redis-sentinel").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A `redis-sentinel` child process on 127.0.0.1 with its own config file (sentinels
/// rewrite it), killed when dropped.
pub struct RedisSentinel {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisSentinel {
    /// Starts a sentinel monitoring nothing; `extra` lines go into its config file
    /// (e.g. `"sentinel deny-scripts-reconfig no"`).
    pub fn start(extra: &[&str]) -> RedisSentinel {
        assert!(
            sentinel_available(),
            "redis-sentinel not found: install Debian's redis-sentinel package (see .ci/run)"
        );
        let dir = std::env::temp_dir().join(format!("codis-testkit-sentinel-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("create sentinel dir");
        let mut s = RedisSentinel { port: 0, dir, extra: extra.iter().map(|s| s.to_string()).collect(), child: None };
        for _ in 0..20 {
            s.port = free_port();
            if s.spawn(true).is_ok() {
                return s;
            }
        }
        panic!("could not start redis-sentinel on a free port; see {}", s.dir.display());
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("sentinel.conf")
    }

    /// `fresh`: write a new config file (a restart keeps what the sentinel rewrote).
    fn spawn(&mut self, fresh: bool) -> Result<(), ()> {
        if fresh {
            let mut text = format!(
                "port {}\nbind 127.0.0.1\ndir {}\nlogfile {}\n",
                self.port,
                self.dir.display(),
                self.dir.join("sentinel.log").display()
            );
            for line in &self.extra {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(self.conf(), text).expect("write sentinel.conf");
        }
        let mut cmd = Command::new("redis-sentinel");
        cmd.arg(self.conf()).stdout(Stdio::null()).stderr(Stdio::null());
        self.child = Some(spawn_listening(cmd, self.port)?);
        Ok(())
    }

    /// Kills the sentinel abruptly (SIGKILL).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the sentinel again on the same port with the configuration it saved.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        respawn("redis-sentinel", port, || self.spawn(false));
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
