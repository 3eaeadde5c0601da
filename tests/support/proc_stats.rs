//! What a process costs, read from `/proc`: resident memory (split into what it
//! allocated and the file pages it maps, its binary and libraries), threads, open file
//! descriptors and CPU time. For the benches; never asserted in a test.

use std::time::Duration;

/// One reading of `/proc/<pid>`.
#[derive(Debug, Clone, Default)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub threads: u64,
    pub fds: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// CPU time of all its threads in nanoseconds (`schedstat`): fine enough for a
    /// daemon that uses less than a tick a minute.
    pub cpu_ns: u64,
}

impl ProcStats {
    pub fn read(pid: u32) -> ProcStats {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may contain spaces) start after ')';
        // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        let cpu_ns = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        ProcStats {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
            threads: field("Threads:"),
            fds,
            cpu_ticks: ticks(11) + ticks(12),
            cpu_ns,
        }
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPU used between two readings over `over`, in percent of one core (from the
/// threads' nanosecond counters; clock ticks where those are missing).
pub fn cpu_percent(before: &ProcStats, after: &ProcStats, over: Duration) -> f64 {
    let secs = if after.cpu_ns > 0 {
        after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9
    } else {
        after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / clock_ticks()
    };
    secs / over.as_secs_f64() * 100.0
}

/// Every mapping of `/proc/<pid>/smaps`: its header line and its resident kiB.
pub fn smaps_mappings(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = Vec::new();
    let mut head = "";
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            head = line;
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            out.push((head.to_string(), kib));
        }
    }
    out
}

/// Resident kiB per mapping kind from `/proc/<pid>/smaps`: the binary, shared libraries,
/// the heap (main arena), other anonymous memory (thread arenas and stacks).
pub fn smaps_breakdown(pid: u32) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for (head, kib) in smaps_mappings(pid) {
        let name = head.split_whitespace().nth(5).unwrap_or("");
        let kind = if name.is_empty() {
            "anonymous (thread arenas, stacks)".to_string()
        } else if name.starts_with('[') {
            name.to_string()
        } else {
            name.rsplit('/').next().unwrap_or(name).to_string()
        };
        match out.iter_mut().find(|(n, _)| *n == kind) {
            Some((_, k)) => *k += kib,
            None => out.push((kind, kib)),
        }
    }
    out.retain(|(_, k)| *k > 0);
    out.sort_by_key(|e| std::cmp::Reverse(e.1));
    out
}
