//! cluster-bench: how long a UPS change takes to be applied on every node of a cluster
//! of real `upsilond` processes on loopback, and where the time goes.
//!
//! Run (release build):
//!     cargo build --release --workspace --bins && target/release/cluster-bench [ROUNDS] [NODES...]
//! (default: 40 rounds on 5, 25 and 100 nodes). Every node has the daemon's default
//! timing. The UPS is a simulated one on the *last* node, a learner, so every change
//! is forwarded to the leader as on most members of a real cluster. The `sim` driver
//! reads a change back at once (as apcsmart does after an alert), so the time is the
//! pipeline's: each round toggles mains through the admin API and waits until every
//! node's `Watch` stream delivers `powerout` or `mainsback`. The nodes' latency trace
//! points (`UPSILON_LOG=...,upsilon::latency=trace`: microsecond wall-clock stamps,
//! one machine so one clock) split each round into its stages.
//! `CLUSTER_BENCH_STORES=learners-tmpfs` (or `tmpfs`) puts the learners' (or every
//! node's) Raft store on /dev/shm, to tell the pipeline's cost from the cost of every
//! node's flushes queueing on this machine's one disk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;
use upsilon_tests::proc_stats::ProcStats;
use upsilon_tests::{ClusterSpec, EventWatch, percentile};

/// One latency trace line of a node's log.
struct Mark {
    kind: &'static str,
    index: Option<u64>,
    t_us: i64,
    /// On "committed": when the leader proposed the entry.
    proposed_us: Option<i64>,
    /// On "appended": how long the write and its flush took.
    took_us: Option<i64>,
}

const KINDS: [&str; 6] = [
    "latency appended",
    "latency report queued",
    "latency report sent",
    "latency report written",
    "latency committed",
    "latency applied",
];

fn marks(log: &std::path::Path) -> Vec<Mark> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, name: &str| -> Option<i64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    text.lines()
        .filter_map(|l| {
            let kind = KINDS.iter().find(|k| l.contains(*k))?;
            Some(Mark {
                kind,
                index: field(l, "index").map(|i| i as u64),
                t_us: field(l, "t_us")?,
                proposed_us: field(l, "proposed_us"),
                took_us: field(l, "took_us"),
            })
        })
        .collect()
}

fn now_us() -> i64 {
    upsilon_core::time::now_us()
}

/// Per stage, the milliseconds of every round.
#[derive(Default)]
struct Stages {
    every: Vec<f64>,
    one: Vec<f64>,
    parts: Vec<(&'static str, Vec<f64>)>,
    /// CPU time of all nodes together per change, above their idle rate.
    cpu_per_change_ms: f64,
}

impl Stages {
    fn add(&mut self, name: &'static str, ms: f64) {
        match self.parts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(ms),
            None => self.parts.push((name, vec![ms])),
        }
    }
}

/// Where the nodes keep their Raft stores (`CLUSTER_BENCH_STORES`).
#[derive(Clone, Copy, PartialEq)]
enum Stores {
    /// Every store on the machine's one disk: every node's flush queues behind the
    /// others' (the default).
    Disk,
    /// The learners' stores on tmpfs, the voters' on the disk: the commit waits for
    /// real flushes, but on five disk users, not on every node of the cluster.
    LearnersTmpfs,
    /// Every store on tmpfs: no disk at all, the pipeline's own cost.
    Tmpfs,
}

async fn run(nodes: usize, voters: usize, rounds: usize, stores: Stores) -> Stages {
    let owner = nodes;
    let shm = tempfile::Builder::new()
        .prefix("cluster-bench")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm");
    let stores_on_shm = (1..=nodes)
        .filter(|i| stores == Stores::Tmpfs || (stores == Stores::LearnersTmpfs && *i > voters));
    let spec = stores_on_shm.fold(
        ClusterSpec::new(nodes, voters)
            .ups_on(&[owner])
            .poll_ms(1000)
            .timing("")
            .no_faults(),
        |spec, i| spec.data_dir(i, shm.path().join(format!("data-n{i}"))),
    );
    let c = tokio::task::block_in_place(|| spec.start_formed_within(Duration::from_secs(600)));
    let mut watch = EventWatch::start(&c, nodes).await;
    let mut admin = AdminServiceClient::new(
        rpc::connect(&c.operator_options(owner))
            .await
            .expect("connect"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.clear();

    let mut st = Stages::default();
    let mut starts = Vec::new();
    // CPU of every node, idle (3 s) and over the rounds: what one change costs the
    // whole cluster, against the cores this machine has.
    let pids: Vec<u32> = c.nodes.iter().flatten().map(|n| n.child.id()).collect();
    let cpu_ns = || -> u64 { pids.iter().map(|p| ProcStats::read(*p).cpu_ns).sum() };
    let (idle_from, idle_t) = (cpu_ns(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rate = (cpu_ns() - idle_from) as f64 / idle_t.elapsed().as_secs_f64();
    let (busy_from, busy_t) = (cpu_ns(), Instant::now());
    for r in 0..rounds {
        let on_battery = r % 2 == 0;
        let want = if on_battery { "powerout" } else { "mainsback" };
        let t0_us = now_us();
        let t0 = Instant::now();
        admin
            .sim_set(pb::SimSetRequest {
                on_battery: Some(on_battery),
                ..Default::default()
            })
            .await
            .expect("sim set");
        st.add(
            "0. the admin call that makes the change, answered (bench side; within 1)",
            t0.elapsed().as_secs_f64() * 1000.0,
        );
        let delays = watch.until_all(want, t0, Duration::from_secs(30)).await;
        st.every.extend(delays.last());
        st.one.extend(delays.first());
        starts.push((t0_us, *delays.last().unwrap_or(&0.0)));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let busy = (cpu_ns() - busy_from) as f64 - idle_rate * busy_t.elapsed().as_secs_f64();
    st.cpu_per_change_ms = busy.max(0.0) / rounds.max(1) as f64 / 1e6;
    drop(admin);
    drop(watch);

    // The breakdown, from every node's trace points.
    let logs: Vec<Vec<Mark>> = (1..=nodes)
        .map(|i| marks(&c.pki.path().join(format!("n{i}.log"))))
        .collect();
    let mut committed: HashMap<u64, (i64, i64)> = HashMap::new();
    let mut applied: HashMap<u64, Vec<i64>> = HashMap::new();
    for l in &logs {
        for m in l {
            match (m.kind, m.index) {
                ("latency committed", Some(i)) => {
                    committed.insert(i, (m.proposed_us.unwrap_or(m.t_us), m.t_us));
                }
                ("latency applied", Some(i)) => applied.entry(i).or_default().push(m.t_us),
                _ => {}
            }
        }
    }
    // Every log append of every node during the rounds: the write and its fsync.
    let first_us = starts.first().map_or(0, |s| s.0);
    for l in &logs {
        for m in l
            .iter()
            .filter(|m| m.kind == "latency appended" && m.t_us >= first_us)
        {
            if let Some(t) = m.took_us {
                st.add(
                    "(any node) one log append: sled write and flush",
                    t as f64 / 1000.0,
                );
            }
        }
    }
    let own = &logs[owner - 1];
    let ms = |a: i64, b: i64| (b - a) as f64 / 1000.0;
    for (t0_us, every_ms) in starts {
        let after = |kind: &str, t: i64| own.iter().find(|m| m.kind == kind && m.t_us >= t);
        let Some(q) = after("latency report queued", t0_us) else {
            continue;
        };
        let Some(s) = after("latency report sent", q.t_us) else {
            continue;
        };
        let Some(w) = after("latency report written", s.t_us) else {
            continue;
        };
        let Some(index) = w.index else { continue };
        let (Some((pt, ct)), Some(ap)) = (committed.get(&index), applied.get(&index)) else {
            continue;
        };
        let last_apply = ap.iter().copied().max().unwrap_or(*ct);
        st.add(
            "1. sim change, poll and monitor on the owner",
            ms(t0_us, q.t_us),
        );
        st.add(
            "2. owner's reporter picks the report up",
            ms(q.t_us, s.t_us),
        );
        st.add("3. forward to the leader", ms(s.t_us, *pt));
        st.add(
            "4. append, replicate to a quorum, commit, apply on the leader",
            ms(*pt, *ct),
        );
        st.add(
            "5. commit on the leader -> applied on the last node (fan-out)",
            ms(*ct, last_apply),
        );
        st.add(
            "6. applied -> delivered by Watch (the last node's, bench side)",
            every_ms - ms(t0_us, last_apply),
        );
    }
    if st.parts.is_empty() {
        let text =
            std::fs::read_to_string(c.pki.path().join(format!("n{owner}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("no latency trace points matched; the owner's log ends:");
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
    drop(c);
    for v in [&mut st.every, &mut st.one] {
        v.sort_by(f64::total_cmp);
    }
    for (_, v) in &mut st.parts {
        v.sort_by(f64::total_cmp);
    }
    st
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let mut sizes: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![5, 25, 100];
    }
    // SAFETY: set before the runtime or any other thread exists.
    unsafe {
        std::env::set_var(
            "UPSILON_TEST_LOG",
            "info,openraft=warn,upsilon::latency=trace",
        )
    };
    let stores = match std::env::var("CLUSTER_BENCH_STORES").as_deref() {
        Ok("learners-tmpfs") => Stores::LearnersTmpfs,
        Ok("tmpfs") => Stores::Tmpfs,
        Ok("disk") | Err(_) => Stores::Disk,
        Ok(other) => {
            eprintln!("CLUSTER_BENCH_STORES={other}: use disk, learners-tmpfs or tmpfs");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "cluster-bench: {rounds} mains toggles per cluster, sim UPS on the last node (a learner), default timing, Raft stores: {}\n",
        match stores {
            Stores::Disk => "all on the disk",
            Stores::LearnersTmpfs => "voters on the disk, learners on tmpfs",
            Stores::Tmpfs => "all on tmpfs",
        }
    );
    for nodes in sizes {
        let voters = if nodes <= 5 { 3 } else { 5 };
        let st = rt.block_on(run(nodes, voters, rounds, stores));
        let row = |what: &str, v: &[f64]| {
            println!(
                "| {nodes} nodes ({voters} voters) | {what} | {:.1} ms | {:.1} ms |",
                percentile(v, 50.0),
                percentile(v, 99.0)
            )
        };
        println!("| cluster | measure | p50 | p99 |\n|---|---|---|---|");
        row("change -> applied on every node (Watch)", &st.every);
        row("change -> applied on the first node (Watch)", &st.one);
        for (name, v) in &st.parts {
            row(name, v);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "\nCPU of all {nodes} nodes per change, above idle: {:.1} ms, {:.1} ms of wall time on this machine's {cores} cores at best (the bench's own share not counted)\n",
            st.cpu_per_change_ms,
            st.cpu_per_change_ms / cores as f64
        );
    }
}
