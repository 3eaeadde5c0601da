//! The end of an outage, without I/O: when a host counts as down, how long its shutdown
//! takes, and when a UPS may cut power and with what delay.
//!
//! A host is *down* only when the cluster observes it: its shutdown path said "halted",
//! or it acknowledged halting and then went silent (no heartbeat for the plan's
//! `silence_s`), or it never acknowledged, its stage timed out and it is silent. Until
//! then it is halting (or running). Its *shutdown time* is the larger of what it
//! declared (`[cluster] shutdown_s`, or the stage's `shutdown_s`) and what the last
//! outage measured. A UPS is ordered to cut power only when no host it feeds that is
//! not down would be left short of `min_supplies`, and the order's delay covers what is
//! left of the shutdown of every host it still powers (its owner included).

use super::NodeId;
use super::legacy::LEGACY_ID_BASE;
use super::plan::Plan;
use std::collections::BTreeMap;

use super::state::{ArmedKill, Command, DownHow, NodeRecord, Outage, PowerState, StageRun};

/// A running owner starts its own shutdown only after it carried the order out: this
/// much is added to its shutdown time in the order's delay.
pub const OWNER_START_S: u32 = 10;

/// An owner whose own UPS has no kill order yet halts, uncut, at the latest this long
/// before it must start to be down when a UPS that feeds it cuts.
pub const FEED_CUT_MARGIN_MS: i64 = 2_000;

/// When UPS owner `n` must start its halt, uncut, because `kill` (an order for a UPS
/// that feeds it) will cut it: its own order may still come until then (orders of one
/// coordinator pass commit one after the other, and its UPS may wait for a host a
/// little longer), and the order's delay covers its whole shutdown.
pub fn feed_cut_deadline_ms(
    state: &PowerState,
    plan: &Plan,
    n: &NodeRecord,
    kill: &super::state::ActionRun,
) -> i64 {
    let cut = kill.ordered_ms + i64::from(kill.delay_s) * 1000;
    let needs = (i64::from(shutdown_s(state, plan, n)) * 1000) + FEED_CUT_MARGIN_MS;
    (cut - needs).max(kill.ordered_ms)
}

/// Where a host is in its shutdown, as the cluster sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPhase {
    /// Not told yet, or told and not halting (or heartbeating with no ack).
    Running,
    /// Acknowledged halting at `since_ms` and still heard from.
    Halting { since_ms: i64 },
    /// Down since `at_ms` (for silence: its last heartbeat).
    Down { how: DownHow, at_ms: i64 },
}

impl HostPhase {
    pub fn is_down(self) -> bool {
        matches!(self, HostPhase::Down { .. })
    }
}

/// The active outage's started stage that holds `host`, with its index.
pub(super) fn run_of(o: &Outage, host: NodeId) -> Option<(usize, &StageRun)> {
    o.stages
        .iter()
        .enumerate()
        .find(|(_, r)| r.hosts.contains(&host))
}

fn silent(plan: &Plan, n: &NodeRecord, now_ms: i64) -> bool {
    now_ms - n.last_seen_ms >= plan.silence_s as i64 * 1000
}

/// A host's phase in the active outage (with no active outage: down if it halted in
/// the last one and has not come back, else running).
pub fn phase(state: &PowerState, plan: &Plan, n: &NodeRecord, now_ms: i64) -> HostPhase {
    let Some(o) = state.outage.as_ref().filter(|o| o.ended_ms.is_none()) else {
        return if state.halted.contains(&n.id) {
            HostPhase::Down {
                how: DownHow::Halted,
                at_ms: n.last_seen_ms,
            }
        } else {
            HostPhase::Running
        };
    };
    let Some((k, run)) = run_of(o, n.id) else {
        // In no started stage: never told. Silent, it may be long gone; blocking the
        // end on it forever would not save it.
        return if silent(plan, n, now_ms) {
            HostPhase::Down {
                how: DownHow::Unreachable,
                at_ms: n.last_seen_ms,
            }
        } else {
            HostPhase::Running
        };
    };
    let ack = run.acks.get(&n.id);
    if let Some(t) = ack.and_then(|a| a.halted_ms) {
        return HostPhase::Down {
            how: DownHow::Halted,
            at_ms: t,
        };
    }
    match ack.and_then(|a| a.halting_ms) {
        // A bridge reports "halted" for a legacy host only once it fell silent.
        Some(h) if n.id >= LEGACY_ID_BASE => HostPhase::Down {
            how: DownHow::Silent,
            at_ms: h,
        },
        Some(h) if silent(plan, n, now_ms) => HostPhase::Down {
            how: DownHow::Silent,
            at_ms: n.last_seen_ms.max(h),
        },
        Some(h) => HostPhase::Halting { since_ms: h },
        None => {
            let timeout = plan.stages.get(k).map_or(120, |s| s.ack_timeout_s) as i64 * 1000;
            if now_ms - run.started_ms >= timeout && silent(plan, n, now_ms) {
                HostPhase::Down {
                    how: DownHow::Unreachable,
                    at_ms: n.last_seen_ms,
                }
            } else {
                HostPhase::Running
            }
        }
    }
}

/// What the host declared (its stage's `shutdown_s` wins over its own).
pub fn declared_shutdown_s(state: &PowerState, plan: &Plan, n: &NodeRecord) -> u32 {
    let by_stage = (0..plan.stages.len())
        .find(|k| plan.stage_hosts(*k, &state.hosts()).contains(&n.id))
        .and_then(|k| plan.stages[k].shutdown_s);
    by_stage.unwrap_or(n.shutdown_s)
}

/// The shutdown time the plan counts on: the larger of declared and measured.
pub fn shutdown_s(state: &PowerState, plan: &Plan, n: &NodeRecord) -> u32 {
    let measured = state
        .shutdown_measured
        .get(&n.id)
        .and_then(|m| m.seconds())
        .unwrap_or(0);
    declared_shutdown_s(state, plan, n).max(measured)
}

/// Seconds of shutdown the host may still need at `now_ms`: none once it said
/// "halted"; otherwise its shutdown time from its halting ack (or its stage's start),
/// or all of it while it runs.
pub fn remaining_s(state: &PowerState, plan: &Plan, n: &NodeRecord, now_ms: i64) -> u32 {
    let full = shutdown_s(state, plan, n);
    let from = match phase(state, plan, n, now_ms) {
        HostPhase::Down {
            how: DownHow::Halted,
            ..
        } => return 0,
        HostPhase::Running => return full,
        HostPhase::Halting { since_ms } => since_ms,
        HostPhase::Down { at_ms, .. } => {
            let o = state.outage.as_ref();
            let started = o
                .and_then(|o| run_of(o, n.id))
                .and_then(|(_, r)| r.acks.get(&n.id).and_then(|a| a.halting_ms))
                .or_else(|| o.and_then(|o| run_of(o, n.id)).map(|(_, r)| r.started_ms));
            started.unwrap_or(at_ms)
        }
    };
    let left = from + full as i64 * 1000 - now_ms;
    u32::try_from((left.max(0) + 999) / 1000).unwrap_or(u32::MAX)
}

/// `HostDown` for each host of a started stage the cluster now sees down by silence
/// and has not recorded yet ("halted" records itself when it arrives).
pub fn newly_down(state: &PowerState, plan: &Plan, o: &Outage, now_ms: i64) -> Vec<Command> {
    let mut out = Vec::new();
    for run in &o.stages {
        for h in &run.hosts {
            if run.acks.get(h).is_some_and(|a| a.down_ms.is_some()) {
                continue;
            }
            let Some(n) = state.host(*h) else { continue };
            if let HostPhase::Down { how, .. } = phase(state, plan, n, now_ms)
                && how != DownHow::Halted
            {
                out.push(Command::HostDown {
                    outage: o.id,
                    node: *h,
                    how,
                    last_seen_ms: n.last_seen_ms,
                    at_ms: now_ms,
                });
            }
        }
    }
    out
}

/// Why UPS `ups` may not cut power yet, if it may not: the hosts it feeds that are not
/// down and would be left short of feeds. `cut` are the UPSes ordered already.
pub fn kill_blockers<'a>(
    state: &'a PowerState,
    plan: &Plan,
    ups: &str,
    cut: &std::collections::BTreeSet<&str>,
    now_ms: i64,
) -> Vec<&'a NodeRecord> {
    let owner = state.upses.get(ups).map(|u| u.owner);
    state
        .hosts()
        .into_iter()
        .filter(|n| {
            let d = duties(state, n.id);
            if Some(n.id) == owner {
                // The owner carries the order out and then halts, so the order waits
                // for what must come first: the legacy hosts of a bridge it runs.
                return !bridged_hosts(&d).is_empty();
            }
            // Another UPS's owner halts after its own kill power (or, if that cannot
            // come, as soon as a UPS that feeds it is ordered cut): waiting for it here
            // could wait forever (two owners each fed by the other's UPS). The order's
            // delay covers its whole shutdown instead (`kill_delay_s`). A bridge host
            // is waited for: its legacy hosts are all in stages started by now.
            n.feeds.iter().any(|f| f == ups) && kills(&d).is_empty()
        })
        .filter(|n| {
            if Some(n.id) == owner {
                return true;
            }
            let left = n
                .feeds
                .iter()
                .filter(|f| *f != ups && !cut.contains(f.as_str()))
                .filter(|f| state.upses.contains_key(*f))
                .count();
            left < n.min_supplies.max(1) as usize && !phase(state, plan, n, now_ms).is_down()
        })
        .collect()
}

/// The delay a kill-power order for `ups` needs now: the plan's minimum, and what is
/// left of the shutdown of each host it powers that has not said "halted" — its owner
/// (which halts after carrying the order out) and every host it feeds (a dual-fed host
/// counts too: its other feed may be cut first).
pub fn kill_delay_s(state: &PowerState, plan: &Plan, ups: &str, now_ms: i64) -> u32 {
    let owner = state.upses.get(ups).map(|u| u.owner);
    state
        .hosts()
        .into_iter()
        .filter(|n| {
            let fed = n.feeds.iter().any(|f| f == ups);
            // An owner that declares no feeds is powered by the UPS it reads.
            fed || (Some(n.id) == owner && n.feeds.is_empty())
        })
        .map(|n| {
            let left = remaining_s(state, plan, n, now_ms);
            let running = phase(state, plan, n, now_ms) == HostPhase::Running;
            // An owner (of this UPS or another) starts its halt only after its order.
            let owns = Some(n.id) == owner || !duties(state, n.id).is_empty();
            if owns && running {
                left.saturating_add(OWNER_START_S)
            } else {
                left
            }
        })
        .fold(plan.kill_power_delay_s, u32::max)
}

/// Each UPS's kill order as committed before the end game: its owner and every other
/// host it feeds.
pub fn arm(state: &PowerState) -> Vec<ArmedKill> {
    state
        .upses
        .values()
        .map(|u| ArmedKill {
            ups: u.name.clone(),
            owner: u.owner,
            wait_for: state
                .hosts()
                .into_iter()
                .filter(|n| n.id != u.owner && n.feeds.contains(&u.name))
                .map(|n| n.id)
                .collect(),
        })
        .collect()
}

/// An owner finishing alone (no quorum): may it cut `order`'s UPS now, and with what
/// delay? Committed facts count where they exist ("halted", a halting ack); liveness
/// comes from the owner's own probes, since heartbeats no longer commit: `reached` is
/// when each host last answered, `watching_since_ms` when the owner started looking. A
/// host is down once it said "halted", or it has not answered for `silence_s` after
/// acknowledging halting, or (never seen halting) for its whole shutdown time.
pub fn alone_delay(
    state: &PowerState,
    plan: &Plan,
    order: &ArmedKill,
    reached: &BTreeMap<NodeId, i64>,
    watching_since_ms: i64,
    now_ms: i64,
) -> Option<u32> {
    let o = state.outage.as_ref()?;
    let mut delay = plan.kill_power_delay_s;
    if let Some(owner) = state.host(order.owner) {
        delay = delay.max(shutdown_s(state, plan, owner).saturating_add(OWNER_START_S));
    }
    let armed = o.armed.as_deref().unwrap_or_default();
    // Seconds of shutdown `h` may still need once it is seen down (None: not yet).
    let down_left = |h: NodeId| -> Option<u32> {
        let n = state.host(h)?;
        let ack = run_of(o, h).and_then(|(_, r)| r.acks.get(&h));
        if ack.is_some_and(|a| a.halted_ms.is_some()) {
            return Some(0);
        }
        let full = shutdown_s(state, plan, n) as i64 * 1000;
        let last = reached
            .get(&h)
            .copied()
            .unwrap_or(watching_since_ms)
            .max(watching_since_ms.min(now_ms));
        let silent_for = now_ms - last;
        let from = match ack.and_then(|a| a.halting_ms) {
            Some(halting) if silent_for >= plan.silence_s as i64 * 1000 => halting,
            None if silent_for >= full.max(plan.silence_s as i64 * 1000) => last,
            _ => return None,
        };
        let left = (from + full - now_ms).max(0);
        Some(u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX))
    };
    for h in &order.wait_for {
        let Some(n) = state.host(*h) else { continue };
        let ack = run_of(o, *h).and_then(|(_, r)| r.acks.get(h));
        if ack.is_some_and(|a| a.halted_ms.is_some()) {
            continue;
        }
        let halting = ack.is_some_and(|a| a.halting_ms.is_some());
        // Another owner finishing alone halts only after its own cut, which waits for
        // the hosts its UPS feeds: waiting for it here could wait forever (two owners
        // each fed by the other's UPS). Once the hosts it waits for (owners aside) are
        // down, it cuts and halts within `silence_s` and a probe: the delay covers
        // that and its whole shutdown.
        if let Some(other) = armed
            .iter()
            .find(|k| k.owner == *h && k.owner != order.owner)
            && !halting
        {
            for w in other
                .wait_for
                .iter()
                .filter(|w| **w != order.owner && !armed.iter().any(|k| k.owner == **w))
            {
                down_left(*w)?;
            }
            let reacts = plan.silence_s as u32 + 2 + OWNER_START_S;
            delay = delay.max(shutdown_s(state, plan, n).saturating_add(reacts));
            continue;
        }
        delay = delay.max(down_left(*h)?);
    }
    Some(delay)
}

/// What a host must still do before it may halt, in the active outage. Its halt is
/// deferred until then, and no stage waits for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Duty {
    /// Carry out the kill-power order of this UPS, which it owns.
    KillPower(String),
    /// Keep this legacy host's bridge running (the bridge runs on the host) until the
    /// legacy host is down.
    Bridge(String),
}

/// What host `id` must still do before it halts in the active outage: the kill power
/// of each UPS it owns that is on battery and not yet cut, and, when a bridge runs on
/// it (`[bridge] runs_on`), each legacy host of that bridge in the plan that is not yet
/// down (nor acknowledged halting).
pub fn duties(state: &PowerState, id: NodeId) -> Vec<Duty> {
    let Some(o) = state.outage.as_ref().filter(|o| o.ended_ms.is_none()) else {
        return vec![];
    };
    let mut out: Vec<Duty> = state
        .upses
        .values()
        .filter(|u| u.owner == id && u.status.on_battery)
        .filter(|u| {
            o.kill_power
                .get(&u.name)
                .is_none_or(|k| k.done_ms.is_none())
        })
        .map(|u| Duty::KillPower(u.name.clone()))
        .collect();
    out.extend(bridged(state, id).into_iter().filter_map(|l| {
        let done = run_of(o, l.host.id)
            .and_then(|(_, r)| r.acks.get(&l.host.id))
            .is_some_and(|a| a.halting_ms.is_some() || a.down_ms.is_some());
        (!done).then(|| Duty::Bridge(l.host.name.clone()))
    }));
    out
}

/// The UPSes among `duties` whose kill power is still to come.
pub fn kills(duties: &[Duty]) -> Vec<&str> {
    duties
        .iter()
        .filter_map(|d| match d {
            Duty::KillPower(u) => Some(u.as_str()),
            Duty::Bridge(_) => None,
        })
        .collect()
}

/// The legacy hosts among `duties` whose bridge the host keeps running.
pub fn bridged_hosts(duties: &[Duty]) -> Vec<&str> {
    duties
        .iter()
        .filter_map(|d| match d {
            Duty::Bridge(h) => Some(h.as_str()),
            Duty::KillPower(_) => None,
        })
        .collect()
}

/// The legacy hosts in the plan whose bridge runs on host `id`.
fn bridged(state: &PowerState, id: NodeId) -> Vec<&super::legacy::LegacyHost> {
    let (Some(n), Some(plan)) = (state.nodes.get(&id), state.plan.as_ref()) else {
        return vec![];
    };
    let hosts = state.hosts();
    state
        .legacy
        .values()
        .filter(|l| l.runs_on.as_deref() == Some(n.name.as_str()))
        .filter(|l| {
            (0..plan.stages.len()).any(|k| plan.stage_hosts(k, &hosts).contains(&l.host.id))
        })
        .collect()
}

/// What host `id` would have to do in an outage of every UPS: the UPSes it owns and
/// the legacy hosts its bridge serves (the plan's view outside an outage).
pub fn deferrable(state: &PowerState, id: NodeId) -> Vec<Duty> {
    let mut out: Vec<Duty> = state
        .upses
        .values()
        .filter(|u| u.owner == id)
        .map(|u| Duty::KillPower(u.name.clone()))
        .collect();
    out.extend(
        bridged(state, id)
            .into_iter()
            .map(|l| Duty::Bridge(l.host.name.clone())),
    );
    out
}

/// The stage after which host `id` halts if every UPS fails: never for a UPS owner
/// (it halts after its kill power, at the end), the later of its own stage and its
/// bridge's last legacy host's for a bridge host, else its own stage.
fn halt_stage(state: &PowerState, plan: &Plan, id: NodeId) -> Option<usize> {
    if state.upses.values().any(|u| u.owner == id) {
        return None;
    }
    let hosts = state.hosts();
    let stage_of =
        |h: NodeId| (0..plan.stages.len()).find(|k| plan.stage_hosts(*k, &hosts).contains(&h));
    let own = stage_of(id)?;
    Some(
        bridged(state, id)
            .into_iter()
            .filter_map(|l| stage_of(l.host.id))
            .fold(own, usize::max),
    )
}

/// Words for a deferred halt, e.g. `halts after kill power of ups1, ups2` or `halts
/// after its bridge's hosts old1, old2 are down`.
pub fn deferred_words(duties: &[Duty]) -> String {
    format!("halts after {}", duty_list(duties, false))
}

/// The short form for a status column, e.g. `halts after kill of ups1`.
pub fn deferred_short(duties: &[Duty]) -> String {
    format!("halts after {}", duty_list(duties, true))
}

fn duty_list(duties: &[Duty], short: bool) -> String {
    let sep = if short { "," } else { ", " };
    let kills = kills(duties);
    let legacy = bridged_hosts(duties);
    let mut parts = Vec::new();
    if !legacy.is_empty() {
        parts.push(if short {
            legacy.join(sep)
        } else {
            format!("its bridge's hosts {} are down", legacy.join(sep))
        });
    }
    if !kills.is_empty() {
        parts.push(if short {
            format!("kill of {}", kills.join(sep))
        } else {
            format!("kill power of {}", kills.join(sep))
        });
    }
    parts.join(" and ")
}

/// Whether the plan has reached its end in the active outage: every stage started, or
/// the stages still to start hold only hosts whose halt is deferred (UPS owners with a
/// kill order to carry out). From here a UPS owner cut off from the quorum finishes
/// alone: nothing it waits for can still need a commit.
pub fn plan_end_reached(state: &PowerState, plan: &Plan) -> bool {
    let Some(o) = state.outage.as_ref().filter(|o| o.ended_ms.is_none()) else {
        return false;
    };
    let hosts = state.hosts();
    (o.stages.len()..plan.stages.len()).all(|k| {
        plan.stage_hosts(k, &hosts)
            .into_iter()
            .all(|h| !duties(state, h).is_empty())
    })
}

/// Where the plan leaves the cluster without a quorum, assuming every UPS fails (so
/// every UPS owner's halt is deferred until after its kill power).
#[derive(Debug, Clone, PartialEq)]
pub struct QuorumEnd {
    /// The stage after whose start fewer than a quorum of voters is left running.
    pub stage: usize,
    /// The voters halted by then (owners excepted), and how many voters there are.
    pub halted_voters: Vec<NodeId>,
    pub voters: usize,
    /// Later stages that hold hosts other than UPS owners, with those hosts: nothing
    /// can start them once the quorum is gone.
    pub stranded: Vec<(usize, Vec<NodeId>)>,
}

/// The first stage that breaks the quorum, if one does (`voters` empty: unknown, none).
pub fn quorum_end(state: &PowerState, plan: &Plan, voters: &[NodeId]) -> Option<QuorumEnd> {
    if voters.is_empty() {
        return None;
    }
    let hosts = state.hosts();
    let quorum = voters.len() / 2 + 1;
    let mut halted = Vec::new();
    for k in 0..plan.stages.len() {
        // A voter halts with its stage (a bridge host with its legacy hosts' last one;
        // a UPS owner after its kill power, so never before the end).
        for v in voters {
            if halt_stage(state, plan, *v).is_some_and(|j| j <= k) && !halted.contains(v) {
                halted.push(*v);
            }
        }
        if voters.len() - halted.len() < quorum {
            let stranded = (k + 1..plan.stages.len())
                .map(|j| {
                    let ids: Vec<NodeId> = plan
                        .stage_hosts(j, &hosts)
                        .into_iter()
                        .filter(|h| !state.upses.values().any(|u| u.owner == *h))
                        .collect();
                    (j, ids)
                })
                .filter(|(_, ids)| !ids.is_empty())
                .collect();
            return Some(QuorumEnd {
                stage: k,
                halted_voters: halted,
                voters: voters.len(),
                stranded,
            });
        }
    }
    None
}

/// The plan's rule for the quorum in words: `Err` when `plan apply` must refuse it
/// (hosts stranded after the quorum is gone), `Ok(Some(..))` to state how it ends.
pub fn quorum_words(
    state: &PowerState,
    plan: &Plan,
    voters: &[NodeId],
) -> Result<Option<String>, String> {
    let Some(q) = quorum_end(state, plan, voters) else {
        return Ok(None);
    };
    let name = |h: &NodeId| state.host(*h).map_or(h.to_string(), |n| n.name.clone());
    let names = |v: &[NodeId]| v.iter().map(name).collect::<Vec<_>>().join(", ");
    let st = &plan.stages[q.stage];
    let head = format!(
        "stage {} ({}) halts {} ({} of {} voters): after it nothing can be committed",
        q.stage + 1,
        st.name,
        names(&q.halted_voters),
        q.halted_voters.len(),
        q.voters
    );
    if let Some((j, ids)) = q.stranded.first() {
        return Err(format!(
            "{head}, so stage {} ({}) would never start for {}. Move {} into stage {} or an earlier one, or keep a voter running until the last stage",
            j + 1,
            plan.stages[*j].name,
            names(ids),
            names(ids),
            q.stage + 1
        ));
    }
    let owners: Vec<String> = state
        .upses
        .values()
        .map(|u| format!("{} cuts {}", name(&u.owner), u.name))
        .collect();
    Ok(Some(format!(
        "{head}; the kill orders are committed before the first stage, and each UPS owner finishes alone once every host its UPS feeds is down, then halts ({})",
        if owners.is_empty() {
            "no UPS reports yet".to_string()
        } else {
            owners.join(", ")
        }
    )))
}
