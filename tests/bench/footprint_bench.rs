//! footprint-bench: what an idle node costs with the default settings: resident memory
//! (what it allocated and the file pages of its binary and libraries), threads, open
//! files and CPU, for a standalone node with one UPS and for the leader, a follower
//! voter and a learner of a 5-node and a 25-node cluster.
//!
//! Run (release build):
//!     cargo build --release --workspace --bins && target/release/footprint-bench [IDLE_SECONDS]
//! Every node uses the daemon's default timing (`heartbeat_ms` 1000, election timeout
//! 750 ms) and a simulated UPS polled at the default interval; the CPU is measured over
//! IDLE_SECONDS (default 30) once the cluster has formed and settled.
//!
//! For comparisons: `FOOTPRINT_ONLY=25` measures one cluster size only,
//! `FOOTPRINT_TIMING='election_timeout_ms = 2000'` replaces the default `[cluster]`
//! timing, `FOOTPRINT_PERF=DIR` records `perf record -g` of each measured node into DIR,
//! `FOOTPRINT_DETAIL=1` lists a voter's largest mappings and its threads.

use std::time::Duration;

use upsilon_tests::proc_stats::{ProcStats, cpu_percent, smaps_breakdown, smaps_mappings};
use upsilon_tests::{ClusterSpec, NodeProc, TestPki};

/// One table row: memory, threads and fds at the end, CPU between the two readings.
fn row(what: &str, before: &ProcStats, after: &ProcStats, idle: Duration) {
    println!(
        "| {what} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {:.2} % |",
        after.rss_mib(),
        after.anon_kib as f64 / 1024.0,
        after.file_kib as f64 / 1024.0,
        after.threads,
        after.fds,
        cpu_percent(before, after, idle)
    );
}

fn breakdown(what: &str, pid: u32) {
    let parts: Vec<String> = smaps_breakdown(pid)
        .into_iter()
        .take(6)
        .map(|(n, k)| format!("{n} {:.1}", k as f64 / 1024.0))
        .collect();
    println!("    {what}: {} (MiB)", parts.join(", "));
}

fn cluster(nodes: usize, voters: usize, idle: Duration) {
    let c = ClusterSpec::new(nodes, voters)
        .poll_ms(1000)
        // FOOTPRINT_TIMING: other [cluster] timing keys, to compare with the defaults.
        .timing(
            &std::env::var("FOOTPRINT_TIMING")
                .unwrap_or_default()
                .replace("\\n", "\n"),
        )
        .no_faults()
        .start_formed_within(Duration::from_secs(180));
    // Settle: elections, promotions and the first snapshot are over.
    std::thread::sleep(Duration::from_secs(10));
    let leader = c.writable_leader(1).unwrap_or(1) as usize;
    let follower = (1..=voters).find(|i| *i != leader).unwrap_or(2);
    let pid = |i: usize| c.nodes[i - 1].as_ref().unwrap().child.id();
    let mut picks = vec![
        (format!("{nodes} nodes: n{leader} (leader)"), pid(leader)),
        (format!("{nodes} nodes: n{follower} (voter)"), pid(follower)),
        (format!("{nodes} nodes: n{nodes} (learner)"), pid(nodes)),
    ];
    picks.dedup_by_key(|p| p.1);
    // Measured one after the other would take 3x as long; the idle cost does not change.
    let before: Vec<ProcStats> = picks.iter().map(|(_, p)| ProcStats::read(*p)).collect();
    let perf: Vec<std::process::Child> = match std::env::var("FOOTPRINT_PERF") {
        Ok(dir) => picks
            .iter()
            .enumerate()
            .filter_map(|(k, (_, p))| {
                std::process::Command::new("perf")
                    .args(["record", "-g", "-o"])
                    .arg(format!("{dir}/perf-{nodes}-{k}.data"))
                    .args(["-p", &p.to_string(), "--", "sleep"])
                    .arg(idle.as_secs().to_string())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    std::thread::sleep(idle);
    for mut p in perf {
        let _ = p.wait();
    }
    for ((what, p), b) in picks.iter().zip(before) {
        row(what, &b, &ProcStats::read(*p), idle);
    }
    for (what, p) in &picks {
        breakdown(what, *p);
    }
    if std::env::var_os("FOOTPRINT_DETAIL").is_some() {
        detail(picks[1].1);
    }
}

/// The largest anonymous mappings and the threads of one process (FOOTPRINT_DETAIL=1).
fn detail(pid: u32) {
    let mut maps: Vec<(u64, String)> = smaps_mappings(pid)
        .into_iter()
        .map(|(head, kib)| (kib, head))
        .collect();
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (k, h) in maps.iter().take(15) {
        println!("    {k:>6} kB  {h}");
    }
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    names.sort();
    println!("    threads: {}", names.join(", "));
}

fn main() {
    let idle = Duration::from_secs(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(30),
    );
    println!(
        "footprint-bench: idle nodes, default settings, CPU over {} s\n",
        idle.as_secs()
    );
    println!(
        "| node | RSS | allocated (anon) | files (binary, libs) | threads | fds | CPU (one core) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let only: Option<usize> = std::env::var("FOOTPRINT_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(n) = only {
        cluster(n, if n <= 5 { 3 } else { 5 }, idle);
        return;
    }
    {
        let pki = TestPki::new();
        let n = NodeProc::start(
            &pki,
            "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\n\n[executor]\nrecord_file = \"record.jsonl\"\n",
        );
        std::thread::sleep(Duration::from_secs(5));
        let before = ProcStats::read(n.child.id());
        std::thread::sleep(idle);
        let after = ProcStats::read(n.child.id());
        row("standalone, one sim UPS", &before, &after, idle);
        breakdown("standalone", n.child.id());
    }
    cluster(5, 3, idle);
    if std::env::var_os("FOOTPRINT_DETAIL").is_some() {
        return;
    }
    cluster(25, 5, idle);
}
