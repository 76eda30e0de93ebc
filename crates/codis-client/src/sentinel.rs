//! Talking to redis-sentinel the way Codis uses it: masters are named
//! `<product>-<gid>`, and a group's master is what a majority of the sentinels agree
//! on at the newest config epoch.
//!
//! Both the proxy (which must fail over while the dashboard is down) and the dashboard
//! use these helpers, so they reach the same verdict from the same answers.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::{Client, ClientError, Conn, Value};

/// The sentinel master name of group `gid` of `product`.
pub fn master_name(product: &str, gid: i64) -> String {
    format!("{product}-{gid}")
}

/// The group id in a sentinel master name of `product`, if it is one of its groups.
pub fn group_of(name: &str, product: &str) -> Option<i64> {
    let gid = name.strip_prefix(product)?.strip_prefix('-')?;
    if gid.is_empty() || !gid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    gid.parse().ok().filter(|&g| g > 0)
}

/// One master as a sentinel describes it (`SENTINEL MASTERS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterEntry {
    pub name: String,
    /// `ip:port`.
    pub addr: String,
    pub config_epoch: i64,
    /// Sentinel's flags, like `master`, `s_down,master`, `master,failover_in_progress`.
    pub flags: String,
    pub num_slaves: i64,
    pub num_other_sentinels: i64,
    pub quorum: i64,
}

impl MasterEntry {
    /// Every field the sentinel reported, as pairs (`SENTINEL MASTERS` is a flat list per master).
    fn from_pairs(pairs: &BTreeMap<String, String>) -> Option<MasterEntry> {
        let get = |k: &str| pairs.get(k).cloned().unwrap_or_default();
        let num = |k: &str| pairs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let (ip, port) = (get("ip"), get("port"));
        if ip.is_empty() || port.is_empty() {
            return None;
        }
        Some(MasterEntry {
            name: get("name"),
            addr: format!("{ip}:{port}"),
            config_epoch: num("config-epoch"),
            flags: get("flags"),
            num_slaves: num("num-slaves"),
            num_other_sentinels: num("num-other-sentinels"),
            quorum: num("quorum"),
        })
    }

    /// Whether the sentinel thinks the master is down or is failing it over.
    pub fn in_trouble(&self) -> bool {
        self.flags.split(',').any(|f| matches!(f, "s_down" | "o_down" | "failover_in_progress"))
    }
}

/// Turns a reply made of `[k, v, k, v, ...]` arrays into maps.
pub fn pairs_list(v: &Value) -> Vec<BTreeMap<String, String>> {
    let Value::Array(items) = v else { return Vec::new() };
    items.iter().filter_map(|item| if let Value::Array(_) = item { Some(pairs(item)) } else { None }).collect()
}

/// Turns one `[k, v, k, v, ...]` array into a map.
pub fn pairs(v: &Value) -> BTreeMap<String, String> {
    let Value::Array(kv) = v else { return BTreeMap::new() };
    kv.chunks(2)
        .filter_map(|c| match c {
            [k, v] => Some((k.as_str()?.to_string(), v.as_str().unwrap_or_default().to_string())),
            _ => None,
        })
        .collect()
}

/// The masters one sentinel monitors for `product`, by group id.
pub async fn product_masters(conn: &mut Conn, product: &str) -> Result<BTreeMap<i64, MasterEntry>, ClientError> {
    let v = conn.ok(&["SENTINEL", "MASTERS"]).await?;
    Ok(pairs_list(&v)
        .iter()
        .filter_map(MasterEntry::from_pairs)
        .filter_map(|m| group_of(&m.name, product).map(|gid| (gid, m)))
        .collect())
}

/// Asks every sentinel for the product's masters at once; `None` for those that did not answer.
pub async fn query_all(
    sentinels: &[String],
    product: &str,
    timeout: Duration,
) -> Vec<Option<BTreeMap<i64, MasterEntry>>> {
    let calls = sentinels.iter().map(|addr| async move {
        let mut c = Conn::open(addr, "", timeout).await.ok()?;
        product_masters(&mut c, product).await.ok()
    });
    futures_util::future::join_all(calls).await
}

/// What the sentinels agree on for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    pub addr: String,
    pub config_epoch: i64,
    /// Sentinels reporting this master at this epoch.
    pub votes: usize,
}

/// The master of every group that a majority of all `total` sentinels report at the
/// newest config epoch any of them knows. A group that is failing over, or that
/// sentinels still disagree on, is left out: callers keep their routing until the
/// sentinels converge (each sentinel announces `+switch-master` when it catches up).
///
/// A config epoch only grows through a failover a majority of sentinels voted for, so
/// the newest one is the legitimate configuration; requiring a majority to report it
/// also keeps one stale sentinel (say, one that missed a manual promote) from pulling
/// routing back to an old master.
pub fn majority_view(answers: &[Option<BTreeMap<i64, MasterEntry>>], total: usize) -> BTreeMap<i64, Agreed> {
    let need = total / 2 + 1;
    let answered: Vec<&BTreeMap<i64, MasterEntry>> = answers.iter().flatten().collect();
    if answered.len() < need {
        return BTreeMap::new();
    }
    let mut gids: Vec<i64> = answered.iter().flat_map(|m| m.keys().copied()).collect();
    gids.sort_unstable();
    gids.dedup();
    let mut view = BTreeMap::new();
    for gid in gids {
        let entries: Vec<&MasterEntry> = answered.iter().filter_map(|m| m.get(&gid)).collect();
        let newest = entries.iter().map(|e| e.config_epoch).max().unwrap_or(0);
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.config_epoch == newest) {
            *votes.entry(e.addr.as_str()).or_default() += 1;
        }
        if let Some((addr, n)) = votes.into_iter().max_by_key(|&(_, n)| n)
            && n >= need
        {
            view.insert(gid, Agreed { addr: addr.to_string(), config_epoch: newest, votes: n });
        }
    }
    view
}

/// An event published by a sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub channel: String,
    pub payload: String,
}

impl Event {
    /// For `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`: (name, old, new).
    pub fn switch_master(&self) -> Option<(&str, String, String)> {
        if self.channel != "+switch-master" {
            return None;
        }
        let f: Vec<&str> = self.payload.split_whitespace().collect();
        match f[..] {
            [name, oip, oport, nip, nport] => Some((name, format!("{oip}:{oport}"), format!("{nip}:{nport}"))),
            _ => None,
        }
    }

    /// For instance events (`+sdown master <name> <ip> <port> ...`): the master's name,
    /// when the event is about a master itself.
    pub fn master_event(&self) -> Option<&str> {
        let mut f = self.payload.split_whitespace();
        (f.next() == Some("master")).then(|| f.next()).flatten()
    }
}

/// A subscription to sentinel events on one sentinel.
pub struct Subscription {
    addr: String,
    client: Client,
    idle: Duration,
}

impl Subscription {
    /// Connects and subscribes to `channels`; `idle` is how long silence lasts before
    /// the connection is checked with a PING (a silent sentinel may be gone).
    pub async fn open(addr: &str, channels: &[&str], idle: Duration) -> Result<Subscription, ClientError> {
        let io = |source| ClientError::Io { addr: addr.to_string(), source };
        let timeout = Duration::from_secs(3);
        let mut client = match tokio::time::timeout(timeout, Client::connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout { addr: addr.to_string(), timeout }),
            Ok(r) => r.map_err(io)?,
        };
        let mut cmd = vec!["SUBSCRIBE"];
        cmd.extend_from_slice(channels);
        client.send(&cmd).await.map_err(io)?;
        for _ in channels {
            match tokio::time::timeout(timeout, client.read()).await {
                Err(_) => return Err(ClientError::Timeout { addr: addr.to_string(), timeout }),
                Ok(Err(e)) => return Err(io(e)),
                Ok(Ok(Value::Error(message))) => return Err(ClientError::Reply { addr: addr.to_string(), message }),
                Ok(Ok(_)) => {}
            }
        }
        Ok(Subscription { addr: addr.to_string(), client, idle })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Waits for the next event; an error means the subscription is lost (reconnect).
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        let mut pinged = false;
        loop {
            let frame = match tokio::time::timeout(self.idle, self.client.read()).await {
                Ok(Ok(v)) => v,
                Ok(Err(source)) => return Err(ClientError::Io { addr: self.addr.clone(), source }),
                Err(_) if pinged => return Err(ClientError::Timeout { addr: self.addr.clone(), timeout: self.idle }),
                Err(_) => {
                    pinged = true;
                    self.client
                        .send(&["PING"])
                        .await
                        .map_err(|source| ClientError::Io { addr: self.addr.clone(), source })?;
                    continue;
                }
            };
            pinged = false;
            if let Value::Array(items) = &frame
                && let [kind, channel, payload] = &items[..]
                && kind.as_str() == Some("message")
            {
                return Ok(Event {
                    channel: channel.as_str().unwrap_or_default().to_string(),
                    payload: payload.as_str().unwrap_or_default().to_string(),
                });
            }
            // pong or (un)subscribe confirmations
        }
    }
}

/// What [`follow`] passes on from a sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A subscription was (re)established: events may have been missed before it.
    Subscribed,
    Event(Event),
}

/// Passes on one sentinel's events on `channels` until `tx` is closed, resubscribing a
/// second after the link drops.
pub async fn follow(addr: String, channels: &[&str], tx: tokio::sync::mpsc::Sender<(String, Heard)>) {
    loop {
        match Subscription::open(&addr, channels, Duration::from_secs(5)).await {
            Ok(mut sub) => {
                let mut heard = Heard::Subscribed;
                loop {
                    if tx.send((addr.clone(), heard)).await.is_err() {
                        return;
                    }
                    heard = match sub.next().await {
                        Ok(ev) => Heard::Event(ev),
                        Err(_) => break, // lost: resubscribe below
                    };
                }
            }
            Err(_) if tx.is_closed() => return,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether two `host:port` strings name the same server (sentinels report IPs, a
/// dashboard may use host names).
pub fn same_server(a: &str, b: &str) -> bool {
    a == b || matches!((resolve_ip(a), resolve_ip(b)), (Some(x), Some(y)) if x == y)
}

/// `host:port` with the host resolved to an IP address, as `SENTINEL MONITOR` needs.
pub fn resolve_ip(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), port));
    }
    let ip = (host, port).to_socket_addrs().ok()?.next()?.ip();
    Some((ip.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(addr: &str, epoch: i64) -> MasterEntry {
        MasterEntry { addr: addr.into(), config_epoch: epoch, ..Default::default() }
    }

    fn answer(items: &[(i64, &str, i64)]) -> Option<BTreeMap<i64, MasterEntry>> {
        Some(items.iter().map(|&(g, a, e)| (g, entry(a, e))).collect())
    }

    #[test]
    fn names() {
        assert_eq!(master_name("codis-demo", 3), "codis-demo-3");
        assert_eq!(group_of("codis-demo-3", "codis-demo"), Some(3));
        assert_eq!(group_of("codis-demo-x", "codis-demo"), None);
        assert_eq!(group_of("codis-demo-", "codis-demo"), None);
        assert_eq!(group_of("codis-demo-0", "codis-demo"), None);
        assert_eq!(group_of("codis-demo2-1", "codis-demo"), None);
        assert_eq!(group_of("other-1", "codis-demo"), None);
    }

    #[test]
    fn newest_epoch_needs_a_majority() {
        // all agree
        let v = majority_view(&[answer(&[(1, "a:1", 0)]), answer(&[(1, "a:1", 0)]), answer(&[(1, "a:1", 0)])], 3);
        assert_eq!(v[&1].addr, "a:1");
        // the failover leader alone knows epoch 2: not yet
        let v = majority_view(&[answer(&[(1, "b:1", 2)]), answer(&[(1, "a:1", 0)]), answer(&[(1, "a:1", 0)])], 3);
        assert!(v.is_empty());
        // a second sentinel caught up: switch, even though the third is unreachable
        let v = majority_view(&[answer(&[(1, "b:1", 2)]), answer(&[(1, "b:1", 2)]), None], 3);
        assert_eq!(v[&1], Agreed { addr: "b:1".into(), config_epoch: 2, votes: 2 });
        // one stale sentinel still monitoring a removed group does not win
        let v = majority_view(&[answer(&[(1, "old:1", 5)]), answer(&[]), answer(&[])], 3);
        assert!(v.is_empty());
        // too few answers: no verdict at all
        let v = majority_view(&[answer(&[(1, "a:1", 0)]), None, None], 3);
        assert!(v.is_empty());
        // groups are judged separately
        let v = majority_view(
            &[
                answer(&[(1, "a:1", 0), (2, "c:1", 1)]),
                answer(&[(1, "a:1", 0), (2, "c:1", 1)]),
                answer(&[(2, "d:1", 0)]),
            ],
            3,
        );
        assert_eq!((v[&1].addr.as_str(), v[&2].addr.as_str()), ("a:1", "c:1"));
    }

    #[test]
    fn events() {
        let e = Event { channel: "+switch-master".into(), payload: "p-1 127.0.0.1 7000 127.0.0.1 7001".into() };
        assert_eq!(e.switch_master(), Some(("p-1", "127.0.0.1:7000".to_string(), "127.0.0.1:7001".to_string())));
        let bad = Event { channel: "+switch-master".into(), payload: "p-1 127.0.0.1".into() };
        assert_eq!(bad.switch_master(), None);
        let sdown = Event { channel: "+sdown".into(), payload: "master p-1 127.0.0.1 7000".into() };
        assert_eq!(sdown.master_event(), Some("p-1"));
        let slave = Event { channel: "+sdown".into(), payload: "slave 127.0.0.1:7001 127.0.0.1 7001 @ p-1 ...".into() };
        assert_eq!(slave.master_event(), None);
    }

    #[test]
    fn parses_sentinel_masters() {
        let kv = |pairs: &[(&str, &str)]| {
            Value::Array(pairs.iter().flat_map(|(k, v)| [Value::bulk(k), Value::bulk(v)]).collect())
        };
        let reply = Value::Array(vec![
            kv(&[("name", "p-2"), ("ip", "10.0.0.1"), ("port", "6380"), ("config-epoch", "4"), ("flags", "master")]),
            kv(&[("name", "other-1"), ("ip", "10.0.0.2"), ("port", "6379")]),
            kv(&[("name", "p-3")]),
        ]);
        let all: Vec<MasterEntry> = pairs_list(&reply).iter().filter_map(MasterEntry::from_pairs).collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].addr.as_str(), all[0].config_epoch), ("10.0.0.1:6380", 4));
        assert!(!all[0].in_trouble());
        assert!(MasterEntry { flags: "s_down,master".into(), ..Default::default() }.in_trouble());
        assert_eq!(resolve_ip("127.0.0.1:7000"), Some(("127.0.0.1".into(), 7000)));
        assert_eq!(resolve_ip("localhost:7000").map(|(_, p)| p), Some(7000));
        assert_eq!(resolve_ip("nohost"), None);
        assert!(same_server("localhost:7000", "127.0.0.1:7000"));
        assert!(!same_server("127.0.0.1:7000", "127.0.0.1:7001"));
    }
}
