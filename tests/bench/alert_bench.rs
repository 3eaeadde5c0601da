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

use std::time::Duration;

use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{ClusterSpec, EventWatch, mains_round_trips, percentile};

async fn run(rounds: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUPS");
    let sim = SmartUps::start(SmartUpsOptions::new(&link)).expect("pty simulator");
    let nodes = 5;
    let c = tokio::task::block_in_place(|| {
        let c = ClusterSpec::new(nodes, 3)
            .ups_toml(
                1,
                format!(
                    "[[ups]]\nname = \"smart1\"\ndriver = \"apcsmart\"\ndevice = \"{}\"\npoll_interval_ms = 10000\n",
                    link.display()
                ),
            )
            .no_faults()
            .start_formed_within(Duration::from_secs(120));
        // The owner's first report (after the link's discovery) is in everywhere.
        c.wait_ups_everywhere("ONLINE", Duration::from_secs(60));
        c
    });
    let mut watch = EventWatch::start(&c, nodes).await;
    let mut every = mains_round_trips(&mut watch, rounds, Duration::from_millis(500), |fail| {
        sim.mains(fail)
    })
    .await;
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
