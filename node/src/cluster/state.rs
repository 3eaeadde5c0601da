//! The replicated power state and the commands that change it.
//!
//! Every change is a [`Command`] carried in the Raft log; [`PowerState::apply`] is a
//! pure function of the state and the command, and every timestamp travels inside the
//! command, so each node applying the same log reaches the same state.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use crate::policy::ShutdownRule;
use crate::reading::UpsReading;

use super::NodeId;

/// How many cluster events the state keeps (oldest dropped first).
pub const EVENT_HISTORY: usize = 1000;

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
}

/// A UPS as the cluster knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpsRecord {
    pub name: String,
    /// The node whose driver reads this UPS.
    pub owner: NodeId,
    /// The driver the owner reads it with (`sim`, `apcsmart`, ...).
    pub driver: String,
    /// The owner's report sequence number; older reports are ignored.
    pub seq: u64,
    pub reading: Option<UpsReading>,
    /// STATFLAG as the owner computed it (UPS bits plus its monitor's local bits).
    pub statflag: u32,
    /// The owner cannot read the UPS (driver comm lost).
    pub comm_lost: bool,
    /// The owner stopped reporting: the cluster no longer knows this UPS's state.
    pub stale: bool,
    pub on_battery: bool,
    pub time_on_battery_s: u32,
    pub transfers: u32,
    /// The owner's monitor decided a shutdown: (rule, Unix ms).
    pub shutdown: Option<(ShutdownRule, i64)>,
    pub last_report_ms: i64,
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

/// Everything the cluster replicates.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerState {
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub upses: BTreeMap<String, UpsRecord>,
    pub events: VecDeque<ClusterEvent>,
    pub next_event_seq: u64,
}

/// A change to the power state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// A node announces itself (on start and after joining).
    NodeUp {
        id: NodeId,
        name: String,
        addr: String,
        labels: Vec<String>,
        version: String,
        at_ms: i64,
    },
    /// A node is alive (sent at the heartbeat interval).
    Heartbeat { id: NodeId, at_ms: i64 },
    /// A UPS owner's latest view of its UPS, and the events its monitor derived.
    UpsReport(Box<UpsReport>),
    /// The leader saw no new report (still `seq`) from the owner for too long.
    UpsStale {
        ups: String,
        owner: NodeId,
        seq: u64,
        at_ms: i64,
    },
    /// A node left the cluster.
    NodeRemoved { id: NodeId, at_ms: i64 },
    /// A line for the cluster's event history (membership changes and the like).
    Notice {
        at_ms: i64,
        node: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpsReport {
    pub ups: String,
    pub owner: NodeId,
    pub driver: String,
    pub seq: u64,
    pub at_ms: i64,
    pub reading: Option<UpsReading>,
    pub statflag: u32,
    pub comm_lost: bool,
    pub on_battery: bool,
    pub time_on_battery_s: u32,
    pub transfers: u32,
    pub shutdown: Option<(ShutdownRule, i64)>,
    pub events: Vec<ReportedEvent>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::NodeUp { id, name, .. } => write!(f, "NodeUp({id} {name})"),
            Command::Heartbeat { id, .. } => write!(f, "Heartbeat({id})"),
            Command::UpsReport(r) => {
                write!(f, "UpsReport({} seq {} from {})", r.ups, r.seq, r.owner)
            }
            Command::UpsStale { ups, .. } => write!(f, "UpsStale({ups})"),
            Command::NodeRemoved { id, .. } => write!(f, "NodeRemoved({id})"),
            Command::Notice { message, .. } => write!(f, "Notice({message})"),
        }
    }
}

/// What applying a command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandResult {
    /// False if the command was ignored (e.g. an out-of-date report).
    pub applied: bool,
}

impl PowerState {
    fn push_event(&mut self, at_ms: i64, name: &str, ups: &str, message: &str, node: &str) {
        self.next_event_seq += 1;
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

    fn node_name(&self, id: NodeId) -> String {
        self.nodes
            .get(&id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    }

    fn touch(&mut self, id: NodeId, at_ms: i64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.last_seen_ms = n.last_seen_ms.max(at_ms);
        }
    }

    /// Applies one command. Deterministic: reads nothing but its arguments.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::NodeUp {
                id,
                name,
                addr,
                labels,
                version,
                at_ms,
            } => {
                self.nodes.insert(
                    *id,
                    NodeRecord {
                        id: *id,
                        name: name.clone(),
                        addr: addr.clone(),
                        labels: labels.clone(),
                        last_seen_ms: *at_ms,
                        version: version.clone(),
                    },
                );
                CommandResult { applied: true }
            }
            Command::Heartbeat { id, at_ms } => {
                self.touch(*id, *at_ms);
                CommandResult {
                    applied: self.nodes.contains_key(id),
                }
            }
            Command::UpsReport(r) => {
                if let Some(cur) = self.upses.get(&r.ups) {
                    // Same owner: only newer reports. A new owner (restart or move) wins.
                    if cur.owner == r.owner && r.seq <= cur.seq && !cur.stale {
                        return CommandResult { applied: false };
                    }
                }
                let node = self.node_name(r.owner);
                let was_stale = self.upses.get(&r.ups).is_some_and(|u| u.stale);
                if was_stale {
                    self.push_event(
                        r.at_ms,
                        "commok",
                        &r.ups,
                        &format!(
                            "Communications with UPS restored: its owner {node} reports again."
                        ),
                        &node,
                    );
                }
                for e in &r.events {
                    self.push_event(e.at_ms, &e.name, &r.ups, &e.message, &node);
                }
                self.upses.insert(
                    r.ups.clone(),
                    UpsRecord {
                        name: r.ups.clone(),
                        owner: r.owner,
                        driver: r.driver.clone(),
                        seq: r.seq,
                        reading: r.reading.clone(),
                        statflag: r.statflag,
                        comm_lost: r.comm_lost,
                        stale: false,
                        on_battery: r.on_battery,
                        time_on_battery_s: r.time_on_battery_s,
                        transfers: r.transfers,
                        shutdown: r.shutdown,
                        last_report_ms: r.at_ms,
                    },
                );
                self.touch(r.owner, r.at_ms);
                CommandResult { applied: true }
            }
            Command::UpsStale {
                ups,
                owner,
                seq,
                at_ms,
            } => match self.upses.get_mut(ups) {
                Some(u) if u.owner == *owner && !u.stale && u.seq == *seq => {
                    u.stale = true;
                    let node = self.node_name(*owner);
                    self.push_event(
                        *at_ms,
                        "commfailure",
                        ups,
                        &format!(
                            "Communications with UPS lost: its owner {node} stopped reporting."
                        ),
                        &node,
                    );
                    CommandResult { applied: true }
                }
                _ => CommandResult { applied: false },
            },
            Command::NodeRemoved { id, at_ms } => {
                let name = self.node_name(*id);
                let removed = self.nodes.remove(id).is_some();
                if removed {
                    self.push_event(
                        *at_ms,
                        "notice",
                        "",
                        &format!("Node {name} left the cluster."),
                        &name,
                    );
                }
                CommandResult { applied: removed }
            }
            Command::Notice {
                at_ms,
                node,
                message,
            } => {
                self.push_event(*at_ms, "notice", "", message, node);
                CommandResult { applied: true }
            }
        }
    }

    /// The most recent `limit` events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<ClusterEvent> {
        let skip = self.events.len().saturating_sub(limit);
        self.events.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: NodeId, name: &str) -> Command {
        Command::NodeUp {
            id,
            name: name.into(),
            addr: format!("127.0.0.{id}:7443"),
            labels: vec![],
            version: "0".into(),
            at_ms: 1,
        }
    }

    fn report(seq: u64, at_ms: i64, events: &[&str]) -> Command {
        Command::UpsReport(Box::new(UpsReport {
            ups: "ups1".into(),
            owner: 1,
            driver: "sim".into(),
            seq,
            at_ms,
            reading: None,
            statflag: 0x0500_0008,
            comm_lost: false,
            on_battery: false,
            time_on_battery_s: 0,
            transfers: 0,
            shutdown: None,
            events: events
                .iter()
                .map(|n| ReportedEvent {
                    at_ms,
                    name: n.to_string(),
                    message: format!("{n} text"),
                })
                .collect(),
        }))
    }

    #[test]
    fn reports_apply_in_order_and_old_ones_are_ignored() {
        let mut s = PowerState::default();
        s.apply(&up(1, "a"));
        assert!(s.apply(&report(1, 10, &["powerout"])).applied);
        assert!(
            !s.apply(&report(1, 11, &["powerout"])).applied,
            "same seq ignored"
        );
        assert!(s.apply(&report(2, 12, &["onbattery"])).applied);
        let names: Vec<_> = s.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["powerout", "onbattery"]);
        assert_eq!(s.events[1].node, "a");
        assert_eq!(s.nodes[&1].last_seen_ms, 12);
    }

    #[test]
    fn stale_marks_once_and_a_new_report_clears_it() {
        let mut s = PowerState::default();
        s.apply(&up(1, "a"));
        s.apply(&report(5, 100, &[]));
        let stale = Command::UpsStale {
            ups: "ups1".into(),
            owner: 1,
            seq: 5,
            at_ms: 200,
        };
        assert!(s.apply(&stale).applied);
        assert!(!s.apply(&stale).applied);
        assert!(s.upses["ups1"].stale);
        // After a restart the owner's seq starts again: a stale UPS accepts it.
        assert!(s.apply(&report(1, 300, &[])).applied);
        assert!(!s.upses["ups1"].stale);
        let names: Vec<_> = s.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["commfailure", "commok"]);
    }

    #[test]
    fn stale_never_overrides_a_newer_report() {
        let mut s = PowerState::default();
        s.apply(&report(1, 500, &[]));
        // Decided on seq 1, but seq 2 was committed first: the UPS is not silent.
        s.apply(&report(2, 600, &[]));
        let stale = Command::UpsStale {
            ups: "ups1".into(),
            owner: 1,
            seq: 1,
            at_ms: 400,
        };
        assert!(!s.apply(&stale).applied);
    }

    #[test]
    fn event_history_is_bounded() {
        let mut s = PowerState::default();
        for i in 0..(EVENT_HISTORY as u64 + 10) {
            s.apply(&Command::Notice {
                at_ms: i as i64,
                node: "a".into(),
                message: "x".into(),
            });
        }
        assert_eq!(s.events.len(), EVENT_HISTORY);
        assert_eq!(s.events.back().unwrap().seq, EVENT_HISTORY as u64 + 10);
    }

    #[test]
    fn apply_is_deterministic() {
        let cmds = vec![
            up(1, "a"),
            up(2, "b"),
            report(1, 10, &["powerout"]),
            Command::Heartbeat { id: 2, at_ms: 20 },
        ];
        let mut a = PowerState::default();
        let mut b = PowerState::default();
        for c in &cmds {
            a.apply(c);
        }
        for c in &cmds {
            b.apply(c);
        }
        assert_eq!(a, b);
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(serde_json::from_slice::<PowerState>(&json).unwrap(), a);
    }
}
