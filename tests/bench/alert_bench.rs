//! alert-bench: how long an APC smart alert takes to be applied on every node.
//!
//! Run (release build recommended):
//!     cargo build --release --workspace --bins && target/release/alert-bench [ROUNDS]
//! A 5-node cluster on loopback; node 1 drives a Smart-UPS simulator on a pty with the
//! apcsmart driver and a 10 s poll, so only the alert path can be fast. Each round
//! fails or restores mains in the simulator, which sends `!` or `$` on its own, and the
//! bench waits until every node's Watch stream delivers `powerout` or `mainsback`. The
//! latency includes the simulator's own reaction (it checks its state every ~20 ms),
//! the driver's re-poll of all volatile values, the monitor, the Raft commit and the
//! apply on every node.

use std::time::{Duration, Instant};

use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{ClusterSpec, EventWatch, TestCluster, percentile};

async fn run(rounds: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUPS");
    let sim = SmartUps::start(SmartUpsOptions::new(&link)).expect("pty simulator");
    let nodes = 5;
    let c = tokio::task::block_in_place(|| {
        let c = TestCluster::start(ClusterSpec {
            nodes,
            voters: 3,
            ups_on: vec![],
            ups_toml: vec![(
                1,
                format!(
                    "[[ups]]\nname = \"smart1\"\ndriver = \"apcsmart\"\ndevice = \"{}\"\npoll_interval_ms = 10000\n",
                    link.display()
                ),
            )],
            faults: false,
            ..Default::default()
        });
        c.wait_formed(1, 3, 2, Duration::from_secs(120));
        c
    });
    let mut watch = EventWatch::start(&c, nodes).await;
    // Let the owner's first report (after the link's discovery) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.clear();
    let mut every = Vec::new();
    for r in 0..rounds {
        let fail = r % 2 == 0;
        let want = if fail { "powerout" } else { "mainsback" };
        let t0 = Instant::now();
        sim.mains(fail);
        let delays = watch.until_all(want, t0, Duration::from_secs(9)).await;
        every.extend(delays.last());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(watch);
    drop(c);
    every.sort_by(f64::total_cmp);
    every
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let every = rt.block_on(run(rounds));
    println!(
        "| 5 nodes (3 voters), apcsmart on a pty, poll 10 s | alert -> applied on every node ({rounds} rounds) | p50 {:.0} ms | p99 {:.0} ms |",
        percentile(&every, 50.0),
        percentile(&every, 99.0)
    );
}
