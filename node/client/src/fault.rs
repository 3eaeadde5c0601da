//! Test-only fault injection for partitions between real processes, compiled only with
//! the `fault-injection` feature (the test suite's build; never the shipped binaries,
//! where every function here is a constant the compiler removes from the Raft path).
//!
//! When `UPSILON_FAULT_FILE` names a file, every outgoing node-to-node connection and
//! Raft call first checks it: a target whose `host:port` (or host) is listed on a line
//! is treated as unreachable. Giving each side of a partition the other side's
//! addresses cuts the link both ways; emptying the files heals it. A slow or stalling
//! network, rather than one that drops cleanly: a line `delay MS` slows every call by
//! that much (`delay TARGET MS` only calls to TARGET), and `stall TARGET` makes calls
//! to it hang until their own timeout, as a link that stops delivering without closing.

/// The variable that names the fault file.
pub const FAULT_FILE_VAR: &str = "UPSILON_FAULT_FILE";

/// Whether this build can inject faults.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Whether connections to `target` (`host:port`) are blocked right now.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn blocked(_target: &str) -> bool {
    false
}

/// How long a call to `target` waits before it goes out, if the fault file says so.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn delay(_target: &str) -> Option<std::time::Duration> {
    None
}

/// Whether connections to `target` (`host:port`) are blocked right now.
#[cfg(feature = "fault-injection")]
pub fn blocked(target: &str) -> bool {
    let Some(path) = std::env::var_os(FAULT_FILE_VAR) else {
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

/// How long a call to `target` waits before it goes out, if the fault file says so.
#[cfg(feature = "fault-injection")]
pub fn delay(target: &str) -> Option<std::time::Duration> {
    let path = std::env::var_os(FAULT_FILE_VAR)?;
    let text = std::fs::read_to_string(path).ok()?;
    delay_in(&text, target)
}

#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn delay_in(text: &str, target: &str) -> Option<std::time::Duration> {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let hit = |t: &str| t == target || t == host;
    let mut total = std::time::Duration::ZERO;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["delay", ms] => total += ms_of(ms),
            ["delay", t, ms] if hit(t) => total += ms_of(ms),
            ["stall", t] if hit(t) => return Some(std::time::Duration::from_secs(3600)),
            _ => {}
        }
    }
    (!total.is_zero()).then_some(total)
}

#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn ms_of(s: &str) -> std::time::Duration {
    std::time::Duration::from_millis(s.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::delay_in;
    use std::time::Duration;

    #[test]
    fn delays_and_stalls_are_read_per_target() {
        let f = "delay 100\ndelay 127.0.0.2 50\nstall 127.0.0.3:7443\n127.0.0.9\n";
        assert_eq!(
            delay_in(f, "127.0.0.1:7443"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            delay_in(f, "127.0.0.2:7443"),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            delay_in(f, "127.0.0.3:7443"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(delay_in("", "127.0.0.1:1"), None);
        assert_eq!(delay_in("delay x\n", "127.0.0.1:1"), None);
    }
}
