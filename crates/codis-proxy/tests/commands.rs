//! The commands Codis refused and codis-proxy serves, against real redis-servers:
//! keyspace-wide commands (SCAN, DBSIZE, RANDOMKEY, KEYS, FLUSH*), scripts and
//! functions on every group, and the connection commands (HELLO, CLIENT, RESET).

mod common;

use std::collections::BTreeSet;

use codis_testkit::{Client, Value, args};
use common::Cluster;

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(|i| i.as_str().expect("string element").to_string()).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Runs a whole SCAN iteration with `extra` options; returns every key it gave.
async fn scan_all(cl: &mut Client, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut cmd = vec!["SCAN", cursor.as_str()];
        cmd.extend_from_slice(extra);
        let reply = cl.cmd(&cmd).await.unwrap();
        let Value::Array(parts) = reply else { panic!("SCAN reply {reply:?}") };
        cursor = parts[0].as_str().unwrap().to_string();
        keys.extend(strings(&parts[1]));
        calls += 1;
        assert!(calls < 100_000, "SCAN does not terminate");
        if cursor == "0" {
            return keys;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_dbsize_and_randomkey_cover_every_group() {
    let c = Cluster::start(3).await;
    let mut cl = c.client().await;
    assert_eq!(cl.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    assert_eq!(cl.cmd(&["RANDOMKEY"]).await.unwrap(), Value::Nil);
    assert_eq!(scan_all(&mut cl, &[]).await, Vec::<String>::new());

    let keys: BTreeSet<String> = (0..3000).map(|i| format!("s:{i}")).collect();
    let sets: Vec<_> = keys.iter().map(|k| args!["SET", k, "v"]).collect();
    cl.pipeline(&sets).await.unwrap();
    for h in 0..30 {
        assert_eq!(cl.cmd(&["HSET", &format!("h:{h}"), "f", "v"]).await.unwrap(), Value::Int(1));
    }
    let owners: BTreeSet<usize> = keys.iter().map(|k| c.owner(k.as_bytes())).collect();
    assert_eq!(owners.len(), 3, "keys must span the groups");

    assert_eq!(cl.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(3030));
    // every key exactly once, across the three groups, whatever the COUNT
    for count in ["7", "1000"] {
        let got = scan_all(&mut cl, &["COUNT", count]).await;
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "no key twice");
        assert_eq!(unique.len(), 3030);
        assert!(keys.is_subset(&unique));
    }
    let hashes = scan_all(&mut cl, &["TYPE", "hash", "COUNT", "100"]).await;
    assert_eq!(hashes.len(), 30, "{hashes:?}");
    let matched = scan_all(&mut cl, &["MATCH", "s:1??", "COUNT", "50"]).await;
    assert_eq!(matched.len(), 100);
    // bad cursors get an error, and a cursor past the last group ends the iteration
    assert_eq!(cl.cmd(&["SCAN", "x"]).await.unwrap(), Value::Error("ERR invalid cursor".into()));
    let past = cl.cmd(&["SCAN", "9999"]).await.unwrap();
    assert_eq!(past, Value::Array(vec![Value::bulk("0"), Value::Array(vec![])]));

    let Value::Bulk(k) = cl.cmd(&["RANDOMKEY"]).await.unwrap() else { panic!("RANDOMKEY must find a key") };
    let k = String::from_utf8(k).unwrap();
    assert!(keys.contains(&k) || k.starts_with("h:"), "{k}");
    // in another database there is nothing
    assert_eq!(cl.cmd(&["SELECT", "3"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    assert_eq!(scan_all(&mut cl, &[]).await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_flush_run_on_every_group_when_allowed() {
    let c = Cluster::start_with(2, &[], |cfg| cfg.session_allow_keyspace_commands = true).await;
    let mut cl = c.client().await;
    let keys: Vec<String> = (0..200).map(|i| format!("k:{i}")).collect();
    cl.pipeline(&keys.iter().map(|k| args!["SET", k, "1"]).collect::<Vec<_>>()).await.unwrap();
    let all: BTreeSet<String> = strings(&cl.cmd(&["KEYS", "k:*"]).await.unwrap()).into_iter().collect();
    assert_eq!(all, keys.iter().cloned().collect());
    assert_eq!(cl.cmd(&["FLUSHDB"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    for i in 0..2 {
        assert_eq!(c.direct(i).await.cmd(&["DBSIZE"]).await.unwrap(), Value::Int(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_functions_work_on_every_group() {
    let c = Cluster::start(3).await;
    let mut cl = c.client().await;
    // one key per group
    let keys: Vec<String> =
        (0..3).map(|g| (0..).map(|i| format!("g{g}:{i}")).find(|k| c.owner(k.as_bytes()) == g).unwrap()).collect();
    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";
    let Value::Bulk(sha) = cl.cmd(&["SCRIPT", "LOAD", script]).await.unwrap() else { panic!("SCRIPT LOAD") };
    let sha = String::from_utf8(sha).unwrap();
    for i in 0..3 {
        let mut d = c.direct(i).await;
        assert_eq!(d.cmd(&["SCRIPT", "EXISTS", &sha]).await.unwrap(), Value::Array(vec![Value::Int(1)]));
    }
    for k in &keys {
        assert_eq!(cl.cmd(&["EVALSHA", &sha, "1", k, k]).await.unwrap(), Value::bulk(k));
    }
    let exists = cl.cmd(&["SCRIPT", "EXISTS", &sha, "0000000000000000000000000000000000000000"]).await.unwrap();
    assert_eq!(exists, Value::Array(vec![Value::Int(1), Value::Int(0)]));
    // a script whose keys live on two groups is refused like Redis Cluster's CROSSSLOT
    let Value::Error(e) = cl.cmd(&["EVALSHA", &sha, "2", &keys[0], &keys[1], "x"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("CROSSSLOT") && e.contains("hash tag"), "{e}");
    // present on one group only: EXISTS says no
    c.direct(1).await.cmd(&["SCRIPT", "FLUSH"]).await.unwrap();
    assert_eq!(cl.cmd(&["SCRIPT", "EXISTS", &sha]).await.unwrap(), Value::Array(vec![Value::Int(0)]));
    assert_eq!(cl.cmd(&["SCRIPT", "FLUSH"]).await.unwrap(), Value::ok());
    let Value::Error(e) = cl.cmd(&["EVALSHA", &sha, "1", &keys[2], "x"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("NOSCRIPT"), "{e}");
    let Value::Error(e) = cl.cmd(&["SCRIPT", "DEBUG", "YES"]).await.unwrap() else { panic!() };
    assert!(e.contains("not supported"), "{e}");

    // functions: loaded everywhere, called by key
    let lib = "#!lua name=proxytest\nredis.register_function('incr2', function(keys, args) return redis.call('INCRBY', keys[1], 2) end)";
    assert_eq!(cl.cmd(&["FUNCTION", "LOAD", lib]).await.unwrap(), Value::bulk("proxytest"));
    for k in ["fa", "fb", "fc", "fd"] {
        assert_eq!(cl.cmd(&["FCALL", "incr2", "1", k]).await.unwrap(), Value::Int(2));
    }
    let Value::Array(list) = cl.cmd(&["FUNCTION", "LIST"]).await.unwrap() else { panic!() };
    assert_eq!(list.len(), 1);
    let Value::Error(e) = cl.cmd(&["FUNCTION", "LOAD", lib]).await.unwrap() else { panic!() };
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(cl.cmd(&["FUNCTION", "DELETE", "proxytest"]).await.unwrap(), Value::ok());
    assert!(cl.cmd(&["FCALL", "incr2", "1", "fa"]).await.unwrap().is_error());
    // a reply nested thousands deep (Lua's stack limit ends it) passes through
    // (read raw: a Value that deep would overflow the test's own stack when dropped)
    cl.send(&["EVAL", "local a = {}; local b = {a}; a[1] = b; return a", "0"]).await.unwrap();
    let raw = cl.read_frame().await.unwrap();
    let depth = raw.windows(4).filter(|w| w == b"*1\r\n").count();
    assert!(depth > 512 && raw.ends_with(b"-ERR reached lua stack limit\r\n"), "{depth}");
    assert_eq!(cl.cmd(&["PING"]).await.unwrap(), Value::Simple("PONG".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_client_and_reset_are_answered_by_the_proxy() {
    let c = Cluster::start_with(1, &[], |cfg| cfg.session_auth = "pw".into()).await;
    let mut cl = c.client().await;
    let Value::Error(e) = cl.cmd(&["HELLO", "2"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("NOAUTH"), "{e}");
    let Value::Error(e) = cl.cmd(&["HELLO", "2", "AUTH", "default", "bad"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("WRONGPASS"), "{e}");
    let Value::Array(hello) = cl.cmd(&["HELLO", "2", "AUTH", "default", "pw", "SETNAME", "app1"]).await.unwrap() else {
        panic!()
    };
    assert_eq!(hello[4], Value::bulk("proto"));
    assert_eq!(hello[5], Value::Int(2));
    let Value::Int(id) = hello[7] else { panic!("{hello:?}") };
    assert_eq!(cl.cmd(&["CLIENT", "ID"]).await.unwrap(), Value::Int(id));
    assert_eq!(cl.cmd(&["CLIENT", "GETNAME"]).await.unwrap(), Value::bulk("app1"));
    let Value::Error(e) = cl.cmd(&["HELLO", "4"]).await.unwrap() else { panic!() };
    assert!(e.starts_with("NOPROTO"), "{e}");
    let Value::Error(e) = cl.cmd(&["HELLO", "x"]).await.unwrap() else { panic!() };
    assert!(e.contains("Protocol version"), "{e}");

    assert_eq!(cl.cmd(&["CLIENT", "SETNAME", "worker-7"]).await.unwrap(), Value::ok());
    let Value::Bulk(info) = cl.cmd(&["CLIENT", "INFO"]).await.unwrap() else { panic!() };
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains(&format!("id={id} ")) && info.contains("name=worker-7"), "{info}");
    let Value::Error(e) = cl.cmd(&["CLIENT", "SETNAME", "has space"]).await.unwrap() else { panic!() };
    assert!(e.contains("cannot contain spaces"), "{e}");
    let Value::Error(e) = cl.cmd(&["CLIENT", "KILL", "ID", "1"]).await.unwrap() else { panic!() };
    assert!(e.contains("not supported by codis-proxy"), "{e}");
    let Value::Error(e) = cl.cmd(&["CLIENT", "GETNAME", "x"]).await.unwrap() else { panic!() };
    assert!(e.contains("wrong number of arguments for 'client|getname'"), "{e}");
    // another session has its own id and no name
    let mut other = c.client().await;
    other.cmd(&["AUTH", "pw"]).await.unwrap();
    assert_ne!(other.cmd(&["CLIENT", "ID"]).await.unwrap(), Value::Int(id));
    assert_eq!(other.cmd(&["CLIENT", "GETNAME"]).await.unwrap(), Value::Nil);

    // RESET: database 0, no name, logged out
    assert_eq!(cl.cmd(&["SELECT", "2"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["RESET"]).await.unwrap(), Value::Simple("RESET".into()));
    assert!(cl.cmd(&["CLIENT", "GETNAME"]).await.unwrap().is_error(), "logged out after RESET");
    assert_eq!(cl.cmd(&["AUTH", "pw"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["CLIENT", "GETNAME"]).await.unwrap(), Value::Nil);
    assert_eq!(cl.cmd(&["SET", "k", "v"]).await.unwrap(), Value::ok());
    assert_eq!(c.direct(0).await.cmd(&["GET", "k"]).await.unwrap(), Value::bulk("v"), "back in database 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_writes_codis_refused_work_on_one_group() {
    let c = Cluster::start(2).await;
    let mut cl = c.client().await;
    let a = (0..).map(|i| format!("a{i}")).find(|k| c.owner(k.as_bytes()) == 0).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|k| c.owner(k.as_bytes()) == 1).unwrap();
    assert_eq!(cl.cmd(&["SET", "{r}old", "v"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["RENAME", "{r}old", "{r}new"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["GET", "{r}new"]).await.unwrap(), Value::bulk("v"));
    assert_eq!(cl.cmd(&["RENAMENX", "{r}new", "{r}new2"]).await.unwrap(), Value::Int(1));
    assert_eq!(cl.cmd(&["MSETNX", "{m}1", "x", "{m}2", "y"]).await.unwrap(), Value::Int(1));
    assert_eq!(cl.cmd(&["MSETNX", "{m}2", "z", "{m}3", "w"]).await.unwrap(), Value::Int(0));
    assert_eq!(cl.cmd(&["SET", "{b}1", "\x0f"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["SET", "{b}2", "\x33"]).await.unwrap(), Value::ok());
    assert_eq!(cl.cmd(&["BITOP", "AND", "{b}3", "{b}1", "{b}2"]).await.unwrap(), Value::Int(1));
    assert_eq!(cl.cmd(&["GET", "{b}3"]).await.unwrap(), Value::bulk("\x03"));
    assert_eq!(cl.cmd(&["OBJECT", "ENCODING", "{r}new2"]).await.unwrap(), Value::bulk("embstr"));
    let Value::Int(n) = cl.cmd(&["MEMORY", "USAGE", "{r}new2"]).await.unwrap() else { panic!("MEMORY USAGE") };
    assert!(n > 0);
    let Value::Error(e) = cl.cmd(&["memory", "stats"]).await.unwrap() else { panic!("MEMORY STATS must be refused") };
    assert!(e.contains("'MEMORY STATS'") && e.contains("run it on the servers"), "{e}");
    // keys on two groups: refused, never half done
    assert_eq!(cl.cmd(&["SET", &a, "1"]).await.unwrap(), Value::ok());
    for cmd in [
        &["RENAME", &a, &b][..],
        &["MSETNX", &a, "1", &b, "2"],
        &["BITOP", "OR", &a, &a, &b],
        &["SORT", &a, "STORE", &b],
    ] {
        let Value::Error(e) = cl.cmd(cmd).await.unwrap() else { panic!("{cmd:?} must be refused") };
        assert!(e.starts_with("CROSSSLOT") && e.contains("hash tag"), "{e}");
    }
    assert_eq!(cl.cmd(&["EXISTS", &b]).await.unwrap(), Value::Int(0));
    assert_eq!(cl.cmd(&["GET", &a]).await.unwrap(), Value::bulk("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_replies_pass_through_per_session() {
    let c = Cluster::start(2).await;
    let mut v3 = c.client().await;
    let mut v2 = c.client().await;
    let Value::Other(hello) = v3.cmd(&["HELLO", "3"]).await.unwrap() else { panic!("HELLO 3 answers a map") };
    let hello = String::from_utf8(hello).unwrap();
    assert!(hello.starts_with("%7\r\n") && hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(v2.cmd(&["HSET", "h", "f", "v"]).await.unwrap(), Value::Int(1));
    // RESP3 types come from the server untouched; the RESP2 session keeps RESP2
    assert_eq!(v3.cmd(&["HGETALL", "h"]).await.unwrap(), Value::Other(b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n".to_vec()));
    assert_eq!(v2.cmd(&["HGETALL", "h"]).await.unwrap(), Value::Array(vec![Value::bulk("f"), Value::bulk("v")]));
    assert_eq!(v3.cmd(&["GET", "missing"]).await.unwrap(), Value::Other(b"_\r\n".to_vec()));
    assert_eq!(v3.cmd(&["CLIENT", "GETNAME"]).await.unwrap(), Value::Other(b"_\r\n".to_vec()));
    assert_eq!(v3.cmd(&["ZADD", "z", "1.5", "m"]).await.unwrap(), Value::Int(1));
    assert_eq!(v3.cmd(&["ZSCORE", "z", "m"]).await.unwrap(), Value::Other(b",1.5\r\n".to_vec()));
    // split commands merge RESP3 parts (keys on both groups)
    let a = (0..).map(|i| format!("a{i}")).find(|k| c.owner(k.as_bytes()) == 0).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|k| c.owner(k.as_bytes()) == 1).unwrap();
    assert_eq!(v3.cmd(&["SET", &a, "1"]).await.unwrap(), Value::ok());
    let Value::Array(got) = v3.cmd(&["MGET", &a, &b]).await.unwrap() else { panic!("MGET") };
    assert_eq!(got, vec![Value::bulk("1"), Value::Other(b"_\r\n".to_vec())]);
    let Value::Bulk(info) = v3.cmd(&["CLIENT", "INFO"]).await.unwrap() else { panic!() };
    assert!(String::from_utf8(info).unwrap().contains("resp=3"));
    // a transaction aborted by WATCH answers RESP3's null
    assert_eq!(v3.cmd(&["WATCH", "w"]).await.unwrap(), Value::ok());
    assert_eq!(v2.cmd(&["SET", "w", "changed"]).await.unwrap(), Value::ok());
    assert_eq!(v3.cmd(&["MULTI"]).await.unwrap(), Value::ok());
    assert_eq!(v3.cmd(&["GET", "w"]).await.unwrap(), Value::Simple("QUEUED".into()));
    assert_eq!(v3.cmd(&["EXEC"]).await.unwrap(), Value::Other(b"_\r\n".to_vec()));
    // back to RESP2: by HELLO 2, and by RESET
    let Value::Array(_) = v3.cmd(&["HELLO", "2"]).await.unwrap() else { panic!("HELLO 2 answers an array") };
    assert_eq!(v3.cmd(&["GET", "missing"]).await.unwrap(), Value::Nil);
    let Value::Other(_) = v3.cmd(&["HELLO", "3"]).await.unwrap() else { panic!() };
    assert_eq!(v3.cmd(&["RESET"]).await.unwrap(), Value::Simple("RESET".into()));
    assert_eq!(v3.cmd(&["HGETALL", "h"]).await.unwrap(), Value::Array(vec![Value::bulk("f"), Value::bulk("v")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_kill_reaches_a_busy_server() {
    let c = Cluster::start_with(2, &["--busy-reply-threshold", "100"], |_| {}).await;
    let mut busy = c.client().await;
    let mut other = c.client().await;
    // the endless script holds up the shared connection it went on; the kill must not
    // queue behind it
    busy.send(&["EVAL", "while true do end", "1", "{s}k"]).await.unwrap();
    if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(300), busy.read()).await {
        panic!("early reply {r:?}");
    }
    let reply =
        codis_testkit::wait_until("SCRIPT KILL stops the script", std::time::Duration::from_secs(10), || async {
            match c.client().await.cmd(&["SCRIPT", "KILL"]).await.unwrap() {
                Value::Simple(ok) => Some(ok),
                Value::Error(e) if e.starts_with("NOTBUSY") => None,
                other => panic!("{other:?}"),
            }
        })
        .await;
    assert_eq!(reply, "OK");
    let Value::Error(e) = busy.read().await.unwrap() else { panic!("the script must end with an error") };
    assert!(e.contains("Script killed by user"), "{e}");
    assert_eq!(other.cmd(&["GET", "{s}k"]).await.unwrap(), Value::Nil);
}
