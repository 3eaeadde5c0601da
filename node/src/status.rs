//! The status as this node sees it ([`snapshot`], plain types), and in it what the
//! node is about to do in one sentence: the "pending action" of `upsilon status`, a
//! pure function of the policy, the UPS views and what the executor did, so its
//! wording is tested directly.

use crate::cluster::handle::MemberRole;
use crate::executor::ExecRecord;
use crate::shared::NodeShared;
use upsilon_core::config::ExecutorMode;
use upsilon_core::events::EventKind;
use upsilon_core::policy::{Policy, ShutdownRule};
use upsilon_core::snapshot::{
    ActionKind, ClusterSummary, LegacyHostSummary, NodeSummary, PendingAction, StatusSnapshot,
};
use upsilon_core::view::UpsView;

fn rule_words(rule: ShutdownRule, p: &Policy) -> String {
    match rule {
        ShutdownRule::Timeout => format!("on battery longer than TIMEOUT ({} s)", p.timeout),
        ShutdownRule::LowBattery => "the UPS signalled low battery".into(),
        ShutdownRule::BatteryLevel => {
            format!("charge fell to BATTERYLEVEL ({} %)", p.battery_level)
        }
        ShutdownRule::Runtime => format!("runtime fell to MINUTES ({} min)", p.minutes),
        ShutdownRule::Emergency => "battery failure (low battery while on line)".into(),
        ShutdownRule::CommLostOnBattery => {
            format!("UPS silent for {} s while on battery", p.dead_time)
        }
    }
}

/// What the executor did, common to every pending action.
fn base_action(records: &[ExecRecord], mode: ExecutorMode) -> PendingAction {
    PendingAction {
        executor_mode: mode.as_str().into(),
        shutdown_handled: records.iter().any(|r| r.action == "shutdown"),
        commands: records.iter().map(ExecRecord::summary).collect(),
        ..Default::default()
    }
}

/// How the shutdown command is handled, in words.
fn shutdown_how(mode: ExecutorMode) -> &'static str {
    match mode {
        ExecutorMode::Record => "record mode: the shutdown command is recorded, not run",
        ExecutorMode::Live => "the shutdown command was run",
    }
}

/// The pending action for a set of UPS views.
pub fn pending_action(
    policy: &Policy,
    views: &[UpsView],
    records: &[ExecRecord],
    mode: ExecutorMode,
) -> PendingAction {
    let base = base_action(records, mode);
    // A shutdown that has started wins: it is latched.
    if let Some((v, (rule, at))) = views
        .iter()
        .filter_map(|v| v.status.shutdown.map(|s| (v, s)))
        .min_by_key(|(_, (_, at))| *at)
    {
        let how = shutdown_how(mode);
        return PendingAction {
            kind: ActionKind::ShuttingDown,
            reason: EventKind::from_rule(rule).name().to_string(),
            detail: format!(
                "shutting down: {} ({}); {how}",
                rule_words(rule, policy),
                v.name
            ),
            since_ms: at,
            ..base
        };
    }
    let on_batt: Vec<&UpsView> = views
        .iter()
        .filter(|v| v.status.on_battery || v.status.comm_lost && was_on_battery(v))
        .collect();
    if let Some(v) = on_batt.first() {
        let mut parts = Vec::new();
        let r = v.status.reading.as_ref();
        let charge = r.and_then(|r| r.charge_percent);
        let runtime = r.and_then(|r| r.runtime_s);
        parts.push(format!(
            "charge <= {} %{}",
            policy.battery_level,
            charge.map_or(String::new(), |c| format!(" (now {c:.1} %)"))
        ));
        parts.push(format!(
            "runtime <= {} min{}",
            policy.minutes,
            runtime.map_or(String::new(), |s| format!(" (now {:.1} min)", s / 60.0))
        ));
        if policy.timeout > 0 {
            parts.push(format!("{} s on battery", policy.timeout));
        }
        parts.push("or the UPS signals low battery".into());
        let mut detail = format!(
            "{} on battery for {} s: shutdown when {}",
            v.name,
            v.status.time_on_battery_s,
            parts.join(", ")
        );
        if v.status.comm_lost {
            detail = format!(
                "{} not answering while on battery: shutdown after {} s without contact",
                v.name, policy.dead_time
            );
        }
        return PendingAction {
            kind: ActionKind::Watching,
            detail,
            ..base
        };
    }
    let lost: Vec<&str> = views
        .iter()
        .filter(|v| v.status.comm_lost)
        .map(|v| v.name.as_str())
        .collect();
    let detail = if views.is_empty() {
        "no UPS configured on this node".to_string()
    } else if !lost.is_empty() {
        format!(
            "no action: {} not answering, last known on line",
            lost.join(", ")
        )
    } else {
        "no action: all UPSes on line".to_string()
    };
    PendingAction {
        kind: ActionKind::None,
        detail,
        ..base
    }
}

/// The pending action of a cluster member: what will happen to *this host*, from the
/// replicated state (its stage, its supply) rather than from other hosts' UPS monitors.
pub fn member_pending_action(
    state: &upsilon_core::replicated::state::PowerState,
    me: crate::cluster::NodeId,
    policy: &Policy,
    records: &[ExecRecord],
    mode: ExecutorMode,
    now_ms: i64,
) -> PendingAction {
    // A drill's records stand for nothing that happened.
    let shutdown_record = records
        .iter()
        .rev()
        .find(|r| r.action == "shutdown" && !r.outcome.starts_with("drill"));
    let base = base_action(records, mode);
    let how = shutdown_how(mode);
    let open = state.outage.as_ref().filter(|o| o.ended_ms.is_none());
    let node = state.nodes.get(&me);
    let no_plan = upsilon_core::replicated::plan::Plan::default();
    let plan = state.plan.as_ref().unwrap_or(&no_plan);
    let supply = node.and_then(|n| upsilon_core::replicated::plan::supply(n, state, plan, now_ms));
    // A host with no feeds configured is powered by the UPSes its node drives (as
    // apcupsd assumes): their being on battery is its supply's.
    let own_on_battery: Vec<&str> = state
        .upses
        .values()
        .filter(|u| u.owner == me && u.status.on_battery)
        .map(|u| u.name.as_str())
        .collect();
    let on_battery = match &supply {
        Some(s) => s.on_battery,
        None => !own_on_battery.is_empty(),
    };
    // This host's stage has started.
    if let Some((k, run)) = open.and_then(|o| {
        o.stages
            .iter()
            .enumerate()
            .find(|(_, r)| r.hosts.contains(&me))
    }) {
        let duties = upsilon_core::replicated::endgame::duties(state, me);
        let halted = run.acks.get(&me).is_some_and(|a| a.halting_ms.is_some());
        let detail = if !duties.is_empty() && !halted {
            format!(
                "stage {} ({}) started: this host {} (no stage waits for it); {how}",
                k + 1,
                run.name,
                upsilon_core::replicated::endgame::deferred_words(&duties)
            )
        } else {
            format!(
                "shutting down: stage {} ({}) started: {}; {how}",
                k + 1,
                run.name,
                run.reason
            )
        };
        return PendingAction {
            kind: ActionKind::ShuttingDown,
            reason: "stage".into(),
            detail,
            since_ms: run.started_ms,
            ..base
        };
    }
    // Record mode stands in for a halt that never happens: once the outage it was for
    // is over and this host's supply is back on line, the host is back to normal.
    let mut recorded_note = None;
    if let Some(r) = shutdown_record {
        let over = mode == ExecutorMode::Record
            && open.is_none()
            && !on_battery
            && state
                .outage
                .as_ref()
                .is_none_or(|o| o.ended_ms.is_some_and(|e| e >= r.at_unix_ms));
        if !over {
            // This host decided by itself (its own thresholds, local fallback, its UPS
            // monitor).
            return PendingAction {
                kind: ActionKind::ShuttingDown,
                reason: r.event.clone(),
                detail: format!("shutting down: {} on this host; {how}", r.event),
                since_ms: r.at_unix_ms,
                ..base
            };
        }
        recorded_note = Some(format!(
            "shutdown recorded at {}; mains returned",
            upsilon_core::time::format_date(upsilon_core::time::from_unix_ms(r.at_unix_ms))
        ));
    }
    if open.is_some() || on_battery {
        let mut words = match &supply {
            Some(s) if s.on_battery => format!(
                "this host's supply is on battery for {} s{}{}",
                s.on_battery_since_ms
                    .map_or(0, |t| (now_ms - t).max(0) / 1000),
                s.charge
                    .map_or(String::new(), |c| format!(", charge {c:.1} %")),
                s.runtime_s
                    .map_or(String::new(), |r| format!(", runtime {:.1} min", r / 60.0)),
            ),
            Some(_) => "outage under way; this host's supply is on line".to_string(),
            None if on_battery => format!(
                "{} on battery (this host has no feeds configured: the UPS its node drives powers it)",
                own_on_battery.join(", ")
            ),
            None => "outage under way; this host has no feeds configured".to_string(),
        };
        let stage = state.plan.as_ref().and_then(|plan| {
            let nodes = state.hosts();
            (0..plan.stages.len())
                .find(|&k| plan.stage_hosts(k, &nodes).contains(&me))
                .map(|k| (k, &plan.stages[k]))
        });
        match stage {
            Some((k, st)) => words.push_str(&format!(
                ": stage {} ({}) shuts it down when {}",
                k + 1,
                st.name,
                upsilon_core::replicated::plan::trigger_words(&st.trigger)
            )),
            None => words.push_str(&format!(
                ": it is in no stage of the plan; its own thresholds apply (BATTERYLEVEL {} %, MINUTES {})",
                policy.battery_level, policy.minutes
            )),
        }
        return PendingAction {
            kind: ActionKind::Watching,
            detail: words,
            ..base
        };
    }
    let fed_by = |u: &&upsilon_core::replicated::state::UpsRecord| {
        node.is_some_and(|n| n.feeds.contains(&u.name)) || u.owner == me
    };
    let lost: Vec<&str> = state
        .upses
        .values()
        .filter(fed_by)
        .filter(|u| u.status.comm_lost || u.stale)
        .map(|u| u.name.as_str())
        .collect();
    let detail = if !lost.is_empty() {
        format!(
            "no action: {} not answering, last known on line",
            lost.join(", ")
        )
    } else if node.is_some_and(|n| !n.feeds.is_empty()) {
        "no action: this host's supply is on line".to_string()
    } else {
        "no action: no outage in the cluster".to_string()
    };
    PendingAction {
        kind: ActionKind::None,
        detail: match recorded_note {
            Some(note) => format!("{note}; {detail}"),
            None => detail,
        },
        ..base
    }
}

/// Every legacy host and what it is served, from the replicated state.
pub fn legacy_summaries(
    s: &upsilon_core::replicated::state::PowerState,
    now_ms: i64,
) -> Vec<LegacyHostSummary> {
    use upsilon_core::replicated::legacy::served;
    s.legacy
        .values()
        .filter_map(|l| {
            let v = served(s, l.host.id, now_ms)?;
            Some(LegacyHostSummary {
                name: l.host.name.clone(),
                addresses: l.addresses.clone(),
                labels: l.host.labels.clone(),
                feeds: l.host.feeds.clone(),
                min_supplies: l.host.min_supplies,
                protocol: l.protocol.clone(),
                bridge: l.bridge.clone(),
                state: l.state.as_str().into(),
                state_since_ms: l.state_since_ms,
                served: UpsView {
                    name: v.ups_name,
                    status: v.status,
                },
                shutting_down: v.shutting_down,
                stage: v
                    .stage
                    .map_or(String::new(), |(k, name)| format!("{k} ({name})")),
                never_polled: !l.polled,
            })
        })
        .collect()
}

fn was_on_battery(v: &UpsView) -> bool {
    v.status
        .reading
        .as_ref()
        .is_some_and(|r| r.flags.on_battery)
}

/// The full status as this node sees it: its own UPSes when standalone, the
/// replicated state of the whole cluster when it is a member. Served by `GetStatus`
/// and `Watch`; every other reader (web page, metrics, NIS/NUT) reads the same.
/// A member further behind the leader than this is shown as rejoining (a store wiped,
/// restored or just started catching up); closer, it is in sync.
const REJOINING_LAG: u64 = 50;

/// A member's STATE: held back by the leader, rejoining (far behind it, as the leader
/// sees), or the host's own state.
fn member_state(
    s: &upsilon_core::replicated::state::PowerState,
    m: &crate::cluster::handle::MemberView,
    now: i64,
) -> String {
    if s.member_problems.contains_key(&m.id) {
        return "held back (see the cluster's warnings)".into();
    }
    match m.lag {
        Some(l) if l > REJOINING_LAG => format!("rejoining: {l} entries behind"),
        _ => upsilon_core::wording::host_state(s, m.id, now),
    }
}

pub fn snapshot(shared: &NodeShared) -> StatusSnapshot {
    let now = upsilon_core::time::now_ms();
    let Some(cluster) = &shared.cluster else {
        let views = shared.ups_views();
        return StatusSnapshot {
            nodes: vec![NodeSummary {
                name: shared.name.clone(),
                address: shared.address.to_string(),
                role: "standalone".into(),
                last_seen_ms: now,
                ups_names: views.iter().map(|v| v.name.clone()).collect(),
                version: env!("CARGO_PKG_VERSION").into(),
                id: 0,
                lag: None,
                state: String::new(),
            }],
            pending: pending_action(
                &shared.policy,
                &views,
                &shared.executor.records(),
                shared.executor.mode(),
            ),
            ups: views,
            policy: shared.policy.clone(),
            node_name: shared.name.clone(),
            generated_at_ms: now,
            cluster: None,
            legacy_hosts: vec![],
        };
    };
    let view = cluster.view();
    let (outage, stages) =
        cluster.read(|s| upsilon_core::wording::outage_lines(s, upsilon_core::time::now_ms()));
    let states: std::collections::BTreeMap<u64, String> = cluster.read(|s| {
        view.members
            .iter()
            .map(|m| (m.id, member_state(s, m, now)))
            .collect()
    });
    let (ups, records, owners) = cluster.read(|s| {
        let ups: Vec<_> = s.upses.values().map(|u| u.view(now)).collect();
        let owners: Vec<(String, u64)> = s
            .upses
            .values()
            .map(|u| (u.name.clone(), u.owner))
            .collect();
        (ups, s.nodes.clone(), owners)
    });
    let nodes = view
        .members
        .iter()
        .map(|m| {
            let rec = records.get(&m.id);
            NodeSummary {
                name: m.node.name.clone(),
                address: m.node.addr.clone(),
                role: m.role.as_str().into(),
                last_seen_ms: rec.map_or(0, |r| r.last_seen_ms),
                ups_names: owners
                    .iter()
                    .filter(|(_, owner)| *owner == m.id)
                    .map(|(name, _)| name.clone())
                    .collect(),
                version: rec.map_or(String::new(), |r| r.version.clone()),
                id: m.id,
                lag: m.lag,
                state: states.get(&m.id).cloned().unwrap_or_default(),
            }
        })
        .collect();
    // Hosts the cluster knows that are not members (refused, rejoining): they follow the
    // power state read-only and still act on their stage.
    let mut nodes: Vec<NodeSummary> = nodes;
    let outsiders: Vec<(u64, upsilon_core::replicated::state::NodeRecord, String)> =
        cluster.read(|s| {
            s.nodes
                .values()
                .filter(|n| !view.members.iter().any(|m| m.id == n.id))
                .map(|n| {
                    (
                        n.id,
                        n.clone(),
                        upsilon_core::wording::host_state(s, n.id, now),
                    )
                })
                .collect()
        });
    for (id, rec, state) in outsiders {
        nodes.push(NodeSummary {
            name: rec.name.clone(),
            address: rec.addr.clone(),
            role: "not a member: following".into(),
            last_seen_ms: rec.last_seen_ms,
            ups_names: owners
                .iter()
                .filter(|(_, owner)| *owner == id)
                .map(|(name, _)| name.clone())
                .collect(),
            version: rec.version.clone(),
            id,
            lag: None,
            state,
        });
    }
    let voters = view
        .members
        .iter()
        .filter(|m| m.role != MemberRole::Learner)
        .count();
    let pending = cluster.read(|s| {
        member_pending_action(
            s,
            cluster.cfg.id,
            &shared.policy,
            &shared.executor.records(),
            shared.executor.mode(),
            now,
        )
    });
    let legacy_hosts = cluster.read(|s| legacy_summaries(s, now));
    StatusSnapshot {
        legacy_hosts,
        ups,
        nodes,
        pending,
        policy: shared.policy.clone(),
        node_name: shared.name.clone(),
        generated_at_ms: now,
        cluster: Some(ClusterSummary {
            leader: view
                .leader
                .as_ref()
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            leader_id: view.leader.as_ref().map_or(0, |(id, _)| *id),
            term: view.term,
            writable: view.writable,
            detail: view.detail.clone(),
            last_applied: view.last_applied,
            snapshot_index: view.snapshot_index,
            voters: voters as u32,
            learners: (view.members.len() - voters) as u32,
            outage,
            stages,
            warnings: view
                .warnings
                .iter()
                .cloned()
                .chain(cluster.read(upsilon_core::wording::cluster_warnings))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use upsilon_core::reading::UpsReading;
    use upsilon_core::view::UpsStatus;

    fn view(on_battery: bool) -> UpsView {
        let r = UpsReading::basic(on_battery, 63.0, 600.0, SystemTime::now());
        UpsView {
            name: "ups1".into(),
            status: UpsStatus {
                driver: "sim".into(),
                reading: Some(r),
                statflag: 0,
                comm_lost: false,
                comm_error: None,
                on_battery,
                time_on_battery_s: 12,
                transfers: 1,
                shutdown: None,
            },
        }
    }

    #[test]
    fn on_line_means_no_action() {
        let a = pending_action(
            &Policy::default(),
            &[view(false)],
            &[],
            ExecutorMode::Record,
        );
        assert_eq!(a.kind, ActionKind::None);
        assert_eq!(a.detail, "no action: all UPSes on line");
    }

    #[test]
    fn on_battery_names_the_thresholds_and_current_values() {
        let a = pending_action(&Policy::default(), &[view(true)], &[], ExecutorMode::Record);
        assert_eq!(a.kind, ActionKind::Watching);
        assert_eq!(
            a.detail,
            "ups1 on battery for 12 s: shutdown when charge <= 10 % (now 63.0 %), runtime <= 5 min (now 10.0 min), or the UPS signals low battery"
        );
    }

    #[test]
    fn shutdown_is_reported_with_reason_and_mode() {
        let mut v = view(true);
        v.status.shutdown = Some((ShutdownRule::BatteryLevel, upsilon_core::time::now_ms()));
        let a = pending_action(&Policy::default(), &[v], &[], ExecutorMode::Record);
        assert_eq!(a.kind, ActionKind::ShuttingDown);
        assert_eq!(a.reason, "loadlimit");
        assert!(
            a.detail.contains("charge fell to BATTERYLEVEL (10 %)"),
            "{}",
            a.detail
        );
        assert!(a.detail.contains("recorded, not run"), "{}", a.detail);
    }

    mod member {
        use super::super::member_pending_action;
        use upsilon_core::config::ExecutorMode;
        use upsilon_core::policy::{Policy, ShutdownRule};
        use upsilon_core::reading::UpsReading;
        use upsilon_core::replicated::state::{
            NodeRecord, Outage, PowerState, StageRun, UpsRecord,
        };
        use upsilon_core::snapshot::{ActionKind, PendingAction};
        use upsilon_core::view::UpsStatus;
        const NOW: i64 = 1_000_000;

        fn state(on_battery: bool) -> PowerState {
            let mut s = PowerState::default();
            for (id, name, label) in [(1, "n1", "core"), (2, "n2", "apps")] {
                s.nodes.insert(
                    id,
                    NodeRecord::fed_by(id, name, &["ups1"], NOW)
                        .labelled(&[label])
                        .shutting_down_in(120),
                );
            }
            let r = UpsReading::basic(on_battery, 80.0, 600.0, std::time::SystemTime::UNIX_EPOCH);
            s.upses.insert(
                "ups1".into(),
                UpsRecord {
                    on_battery_since_ms: on_battery.then_some(NOW - 30_000),
                    ..UpsRecord::reported(
                        "ups1",
                        1,
                        UpsStatus {
                            driver: "apcsmart".into(),
                            reading: Some(r),
                            on_battery,
                            time_on_battery_s: 30,
                            transfers: 1,
                            // The owner's own monitor decided (its apcupsd thresholds).
                            shutdown: on_battery.then_some((ShutdownRule::BatteryLevel, NOW)),
                            ..Default::default()
                        },
                        NOW,
                    )
                },
            );
            s.plan = Some(
                toml::from_str(
                    "[[stage]]\nname = \"apps\"\nhosts = [\"label:apps\"]\ntrigger = { on_battery_s = 60 }\n\n[[stage]]\nname = \"core\"\nhosts = [\"label:core\"]\ntrigger = { charge_below = 20 }\n",
                )
                .unwrap(),
            );
            s
        }

        fn pending(s: &PowerState, me: u64) -> PendingAction {
            member_pending_action(s, me, &Policy::default(), &[], ExecutorMode::Record, NOW)
        }

        #[test]
        fn a_member_shows_its_own_stage_not_the_owners_monitor() {
            let s = state(true);
            let a = pending(&s, 2);
            assert_eq!(a.kind, ActionKind::Watching);
            assert!(
                a.detail
                    .contains("on battery for 30 s, charge 80.0 %, runtime 10.0 min")
                    && a.detail
                        .contains("stage 1 (apps) shuts it down when on battery 60 s"),
                "{}",
                a.detail
            );
            let a = pending(&s, 1);
            assert!(a.detail.contains("stage 2 (core)"), "{}", a.detail);
        }

        #[test]
        fn a_started_stage_is_shutting_down_and_on_line_is_no_action() {
            let mut s = state(true);
            s.outage = Some(Outage {
                id: 1,
                started_ms: NOW - 30_000,
                stages: vec![StageRun {
                    name: "apps".into(),
                    started_ms: NOW - 1_000,
                    reason: "on battery 60 s".into(),
                    hosts: vec![2],
                    acks: Default::default(),
                }],
                kill_power: Default::default(),
                armed: None,
                drill: None,
                ended_ms: None,
                end_reason: String::new(),
            });
            let a = pending(&s, 2);
            assert_eq!(a.kind, ActionKind::ShuttingDown);
            assert!(
                a.detail.starts_with(
                    "shutting down: stage 1 (apps) started: on battery 60 s; record mode"
                ),
                "{}",
                a.detail
            );
            assert_eq!(a.since_ms, NOW - 1_000);
            assert_eq!(pending(&s, 1).kind, ActionKind::Watching);
            let a = pending(&state(false), 2);
            assert_eq!(a.kind, ActionKind::None);
            assert_eq!(a.detail, "no action: this host's supply is on line");
            // The owner in a started stage halts after its kill power.
            s.outage.as_mut().unwrap().stages[0].hosts.push(1);
            let a = pending(&s, 1);
            assert_eq!(a.kind, ActionKind::ShuttingDown);
            assert!(
                a.detail
                    .contains("this host halts after kill power of ups1 (no stage waits for it)"),
                "{}",
                a.detail
            );
        }

        fn record(at: i64, outcome: &str) -> crate::executor::ExecRecord {
            crate::executor::ExecRecord {
                at_unix_ms: at,
                action: "shutdown".into(),
                argv: vec!["shutdown".into(), "-h".into(), "now".into()],
                event: "doshutdown".into(),
                ran: false,
                outcome: outcome.into(),
            }
        }

        #[test]
        fn record_mode_returns_to_normal_once_mains_are_back_and_a_drill_is_no_shutdown() {
            let mut s = state(false);
            s.outage = Some(Outage {
                id: 1,
                started_ms: NOW - 60_000,
                stages: vec![],
                kill_power: Default::default(),
                armed: None,
                drill: None,
                ended_ms: Some(NOW - 1_000),
                end_reason: "mains returned".into(),
            });
            let recorded = [record(NOW - 30_000, "record mode: not executed")];
            let p = |s: &PowerState, r: &[crate::executor::ExecRecord], mode| {
                member_pending_action(s, 2, &Policy::default(), r, mode, NOW)
            };
            let a = p(&s, &recorded, ExecutorMode::Record);
            assert_eq!(a.kind, ActionKind::None, "{a:?}");
            assert!(
                a.detail.starts_with("shutdown recorded at ")
                    && a.detail
                        .ends_with("; mains returned; no action: this host's supply is on line"),
                "{}",
                a.detail
            );
            // Live mode: the host is going down, whatever the mains do.
            assert_eq!(
                p(&s, &recorded, ExecutorMode::Live).kind,
                ActionKind::ShuttingDown
            );
            // Still on battery: still shutting down.
            assert_eq!(
                p(&state(true), &recorded, ExecutorMode::Record).kind,
                ActionKind::ShuttingDown
            );
            // A host with no feeds configured whose own UPS is still on battery: its
            // monitor's shutdown stands (the mains have not returned).
            let mut unfed = state(true);
            unfed.nodes.get_mut(&1).unwrap().feeds.clear();
            unfed.outage = None;
            let owner = |s: &PowerState| {
                member_pending_action(
                    s,
                    1,
                    &Policy::default(),
                    &recorded,
                    ExecutorMode::Record,
                    NOW,
                )
            };
            let a = owner(&unfed);
            assert_eq!(a.kind, ActionKind::ShuttingDown, "{a:?}");
            // Once that UPS is back on line, record mode is back to normal.
            let ups = unfed.upses.get_mut("ups1").unwrap();
            ups.status.on_battery = false;
            ups.on_battery_since_ms = None;
            let a = owner(&unfed);
            assert_eq!(a.kind, ActionKind::None, "{a:?}");
            assert!(a.detail.contains("mains returned"), "{}", a.detail);
            // A drill's record is not a shutdown.
            let drill = [record(NOW - 30_000, "drill: not executed")];
            let a = p(&state(false), &drill, ExecutorMode::Record);
            assert_eq!(a.detail, "no action: this host's supply is on line");
        }
    }
}
