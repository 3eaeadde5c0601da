//! cluster-bench: how long a simulated UPS change takes to be applied on every node,
//! for 5 and 25 real `upsilond` processes on loopback, and what one idle node costs.
//!
//! Run (release build recommended):
//!     cargo build --release --workspace --bins && target/release/cluster-bench [ROUNDS]
//! Each round toggles mains on the UPS owner (node 1) through the admin API and waits
//! until every node's Watch stream delivers the resulting event (`powerout` or
//! `mainsback`): the latency includes the owner's poll interval (100 ms), the monitor,
//! the Raft commit and the apply on every node.

use std::time::{Duration, Instant};

use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;
use upsilon_tests::{ClusterSpec, EventWatch, TestCluster, percentile};

struct ProcStats {
    rss_kib: u64,
    cpu_ticks: u64,
}

fn proc_stats(pid: u32) -> ProcStats {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after ')'.
    ProcStats {
        rss_kib,
        cpu_ticks: ticks(11) + ticks(12),
    }
}

async fn run(nodes: usize, voters: usize, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let c = tokio::task::block_in_place(|| {
        let c = TestCluster::start(ClusterSpec {
            nodes,
            voters,
            ups_on: vec![1],
            extra: String::new(),
            poll_ms: 100,
            ..Default::default()
        });
        c.wait_formed(
            1,
            voters as u64,
            (nodes - voters) as u64,
            Duration::from_secs(120),
        );
        c
    });
    let mut watch = EventWatch::start(&c, nodes).await;
    let o1 = c.operator_options(1);
    let mut admin = AdminServiceClient::new(rpc::connect(&o1).await.expect("connect"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.clear();

    let mut every = Vec::new();
    let mut each = Vec::new();
    for r in 0..rounds {
        let on_battery = r % 2 == 0;
        let want = if on_battery { "powerout" } else { "mainsback" };
        let t0 = Instant::now();
        admin
            .sim_set(pb::SimSetRequest {
                on_battery: Some(on_battery),
                ..Default::default()
            })
            .await
            .expect("sim set");
        let delays = watch.until_all(want, t0, Duration::from_secs(20)).await;
        every.extend(delays.last());
        each.extend(delays);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(admin);

    // Idle cost: mains on, nothing changing, for 10 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let clk: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let pids: Vec<(String, u32)> = [(1, "leader, UPS owner"), (nodes, "learner")]
        .iter()
        .map(|(i, what)| {
            (
                format!("n{i} ({what})"),
                c.nodes[i - 1].as_ref().unwrap().child.id(),
            )
        })
        .collect();
    let before: Vec<ProcStats> = pids.iter().map(|(_, p)| proc_stats(*p)).collect();
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    for ((name, pid), b) in pids.iter().zip(before) {
        let a = proc_stats(*pid);
        let cpu = (a.cpu_ticks - b.cpu_ticks) as f64 / clk / idle.as_secs_f64() * 100.0;
        println!(
            "| {nodes} nodes | idle {name} | RSS {:.1} MiB | CPU {cpu:.2} % of one core |",
            a.rss_kib as f64 / 1024.0
        );
    }
    drop(watch);
    drop(c);
    every.sort_by(f64::total_cmp);
    each.sort_by(f64::total_cmp);
    (every, each)
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
    println!("cluster-bench: {rounds} mains toggles per cluster size, UPS poll 100 ms\n");
    println!("| cluster | measure | value | |\n|---|---|---|---|");
    for (nodes, voters) in [(5, 3), (25, 5)] {
        let (every, each) = rt.block_on(run(nodes, voters, rounds));
        println!(
            "| {nodes} nodes ({voters} voters) | change -> applied on every node | p50 {:.0} ms | p99 {:.0} ms |",
            percentile(&every, 50.0),
            percentile(&every, 99.0)
        );
        println!(
            "| {nodes} nodes ({voters} voters) | change -> applied on one node | p50 {:.0} ms | p99 {:.0} ms |",
            percentile(&each, 50.0),
            percentile(&each, 99.0)
        );
    }
}
