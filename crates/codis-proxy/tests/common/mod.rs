//! A proxy in front of real redis-servers, for integration tests.

#![allow(dead_code)]

use codis_core::MAX_SLOT_NUM;
use codis_core::models::Slot;
use codis_proxy::{Config, Proxy};
use codis_testkit::{Client, RedisServer};

pub struct Cluster {
    pub servers: Vec<RedisServer>,
    pub proxy: Proxy,
    pub addr: String,
    pub admin: String,
}

/// Slot `i` goes to server `i * n / 1024`: contiguous ranges, like a rebalanced cluster.
pub fn server_of_slot(slot: usize, n: usize) -> usize {
    slot * n / MAX_SLOT_NUM
}

pub fn test_config() -> Config {
    Config { proxy_addr: "127.0.0.1:0".into(), admin_addr: "127.0.0.1:0".into(), ..Default::default() }
}

pub fn slots_for(servers: &[String]) -> Vec<Slot> {
    (0..MAX_SLOT_NUM)
        .map(|i| Slot {
            id: i as i64,
            backend_addr: servers[server_of_slot(i, servers.len())].clone(),
            backend_addr_group_id: server_of_slot(i, servers.len()) as i64 + 1,
            ..Default::default()
        })
        .collect()
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[], |_| {}).await
    }

    /// `n` servers started with `server_args`, a proxy configured by `tweak`, all slots filled.
    pub async fn start_with(n: usize, server_args: &[&str], tweak: impl FnOnce(&mut Config)) -> Cluster {
        let servers: Vec<RedisServer> = (0..n).map(|_| RedisServer::start(server_args)).collect();
        let mut config = test_config();
        tweak(&mut config);
        let proxy =
            Proxy::bind(config, codis_proxy::Options { workers: 2, log_control: None }).await.expect("bind proxy");
        let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
        proxy.fill_slots(&slots_for(&addrs)).await.expect("fill slots");
        proxy.start().expect("start proxy");
        let addr = proxy.model().proxy_addr.clone();
        let admin = proxy.model().admin_addr.clone();
        Cluster { servers, proxy, addr, admin }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addr).await.expect("connect to proxy")
    }

    pub async fn direct(&self, i: usize) -> Client {
        Client::connect(&self.servers[i].addr()).await.expect("connect to redis")
    }

    /// Index of the server that must hold `key`.
    pub fn owner(&self, key: &[u8]) -> usize {
        server_of_slot(codis_core::slot_of(key) as usize, self.servers.len())
    }
}
