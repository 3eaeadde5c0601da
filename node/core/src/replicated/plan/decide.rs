//! The coordinator: [`decide`] reads the replicated state and the time and returns the
//! commands the leader should propose (start an outage, the next stage or every one in
//! an emergency, kill orders once no running host would be left short, cancel on
//! mains' return, power cycles), and when a stage is done. Pure: a new leader re-runs it.

use std::collections::BTreeSet;

use super::super::NodeId;
use super::super::endgame;
use super::super::records::{NodeRecord, Outage, StageRun};
use super::super::state::{Command, PowerState};
use super::model::Plan;
use super::supply::{Supply, feed_on_line, supply, trigger_reason};

/// Whether stage `k` of the running outage is done: every host it waits for
/// acknowledged halting, or its ack timeout passed. A stage never waits for a host
/// whose halt is deferred ([`endgame::duties`]: a UPS owner halts after its kill power,
/// which may come only after later stages).
pub fn stage_done(state: &PowerState, plan: &Plan, k: usize, now_ms: i64) -> bool {
    let Some(o) = state.outage.as_ref() else {
        return false;
    };
    let Some(run) = o.stages.get(k) else {
        return false;
    };
    let timeout = plan.stages.get(k).map_or(120, |s| s.ack_timeout_s) as i64 * 1000;
    stage_waits_for(state, run).is_empty() || now_ms - run.started_ms >= timeout
}

/// The hosts of a started stage it still waits for: not acknowledged halting, and no
/// deferred halt.
pub fn stage_waits_for(state: &PowerState, run: &StageRun) -> Vec<NodeId> {
    run.hosts
        .iter()
        .filter(|h| run.acks.get(h).is_none_or(|a| a.halting_ms.is_none()))
        .filter(|h| endgame::duties(state, **h).is_empty())
        .copied()
        .collect()
}

/// The coordinator: what the leader should propose now. Pure.
pub fn decide(state: &PowerState, now_ms: i64) -> Vec<Command> {
    match state.outage.as_ref() {
        Some(o) if o.ended_ms.is_none() && o.is_drill() => decide_drill(state, o, now_ms),
        _ => decide_in(state, now_ms, false),
    }
}

/// A fire drill: the plan runs on a view of the state where the drill's UPSes are on
/// battery since it began, each stage starting as soon as the one before is done
/// (triggers are for `plan check` to time). A real power failure ends it at once (the
/// real outage starts on the next decision); it ends by itself once every stage started
/// and every drill UPS's kill order was carried out (recorded).
fn decide_drill(state: &PowerState, o: &Outage, now_ms: i64) -> Vec<Command> {
    let real_failure = state.upses.values().any(|u| u.status.on_battery);
    if real_failure {
        return vec![Command::OutageEnd {
            id: o.id,
            at_ms: now_ms,
            reason: "a real power failure: the drill stops and the plan takes over".into(),
        }];
    }
    let upses = o.drill.clone().unwrap_or_default();
    let mut view = state.clone();
    for u in &upses {
        if let Some(r) = view.upses.get_mut(u) {
            r.status.on_battery = true;
            r.on_battery_since_ms = Some(o.started_ms);
        }
    }
    let mut out = decide_in(&view, now_ms, true);
    let all_started = state
        .plan
        .as_ref()
        .is_some_and(|p| o.stages.len() >= p.stages.len());
    let all_cut = upses
        .iter()
        .all(|u| o.kill_power.get(u).is_some_and(|k| k.done_ms.is_some()));
    // ... and every host answered (or its stage timed out): the owners report last.
    let all_answered = state
        .plan
        .as_ref()
        .is_some_and(|p| (0..o.stages.len()).all(|k| stage_done(state, p, k, now_ms)));
    if all_started && all_cut && all_answered {
        out.push(Command::OutageEnd {
            id: o.id,
            at_ms: now_ms,
            reason: "drill complete".into(),
        });
    }
    out
}

fn decide_in(state: &PowerState, now_ms: i64, drill: bool) -> Vec<Command> {
    let Some(plan) = state.plan.as_ref() else {
        return vec![];
    };
    let nodes: Vec<&NodeRecord> = state.hosts();
    let supplies: Vec<(NodeId, Supply)> = nodes
        .iter()
        .filter_map(|n| supply(n, state, plan, now_ms).map(|s| (n.id, s)))
        .collect();
    let any_on_battery = supplies.iter().any(|(_, s)| s.on_battery)
        || state.upses.values().any(|u| u.status.on_battery);
    let mut out = Vec::new();

    let active = state.outage.as_ref().filter(|o| o.ended_ms.is_none());
    match active {
        None => {
            if any_on_battery {
                out.push(Command::OutageStart {
                    id: state.next_outage_id + 1,
                    at_ms: now_ms,
                });
            } else {
                out.extend(power_cycles(state, &nodes, now_ms));
            }
        }
        Some(o) => {
            let started = o.stages.len();
            if !any_on_battery {
                let reason = if started < plan.stages.len() {
                    format!(
                        "mains returned: {} stage(s) not started are cancelled",
                        plan.stages.len() - started
                    )
                } else {
                    "mains returned after every stage started".to_string()
                };
                out.push(Command::OutageEnd {
                    id: o.id,
                    at_ms: now_ms,
                    reason,
                });
                return out;
            }
            // Kill orders are committed before any stage starts: once voters halt, no
            // commit may be possible, and each UPS owner finishes from these alone.
            if o.armed.is_none() {
                out.push(Command::ArmKillPower {
                    outage: o.id,
                    orders: endgame::arm(state),
                    at_ms: now_ms,
                });
            }
            // Hosts seen down are recorded before anything decided because of them.
            out.extend(endgame::newly_down(state, plan, o, now_ms));
            let emergency = supplies.iter().find_map(|(id, s)| {
                s.emergency.as_ref().map(|e| {
                    let name = state.host(*id).map_or("?", |n| n.name.as_str());
                    format!("emergency on {name}: {e}")
                })
            });
            if started < plan.stages.len() {
                let prev_done = started == 0 || stage_done(state, plan, started - 1, now_ms);
                let reason = if drill {
                    prev_done.then(|| "drill: the stage before is done".to_string())
                } else if let Some(e) = &emergency {
                    Some(e.clone())
                } else if prev_done {
                    let hosts = plan.stage_hosts(started, &nodes);
                    hosts.iter().find_map(|h| {
                        let s = supplies.iter().find(|(id, _)| id == h).map(|(_, s)| s)?;
                        let why = trigger_reason(&plan.stages[started].trigger, s, now_ms)?;
                        let name = state.host(*h).map_or("?", |n| n.name.as_str());
                        Some(format!("{name}: {why}"))
                    })
                } else {
                    None
                };
                if let Some(reason) = reason {
                    out.push(Command::StageStart {
                        outage: o.id,
                        stage: started,
                        name: plan.stages[started].name.clone(),
                        hosts: plan.stage_hosts(started, &nodes),
                        reason,
                        at_ms: now_ms,
                    });
                }
            } else {
                // Every stage has started: a UPS on battery may cut power once no host it
                // feeds that is not down would be left with fewer than `min_supplies`
                // feeds (dual-fed hosts included: the last of their UPSes waits for
                // them). Its owner is not waited for: it carries the order out with a
                // delay that covers its own halt and what is left of the others'.
                // UPSes ordered in this pass count as cut for the next ones, so two
                // feeds of one host are never both cut at once.
                let mut cut: BTreeSet<&str> = o.kill_power.keys().map(String::as_str).collect();
                for u in state.upses.values().filter(|u| u.status.on_battery) {
                    if o.kill_power.contains_key(&u.name) {
                        continue;
                    }
                    if endgame::kill_blockers(state, plan, &u.name, &cut, now_ms).is_empty() {
                        cut.insert(u.name.as_str());
                        out.push(Command::KillPower {
                            outage: o.id,
                            ups: u.name.clone(),
                            delay_s: endgame::kill_delay_s(state, plan, &u.name, now_ms),
                            at_ms: now_ms,
                        });
                    }
                }
            }
        }
    }
    out
}

/// After an outage ended with hosts halted: power-cycle each UPS that feeds a halted
/// host, once no running host depends on that UPS alone.
fn power_cycles(state: &PowerState, nodes: &[&NodeRecord], now_ms: i64) -> Vec<Command> {
    let mut out = Vec::new();
    for u in state.upses.values() {
        if state.power_cycled.contains_key(&u.name) || u.stale || u.status.comm_lost {
            continue;
        }
        let feeds_halted = state
            .halted
            .iter()
            .any(|h| state.host(*h).is_some_and(|n| n.feeds.contains(&u.name)));
        if !feeds_halted {
            continue;
        }
        // The owner counts too: cycling the UPS that alone feeds it would kill it.
        let running_depends = nodes.iter().any(|n| {
            !state.halted.contains(&n.id) && {
                let others = n
                    .feeds
                    .iter()
                    .filter(|f| *f != &u.name)
                    .filter(|f| state.upses.get(*f).is_some_and(feed_on_line))
                    .count();
                n.feeds.contains(&u.name) && others < n.min_supplies.max(1) as usize
            }
        });
        if !running_depends {
            out.push(Command::PowerCycle {
                ups: u.name.clone(),
                at_ms: now_ms,
            });
        }
    }
    out
}
