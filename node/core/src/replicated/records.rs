//! The plain records the replicated state is made of: nodes, UPSes, events, outages
//! and their stages, acknowledgements, kill orders. Data only (and its limits); the
//! aggregate and its changes are in [`super::state`], the decisions above it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::view::{UpsStatus, UpsView};

/// An event's text is cut to this many bytes.
pub const MAX_EVENT_TEXT: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How many cluster events the state keeps (oldest dropped first).
pub const EVENT_HISTORY: usize = 1000;

/// A refused second owner of a UPS name is forgotten after this long without a report.
pub const RIVAL_FORGET_MS: i64 = 60_000;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
    pub labels: Vec<String>,
    /// Last report or heartbeat from the node, Unix ms (from the command).
    pub last_seen_ms: i64,
    pub version: String,
    /// The UPSes that power this host.
    pub feeds: Vec<String>,
    /// How many feeds must be on line for the host to count as on line.
    pub min_supplies: u32,
    /// How long the host takes to shut down, as declared (`[cluster] shutdown_s`).
    #[serde(default = "default_shutdown_s")]
    pub shutdown_s: u32,
}

impl NodeRecord {
    /// A host named `name` (Raft id `id`) fed by `feeds` (one on line is enough), last
    /// seen at `seen_ms`, with no address, labels or version yet, and the default
    /// shutdown time: the start of a record in tests, simulations and drills.
    pub fn fed_by(id: NodeId, name: &str, feeds: &[&str], seen_ms: i64) -> NodeRecord {
        NodeRecord {
            id,
            name: name.to_string(),
            addr: String::new(),
            labels: vec![],
            last_seen_ms: seen_ms,
            version: String::new(),
            feeds: feeds.iter().map(|f| f.to_string()).collect(),
            min_supplies: 1,
            shutdown_s: DEFAULT_SHUTDOWN_S,
        }
    }

    /// The same record with these labels.
    pub fn labelled(mut self, labels: &[&str]) -> NodeRecord {
        self.labels = labels.iter().map(|l| l.to_string()).collect();
        self
    }

    /// The same record with this declared shutdown time.
    pub fn shutting_down_in(mut self, shutdown_s: u32) -> NodeRecord {
        self.shutdown_s = shutdown_s;
        self
    }
}

pub use crate::config::DEFAULT_SHUTDOWN_S;

pub(crate) fn default_shutdown_s() -> u32 {
    DEFAULT_SHUTDOWN_S
}

/// What the last outage measured of a host's shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredShutdown {
    pub outage: u64,
    /// From its halting acknowledgement to its last heartbeat before silence.
    pub to_silence_ms: Option<i64>,
    /// From its halting acknowledgement to the late "halted" from its shutdown path.
    pub to_halted_ms: Option<i64>,
}

impl MeasuredShutdown {
    /// The longer of the two, in whole seconds rounded up.
    pub fn seconds(&self) -> Option<u32> {
        let ms = self.to_silence_ms.max(self.to_halted_ms)?;
        Some(u32::try_from((ms.max(0) + 999) / 1000).unwrap_or(u32::MAX))
    }
}

/// A UPS as the cluster knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpsRecord {
    pub name: String,
    /// The node whose driver reads this UPS.
    pub owner: NodeId,
    /// The owner's report sequence number; older reports are ignored.
    pub seq: u64,
    /// What the owner reported last.
    #[serde(flatten)]
    pub status: UpsStatus,
    /// The owner stopped reporting: the cluster no longer knows this UPS's state.
    pub stale: bool,
    pub last_report_ms: i64,
    /// Since when the UPS is on battery, by its owner's clock (Unix ms).
    pub on_battery_since_ms: Option<i64>,
    /// Since when the cluster has had no usable word from it (Unix ms).
    pub comm_lost_since_ms: Option<i64>,
    /// Another node that reports a UPS of the same name and is refused while this
    /// owner is live (one owner per UPS name).
    #[serde(default)]
    pub rival: Option<RivalOwner>,
}

impl UpsRecord {
    /// UPS `name` as `owner` first reported it at `at_ms` (on battery since then if
    /// its status says so): the start of a record in tests, simulations and drills.
    pub fn reported(name: &str, owner: NodeId, status: UpsStatus, at_ms: i64) -> UpsRecord {
        UpsRecord {
            name: name.to_string(),
            owner,
            seq: 1,
            stale: false,
            last_report_ms: at_ms,
            on_battery_since_ms: status.on_battery.then_some(at_ms),
            comm_lost_since_ms: None,
            rival: None,
            status,
        }
    }

    /// The UPS as a reader on any node sees it at `now_ms`: a stale record counts as
    /// comm lost (with why), and time on battery runs on from the owner's last report.
    pub fn view(&self, now_ms: i64) -> UpsView {
        let mut status = self.status.clone();
        if self.stale {
            status.statflag |= crate::reading::statflag::COMMLOST;
            status.comm_lost = true;
            status.comm_error = Some("its owner stopped reporting".to_string());
        }
        status.time_on_battery_s = if status.on_battery {
            let since_report = (now_ms - self.last_report_ms).max(0) / 1000;
            status
                .time_on_battery_s
                .saturating_add(u32::try_from(since_report).unwrap_or(u32::MAX))
        } else {
            0
        };
        UpsView {
            name: self.name.clone(),
            status,
        }
    }
}

/// A node refused as a UPS's owner because another live node owns that UPS name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RivalOwner {
    pub node: NodeId,
    /// First refused report from it (Unix ms, from the command).
    pub since_ms: i64,
    /// Last refused report from it.
    pub last_ms: i64,
}

/// One event in the cluster's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterEvent {
    pub seq: u64,
    pub at_ms: i64,
    /// apcupsd event name (`powerout`, ...) or `notice`.
    pub name: String,
    pub ups: String,
    pub message: String,
    pub node: String,
}

/// An event as an owner reports it, before the cluster numbers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedEvent {
    pub at_ms: i64,
    pub name: String,
    pub message: String,
}

/// How many certificates the deny list holds at most.
pub const MAX_REVOKED: usize = 10_000;

/// A certificate on the deny list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    pub name: String,
    pub reason: String,
    pub by: String,
    pub at_ms: i64,
}

/// An order to a UPS owner and whether it was carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRun {
    pub ordered_ms: i64,
    pub delay_s: u32,
    pub done_ms: Option<i64>,
    pub result: String,
}

/// A host's acknowledgements for its stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub shutting_down_ms: Option<i64>,
    pub halting_ms: Option<i64>,
    /// The late "halted" from the host's own shutdown path, if one arrived.
    #[serde(default)]
    pub halted_ms: Option<i64>,
    /// When the cluster saw the host down (halted, or silent after halting), and how.
    #[serde(default)]
    pub down_ms: Option<i64>,
    #[serde(default)]
    pub down_how: Option<DownHow>,
}

/// How the cluster knows a host is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownHow {
    /// Its shutdown path sent "halted".
    Halted,
    /// It acknowledged halting and then went silent.
    Silent,
    /// It never acknowledged halting, its stage timed out, and it is silent.
    Unreachable,
}

impl DownHow {
    pub fn as_str(self) -> &'static str {
        match self {
            DownHow::Halted => "halted",
            DownHow::Silent => "silent",
            DownHow::Unreachable => "unreachable",
        }
    }
}

/// A started stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub started_ms: i64,
    pub reason: String,
    pub hosts: Vec<NodeId>,
    pub acks: BTreeMap<NodeId, Ack>,
}

/// One outage: its stages, kill-power orders, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub id: u64,
    pub started_ms: i64,
    pub stages: Vec<StageRun>,
    pub kill_power: BTreeMap<String, ActionRun>,
    pub ended_ms: Option<i64>,
    pub end_reason: String,
    /// The kill orders committed before any host halts: from then on each UPS owner may
    /// finish alone, without the quorum.
    #[serde(default)]
    pub armed: Option<Vec<ArmedKill>>,
    /// A fire drill, not an outage: these UPSes are taken to be on battery; hosts only
    /// run their hooks (with `UPSILON_DRILL=1`) and record what they would do.
    #[serde(default)]
    pub drill: Option<Vec<String>>,
}

impl Outage {
    pub fn is_drill(&self) -> bool {
        self.drill.is_some()
    }
}

/// A UPS's kill order as committed before the end game: its owner cuts it, on its own if
/// it must, once every host in `wait_for` is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedKill {
    pub ups: String,
    pub owner: NodeId,
    /// Every host the UPS feeds but its owner (an owner alone cannot tell whether another
    /// feed still holds a dual-fed host, so it waits for all of them).
    pub wait_for: Vec<NodeId>,
}
