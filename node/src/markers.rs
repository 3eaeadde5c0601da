//! The node's markers on disk, which keep its actions exactly once across restarts:
//! the stage markers, the kill-power markers, and the host claim.
//!
//! The host claim: "this host shuts down at most once per power event", across every path that can shut
//! it down (its stage, its own thresholds, its UPS monitor, the local fallback) and
//! across restarts, without ever skipping a shutdown that provably did not start.
//!
//! One marker file, `host-shutdown.marker` in the marker directory, records the last
//! claim: the outage it was for (0 when no outage had been committed yet, e.g. the UPS
//! owner's own monitor firing before the outage record), when, by which process, and how
//! far it got: `claimed` (hooks may run), `launching` (written right before the shutdown
//! command is started or recorded: the point of no return), `done`. A claim still
//! `claimed` by a process that no longer runs never launched anything: it is void, and
//! the shutdown runs again after a restart. A claim made without an outage counts for
//! an outage that starts within [`SAME_EVENT_MS`] of it, so the owner's monitor and the
//! plan never both shut the host down.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::cluster::handle::Cluster;
use upsilon_core::time::now_ms;

/// A claim without an outage and an outage this close to it are one power event.
pub const SAME_EVENT_MS: i64 = 5 * 60_000;

const FILE: &str = "host-shutdown.marker";

/// This process among all that ran on this host (a claim by another one is not ours).
fn token() -> u64 {
    static TOKEN: OnceLock<u64> = OnceLock::new();
    *TOKEN.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
    })
}

/// Claims are made one at a time in a process (a stage and the monitor at once).
static CLAIMING: Mutex<()> = Mutex::new(());

/// How far a claim got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Claimed,
    Launching,
    Done,
}

impl Progress {
    fn as_str(self) -> &'static str {
        match self {
            Progress::Claimed => "claimed",
            Progress::Launching => "launching",
            Progress::Done => "done",
        }
    }
}

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub outage: u64,
    pub at_ms: i64,
    pub progress: Progress,
    pub token: u64,
}

impl ClaimRecord {
    fn text(&self) -> String {
        format!(
            "outage={}\nat={}\nstate={}\ntoken={}\n",
            self.outage,
            self.at_ms,
            self.progress.as_str(),
            self.token
        )
    }

    /// Parses a marker; `None` for anything unreadable (then no claim is known).
    pub fn parse(text: &str) -> Option<Self> {
        let mut outage = None;
        let mut at_ms = None;
        let mut progress = None;
        let mut token = None;
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            match k.trim() {
                "outage" => outage = v.trim().parse().ok(),
                "at" => at_ms = v.trim().parse().ok(),
                "token" => token = v.trim().parse().ok(),
                "state" => {
                    progress = match v.trim() {
                        "claimed" => Some(Progress::Claimed),
                        "launching" => Some(Progress::Launching),
                        "done" => Some(Progress::Done),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        Some(ClaimRecord {
            outage: outage?,
            at_ms: at_ms?,
            progress: progress?,
            token: token?,
        })
    }

    /// Whether this claim covers a shutdown for `outage` (id, start) at `now_ms`. A claim
    /// left `claimed` by another process never launched: it covers nothing.
    pub fn covers(&self, outage: Option<(u64, i64)>, now_ms: i64, me: u64) -> bool {
        if self.progress == Progress::Claimed && self.token != me {
            return false;
        }
        match outage {
            Some((id, started)) => {
                self.outage == id || (self.outage == 0 && self.at_ms >= started - SAME_EVENT_MS)
            }
            None => self.outage == 0 && now_ms - self.at_ms < SAME_EVENT_MS,
        }
    }
}

fn path(cluster: &Cluster) -> PathBuf {
    marker_dir(cluster).join(FILE)
}

/// Where this host keeps its markers (`[cluster] marker_dir`, default `data_dir`).
pub fn marker_dir(cluster: &Cluster) -> PathBuf {
    cluster
        .cfg
        .marker_dir
        .clone()
        .unwrap_or_else(|| cluster.cfg.data_dir.clone())
}

/// "Stage `stage` of outage `outage` ran here" (`started`, then `done`).
pub fn stage_marker(dir: &Path, outage: u64, stage: usize) -> PathBuf {
    dir.join(format!("stage-{outage}-{stage}.marker"))
}

/// "This owner sent `ups` its kill-power order in outage `outage`": written before the
/// order is sent, by the coordinator's order or by the owner finishing alone, so the
/// UPS is told once.
pub fn kill_marker(cluster: &Cluster, outage: u64, ups: &str) -> PathBuf {
    marker_dir(cluster).join(format!("killpower-{outage}-{ups}.marker"))
}

/// Writes a marker and syncs it to disk.
pub fn write_marker(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn read(path: &Path) -> Option<ClaimRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let r = ClaimRecord::parse(&text);
    if r.is_none() {
        tracing::warn!("{} is unreadable; taken as no claim", path.display());
    }
    r
}

fn write(path: &Path, r: &ClaimRecord) {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        write_marker(&tmp, &r.text())?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        // Shutting down twice is better than not at all.
        tracing::error!("cannot write {}: {e}", path.display());
    }
}

/// The active outage's id and start, if any.
fn active(cluster: &Cluster) -> Option<(u64, i64)> {
    cluster.read(|s| {
        s.outage
            .as_ref()
            .filter(|o| o.ended_ms.is_none())
            .map(|o| (o.id, o.started_ms))
    })
}

/// A granted claim: mark its progress as the shutdown goes.
#[derive(Debug)]
pub struct HostClaim {
    path: PathBuf,
    record: Mutex<ClaimRecord>,
}

impl HostClaim {
    fn set(&self, p: Progress) {
        let mut r = self.record.lock().expect("claim lock");
        r.progress = p;
        write(&self.path, &r);
    }

    /// Right before the shutdown command starts (or is recorded): the point of no return.
    pub fn launching(&self) {
        self.set(Progress::Launching);
    }

    pub fn done(&self) {
        self.set(Progress::Done);
    }
}

/// Claims this host's shutdown for the current power event: `Some` when the caller is
/// to shut the host down, `None` when another path already did (or is doing it).
pub fn claim(cluster: &Cluster) -> Option<HostClaim> {
    let _one = CLAIMING.lock().expect("claim lock");
    let path = path(cluster);
    let outage = active(cluster);
    let now = now_ms();
    if let Some(prev) = read(&path)
        && prev.covers(outage, now, token())
    {
        return None;
    }
    let record = ClaimRecord {
        outage: outage.map_or(0, |o| o.0),
        at_ms: now,
        progress: Progress::Claimed,
        token: token(),
    };
    write(&path, &record);
    Some(HostClaim {
        path,
        record: Mutex::new(record),
    })
}

/// Whether this host's shutdown for `outage` got past the point of no return (by this
/// process or one before it).
pub fn launched(cluster: &Cluster, outage: u64) -> bool {
    let Some(r) = read(&path(cluster)) else {
        return false;
    };
    let started = active(cluster).map_or(i64::MAX, |o| o.1);
    r.progress != Progress::Claimed
        && (r.outage == outage || (r.outage == 0 && r.at_ms >= started - SAME_EVENT_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(outage: u64, at_ms: i64, progress: Progress, token: u64) -> ClaimRecord {
        ClaimRecord {
            outage,
            at_ms,
            progress,
            token,
        }
    }

    #[test]
    fn a_claim_round_trips_and_bad_markers_are_no_claim() {
        let r = rec(3, 1_000, Progress::Launching, 42);
        assert_eq!(ClaimRecord::parse(&r.text()), Some(r));
        assert_eq!(ClaimRecord::parse("claimed\n"), None);
        assert_eq!(
            ClaimRecord::parse("outage=1\nat=2\nstate=weird\ntoken=1\n"),
            None
        );
        assert_eq!(ClaimRecord::parse(""), None);
    }

    #[test]
    fn what_a_claim_covers() {
        let me = 7;
        let t = 10_000_000;
        // Same outage: covered, whoever made it, once it launched.
        assert!(rec(2, t, Progress::Launching, 1).covers(Some((2, t)), t, me));
        assert!(rec(2, t, Progress::Done, 1).covers(Some((2, t)), t, me));
        // Still "claimed" by a process that is gone: it never launched; void.
        assert!(!rec(2, t, Progress::Claimed, 1).covers(Some((2, t)), t, me));
        // ... unless it is ours (a claim in progress in this process).
        assert!(rec(2, t, Progress::Claimed, me).covers(Some((2, t)), t, me));
        // The monitor's claim before the outage was committed counts for that outage.
        assert!(rec(0, t, Progress::Done, 1).covers(Some((3, t + 2_000)), t + 5_000, me));
        assert!(!rec(0, t, Progress::Done, 1).covers(Some((3, t + SAME_EVENT_MS + 1)), t, me));
        // Another outage: not covered.
        assert!(!rec(2, t, Progress::Done, 1).covers(Some((3, t)), t, me));
        // No outage: a recent outage-less claim covers a second one; an old one does not.
        assert!(rec(0, t, Progress::Done, 1).covers(None, t + 1_000, me));
        assert!(!rec(0, t, Progress::Done, 1).covers(None, t + SAME_EVENT_MS, me));
        assert!(!rec(2, t, Progress::Done, 1).covers(None, t, me));
    }
}
