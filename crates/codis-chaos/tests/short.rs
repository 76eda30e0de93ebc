//! The consistency checker's short mode, run in CI: one round of every fault (migrate,
//! kill -9 a proxy, rebalance, kill -9 a master, kill -9 the dashboard, freeze etcd)
//! under load on real processes; no acknowledged write may be lost except to the master
//! crash, no read may be stale, no write applied twice.

use std::time::Duration;

use codis_chaos::cluster::Cluster;
use codis_chaos::{Options, run, run_with};
use codis_client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_of_every_fault_loses_nothing() {
    let o = Options {
        duration: Duration::from_secs(30), // whole cycles until then: two on a quick machine
        clients: 6,
        keys: 16,
        pause: Duration::from_millis(5),
        quiet: Duration::from_secs(1),
        ..Default::default()
    };
    let report = run(o).await.expect("the chaos run");
    println!("{report}");
    assert!(report.faults.len() >= codis_chaos::faults::CYCLE.len(), "every fault ran and healed");
    assert!(report.tally.writes_acked > 1000, "the clients wrote: {}", report.tally.writes_acked);
    assert!(report.tally.reads_ok > 500, "the clients read: {}", report.tally.reads_ok);
    assert!(report.passed(), "{report}");
}

/// The checker can fail: keys deleted behind the proxies' back, after the clients
/// stopped, are reported as lost writes (no crash explains them) and fail the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_removed_behind_the_proxies_are_reported_lost() {
    let o = Options {
        duration: Duration::ZERO,
        clients: 2,
        keys: 4,
        pause: Duration::from_millis(2),
        quiet: Duration::from_secs(2),
        cycle: Vec::new(),
        ..Default::default()
    };
    let report = run_with(o, async |c: &Cluster| {
        for (_, master) in c.masters().await.expect("masters") {
            let mut m = Client::connect(&master).await.expect("connect to a master");
            m.cmd(&["DEL", "chaos:c:0:0", "chaos:l:0:0"]).await.expect("DEL");
        }
    })
    .await
    .expect("the run");
    println!("{report}");
    assert!(report.tally.writes_acked > 100, "the clients wrote: {}", report.tally.writes_acked);
    assert!(report.tally.lost >= 2, "a counter and a list element at least: {report}");
    assert_eq!(report.tally.lost_to_crash, 0);
    assert!(report.tally.findings.iter().any(|f| f.contains("chaos:c:0:0")), "{:?}", report.tally.findings);
    assert!(!report.passed());
}
