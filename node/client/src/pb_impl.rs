//! Every conversion between the node's own types and the protobuf messages.

use std::time::SystemTime;

use upsilon_proto::v1 as pb;

use upsilon_core::events::Event;
use upsilon_core::policy::Policy;
use upsilon_core::reading::{UpsFlags, UpsReading, statflag, status_text};
use upsilon_core::replicated::legacy::{LegacyHostDecl, LegacyState};
use upsilon_core::snapshot::{
    ActionKind, ClusterSummary, LegacyHostSummary, NodeSummary, PendingAction, StatusSnapshot,
};
use upsilon_core::time::{from_unix_ms, unix_ms};
use upsilon_core::view::{UpsStatus, UpsView};

pub fn flags_to_pb(f: &UpsFlags, statflag_value: u32) -> pb::UpsFlags {
    pb::UpsFlags {
        calibration: f.calibration,
        trim: f.trim,
        boost: f.boost,
        online: f.online,
        on_battery: f.on_battery,
        overload: f.overload,
        low_battery: f.low_battery,
        replace_battery: f.replace_battery,
        comm_lost: statflag_value & statflag::COMMLOST != 0,
        shutting_down: statflag_value & statflag::SHUTDOWN != 0,
        battery_present: f.battery_present,
    }
}

/// A UPS view as the API's `UpsReading` message.
pub fn ups_view_to_pb(v: &UpsView) -> pb::UpsReading {
    let empty = UpsReading::empty(UpsFlags::default(), SystemTime::UNIX_EPOCH);
    let r = v.status.reading.as_ref().unwrap_or(&empty);
    pb::UpsReading {
        ups_name: v.name.clone(),
        flags: Some(flags_to_pb(&r.flags, v.status.statflag)),
        status_text: if v.status.reading.is_none() && !v.status.comm_lost {
            "WAITING".into()
        } else {
            status_text(v.status.statflag)
        },
        line_voltage: r.line_voltage,
        output_voltage: r.output_voltage,
        battery_voltage: r.battery_voltage,
        load_percent: r.load_percent,
        charge_percent: r.charge_percent,
        runtime_seconds: r.runtime_s,
        internal_temp_c: r.internal_temp_c,
        line_frequency_hz: r.line_frequency_hz,
        model: r.model.clone(),
        serial_number: r.serial_number.clone(),
        firmware: r.firmware.clone(),
        last_transfer: r.last_transfer.clone(),
        self_test: r.self_test.clone(),
        min_line_voltage: r.min_line_voltage,
        max_line_voltage: r.max_line_voltage,
        nominal_power_watts: r.nominal_power_w,
        battery_date: r.battery_date.clone(),
        read_at_unix_ms: if v.status.reading.is_some() {
            unix_ms(r.read_at)
        } else {
            0
        },
        statflag: v.status.statflag,
        time_on_battery_s: v.status.time_on_battery_s,
        transfers: v.status.transfers,
        driver: v.status.driver.clone(),
        details: r
            .details
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        comm_error: v.status.comm_error.clone().unwrap_or_default(),
    }
}

/// The API's `UpsReading` back as a view, for clients that serve it on (the bridge).
/// The one thing the message lacks is the shutdown rule: a shutdown shows as the
/// SHUTDOWN bit in `statflag`.
pub fn ups_view_from_pb(u: &pb::UpsReading) -> UpsView {
    let f = u.flags.unwrap_or_default();
    let reading = (u.read_at_unix_ms != 0).then(|| UpsReading {
        flags: UpsFlags {
            calibration: f.calibration,
            trim: f.trim,
            boost: f.boost,
            online: f.online,
            on_battery: f.on_battery,
            overload: f.overload,
            low_battery: f.low_battery,
            replace_battery: f.replace_battery,
            battery_present: f.battery_present,
        },
        line_voltage: u.line_voltage,
        output_voltage: u.output_voltage,
        battery_voltage: u.battery_voltage,
        load_percent: u.load_percent,
        charge_percent: u.charge_percent,
        runtime_s: u.runtime_seconds,
        internal_temp_c: u.internal_temp_c,
        line_frequency_hz: u.line_frequency_hz,
        min_line_voltage: u.min_line_voltage,
        max_line_voltage: u.max_line_voltage,
        nominal_power_w: u.nominal_power_watts,
        model: u.model.clone(),
        serial_number: u.serial_number.clone(),
        firmware: u.firmware.clone(),
        battery_date: u.battery_date.clone(),
        last_transfer: u.last_transfer.clone(),
        self_test: u.self_test.clone(),
        details: u
            .details
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        read_at: from_unix_ms(u.read_at_unix_ms),
    });
    UpsView {
        name: u.ups_name.clone(),
        status: UpsStatus {
            driver: u.driver.clone(),
            reading,
            statflag: u.statflag,
            comm_lost: f.comm_lost || u.statflag & statflag::COMMLOST != 0,
            comm_error: (!u.comm_error.is_empty()).then(|| u.comm_error.clone()),
            on_battery: f.on_battery,
            time_on_battery_s: u.time_on_battery_s,
            transfers: u.transfers,
            shutdown: None,
        },
    }
}

/// The API's policy summary back as a policy (what it does not carry is defaulted).
pub fn policy_from_pb(p: &pb::PolicySummary) -> Policy {
    Policy {
        battery_level: p.battery_level_percent,
        minutes: p.minutes,
        timeout: p.timeout_seconds,
        on_battery_delay: p.on_battery_delay_seconds,
        dead_time: p.dead_time_seconds,
        ..Policy::default()
    }
}

pub fn event_to_pb(e: &Event, node: &str) -> pb::Event {
    pb::Event {
        seq: e.seq,
        at_unix_ms: unix_ms(e.at),
        name: e.kind.name().to_string(),
        ups_name: e.ups_name.clone(),
        message: e.message.clone(),
        node_name: node.to_string(),
    }
}

/// The status snapshot as the API's `StatusReply`.
pub fn status_to_pb(s: &StatusSnapshot) -> pb::StatusReply {
    pb::StatusReply {
        ups: s.ups.iter().map(ups_view_to_pb).collect(),
        nodes: s.nodes.iter().map(node_to_pb).collect(),
        pending: Some(pending_to_pb(&s.pending)),
        policy: Some(policy_to_pb(&s.policy)),
        node_name: s.node_name.clone(),
        generated_at_unix_ms: s.generated_at_ms,
        cluster: Some(
            s.cluster
                .as_ref()
                .map_or_else(pb::ClusterInfo::default, cluster_to_pb),
        ),
        legacy_hosts: s.legacy_hosts.iter().map(legacy_host_to_pb).collect(),
    }
}

pub fn legacy_host_to_pb(h: &LegacyHostSummary) -> pb::LegacyHostInfo {
    pb::LegacyHostInfo {
        name: h.name.clone(),
        addresses: h.addresses.clone(),
        labels: h.labels.clone(),
        feeds: h.feeds.clone(),
        min_supplies: h.min_supplies,
        protocol: h.protocol.clone(),
        bridge: h.bridge.clone(),
        state: h.state.clone(),
        state_since_unix_ms: h.state_since_ms,
        served: Some(ups_view_to_pb(&h.served)),
        shutting_down: h.shutting_down,
        stage: h.stage.clone(),
        never_polled: h.never_polled,
    }
}

pub fn legacy_host_from_pb(h: &pb::LegacyHostInfo) -> LegacyHostSummary {
    LegacyHostSummary {
        name: h.name.clone(),
        addresses: h.addresses.clone(),
        labels: h.labels.clone(),
        feeds: h.feeds.clone(),
        min_supplies: h.min_supplies,
        protocol: h.protocol.clone(),
        bridge: h.bridge.clone(),
        state: h.state.clone(),
        state_since_ms: h.state_since_unix_ms,
        served: h
            .served
            .as_ref()
            .map(ups_view_from_pb)
            .unwrap_or_else(|| UpsView {
                name: h.feeds.first().cloned().unwrap_or_default(),
                status: UpsStatus::default(),
            }),
        shutting_down: h.shutting_down,
        stage: h.stage.clone(),
        never_polled: h.never_polled,
    }
}

/// A legacy host's declaration, to the API and back.
pub fn legacy_decl_to_pb(d: &LegacyHostDecl) -> pb::LegacyHostDecl {
    pb::LegacyHostDecl {
        name: d.name.clone(),
        addresses: d.addresses.clone(),
        labels: d.labels.clone(),
        feeds: d.feeds.clone(),
        min_supplies: d.min_supplies,
        protocol: d.protocol.clone(),
        shutdown_s: d.shutdown_s,
    }
}

pub fn legacy_decl_from_pb(d: &pb::LegacyHostDecl) -> LegacyHostDecl {
    LegacyHostDecl {
        name: d.name.clone(),
        addresses: d.addresses.clone(),
        labels: d.labels.clone(),
        feeds: d.feeds.clone(),
        min_supplies: d.min_supplies,
        protocol: d.protocol.clone(),
        shutdown_s: if d.shutdown_s == 0 {
            upsilon_core::replicated::state::DEFAULT_SHUTDOWN_S
        } else {
            d.shutdown_s
        },
    }
}

pub fn legacy_state_to_pb(s: LegacyState) -> pb::LegacyHostState {
    match s {
        LegacyState::Polling => pb::LegacyHostState::Polling,
        LegacyState::Silent => pb::LegacyHostState::Silent,
        LegacyState::Told => pb::LegacyHostState::Told,
        LegacyState::Halted => pb::LegacyHostState::Halted,
    }
}

pub fn legacy_state_from_pb(s: pb::LegacyHostState) -> Option<LegacyState> {
    match s {
        pb::LegacyHostState::Unspecified => None,
        pb::LegacyHostState::Polling => Some(LegacyState::Polling),
        pb::LegacyHostState::Silent => Some(LegacyState::Silent),
        pb::LegacyHostState::Told => Some(LegacyState::Told),
        pb::LegacyHostState::Halted => Some(LegacyState::Halted),
    }
}

fn node_to_pb(n: &NodeSummary) -> pb::NodeInfo {
    pb::NodeInfo {
        name: n.name.clone(),
        address: n.address.clone(),
        role: n.role.clone(),
        last_seen_unix_ms: n.last_seen_ms,
        ups_names: n.ups_names.clone(),
        version: n.version.clone(),
        id: n.id,
        lag: n.lag,
        state: n.state.clone(),
    }
}

fn cluster_to_pb(c: &ClusterSummary) -> pb::ClusterInfo {
    pb::ClusterInfo {
        enabled: true,
        leader: c.leader.clone(),
        leader_id: c.leader_id,
        term: c.term,
        writable: c.writable,
        detail: c.detail.clone(),
        last_applied: c.last_applied,
        snapshot_index: c.snapshot_index,
        voters: c.voters,
        learners: c.learners,
        outage: c.outage.clone(),
        stages: c.stages.clone(),
        warnings: c.warnings.clone(),
        // Filled by the status RPC alone (see `api::power::status_reply`).
        state_index: 0,
        state_digest: String::new(),
    }
}

pub fn pending_to_pb(p: &PendingAction) -> pb::PendingAction {
    pb::PendingAction {
        kind: match p.kind {
            ActionKind::None => pb::ActionKind::None,
            ActionKind::Watching => pb::ActionKind::Watching,
            ActionKind::ShuttingDown => pb::ActionKind::ShuttingDown,
        } as i32,
        reason: p.reason.clone(),
        detail: p.detail.clone(),
        since_unix_ms: p.since_ms,
        executor_mode: p.executor_mode.clone(),
        commands: p.commands.clone(),
        shutdown_handled: p.shutdown_handled,
    }
}

pub fn policy_to_pb(p: &Policy) -> pb::PolicySummary {
    pb::PolicySummary {
        battery_level_percent: p.battery_level,
        minutes: p.minutes,
        timeout_seconds: p.timeout,
        on_battery_delay_seconds: p.on_battery_delay,
        dead_time_seconds: p.dead_time,
    }
}

pub fn cluster_event_to_pb(e: &upsilon_core::replicated::state::ClusterEvent) -> pb::Event {
    pb::Event {
        seq: e.seq,
        at_unix_ms: e.at_ms,
        name: e.name.clone(),
        ups_name: e.ups.clone(),
        message: e.message.clone(),
        node_name: e.node.clone(),
    }
}

/// The plan, its progress and the coordinator's view, for `upsilon plan`.
/// What `GetPlan` asks for beyond the plan itself.
#[derive(Debug, Clone, Default)]
pub struct PlanAsk {
    pub replay: bool,
    pub assume_outage: bool,
    /// `Some(voters)`: run `plan check` (voters empty when unknown).
    pub check: Option<Vec<u64>>,
    /// The cluster's voters, for the dry run's quorum (empty when unknown).
    pub voters: Vec<u64>,
}

pub fn plan_reply(
    s: &upsilon_core::replicated::state::PowerState,
    now_ms: i64,
    ask: &PlanAsk,
) -> pb::PlanReply {
    use upsilon_core::replicated::endgame;
    use upsilon_core::replicated::plan;
    let Some(p) = s.plan.as_ref() else {
        return pb::PlanReply::default();
    };
    let nodes = s.hosts();
    let name = |id: &u64| {
        s.host(*id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    };
    let stages = p
        .stages
        .iter()
        .enumerate()
        .map(|(k, st)| {
            let run = s
                .outage
                .as_ref()
                .filter(|o| o.ended_ms.is_none())
                .and_then(|o| o.stages.get(k));
            pb::PlanStage {
                name: st.name.clone(),
                selectors: st.hosts.clone(),
                hosts: p.stage_hosts(k, &nodes).iter().map(name).collect(),
                trigger: plan::trigger_words(&st.trigger),
                ack_timeout_s: st.ack_timeout_s,
                state: run.map_or_else(
                    || "not started".to_string(),
                    |r| {
                        format!(
                            "started {} ({})",
                            upsilon_core::time::format_date(from_unix_ms(r.started_ms)),
                            r.reason
                        )
                    },
                ),
                waiting_for: run.map_or_else(Vec::new, |r| {
                    plan::stage_waits_for(s, r).iter().map(name).collect()
                }),
                // In an outage, the owners whose kill power is still to come; outside
                // one, every owner the stage selects (as if every UPS failed).
                deferred: p
                    .stage_hosts(k, &nodes)
                    .iter()
                    .filter_map(|h| {
                        let halted = run
                            .and_then(|r| r.acks.get(h))
                            .is_some_and(|a| a.halting_ms.is_some());
                        let duties = if s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none()) {
                            endgame::duties(s, *h)
                        } else {
                            endgame::deferrable(s, *h)
                        };
                        (!duties.is_empty() && !halted)
                            .then(|| format!("{} {}", name(h), endgame::deferred_words(&duties)))
                    })
                    .collect(),
            }
        })
        .collect();
    let now: Vec<String> = plan::decide(s, now_ms)
        .iter()
        .map(|c| c.to_string())
        .collect();
    let (outage, _) = upsilon_core::wording::outage_lines(s, now_ms);
    pb::PlanReply {
        has_plan: true,
        stages,
        outage,
        now: if now.is_empty() {
            vec!["nothing: no trigger is met".into()]
        } else {
            now
        },
        replay: if ask.replay {
            dry_run(s, now_ms, ask.assume_outage, &ask.voters)
        } else {
            vec![]
        },
        runtime_floor_s: p.runtime_floor_s,
        dead_time_s: p.dead_time_s,
        kill_power_delay_s: p.kill_power_delay_s,
        silence_s: p.silence_s,
        shutdown_times: nodes
            .iter()
            .map(|n| pb::HostShutdown {
                host: n.name.clone(),
                declared_s: endgame::declared_shutdown_s(s, p, n),
                measured_s: s.shutdown_measured.get(&n.id).and_then(|m| m.seconds()),
                used_s: endgame::shutdown_s(s, p, n),
            })
            .collect(),
        drill_report: upsilon_core::replicated::drill::report(s, now_ms)
            .map(|r| r.0)
            .unwrap_or_default(),
        drill_unanswered: upsilon_core::replicated::drill::report(s, now_ms)
            .map(|r| r.1)
            .unwrap_or_default(),
        drill_running: upsilon_core::replicated::drill::last_drill(s)
            .is_some_and(|o| o.ended_ms.is_none()),
        drill_id: upsilon_core::replicated::drill::last_drill(s).map_or(0, |o| o.id),
        check: ask.check.as_ref().and_then(|voters| {
            let c = upsilon_core::replicated::check::check(s, voters, now_ms)?;
            Some(pb::PlanCheck {
                fits: c.fits(),
                lines: c.lines,
                problems: c.problems,
                warnings: c.warnings,
            })
        }),
    }
}

/// `upsilon shutdown --dry-run`: the end game's timeline (the model `plan check` uses),
/// in order of time. Without `assume_outage` and with every supply on line, nothing.
fn dry_run(
    s: &upsilon_core::replicated::state::PowerState,
    now_ms: i64,
    assume_outage: bool,
    voters: &[u64],
) -> Vec<String> {
    let going = s
        .outage
        .as_ref()
        .is_some_and(|o| o.ended_ms.is_none() && !o.is_drill());
    if !going && !assume_outage {
        return vec!["nothing would happen: no outage is going on (try --assume-outage)".into()];
    }
    upsilon_core::replicated::timeline::predict(s, voters, now_ms)
        .map(|t| t.events())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_survives_the_round_trip_but_for_the_shutdown_rule() {
        let mut r = UpsReading::basic(true, 81.5, 1830.0, from_unix_ms(1_780_000_000_123));
        r.model = "Smart-UPS 1500".into();
        r.line_voltage = Some(0.0);
        r.details.insert("SENSE".into(), "High".into());
        let v = UpsView {
            name: "ups1".into(),
            status: UpsStatus {
                driver: "apcsmart".into(),
                reading: Some(r),
                statflag: statflag::ONBATT | statflag::BATTPRESENT,
                comm_lost: false,
                comm_error: Some("a missed link check".into()),
                on_battery: true,
                time_on_battery_s: 12,
                transfers: 3,
                shutdown: None,
            },
        };
        assert_eq!(ups_view_from_pb(&ups_view_to_pb(&v)), v);
        let waiting = UpsView {
            name: "ups2".into(),
            status: UpsStatus::default(),
        };
        assert_eq!(ups_view_from_pb(&ups_view_to_pb(&waiting)), waiting);
        let p = Policy::default();
        assert_eq!(policy_from_pb(&policy_to_pb(&p)), p);
    }
}
