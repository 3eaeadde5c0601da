//! The commands that change the replicated state (one per Raft log entry), the UPS
//! report they carry, and what applying one did.

use std::fmt;

use super::super::NodeId;
use super::super::legacy::{LegacyHostDecl, LegacyState};
use super::super::plan::Plan;
use super::super::records::{ArmedKill, DownHow, ReportedEvent, default_shutdown_s};
use crate::view::UpsStatus;

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
