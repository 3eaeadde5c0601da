//! [`PowerState`]: everything the cluster replicates, and how it is read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::super::NodeId;
use super::super::legacy::LegacyHost;
use super::super::plan::Plan;
use super::super::records::{
    ActionRun, ClusterEvent, EVENT_HISTORY, MAX_EVENT_TEXT, MeasuredShutdown, NodeRecord, Outage,
    RevokedCert, UpsRecord, clip,
};

/// Everything the cluster replicates.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerState {
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub upses: BTreeMap<String, UpsRecord>,
    pub events: VecDeque<ClusterEvent>,
    pub next_event_seq: u64,
    /// The staged shutdown plan.
    pub plan: Option<Plan>,
    /// The current (or last) outage and its progress.
    pub outage: Option<Outage>,
    pub next_outage_id: u64,
    /// Hosts that acknowledged halting and have not come back since.
    pub halted: BTreeSet<NodeId>,
    /// UPSes power-cycled to bring halted hosts back (since the last outage started).
    pub power_cycled: BTreeMap<String, ActionRun>,
    /// Members the leader holds back, with why and what to do (a wiped store, lost
    /// log entries).
    #[serde(default)]
    pub member_problems: BTreeMap<NodeId, String>,
    /// Revoked certificates by serial (lower-case hex): refused on every connection.
    #[serde(default)]
    pub revoked: BTreeMap<String, RevokedCert>,
    /// Hosts running an unmodified apcupsd client, declared by a bridge.
    #[serde(default)]
    pub legacy: BTreeMap<NodeId, LegacyHost>,
    /// Legacy host ids handed out so far (ids are `LEGACY_ID_BASE` + n, never reused).
    #[serde(default)]
    pub legacy_ids_used: u64,
    /// Each host's shutdown as the last outage that saw it go down measured it.
    #[serde(default)]
    pub shutdown_measured: BTreeMap<NodeId, MeasuredShutdown>,
    /// Voters re-admitted with a new store (their data directory wiped): each may make
    /// itself a voter again once caught up, however many voters the cluster has.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seats_owed: BTreeSet<NodeId>,
}

impl PowerState {
    /// The outage `id` while it is still going on.
    pub(super) fn active_outage(&mut self, id: u64) -> Option<&mut Outage> {
        self.outage
            .as_mut()
            .filter(|o| o.id == id && o.ended_ms.is_none())
    }

    pub(super) fn push_event(
        &mut self,
        at_ms: i64,
        name: &str,
        ups: &str,
        message: &str,
        node: &str,
    ) {
        self.next_event_seq += 1;
        // Bounded, so the history (and every snapshot) stays small whatever a report
        // carries; cut on a character boundary, the same on every node.
        let message = clip(message, MAX_EVENT_TEXT);
        let name = clip(name, 64);
        let ups = clip(ups, 128);
        let node = clip(node, 128);
        if self.events.len() >= EVENT_HISTORY {
            self.events.pop_front();
        }
        self.events.push_back(ClusterEvent {
            seq: self.next_event_seq,
            at_ms,
            name: name.to_string(),
            ups: ups.to_string(),
            message: message.to_string(),
            node: node.to_string(),
        });
    }

    pub(super) fn node_name(&self, id: NodeId) -> String {
        self.host(id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    }

    /// Every host a plan may select: the nodes, then the legacy hosts.
    pub fn hosts(&self) -> Vec<&NodeRecord> {
        self.nodes
            .values()
            .chain(self.legacy.values().map(|l| &l.host))
            .collect()
    }

    /// A node's or a legacy host's record.
    pub fn host(&self, id: NodeId) -> Option<&NodeRecord> {
        self.nodes
            .get(&id)
            .or_else(|| self.legacy.get(&id).map(|l| &l.host))
    }

    /// A legacy host by name.
    pub fn legacy_host(&self, name: &str) -> Option<&LegacyHost> {
        self.legacy.values().find(|l| l.host.name == name)
    }

    /// The most recent `limit` events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<ClusterEvent> {
        let skip = self.events.len().saturating_sub(limit);
        self.events.iter().skip(skip).cloned().collect()
    }
}
