//! Test-only fault injection for partitions between real processes.
//!
//! When `UPSILON_FAULT_FILE` names a file, every outgoing node-to-node connection and
//! Raft call first checks it: a target whose `host:port` (or host) is listed on a line
//! is treated as unreachable. Giving each side of a partition the other side's
//! addresses cuts the link both ways; emptying the files heals it. Without the variable
//! this costs one environment lookup.

/// Whether connections to `target` (`host:port`) are blocked right now.
pub fn blocked(target: &str) -> bool {
    let Some(path) = std::env::var_os("UPSILON_FAULT_FILE") else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    text.lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && (l == target || l == host))
}
