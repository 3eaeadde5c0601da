//! The replicated power state and the commands that change it.
//!
//! Every change is a [`Command`] carried in the Raft log; [`PowerState::apply`] is a
//! pure function of the state and the command, and every timestamp travels inside the
//! command, so each node applying the same log reaches the same state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use std::fmt;

use super::legacy::{LEGACY_ID_BASE, LegacyHost, LegacyHostDecl, LegacyState, MAX_LEGACY_HOSTS};
use super::plan::Plan;
use crate::view::{UpsStatus, UpsView};

use super::NodeId;

/// An event's text is cut to this many bytes.
pub const MAX_EVENT_TEXT: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(s: &str, max: usize) -> &str {
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
        /// The UPSes that power it, and how many must be on line.
        feeds: Vec<String>,
        min_supplies: u32,
        /// How long it takes to shut down (declared).
        #[serde(default = "default_shutdown_s")]
        shutdown_s: u32,
        at_ms: i64,
    },
    /// A node is alive: written by every node at the heartbeat interval before liveness
    /// came from replication (`Seen`); still applied from older logs.
    Heartbeat { id: NodeId, at_ms: i64 },
    /// The leader heard these members answer its Raft replication, each at the time
    /// given (the leader's clock): liveness for every member in one entry.
    Seen {
        seen: Vec<(NodeId, i64)>,
        at_ms: i64,
    },
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
    /// Replace the staged shutdown plan.
    SetPlan { plan: Plan, at_ms: i64, by: String },
    /// The coordinator saw a supply on battery: an outage begins.
    OutageStart { id: u64, at_ms: i64 },
    /// An operator starts a fire drill: the plan runs as if mains had failed on `upses`,
    /// with nothing shut down or cut.
    DrillStart {
        id: u64,
        upses: Vec<String>,
        by: String,
        at_ms: i64,
    },
    /// The coordinator starts stage `stage` of outage `outage`.
    StageStart {
        outage: u64,
        stage: usize,
        name: String,
        hosts: Vec<NodeId>,
        reason: String,
        at_ms: i64,
    },
    /// A host reports progress on its stage: shutting down, then halting.
    NodeAck {
        outage: u64,
        stage: usize,
        node: NodeId,
        halting: bool,
        at_ms: i64,
    },
    /// A host's shutdown path says it is about to halt (sent as late as the network
    /// allows: a systemd hook, or the record-mode executor standing in for it).
    HostHalted { node: NodeId, at_ms: i64 },
    /// The coordinator saw a host of a started stage go down.
    HostDown {
        outage: u64,
        node: NodeId,
        how: DownHow,
        /// Its last heartbeat (what the silence is measured from).
        last_seen_ms: i64,
        at_ms: i64,
    },
    /// The coordinator commits each UPS's kill order before any stage starts, so owners
    /// can finish the end game even after the voters halted.
    ArmKillPower {
        outage: u64,
        orders: Vec<ArmedKill>,
        at_ms: i64,
    },
    /// A UPS owner cut its UPS on its own (no quorum at the time), reported once it
    /// could be committed again.
    KillPowerAlone {
        outage: u64,
        ups: String,
        delay_s: u32,
        ordered_ms: i64,
        ok: bool,
        result: String,
        at_ms: i64,
    },
    /// The coordinator orders a UPS to cut power (returning with mains).
    KillPower {
        outage: u64,
        ups: String,
        delay_s: u32,
        at_ms: i64,
    },
    /// The coordinator orders a UPS power-cycled to bring halted hosts back.
    PowerCycle { ups: String, at_ms: i64 },
    /// A UPS owner carried out a kill-power or power-cycle order.
    UpsActionDone {
        ups: String,
        power_cycle: bool,
        ok: bool,
        result: String,
        at_ms: i64,
    },
    /// Mains returned: the outage ends and stages not started are cancelled.
    OutageEnd { id: u64, at_ms: i64, reason: String },
    /// A voter came back with a new store and lost its seat to be re-admitted safely
    /// (`owed`), or took it back (`!owed`).
    VoterSeat { id: NodeId, owed: bool, at_ms: i64 },
    /// The leader holds a member back (`problem`), or no longer does (`None`).
    MemberProblem {
        id: NodeId,
        problem: Option<String>,
        at_ms: i64,
    },
    /// An operator puts a certificate on the deny list.
    RevokeCert {
        serial: String,
        name: String,
        reason: String,
        by: String,
        at_ms: i64,
    },
    /// An operator frees a UPS name: the next report from any node takes it (moving a
    /// UPS to another host, or ending a name clash).
    UpsRelease { ups: String, by: String, at_ms: i64 },
    /// A bridge declares its legacy hosts: each is added or updated by name, and the
    /// ones it declared before and no longer does are forgotten.
    LegacyHostsDeclare {
        bridge: String,
        hosts: Vec<LegacyHostDecl>,
        at_ms: i64,
        /// The cluster node the bridge runs on (its `[bridge] runs_on`), if it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runs_on: Option<String>,
    },
    /// A bridge reports what it saw of one of its legacy hosts; `Told` and `Halted`
    /// are the host's acknowledgements for its started stage.
    LegacyHostSeen {
        bridge: String,
        name: String,
        state: LegacyState,
        at_ms: i64,
    },
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
    pub seq: u64,
    pub at_ms: i64,
    #[serde(flatten)]
    pub status: UpsStatus,
    pub events: Vec<ReportedEvent>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::NodeUp { id, name, .. } => write!(f, "NodeUp({id} {name})"),
            Command::Heartbeat { id, .. } => write!(f, "Heartbeat({id})"),
            Command::Seen { seen, .. } => write!(f, "Seen({} members)", seen.len()),
            Command::UpsReport(r) => {
                write!(f, "UpsReport({} seq {} from {})", r.ups, r.seq, r.owner)
            }
            Command::UpsStale { ups, .. } => write!(f, "UpsStale({ups})"),
            Command::NodeRemoved { id, .. } => write!(f, "NodeRemoved({id})"),
            Command::Notice { message, .. } => write!(f, "Notice({message})"),
            Command::UpsRelease { ups, .. } => write!(f, "UpsRelease({ups})"),
            Command::MemberProblem { id, .. } => write!(f, "MemberProblem({id})"),
            Command::VoterSeat { id, owed, .. } => write!(f, "VoterSeat({id}, owed {owed})"),
            Command::RevokeCert { serial, .. } => write!(f, "RevokeCert({serial})"),
            Command::SetPlan { plan, .. } => write!(f, "SetPlan({} stages)", plan.stages.len()),
            Command::OutageStart { id, .. } => write!(f, "OutageStart({id})"),
            Command::DrillStart { id, upses, .. } => {
                write!(f, "DrillStart({id} {})", upses.join(","))
            }
            Command::StageStart { outage, stage, .. } => write!(f, "StageStart({outage}/{stage})"),
            Command::NodeAck {
                node,
                stage,
                halting,
                ..
            } => write!(f, "NodeAck({node} stage {stage} halting={halting})"),
            Command::HostHalted { node, .. } => write!(f, "HostHalted({node})"),
            Command::HostDown { node, how, .. } => write!(f, "HostDown({node} {})", how.as_str()),
            Command::KillPower { ups, .. } => write!(f, "KillPower({ups})"),
            Command::ArmKillPower { orders, .. } => write!(f, "ArmKillPower({} UPS)", orders.len()),
            Command::KillPowerAlone { ups, .. } => write!(f, "KillPowerAlone({ups})"),
            Command::PowerCycle { ups, .. } => write!(f, "PowerCycle({ups})"),
            Command::UpsActionDone { ups, .. } => write!(f, "UpsActionDone({ups})"),
            Command::OutageEnd { id, .. } => write!(f, "OutageEnd({id})"),
            Command::LegacyHostsDeclare { bridge, hosts, .. } => {
                write!(f, "LegacyHostsDeclare({bridge}: {} hosts)", hosts.len())
            }
            Command::LegacyHostSeen { name, state, .. } => {
                write!(f, "LegacyHostSeen({name} {})", state.as_str())
            }
        }
    }
}

/// What applying a command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandResult {
    /// False if the command was ignored (e.g. an out-of-date report).
    pub applied: bool,
    /// The log index the command was applied at (set by the state machine store).
    #[serde(default)]
    pub index: u64,
}

impl CommandResult {
    /// Applied (the log index is filled in by the state machine store).
    pub fn done() -> Self {
        Self::applied(true)
    }

    /// Ignored: out of date, out of order, or already done.
    pub fn ignored() -> Self {
        Self::applied(false)
    }

    pub fn applied(applied: bool) -> Self {
        CommandResult { applied, index: 0 }
    }
}

impl PowerState {
    /// The outage `id` while it is still going on.
    fn active_outage(&mut self, id: u64) -> Option<&mut Outage> {
        self.outage
            .as_mut()
            .filter(|o| o.id == id && o.ended_ms.is_none())
    }

    fn push_event(&mut self, at_ms: i64, name: &str, ups: &str, message: &str, node: &str) {
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

    fn node_name(&self, id: NodeId) -> String {
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

    fn apply_legacy_declare(
        &mut self,
        bridge: &str,
        hosts: &[LegacyHostDecl],
        runs_on: Option<&str>,
        at_ms: i64,
    ) -> CommandResult {
        let mut changed = Vec::new();
        let mut refused = Vec::new();
        for d in hosts {
            if let Err(e) = d.validate() {
                refused.push(e);
                continue;
            }
            if self.nodes.values().any(|n| n.name == d.name) {
                refused.push(format!(
                    "legacy host {:?}: a node of the cluster has that name",
                    d.name
                ));
                continue;
            }
            let existing = self
                .legacy
                .iter()
                .find(|(_, l)| l.host.name == d.name)
                .map(|(id, _)| *id);
            match existing {
                Some(id) => {
                    let l = self.legacy.get_mut(&id).expect("found above");
                    if !l.matches(d, bridge, runs_on) {
                        let mut fresh = LegacyHost::new(id, d, bridge, runs_on, at_ms);
                        fresh.state = l.state;
                        fresh.state_since_ms = l.state_since_ms;
                        fresh.host.last_seen_ms = l.host.last_seen_ms;
                        fresh.polled = l.polled;
                        *l = fresh;
                        changed.push(d.name.clone());
                    }
                }
                None if self.legacy.len() >= MAX_LEGACY_HOSTS => refused.push(format!(
                    "legacy host {:?}: the cluster already has {MAX_LEGACY_HOSTS} legacy hosts",
                    d.name
                )),
                None => {
                    self.legacy_ids_used += 1;
                    let id = LEGACY_ID_BASE + self.legacy_ids_used;
                    self.legacy
                        .insert(id, LegacyHost::new(id, d, bridge, runs_on, at_ms));
                    changed.push(d.name.clone());
                }
            }
        }
        let gone: Vec<NodeId> = self
            .legacy
            .iter()
            .filter(|(_, l)| l.bridge == bridge && !hosts.iter().any(|d| d.name == l.host.name))
            .map(|(id, _)| *id)
            .collect();
        let mut removed = Vec::new();
        for id in gone {
            if let Some(l) = self.legacy.remove(&id) {
                self.halted.remove(&id);
                removed.push(l.host.name);
            }
        }
        if changed.is_empty() && removed.is_empty() && refused.is_empty() {
            return CommandResult::ignored();
        }
        let mut words = Vec::new();
        if !changed.is_empty() {
            words.push(format!("declares legacy hosts {}", changed.join(", ")));
        }
        if !removed.is_empty() {
            words.push(format!("no longer declares {}", removed.join(", ")));
        }
        if !refused.is_empty() {
            words.push(format!("refused: {}", refused.join("; ")));
        }
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!("Bridge {bridge} {}.", words.join("; ")),
            bridge,
        );
        CommandResult::done()
    }

    fn apply_legacy_seen(
        &mut self,
        bridge: &str,
        name: &str,
        state: LegacyState,
        at_ms: i64,
    ) -> CommandResult {
        let Some((id, prev)) = self
            .legacy
            .iter()
            .find(|(_, l)| l.host.name == name)
            .map(|(id, l)| (*id, l.state))
        else {
            return CommandResult::ignored();
        };
        if matches!(state, LegacyState::Told | LegacyState::Halted) {
            // An acknowledgement for the stage of the latest outage that holds it.
            let stage = self.outage.as_ref().and_then(|o| {
                o.stages
                    .iter()
                    .position(|r| r.hosts.contains(&id))
                    .map(|k| (o.id, k))
            });
            let Some((outage, k)) = stage else {
                return CommandResult::ignored();
            };
            let halting = state == LegacyState::Halted;
            // "Halted" also records "shutting down" if that never came (ignored if it did).
            let mut applied = self
                .apply_node_ack(&outage, &k, &id, &false, &at_ms)
                .applied;
            if halting {
                applied |= self.apply_node_ack(&outage, &k, &id, &true, &at_ms).applied;
            }
            if !applied && prev == state {
                return CommandResult::ignored();
            }
        } else if prev == state {
            // The bridge saw a first poll from a host declared and never seen: it is
            // connected (its state stays "polling").
            let l = self.legacy.get_mut(&id).expect("found above");
            if state == LegacyState::Polling && !l.polled {
                l.polled = true;
                l.host.last_seen_ms = l.host.last_seen_ms.max(at_ms);
                self.push_event(
                    at_ms,
                    "notice",
                    "",
                    &format!("Legacy host {name} polls bridge {bridge}."),
                    name,
                );
                return CommandResult::done();
            }
            return CommandResult::ignored();
        } else if prev == LegacyState::Halted && state == LegacyState::Polling {
            if self.halted.remove(&id) {
                self.push_event(
                    at_ms,
                    "notice",
                    "",
                    &format!("{name} is back up: it polls bridge {bridge} again."),
                    name,
                );
            }
        } else if state == LegacyState::Silent {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!("Legacy host {name} stopped polling bridge {bridge}."),
                name,
            );
        } else if prev == LegacyState::Silent {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!("Legacy host {name} polls bridge {bridge} again."),
                name,
            );
        }
        let l = self.legacy.get_mut(&id).expect("found above");
        l.state = state;
        l.state_since_ms = at_ms;
        l.host.last_seen_ms = l.host.last_seen_ms.max(at_ms);
        // Polling, told or halted: it has polled.
        l.polled |= state != LegacyState::Silent;
        CommandResult::done()
    }

    fn touch(&mut self, id: NodeId, at_ms: i64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.last_seen_ms = n.last_seen_ms.max(at_ms);
        }
    }

    /// Records a refused report from a second node claiming an owned UPS name; the
    /// event is written once per rival, not once per report.
    fn refuse_rival(&mut self, r: &UpsReport) {
        let owner_name = self.upses.get(&r.ups).map(|u| self.node_name(u.owner));
        let rival_name = self.node_name(r.owner);
        let Some(u) = self.upses.get_mut(&r.ups) else {
            return;
        };
        let new_rival = u.rival.as_ref().is_none_or(|x| x.node != r.owner);
        if new_rival {
            u.rival = Some(RivalOwner {
                node: r.owner,
                since_ms: r.at_ms,
                last_ms: r.at_ms,
            });
        } else if let Some(x) = u.rival.as_mut() {
            x.last_ms = x.last_ms.max(r.at_ms);
        }
        self.touch(r.owner, r.at_ms);
        if new_rival {
            let owner = owner_name.unwrap_or_default();
            let ups = r.ups.clone();
            self.push_event(
                r.at_ms,
                "ownerconflict",
                &ups,
                &format!(
                    "Node {rival_name} reports a UPS named {ups}, which {owner} owns: its reports are refused. Rename one of them, or run `upsilon ups release {ups}` to move it."
                ),
                &rival_name,
            );
        }
    }

    /// Applies one command. Deterministic: reads nothing but its arguments. Each command
    /// has its own `apply_*` function below.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::NodeUp {
                id,
                name,
                addr,
                labels,
                version,
                feeds,
                min_supplies,
                shutdown_s,
                at_ms,
            } => self.apply_node_up(NodeRecord {
                id: *id,
                name: name.clone(),
                addr: addr.clone(),
                labels: labels.clone(),
                last_seen_ms: *at_ms,
                version: version.clone(),
                feeds: feeds.clone(),
                min_supplies: *min_supplies,
                shutdown_s: *shutdown_s,
            }),
            Command::Heartbeat { id, at_ms } => self.apply_heartbeat(id, at_ms),
            Command::Seen { seen, .. } => {
                for (id, at_ms) in seen {
                    self.touch(*id, *at_ms);
                }
                CommandResult::applied(true)
            }
            Command::UpsReport(r) => self.apply_ups_report(r),
            Command::UpsStale {
                ups,
                owner,
                seq,
                at_ms,
            } => self.apply_ups_stale(ups, owner, seq, at_ms),
            Command::NodeRemoved { id, at_ms } => self.apply_node_removed(id, at_ms),
            Command::SetPlan { plan, at_ms, by } => self.apply_set_plan(plan, at_ms, by),
            Command::OutageStart { id, at_ms } => self.apply_outage_start(id, at_ms),
            Command::DrillStart {
                id,
                upses,
                by,
                at_ms,
            } => self.apply_drill_start(*id, upses, by, *at_ms),
            Command::StageStart {
                outage,
                stage,
                name,
                hosts,
                reason,
                at_ms,
            } => self.apply_stage_start(outage, stage, name, hosts, reason, at_ms),
            Command::NodeAck {
                outage,
                stage,
                node,
                halting,
                at_ms,
            } => self.apply_node_ack(outage, stage, node, halting, at_ms),
            Command::HostHalted { node, at_ms } => self.apply_host_halted(*node, *at_ms),
            Command::HostDown {
                outage,
                node,
                how,
                last_seen_ms,
                at_ms,
            } => self.apply_host_down(*outage, *node, *how, *last_seen_ms, *at_ms),
            Command::KillPower {
                outage,
                ups,
                delay_s,
                at_ms,
            } => self.apply_kill_power(outage, ups, delay_s, at_ms),
            Command::ArmKillPower {
                outage,
                orders,
                at_ms,
            } => self.apply_arm(*outage, orders, *at_ms),
            Command::KillPowerAlone {
                outage,
                ups,
                delay_s,
                ordered_ms,
                ok,
                result,
                at_ms,
            } => {
                let run = ActionRun {
                    ordered_ms: *ordered_ms,
                    delay_s: *delay_s,
                    done_ms: Some(*at_ms),
                    result: result.clone(),
                };
                self.apply_kill_alone(*outage, ups, run, *ok)
            }
            Command::PowerCycle { ups, at_ms } => self.apply_power_cycle(ups, at_ms),
            Command::UpsActionDone {
                ups,
                power_cycle,
                ok,
                result,
                at_ms,
            } => self.apply_ups_action_done(ups, power_cycle, ok, result, at_ms),
            Command::OutageEnd { id, at_ms, reason } => self.apply_outage_end(id, at_ms, reason),
            Command::VoterSeat { id, owed, .. } => {
                let changed = if *owed {
                    self.seats_owed.insert(*id)
                } else {
                    self.seats_owed.remove(id)
                };
                CommandResult::applied(changed)
            }
            Command::MemberProblem { id, problem, at_ms } => {
                self.apply_member_problem(id, problem, at_ms)
            }
            Command::RevokeCert {
                serial,
                name,
                reason,
                by,
                at_ms,
            } => self.apply_revoke_cert(serial, name, reason, by, at_ms),
            Command::UpsRelease { ups, by, at_ms } => self.apply_ups_release(ups, by, at_ms),
            Command::Notice {
                at_ms,
                node,
                message,
            } => self.apply_notice(at_ms, node, message),
            Command::LegacyHostsDeclare {
                bridge,
                hosts,
                at_ms,
                runs_on,
            } => self.apply_legacy_declare(bridge, hosts, runs_on.as_deref(), *at_ms),
            Command::LegacyHostSeen {
                bridge,
                name,
                state,
                at_ms,
            } => self.apply_legacy_seen(bridge, name, *state, *at_ms),
        }
    }

    fn apply_node_up(&mut self, node: NodeRecord) -> CommandResult {
        if self.halted.remove(&node.id) {
            let name = node.name.clone();
            self.push_event(
                node.last_seen_ms,
                "notice",
                "",
                &format!("{name} is back up."),
                &name,
            );
        }
        self.nodes.insert(node.id, node);
        CommandResult::done()
    }

    fn apply_heartbeat(&mut self, id: &NodeId, at_ms: &i64) -> CommandResult {
        self.touch(*id, *at_ms);
        CommandResult::applied(self.nodes.contains_key(id))
    }

    fn apply_ups_report(&mut self, r: &UpsReport) -> CommandResult {
        if let Some(cur) = self.upses.get(&r.ups) {
            // Same owner: only newer reports.
            if cur.owner == r.owner && r.seq <= cur.seq && !cur.stale {
                return CommandResult::ignored();
            }
            // One owner per UPS name: another node takes it over only once the
            // owner went stale (silent for `stale_after_ms`), left the cluster,
            // or an operator released the name.
            if cur.owner != r.owner && !cur.stale && self.nodes.contains_key(&cur.owner) {
                self.refuse_rival(r);
                return CommandResult::ignored();
            }
        }
        let node = self.node_name(r.owner);
        let was_stale = self.upses.get(&r.ups).is_some_and(|u| u.stale);
        let prev_lost = self.upses.get(&r.ups).and_then(|u| u.comm_lost_since_ms);
        // A refused rival stays on record while it keeps reporting.
        let rival = self
            .upses
            .get(&r.ups)
            .filter(|u| u.owner == r.owner)
            .and_then(|u| u.rival.clone())
            .filter(|x| r.at_ms - x.last_ms < RIVAL_FORGET_MS);
        if was_stale {
            self.push_event(
                r.at_ms,
                "commok",
                &r.ups,
                &format!("Communications with UPS restored: its owner {node} reports again."),
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
                seq: r.seq,
                status: r.status.clone(),
                stale: false,
                last_report_ms: r.at_ms,
                on_battery_since_ms: r
                    .status
                    .on_battery
                    .then(|| r.at_ms - i64::from(r.status.time_on_battery_s) * 1000),
                comm_lost_since_ms: if r.status.comm_lost {
                    prev_lost.or(Some(r.at_ms))
                } else {
                    None
                },
                rival,
            },
        );
        self.touch(r.owner, r.at_ms);
        CommandResult::done()
    }

    fn apply_ups_stale(
        &mut self,
        ups: &String,
        owner: &NodeId,
        seq: &u64,
        at_ms: &i64,
    ) -> CommandResult {
        match self.upses.get_mut(ups) {
            Some(u) if u.owner == *owner && !u.stale && u.seq == *seq => {
                u.stale = true;
                u.comm_lost_since_ms.get_or_insert(*at_ms);
                let node = self.node_name(*owner);
                self.push_event(
                    *at_ms,
                    "commfailure",
                    ups,
                    &format!("Communications with UPS lost: its owner {node} stopped reporting."),
                    &node,
                );
                CommandResult::done()
            }
            _ => CommandResult::ignored(),
        }
    }

    fn apply_node_removed(&mut self, id: &NodeId, at_ms: &i64) -> CommandResult {
        let name = self.node_name(*id);
        self.member_problems.remove(id);
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
        CommandResult::applied(removed)
    }

    fn apply_set_plan(&mut self, plan: &Plan, at_ms: &i64, by: &str) -> CommandResult {
        self.plan = Some(plan.clone());
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        self.push_event(
            *at_ms,
            "notice",
            "",
            &format!("Shutdown plan set by {by}: {}.", names.join(" -> ")),
            by,
        );
        CommandResult::done()
    }

    fn apply_outage_start(&mut self, id: &u64, at_ms: &i64) -> CommandResult {
        let active = self.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
        if active || *id != self.next_outage_id + 1 {
            return CommandResult::ignored();
        }
        self.next_outage_id = *id;
        self.power_cycled.clear();
        self.outage = Some(Outage {
            id: *id,
            started_ms: *at_ms,
            stages: vec![],
            kill_power: BTreeMap::new(),
            ended_ms: None,
            end_reason: String::new(),
            armed: None,
            drill: None,
        });
        self.push_event(
            *at_ms,
            "outage",
            "",
            &format!("Outage {id} began: a supply is on battery."),
            "",
        );
        CommandResult::done()
    }

    fn apply_drill_start(
        &mut self,
        id: u64,
        upses: &[String],
        by: &str,
        at_ms: i64,
    ) -> CommandResult {
        let active = self.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
        let known = !upses.is_empty() && upses.iter().all(|u| self.upses.contains_key(u));
        if active || id != self.next_outage_id + 1 || !known || self.plan.is_none() {
            return CommandResult::ignored();
        }
        self.next_outage_id = id;
        self.outage = Some(Outage {
            id,
            started_ms: at_ms,
            stages: vec![],
            kill_power: BTreeMap::new(),
            ended_ms: None,
            end_reason: String::new(),
            armed: None,
            drill: Some(upses.to_vec()),
        });
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!(
                "Fire drill {id} started by {by}: the plan runs as if mains failed on {}; nothing is shut down or cut.",
                upses.join(", ")
            ),
            "",
        );
        CommandResult::done()
    }

    /// Whether the active outage is a drill.
    fn in_drill(&self) -> bool {
        self.outage
            .as_ref()
            .is_some_and(|o| o.ended_ms.is_none() && o.is_drill())
    }

    fn apply_stage_start(
        &mut self,
        outage: &u64,
        stage: &usize,
        name: &String,
        hosts: &[NodeId],
        reason: &String,
        at_ms: &i64,
    ) -> CommandResult {
        let names: Vec<String> = hosts.iter().map(|h| self.node_name(*h)).collect();
        let Some(o) = self.active_outage(*outage) else {
            return CommandResult::ignored();
        };
        // Exactly once and in order: only the next stage may start.
        if o.stages.len() != *stage {
            return CommandResult::ignored();
        }
        o.stages.push(StageRun {
            name: name.clone(),
            started_ms: *at_ms,
            reason: reason.clone(),
            hosts: hosts.to_vec(),
            acks: BTreeMap::new(),
        });
        self.push_event(
            *at_ms,
            "stagestart",
            "",
            &format!(
                "Stage {} ({name}) started: {reason}; hosts: {}.",
                stage + 1,
                names.join(", ")
            ),
            "",
        );
        CommandResult::done()
    }

    fn apply_node_ack(
        &mut self,
        outage: &u64,
        stage: &usize,
        node: &NodeId,
        halting: &bool,
        at_ms: &i64,
    ) -> CommandResult {
        let name = self.node_name(*node);
        let drill = self.in_drill();
        let Some(run) = self
            .outage
            .as_mut()
            .filter(|o| o.id == *outage)
            .and_then(|o| o.stages.get_mut(*stage))
            .filter(|r| r.hosts.contains(node))
        else {
            return CommandResult::ignored();
        };
        let stage_name = run.name.clone();
        let ack = run.acks.entry(*node).or_default();
        let slot = if *halting {
            &mut ack.halting_ms
        } else {
            &mut ack.shutting_down_ms
        };
        if slot.is_some() {
            return CommandResult::ignored();
        }
        *slot = Some(*at_ms);
        if *halting && !drill {
            self.halted.insert(*node);
        }
        let what = if *halting {
            "is halting"
        } else {
            "is shutting down"
        };
        self.push_event(
            *at_ms,
            "nodeack",
            "",
            &format!("{name} {what} (stage {stage_name})."),
            &name,
        );
        CommandResult::done()
    }

    /// The active outage's stage run that holds `node`, and the outage id.
    fn stage_of(&mut self, node: NodeId) -> Option<(u64, &mut StageRun)> {
        let o = self.outage.as_mut().filter(|o| o.ended_ms.is_none())?;
        let id = o.id;
        o.stages
            .iter_mut()
            .find(|r| r.hosts.contains(&node))
            .map(|r| (id, r))
    }

    fn apply_host_halted(&mut self, node: NodeId, at_ms: i64) -> CommandResult {
        let name = self.node_name(node);
        let drill = self.in_drill();
        let Some((outage, run)) = self.stage_of(node) else {
            return CommandResult::ignored();
        };
        let ack = run.acks.entry(node).or_default();
        if ack.halted_ms.is_some() {
            return CommandResult::ignored();
        }
        ack.halted_ms = Some(at_ms);
        // A "halted" with no halting acknowledgement (it did not commit) stands for both.
        let halting = *ack.halting_ms.get_or_insert(at_ms);
        if ack.down_ms.is_none() {
            ack.down_ms = Some(at_ms);
            ack.down_how = Some(DownHow::Halted);
        }
        let after = (at_ms - halting).max(0) as f64 / 1000.0;
        if drill {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!(
                    "{name} would halt now (drill; {after:.1} s after its halting acknowledgement)."
                ),
                &name,
            );
            return CommandResult::done();
        }
        self.halted.insert(node);
        let m = self.shutdown_measured.entry(node).or_default();
        if m.outage != outage {
            *m = MeasuredShutdown {
                outage,
                ..Default::default()
            };
        }
        m.to_halted_ms = Some((at_ms - halting).max(0));
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!("{name} halted ({after:.1} s after its halting acknowledgement)."),
            &name,
        );
        CommandResult::done()
    }

    fn apply_host_down(
        &mut self,
        outage: u64,
        node: NodeId,
        how: DownHow,
        last_seen_ms: i64,
        at_ms: i64,
    ) -> CommandResult {
        let name = self.node_name(node);
        let drill = self.in_drill();
        let Some((o, run)) = self.stage_of(node) else {
            return CommandResult::ignored();
        };
        if o != outage {
            return CommandResult::ignored();
        }
        let ack = run.acks.entry(node).or_default();
        if ack.down_ms.is_some() {
            return CommandResult::ignored();
        }
        ack.down_ms = Some(at_ms);
        ack.down_how = Some(how);
        let halting = ack.halting_ms;
        let text = match (how, halting) {
            (DownHow::Silent, Some(h)) if !drill => {
                let m = self.shutdown_measured.entry(node).or_default();
                if m.outage != outage {
                    *m = MeasuredShutdown {
                        outage,
                        ..Default::default()
                    };
                }
                m.to_silence_ms = Some((last_seen_ms - h).max(0));
                format!(
                    "{name} is down: silent since {:.1} s after its halting acknowledgement.",
                    (last_seen_ms - h).max(0) as f64 / 1000.0
                )
            }
            _ => format!(
                "{name} is down: it never acknowledged halting, its stage timed out and it is silent."
            ),
        };
        self.push_event(at_ms, "notice", "", &text, &name);
        CommandResult::done()
    }

    fn apply_arm(&mut self, outage: u64, orders: &[ArmedKill], at_ms: i64) -> CommandResult {
        let Some(o) = self.active_outage(outage) else {
            return CommandResult::ignored();
        };
        if o.armed.is_some() {
            return CommandResult::ignored();
        }
        o.armed = Some(orders.to_vec());
        let words: Vec<String> = orders
            .iter()
            .map(|k| {
                let names: Vec<String> = k.wait_for.iter().map(|h| self.node_name(*h)).collect();
                if names.is_empty() {
                    format!("{} (no host to wait for)", k.ups)
                } else {
                    format!("{} after {}", k.ups, names.join(", "))
                }
            })
            .collect();
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!(
                "Kill orders committed before any host halts (owners finish alone if the quorum is gone): {}.",
                words.join("; ")
            ),
            "",
        );
        CommandResult::done()
    }

    fn apply_kill_alone(
        &mut self,
        outage: u64,
        ups: &str,
        run: ActionRun,
        ok: bool,
    ) -> CommandResult {
        let Some(o) = self.outage.as_mut().filter(|o| o.id == outage) else {
            return CommandResult::ignored();
        };
        if o.kill_power.get(ups).is_some_and(|r| r.done_ms.is_some()) {
            return CommandResult::ignored();
        }
        let (at, delay, result) = (
            run.done_ms.unwrap_or(run.ordered_ms),
            run.delay_s,
            run.result.clone(),
        );
        o.kill_power.insert(ups.to_string(), run);
        let how = if ok { "done" } else { "FAILED" };
        self.push_event(
            at,
            "notice",
            ups,
            &format!("UPS {ups} kill power {how} by its owner alone (no quorum), {delay} s delay: {result}"),
            "",
        );
        CommandResult::done()
    }

    fn apply_kill_power(
        &mut self,
        outage: &u64,
        ups: &String,
        delay_s: &u32,
        at_ms: &i64,
    ) -> CommandResult {
        let Some(o) = self.active_outage(*outage) else {
            return CommandResult::ignored();
        };
        if o.kill_power.contains_key(ups) {
            return CommandResult::ignored();
        }
        o.kill_power.insert(
            ups.clone(),
            ActionRun {
                ordered_ms: *at_ms,
                delay_s: *delay_s,
                done_ms: None,
                result: String::new(),
            },
        );
        self.push_event(
            *at_ms,
            "killpower",
            ups,
            &format!("UPS {ups} ordered to cut power in {delay_s} s and return with mains."),
            "",
        );
        CommandResult::done()
    }

    fn apply_power_cycle(&mut self, ups: &str, at_ms: &i64) -> CommandResult {
        if self.power_cycled.contains_key(ups) {
            return CommandResult::ignored();
        }
        self.power_cycled.insert(
            ups.to_string(),
            ActionRun {
                ordered_ms: *at_ms,
                delay_s: 0,
                done_ms: None,
                result: String::new(),
            },
        );
        self.push_event(
            *at_ms,
            "powercycle",
            ups,
            &format!("UPS {ups} ordered to power-cycle its outlets to bring halted hosts back."),
            "",
        );
        CommandResult::done()
    }

    fn apply_ups_action_done(
        &mut self,
        ups: &String,
        power_cycle: &bool,
        ok: &bool,
        result: &String,
        at_ms: &i64,
    ) -> CommandResult {
        let run = if *power_cycle {
            self.power_cycled.get_mut(ups)
        } else {
            self.outage.as_mut().and_then(|o| o.kill_power.get_mut(ups))
        };
        let Some(run) = run.filter(|r| r.done_ms.is_none()) else {
            return CommandResult::ignored();
        };
        run.done_ms = Some(*at_ms);
        run.result = result.clone();
        let what = if *power_cycle {
            "power cycle"
        } else {
            "kill power"
        };
        let how = if *ok { "done" } else { "FAILED" };
        self.push_event(
            *at_ms,
            "notice",
            ups,
            &format!("UPS {ups} {what} {how}: {result}"),
            "",
        );
        CommandResult::done()
    }

    fn apply_outage_end(&mut self, id: &u64, at_ms: &i64, reason: &str) -> CommandResult {
        let Some(o) = self.active_outage(*id) else {
            return CommandResult::ignored();
        };
        o.ended_ms = Some(*at_ms);
        o.end_reason = reason.to_string();
        let drill = o.is_drill();
        let name = if reason.contains("cancelled") {
            "cancel"
        } else {
            "outageend"
        };
        let text = if drill {
            format!("Fire drill {id} ended: {reason}.")
        } else {
            format!("Outage {id} ended: {reason}.")
        };
        self.push_event(*at_ms, if drill { "notice" } else { name }, "", &text, "");
        CommandResult::done()
    }

    fn apply_member_problem(
        &mut self,
        id: &NodeId,
        problem: &Option<String>,
        at_ms: &i64,
    ) -> CommandResult {
        let name = self.node_name(*id);
        match problem {
            Some(p) => {
                if self.member_problems.get(id) == Some(p) {
                    return CommandResult::ignored();
                }
                self.member_problems.insert(*id, p.clone());
                self.push_event(*at_ms, "memberrefused", "", p, &name);
            }
            None => {
                if self.member_problems.remove(id).is_none() {
                    return CommandResult::ignored();
                }
                self.push_event(
                    *at_ms,
                    "notice",
                    "",
                    &format!("{name} accepts replication again."),
                    &name,
                );
            }
        }
        CommandResult::done()
    }

    fn apply_revoke_cert(
        &mut self,
        serial: &String,
        name: &String,
        reason: &String,
        by: &String,
        at_ms: &i64,
    ) -> CommandResult {
        if self.revoked.contains_key(serial) || self.revoked.len() >= MAX_REVOKED {
            return CommandResult::ignored();
        }
        self.revoked.insert(
            serial.clone(),
            RevokedCert {
                name: name.clone(),
                reason: reason.clone(),
                by: by.clone(),
                at_ms: *at_ms,
            },
        );
        let who = if name.is_empty() {
            String::new()
        } else {
            format!(" ({name})")
        };
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        self.push_event(
            *at_ms,
            "notice",
            "",
            &format!("Certificate {serial}{who} revoked by {by}{why}."),
            by,
        );
        CommandResult::done()
    }

    fn apply_ups_release(&mut self, ups: &str, by: &str, at_ms: &i64) -> CommandResult {
        let Some(u) = self.upses.get_mut(ups) else {
            return CommandResult::ignored();
        };
        u.stale = true;
        u.comm_lost_since_ms.get_or_insert(*at_ms);
        let owner = u.owner;
        let owner = self.node_name(owner);
        self.push_event(
            *at_ms,
            "notice",
            ups,
            &format!(
                "UPS {ups} released by {by}: it was owned by {owner}; the next node to report it owns it."
            ),
            by,
        );
        CommandResult::done()
    }

    fn apply_notice(&mut self, at_ms: &i64, node: &str, message: &str) -> CommandResult {
        self.push_event(*at_ms, "notice", "", message, node);
        CommandResult::done()
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
            feeds: vec![],
            min_supplies: 1,
            shutdown_s: 120,
            at_ms: 1,
        }
    }

    fn report(seq: u64, at_ms: i64, events: &[&str]) -> Command {
        Command::UpsReport(Box::new(UpsReport {
            ups: "ups1".into(),
            owner: 1,
            seq,
            at_ms,
            events: events
                .iter()
                .map(|n| ReportedEvent {
                    at_ms,
                    name: n.to_string(),
                    message: format!("{n} text"),
                })
                .collect(),
            status: UpsStatus {
                driver: "sim".into(),
                reading: None,
                statflag: 0x0500_0008,
                comm_lost: false,
                on_battery: false,
                time_on_battery_s: 0,
                transfers: 0,
                shutdown: None,
                comm_error: None,
            },
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

    fn report_from(owner: NodeId, seq: u64, at_ms: i64) -> Command {
        let Command::UpsReport(mut r) = report(seq, at_ms, &[]) else {
            unreachable!()
        };
        r.owner = owner;
        Command::UpsReport(r)
    }

    #[test]
    fn a_second_owner_of_one_ups_name_is_refused_until_the_owner_is_stale() {
        let mut s = PowerState::default();
        s.apply(&up(1, "a"));
        s.apply(&up(2, "b"));
        assert!(s.apply(&report_from(1, 10, 100)).applied);
        // b reports a UPS of the same name: refused, one event however often it reports.
        for i in 0..5 {
            assert!(!s.apply(&report_from(2, 20 + i, 200 + i as i64)).applied);
            assert!(s.apply(&report_from(1, 30 + i, 200 + i as i64)).applied);
        }
        assert_eq!(s.upses["ups1"].owner, 1);
        let rival = s.upses["ups1"].rival.clone().unwrap();
        assert_eq!((rival.node, rival.since_ms, rival.last_ms), (2, 200, 204));
        let conflicts = s
            .events
            .iter()
            .filter(|e| e.name == "ownerconflict")
            .count();
        assert_eq!(conflicts, 1, "{:?}", s.events);
        // The owner goes silent: the leader marks it stale; then b takes over.
        let seq = s.upses["ups1"].seq;
        s.apply(&Command::UpsStale {
            ups: "ups1".into(),
            owner: 1,
            seq,
            at_ms: 300,
        });
        assert!(s.apply(&report_from(2, 40, 310)).applied);
        assert_eq!(s.upses["ups1"].owner, 2);
        assert!(s.upses["ups1"].rival.is_none());
        // Now a is the one refused.
        assert!(!s.apply(&report_from(1, 50, 320)).applied);
        assert_eq!(s.upses["ups1"].rival.as_ref().unwrap().node, 1);
        // An operator releases the name: the next reporter owns it.
        s.apply(&Command::UpsRelease {
            ups: "ups1".into(),
            by: "operator".into(),
            at_ms: 330,
        });
        assert!(s.apply(&report_from(1, 60, 340)).applied);
        assert_eq!(s.upses["ups1"].owner, 1);
        // An owner that left the cluster does not hold the name.
        s.apply(&Command::NodeRemoved { id: 1, at_ms: 350 });
        assert!(s.apply(&report_from(2, 70, 360)).applied);
        assert_eq!(s.upses["ups1"].owner, 2);
    }

    #[test]
    fn event_texts_are_bounded_on_a_character_boundary() {
        let mut s = PowerState::default();
        let long = "é".repeat(MAX_EVENT_TEXT);
        s.apply(&Command::Notice {
            at_ms: 1,
            node: "a".into(),
            message: long,
        });
        let m = &s.events[0].message;
        assert!(
            m.len() <= MAX_EVENT_TEXT && m.len() >= MAX_EVENT_TEXT - 1,
            "{}",
            m.len()
        );
        assert!(m.chars().all(|c| c == 'é'));
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
