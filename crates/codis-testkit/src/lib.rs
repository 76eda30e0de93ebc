//! Test harness shared by codis-rs integration tests.
//!
//! Tests run against real servers: [`RedisServer`] starts `redis-server` on a free
//! loopback port with its own directory and stops it on drop ([`RedisSentinel`] does the
//! same for `redis-sentinel`, [`Coordinator`] for etcd and ZooKeeper or a temporary
//! directory); [`Client`] is a minimal RESP client (from `codis-client`); [`wait_until`]
//! polls a condition with a deadline (tests never sleep to synchronise).

mod coordinator;
mod sentinel;
mod server;

pub use codis_client::{Client, Value, args};
pub use coordinator::{Backend, Coordinator};
pub use sentinel::{RedisSentinel, sentinel_available};
pub use server::{RedisServer, free_port, module_path, redis_available};

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs async test functions `fn name(backend: Backend)` on every coordinator, as
/// `filesystem::name`, `etcd::name` and `zookeeper::name` (the calling crate needs tokio).
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        $crate::on_every_backend!(@mod filesystem, Filesystem, $($test),*);
        $crate::on_every_backend!(@mod etcd, Etcd, $($test),*);
        $crate::on_every_backend!(@mod zookeeper, Zookeeper, $($test),*);
    };
    (@mod $module:ident, $backend:ident, $($test:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::Backend::$backend).await;
                }
            )*
        }
    };
}
