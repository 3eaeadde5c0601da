//! soak-bench: weeks of a cluster's log in minutes. A 5-node cluster (3 voters, 2
//! learners; the default snapshot policy) takes heartbeats at 10 per second
//! (`heartbeat_ms = 100`) while a bridge's "legacy host seen" reports, WRITERS at a time,
//! add as many entries as the cluster commits. Every interval it prints each node's
//! data directory size, RSS and open file descriptors, and the commit index; at the
//! end, the first and last reading side by side. With `--kill`, one node (in turn,
//! the leader included) is SIGKILLed and restarted every minute.
//!
//! Run (release build):
//!     cargo build --release --workspace --bins && target/release/soak-bench [MINUTES] [--kill]

use std::time::{Duration, Instant};

use upsilon_client::pki::{IssueRequest, Role};
use upsilon_client::rpc::{self, ClientOptions};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::bridge_service_client::BridgeServiceClient;
use upsilon_tests::proc_stats::ProcStats;
use upsilon_tests::{ClusterSpec, TestCluster};

const WRITERS: usize = 48;
const HOSTS: usize = 16;

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Clone)]
struct Sample {
    at_s: u64,
    index: u64,
    /// Per node: data dir bytes, RSS kiB, fds.
    nodes: Vec<(u64, u64, u64)>,
}

fn sample(c: &TestCluster, start: Instant) -> Sample {
    let index = (1..=c.nodes.len())
        .filter(|i| c.nodes[i - 1].is_some())
        .find_map(|i| c.status(i)?["cluster"]["last_applied"].as_u64())
        .unwrap_or(0);
    let nodes = (1..=c.nodes.len())
        .map(|i| {
            let dir = c.pki.path().join(format!("data-n{i}"));
            let p = c.nodes[i - 1]
                .as_ref()
                .map(|n| ProcStats::read(n.child.id()))
                .unwrap_or_default();
            (dir_size(&dir), p.rss_kib, p.fds)
        })
        .collect();
    Sample {
        at_s: start.elapsed().as_secs(),
        index,
        nodes,
    }
}

fn print(s: &Sample) {
    let cells: Vec<String> = s
        .nodes
        .iter()
        .map(|(d, r, f)| {
            format!(
                "{:.1} MiB / {:.1} MiB / {f}",
                *d as f64 / 1048576.0,
                *r as f64 / 1024.0
            )
        })
        .collect();
    println!("| {} s | {} | {} |", s.at_s, s.index, cells.join(" | "));
}

/// One writer: "legacy host seen" reports on the leader, back to back.
async fn writer(opts: ClientOptions, nodes: Vec<String>, host: String, stop: Instant) -> u64 {
    let mut at = nodes[0].clone();
    let mut n = 0u64;
    let mut client = None;
    while Instant::now() < stop {
        if client.is_none() {
            let o = ClientOptions {
                endpoint: at.clone(),
                ..opts.clone()
            };
            match rpc::connect(&o).await {
                Ok(ch) => client = Some(BridgeServiceClient::new(ch)),
                Err(_) => {
                    at = nodes[(n as usize + 1) % nodes.len()].clone();
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected above");
        let r = c
            .report_host(pb::ReportHostRequest {
                name: host.clone(),
                state: pb::LegacyHostState::Polling as i32,
                notice: String::new(),
            })
            .await;
        match r {
            Ok(_) => n += 1,
            Err(s) => {
                client = None;
                match rpc::leader_named(&s) {
                    Some(l) => at = l,
                    None => {
                        at = nodes[(n as usize + 1) % nodes.len()].clone();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10);
    let kill = args.iter().any(|a| a == "--kill");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = ClusterSpec::new(5, 3)
        .poll_ms(100)
        .timing("heartbeat_ms = 100\nstale_after_ms = 1000\nelection_timeout_ms = 500")
        .no_faults()
        .start_formed_within(Duration::from_secs(60));
    c.pki
        .issue(&IssueRequest::new("bridge1", Role::Bridge, vec![], 30));
    let (ca, cert, key) = c.pki.files("bridge1");
    let opts = ClientOptions {
        endpoint: c.addr(1).to_string(),
        ca,
        identity: Some((cert, key)),
    };
    let nodes: Vec<String> = (1..=5).map(|i| c.addr(i).to_string()).collect();
    rt.block_on(async {
        let hosts: Vec<pb::LegacyHostDecl> = (0..HOSTS)
            .map(|h| pb::LegacyHostDecl {
                name: format!("legacy{h}"),
                addresses: vec![format!("127.0.9.{}", h + 1)],
                feeds: vec!["ups1".into()],
                protocol: "nis".into(),
                min_supplies: 1,
                ..Default::default()
            })
            .collect();
        rpc::on_leader(&opts, |ch| {
            let hosts = hosts.clone();
            async move {
                BridgeServiceClient::new(ch)
                    .declare_hosts(pb::DeclareHostsRequest {
                        hosts,
                        runs_on: String::new(),
                    })
                    .await
            }
        })
        .await
        .expect("declare the legacy hosts");
    });
    println!(
        "soak-bench: 5 nodes, heartbeat_ms 100, {WRITERS} writers, {minutes} min{}\n",
        if kill {
            ", one node SIGKILLed and restarted every minute"
        } else {
            ""
        }
    );
    println!(
        "| time | commit index | n1 data / RSS / fds | n2 | n3 | n4 | n5 |\n|---|---|---|---|---|---|---|"
    );
    let start = Instant::now();
    let stop = start + Duration::from_secs(minutes * 60);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            rt.spawn(writer(
                opts.clone(),
                nodes.clone(),
                format!("legacy{}", w % HOSTS),
                stop,
            ))
        })
        .collect();
    let first = sample(&c, start);
    print(&first);
    let mut samples = vec![first];
    let mut next_kill = start + Duration::from_secs(60);
    let mut victim = 0usize;
    while Instant::now() < stop {
        std::thread::sleep(Duration::from_secs(30));
        if kill && Instant::now() >= next_kill && Instant::now() + Duration::from_secs(20) < stop {
            let i = victim % 5 + 1;
            victim += 1;
            c.kill(i);
            std::thread::sleep(Duration::from_secs(2));
            c.start_node(i);
            println!(
                "| {} s | SIGKILL n{i}, restarted | | | | | |",
                start.elapsed().as_secs()
            );
            next_kill += Duration::from_secs(60);
        }
        let s = sample(&c, start);
        print(&s);
        samples.push(s);
    }
    let written: u64 = rt.block_on(async {
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap_or(0);
        }
        n
    });
    std::thread::sleep(Duration::from_secs(3));
    let last = sample(&c, start);
    print(&last);
    let (a, b) = (&samples[samples.len().min(2) - 1], &last);
    println!(
        "\nentries: {} committed in {} s ({:.0}/s; {written} bridge reports acknowledged)",
        b.index,
        b.at_s,
        b.index as f64 / b.at_s.max(1) as f64
    );
    println!(
        "| node | data dir at {} s -> end (max) | RSS at {} s -> end (max) | fds at {} s -> end (max) |",
        a.at_s, a.at_s, a.at_s
    );
    println!("|---|---|---|---|");
    for i in 0..5 {
        let max = |f: fn(&(u64, u64, u64)) -> u64| {
            samples
                .iter()
                .chain([b])
                .map(|s| f(&s.nodes[i]))
                .max()
                .unwrap_or(0)
        };
        println!(
            "| n{} | {:.1} -> {:.1} MiB ({:.1}) | {:.1} -> {:.1} MiB ({:.1}) | {} -> {} ({}) |",
            i + 1,
            a.nodes[i].0 as f64 / 1048576.0,
            b.nodes[i].0 as f64 / 1048576.0,
            max(|n| n.0) as f64 / 1048576.0,
            a.nodes[i].1 as f64 / 1024.0,
            b.nodes[i].1 as f64 / 1024.0,
            max(|n| n.1) as f64 / 1024.0,
            a.nodes[i].2,
            b.nodes[i].2,
            max(|n| n.2),
        );
    }
}
