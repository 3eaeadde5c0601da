//! The status as one node sees it, as plain types: what `upsilon status` shows, and
//! what the web page, metrics and the NIS/NUT servers read. The node builds it
//! (`upsilon-node`'s `status::snapshot`) and the gRPC API converts it in one place.

use crate::policy::Policy;
use crate::view::UpsView;

/// Everything a reader needs, as of `generated_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSnapshot {
    /// The node that built it.
    pub node_name: String,
    pub generated_at_ms: i64,
    /// This node's UPSes when standalone; the cluster's when a member.
    pub ups: Vec<UpsView>,
    pub nodes: Vec<NodeSummary>,
    pub pending: PendingAction,
    pub policy: Policy,
    /// `None` for a standalone node.
    pub cluster: Option<ClusterSummary>,
    /// Hosts running an unmodified apcupsd client, served by a bridge.
    pub legacy_hosts: Vec<LegacyHostSummary>,
}

/// A legacy host as the cluster knows it, and what its bridge serves it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LegacyHostSummary {
    pub name: String,
    pub addresses: Vec<String>,
    pub labels: Vec<String>,
    pub feeds: Vec<String>,
    pub min_supplies: u32,
    pub protocol: String,
    /// The bridge that declared it.
    pub bridge: String,
    /// `polling`, `silent`, `told` or `halted`.
    pub state: String,
    pub state_since_ms: i64,
    /// What it is served: its supply under its main feed's name.
    pub served: UpsView,
    /// Its stage started: it is served the shutdown bits.
    pub shutting_down: bool,
    /// The plan's stage that selects it, e.g. "2 (apps)"; empty if none does.
    pub stage: String,
    /// Declared, and never seen polling its bridge since.
    pub never_polled: bool,
}

/// One node as the answering node knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSummary {
    pub name: String,
    pub address: String,
    /// `standalone`, or in a cluster `leader`, `voter` or `learner`.
    pub role: String,
    pub last_seen_ms: i64,
    pub ups_names: Vec<String>,
    pub version: String,
    /// Raft id; 0 for a standalone node.
    pub id: u64,
    /// Log entries behind the leader, when the answering node is the leader.
    pub lag: Option<u64>,
    /// Where it is in an outage, in a few words (`wording::host_state`); empty for a
    /// standalone node.
    pub state: String,
}

/// The cluster as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterSummary {
    pub leader: String,
    pub leader_id: u64,
    pub term: u64,
    /// A leader with a quorum is known and this node's writes are applied.
    pub writable: bool,
    /// A sentence for humans when not writable.
    pub detail: String,
    pub last_applied: u64,
    /// The log index this node's latest snapshot covers (0: none yet).
    pub snapshot_index: u64,
    pub voters: u32,
    pub learners: u32,
    /// The current outage and its stages in words (empty if none).
    pub outage: String,
    pub stages: Vec<String>,
    /// Problems an operator must fix, in words.
    pub warnings: Vec<String>,
}

/// Where this node stands on the way to a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActionKind {
    /// Nothing to do: all feeds on line.
    #[default]
    None,
    /// On battery; a shutdown starts when a threshold is crossed.
    Watching,
    /// A shutdown rule fired; the shutdown is under way (or recorded).
    ShuttingDown,
}

/// What the node is about to do, in one sentence, and what its executor did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PendingAction {
    pub kind: ActionKind,
    /// The apcupsd event that triggered the shutdown (`failing`, `timeout`, ...).
    pub reason: String,
    /// What is happening and what comes next.
    pub detail: String,
    /// When the shutdown started (Unix ms); 0 if it has not.
    pub since_ms: i64,
    /// `record` or `live`.
    pub executor_mode: String,
    /// Commands the executor ran or recorded for this shutdown.
    pub commands: Vec<String>,
    /// The executor ran, recorded or (hook exit 99) skipped the shutdown command.
    pub shutdown_handled: bool,
}
