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

use upsilon_node::client;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_client::PowerServiceClient;
use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{ClusterSpec, TestCluster, percentile};

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
            ..Default::default()
        });
        c.wait_formed(1, 3, 2, Duration::from_secs(120));
        c
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String, Instant)>();
    let mut watchers = Vec::new();
    for i in 1..=nodes {
        let o = c.operator_options(i);
        let mut api = PowerServiceClient::new(client::connect(&o).await.expect("connect"));
        let mut stream = api
            .watch(pb::WatchRequest {})
            .await
            .expect("watch")
            .into_inner();
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Ok(Some(u)) = stream.message().await {
                if let Some(pb::watch_update::Update::Event(e)) = u.update {
                    let _ = tx.send((i, e.name, Instant::now()));
                }
            }
        }));
    }
    // Let the owner's first report (after the link's discovery) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    while rx.try_recv().is_ok() {}
    let mut every = Vec::new();
    for r in 0..rounds {
        let fail = r % 2 == 0;
        let want = if fail { "powerout" } else { "mainsback" };
        let t0 = Instant::now();
        sim.mains(fail);
        let mut seen = vec![false; nodes + 1];
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
        while got < nodes {
            let Ok(Some((i, name, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                panic!("round {r}: only {got} of {nodes} nodes applied {want} within 9 s");
            };
            if name == want && !seen[i] {
                seen[i] = true;
                got += 1;
                if got == nodes {
                    every.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for w in watchers {
        w.abort();
    }
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
