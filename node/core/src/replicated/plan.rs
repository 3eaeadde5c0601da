//! The staged shutdown plan and the coordinator's pure decision.
//!
//! [`Plan`] is the ordered list of stages (replicated; set with `upsilon plan apply`).
//! [`supply`] computes a host's power from its feeds and `min_supplies` (NUT's
//! MINSUPPLIES). [`decide`] reads the replicated state and the time and returns the
//! commands the leader should propose: start an outage, start the next stage (or every
//! remaining one in an emergency), order a UPS to cut power once no running host it
//! feeds would be left short of `min_supplies`, cancel what has not started when mains return, and power-cycle a
//! UPS to bring halted hosts back. It is pure: a new leader re-runs it and continues,
//! and `PowerState::apply` refuses anything already done, so nothing happens twice.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::NodeId;
use super::endgame;
use super::state::{Command, NodeRecord, PowerState, UpsRecord};

/// What starts a stage; any one of the set conditions on any of its hosts is enough.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The host's supply has been on battery this many seconds.
    pub on_battery_s: Option<u64>,
    /// The host's supply runtime is below this many seconds.
    pub runtime_below_s: Option<u64>,
    /// The host's supply charge is below this percentage.
    pub charge_below: Option<f64>,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// Node names, or `label:NAME` for every node with that label.
    pub hosts: Vec<String>,
    pub trigger: Trigger,
    /// How long to wait for every host's "halting" before the next stage may start.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_s: u64,
    /// The command the hosts run instead of their own `shutdown_command`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long this stage's hosts take to shut down, instead of what each declared.
    #[serde(default)]
    pub shutdown_s: Option<u32>,
}

fn default_ack_timeout() -> u64 {
    120
}

/// The largest plan accepted, as TOML text.
pub const MAX_PLAN_BYTES: usize = 256 * 1024;
/// At most this many stages.
pub const MAX_STAGES: usize = 64;
/// Stage names (and node names in selectors) at most this many bytes.
pub const MAX_NAME: usize = 64;
/// Host selectors per stage.
pub const MAX_SELECTORS: usize = 256;
/// A stage command's arguments and their total size.
pub const MAX_COMMAND_ARGS: usize = 64;
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// What [`Plan::review`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanReview {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
    /// A supply runtime under this many seconds is an emergency (every remaining stage
    /// starts at once).
    #[serde(default = "default_floor")]
    pub runtime_floor_s: u64,
    /// A feed on battery whose UPS is silent this long counts as exhausted.
    #[serde(default = "default_dead_time")]
    pub dead_time_s: u64,
    /// Seconds a UPS waits at least after the kill-power order before cutting its
    /// outlets (longer when a host it powers may still be shutting down).
    #[serde(default = "default_kill_delay")]
    pub kill_power_delay_s: u32,
    /// A host that acknowledged halting and is not heard from for this long is down.
    #[serde(default = "default_silence")]
    pub silence_s: u64,
}

impl Default for Plan {
    /// No stages, default limits (what supplies are judged by when no plan is set).
    fn default() -> Self {
        Plan {
            stages: vec![],
            runtime_floor_s: default_floor(),
            dead_time_s: default_dead_time(),
            kill_power_delay_s: default_kill_delay(),
            silence_s: default_silence(),
        }
    }
}

fn default_floor() -> u64 {
    120
}
fn default_dead_time() -> u64 {
    15
}
fn default_kill_delay() -> u32 {
    20
}
fn default_silence() -> u64 {
    10
}

impl Plan {
    /// Checks a plan; the message names the stage and what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("the plan has no [[stage]]".into());
        }
        if self.stages.len() > MAX_STAGES {
            return Err(format!(
                "the plan has {} stages; at most {MAX_STAGES}",
                self.stages.len()
            ));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.stages.iter().enumerate() {
            let at = format!("stage {} ({:?})", i + 1, s.name);
            if s.name.len() > MAX_NAME {
                return Err(format!(
                    "stage {}: its name is {} bytes; at most {MAX_NAME}",
                    i + 1,
                    s.name.len()
                ));
            }
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                return Err(format!("{at}: every stage needs a unique name"));
            }
            if s.hosts.is_empty() {
                return Err(format!("{at}: names no hosts"));
            }
            if s.hosts.len() > MAX_SELECTORS {
                return Err(format!(
                    "{at}: {} host selectors; at most {MAX_SELECTORS}",
                    s.hosts.len()
                ));
            }
            if let Some(h) = s
                .hosts
                .iter()
                .find(|h| h.is_empty() || h.len() > MAX_NAME + 6)
            {
                return Err(format!(
                    "{at}: host selector {:?} must be 1 to {} bytes",
                    h.chars().take(40).collect::<String>(),
                    MAX_NAME + 6
                ));
            }
            if let Some(c) = &s.command {
                let total: usize = c.iter().map(String::len).sum();
                if c.len() > MAX_COMMAND_ARGS || total > MAX_COMMAND_BYTES {
                    return Err(format!(
                        "{at}: command has {} arguments and {total} bytes; at most {MAX_COMMAND_ARGS} and {MAX_COMMAND_BYTES}",
                        c.len()
                    ));
                }
            }
            let t = &s.trigger;
            if t.on_battery_s.is_none() && t.runtime_below_s.is_none() && t.charge_below.is_none() {
                return Err(format!(
                    "{at}: the trigger needs on_battery_s, runtime_below_s or charge_below"
                ));
            }
            if let Some(c) = t.charge_below
                && !(0.0..=100.0).contains(&c)
            {
                return Err(format!("{at}: charge_below {c} is not a percentage"));
            }
            if s.command.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(format!("{at}: command is empty"));
            }
        }
        Ok(())
    }

    /// Checks the plan against the nodes the cluster knows. `refusals` are refused
    /// unless the operator forces them (a host the cluster has never seen may be a typo;
    /// a zero timeout or delay leaves no time to act); `warnings` are only reported.
    pub fn review(&self, nodes: &[&NodeRecord]) -> PlanReview {
        let mut r = PlanReview::default();
        if self.kill_power_delay_s == 0 {
            r.refusals.push(
                "kill_power_delay_s = 0 cuts power the moment it is ordered, with no margin".into(),
            );
        }
        for (i, st) in self.stages.iter().enumerate() {
            let at = format!("stage {} ({})", i + 1, st.name);
            if st.ack_timeout_s == 0 {
                r.refusals.push(format!(
                    "{at}: ack_timeout_s = 0 starts the next stage without waiting for any host"
                ));
            }
            for sel in &st.hosts {
                match sel.strip_prefix("label:") {
                    Some(l) if !nodes.iter().any(|n| n.labels.iter().any(|x| x == l)) => r
                        .warnings
                        .push(format!("{at}: no node has the label {l:?} (yet)")),
                    None if !nodes.iter().any(|n| &n.name == sel) => r
                        .refusals
                        .push(format!("{at}: the cluster knows no node named {sel:?}")),
                    _ => {}
                }
            }
            if self.stage_hosts(i, nodes).is_empty() {
                r.warnings
                    .push(format!("{at}: selects no host of the cluster as it is now"));
            }
        }
        r
    }

    /// The node ids a stage names, in id order.
    pub fn stage_hosts(&self, stage: usize, nodes: &[&NodeRecord]) -> Vec<NodeId> {
        let Some(s) = self.stages.get(stage) else {
            return vec![];
        };
        let mut out = BTreeSet::new();
        for sel in &s.hosts {
            for n in nodes {
                let hit = match sel.strip_prefix("label:") {
                    Some(l) => n.labels.iter().any(|x| x == l),
                    None => &n.name == sel,
                };
                if hit {
                    out.insert(n.id);
                }
            }
        }
        out.into_iter().collect()
    }
}

/// A host's power, from its feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Supply {
    /// Fewer than `min_supplies` feeds are on line.
    pub on_battery: bool,
    /// Since when (Unix ms), when on battery.
    pub on_battery_since_ms: Option<i64>,
    /// Charge and runtime of the `min_supplies`-th best feed.
    pub charge: Option<f64>,
    pub runtime_s: Option<f64>,
    /// Why this supply is an emergency, if it is.
    pub emergency: Option<String>,
    /// The feed whose charge and runtime count (the `min_supplies`-th best).
    pub feed: Option<String>,
}

fn feed_on_line(u: &UpsRecord) -> bool {
    !u.status.on_battery && !u.status.comm_lost && !u.stale
}

/// A host's supply. Hosts without feeds have none (`None`): no trigger reads them.
pub fn supply(node: &NodeRecord, state: &PowerState, plan: &Plan, now_ms: i64) -> Option<Supply> {
    if node.feeds.is_empty() {
        return None;
    }
    // Only UPSes the cluster has heard of count: a feed that never reported (a node
    // starting, or a misspelt name, which `plan check` reports) must not start an outage.
    let feeds: Vec<Option<&UpsRecord>> = node
        .feeds
        .iter()
        .filter_map(|f| state.upses.get(f))
        .map(Some)
        .collect();
    if feeds.is_empty() {
        return None;
    }
    let need = (node.min_supplies.max(1) as usize).min(feeds.len());
    let on_line = feeds.iter().filter(|u| u.is_some_and(feed_on_line)).count();
    let on_battery = on_line < need;
    // Rank feeds best first: on line, then by runtime.
    let mut ranked: Vec<(bool, f64, Option<f64>, Option<&str>)> = feeds
        .iter()
        .map(|u| match u {
            Some(u) => {
                let r = u.status.reading.as_ref();
                (
                    feed_on_line(u),
                    r.and_then(|r| r.runtime_s).unwrap_or(0.0),
                    r.and_then(|r| r.charge_percent),
                    Some(u.name.as_str()),
                )
            }
            None => (false, 0.0, None, None),
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let nth = ranked.get(need - 1).copied();
    let feed = nth.and_then(|n| n.3).map(str::to_string);
    let since = feeds
        .iter()
        .flatten()
        .filter(|u| !feed_on_line(u))
        .filter_map(|u| u.on_battery_since_ms.or(u.comm_lost_since_ms))
        .max();
    let mut emergency = None;
    if on_battery {
        for u in feeds.iter().flatten() {
            let low = u
                .status
                .reading
                .as_ref()
                .is_some_and(|r| r.flags.low_battery)
                && u.status.on_battery;
            if low {
                emergency = Some(format!("{} signals low battery", u.name));
            } else if (u.stale || u.status.comm_lost)
                && u.status.on_battery
                && u.comm_lost_since_ms
                    .is_some_and(|t| now_ms - t >= plan.dead_time_s as i64 * 1000)
            {
                emergency = Some(format!(
                    "{} on battery and silent for more than {} s",
                    u.name, plan.dead_time_s
                ));
            }
        }
        if let Some((_, rt, _, _)) = nth
            && emergency.is_none()
            && rt < plan.runtime_floor_s as f64
        {
            emergency = Some(format!(
                "runtime {rt:.0} s is under the floor of {} s",
                plan.runtime_floor_s
            ));
        }
    }
    Some(Supply {
        on_battery,
        on_battery_since_ms: if on_battery { since } else { None },
        charge: nth.and_then(|n| n.2),
        runtime_s: nth.map(|n| n.1),
        emergency,
        feed,
    })
}

/// A supply as a UPS status, as a host fed by it reads it (NIS for a member without a
/// UPS, or a legacy host): the status of the feed that counts, as its owner reported it
/// (every reading, and the UPS's own bits: low battery, replace battery, overload...,
/// and the power event's FASTPOLL and ONBATT_MSG), with on line or on battery as the
/// supply is. What belongs to the owner's host alone (its comm state, its shutdown
/// decision) is left out. A host must never read less than the truth that keeps it
/// alive: a low-battery signal reaches every host the UPS feeds.
pub fn supply_status(sup: &Supply, state: &PowerState, now_ms: i64) -> crate::view::UpsStatus {
    use crate::reading::{UpsReading, statflag};
    let feed = sup.feed.as_ref().and_then(|f| state.upses.get(f));
    let (mut reading, driver_flags, transfers) = match feed {
        Some(u) if u.status.reading.is_some() => (
            u.status.reading.clone().expect("checked"),
            u.status.statflag,
            u.status.transfers,
        ),
        _ => (
            UpsReading::basic(sup.on_battery, 0.0, 0.0, crate::time::from_unix_ms(now_ms)),
            0,
            0,
        ),
    };
    reading.charge_percent = sup.charge;
    reading.runtime_s = sup.runtime_s;
    reading.flags.on_battery = sup.on_battery;
    reading.flags.online = !sup.on_battery;
    let ups_bits = reading.flags.statflag_bits();
    let event_bits = driver_flags & (statflag::FASTPOLL | statflag::ONBATT_MSG);
    let flag = ups_bits | event_bits | statflag::BATTPRESENT | statflag::PLUGGED;
    crate::view::UpsStatus {
        driver: "cluster".into(),
        reading: Some(reading),
        statflag: flag,
        on_battery: sup.on_battery,
        time_on_battery_s: sup
            .on_battery_since_ms
            .map_or(0, |t| ((now_ms - t).max(0) / 1000) as u32),
        transfers,
        ..Default::default()
    }
}

/// Why a trigger fires for a supply, if it does.
pub fn trigger_reason(t: &Trigger, s: &Supply, now_ms: i64) -> Option<String> {
    if !s.on_battery {
        return None;
    }
    if let (Some(limit), Some(since)) = (t.on_battery_s, s.on_battery_since_ms)
        && now_ms - since >= limit as i64 * 1000
    {
        return Some(format!("on battery for {} s", limit));
    }
    if let (Some(limit), Some(rt)) = (t.runtime_below_s, s.runtime_s)
        && rt < limit as f64
    {
        return Some(format!("runtime {rt:.0} s below {limit} s"));
    }
    if let (Some(limit), Some(c)) = (t.charge_below, s.charge)
        && c < limit
    {
        return Some(format!("charge {c:.0} % below {limit} %"));
    }
    None
}

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
pub fn stage_waits_for(state: &PowerState, run: &super::state::StageRun) -> Vec<NodeId> {
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
fn decide_drill(state: &PowerState, o: &super::state::Outage, now_ms: i64) -> Vec<Command> {
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

impl Plan {
    /// Reads and checks a plan file (TOML: `[[stage]]` tables and the plan's settings).
    pub fn load(path: &std::path::Path) -> Result<Plan, crate::config::ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if text.len() > MAX_PLAN_BYTES {
            return Err(crate::config::ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                key: "stage".into(),
                message: format!("the plan is {} bytes; at most {MAX_PLAN_BYTES}", text.len()),
            });
        }
        let plan: Plan = crate::config::parse_toml(path, &text)?;
        plan.validate()
            .map_err(|message| crate::config::ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                key: "stage".into(),
                message,
            })?;
        Ok(plan)
    }
}

/// Local fallback: consensus must never be why a host dies with power on its disks.
/// `no_quorum_for` is how long this node has been unable to commit (None: it can).
/// A host cut off for `grace` whose last known supply is critical, or cut off for
/// `dead_time` while its supply was last known on battery, shuts itself down.
pub fn local_fallback(
    no_quorum_for: Option<std::time::Duration>,
    grace: std::time::Duration,
    dead_time: std::time::Duration,
    last_supply: Option<&Supply>,
) -> Option<String> {
    let lost = no_quorum_for?;
    let s = last_supply?;
    if let Some(e) = &s.emergency
        && lost >= grace
    {
        return Some(format!(
            "no quorum for {} s and this host's supply is critical ({e})",
            lost.as_secs()
        ));
    }
    if s.on_battery && lost >= dead_time {
        return Some(format!(
            "cut off from the cluster for {} s while its feeds were last known on battery",
            lost.as_secs()
        ));
    }
    None
}

/// apcupsd's thresholds applied to a host's supply (charge <= BATTERYLEVEL, runtime
/// <= MINUTES, on battery longer than TIMEOUT); the caller debounces.
pub fn host_threshold(policy: &crate::policy::Policy, s: &Supply, now_ms: i64) -> Option<String> {
    if !s.on_battery {
        return None;
    }
    if let Some(since) = s.on_battery_since_ms.filter(|_| policy.timeout > 0)
        && now_ms - since > i64::from(policy.timeout) * 1000
    {
        return Some(format!(
            "on battery longer than TIMEOUT ({} s)",
            policy.timeout
        ));
    }
    if let Some(c) = s.charge.filter(|c| *c <= f64::from(policy.battery_level)) {
        return Some(format!(
            "charge {c:.0} % at or below BATTERYLEVEL ({} %)",
            policy.battery_level
        ));
    }
    if let Some(r) = s
        .runtime_s
        .filter(|r| *r <= f64::from(policy.minutes) * 60.0)
    {
        return Some(format!(
            "runtime {r:.0} s at or below MINUTES ({})",
            policy.minutes
        ));
    }
    None
}

/// Words for a trigger, e.g. `on battery 30 s, or runtime < 600 s`.
pub fn trigger_words(t: &Trigger) -> String {
    let mut v = Vec::new();
    if let Some(s) = t.on_battery_s {
        v.push(format!("on battery {s} s"));
    }
    if let Some(s) = t.runtime_below_s {
        v.push(format!("runtime < {s} s"));
    }
    if let Some(c) = t.charge_below {
        v.push(format!("charge < {c} %"));
    }
    v.join(", or ")
}

#[cfg(test)]
mod tests {
    use super::super::state::{Ack, Outage, StageRun};
    use super::*;
    use crate::reading::UpsReading;
    use crate::view::UpsStatus;
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    const NOW: i64 = 1_000_000;

    fn plan() -> Plan {
        Plan {
            stages: vec![
                Stage {
                    name: "batch".into(),
                    hosts: vec!["label:batch".into()],
                    trigger: Trigger {
                        on_battery_s: Some(30),
                        ..Default::default()
                    },
                    ack_timeout_s: 60,
                    command: None,
                    shutdown_s: None,
                },
                Stage {
                    name: "apps".into(),
                    hosts: vec!["app1".into()],
                    trigger: Trigger {
                        runtime_below_s: Some(600),
                        ..Default::default()
                    },
                    ack_timeout_s: 60,
                    command: None,
                    shutdown_s: None,
                },
                Stage {
                    name: "core".into(),
                    hosts: vec!["db1".into(), "owner".into()],
                    trigger: Trigger {
                        charge_below: Some(20.0),
                        ..Default::default()
                    },
                    ack_timeout_s: 60,
                    command: None,
                    shutdown_s: None,
                },
            ],
            runtime_floor_s: 120,
            dead_time_s: 15,
            kill_power_delay_s: 20,
            silence_s: 10,
        }
    }

    fn node(id: NodeId, name: &str, labels: &[&str], feeds: &[&str], min: u32) -> NodeRecord {
        NodeRecord {
            id,
            name: name.into(),
            addr: String::new(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            last_seen_ms: NOW,
            version: String::new(),
            feeds: feeds.iter().map(|s| s.to_string()).collect(),
            min_supplies: min,
            shutdown_s: 120,
        }
    }

    fn ups(
        name: &str,
        owner: NodeId,
        on_battery_for_s: Option<i64>,
        charge: f64,
        runtime: f64,
    ) -> UpsRecord {
        let r = UpsReading::basic(
            on_battery_for_s.is_some(),
            charge,
            runtime,
            SystemTime::now(),
        );
        UpsRecord {
            name: name.into(),
            owner,
            seq: 1,
            stale: false,
            last_report_ms: NOW,
            on_battery_since_ms: on_battery_for_s.map(|s| NOW - s * 1000),
            comm_lost_since_ms: None,
            rival: None,
            status: UpsStatus {
                driver: "sim".into(),
                reading: Some(r),
                statflag: 0,
                comm_lost: false,
                on_battery: on_battery_for_s.is_some(),
                time_on_battery_s: 0,
                transfers: 0,
                shutdown: None,
                comm_error: None,
            },
        }
    }

    /// batch1 and app1 on upsA only; db1 on upsA+upsB needing one; owner (of both) on upsA.
    fn state(a: UpsRecord, b: UpsRecord) -> PowerState {
        let mut s = PowerState {
            plan: Some(plan()),
            ..Default::default()
        };
        for n in [
            node(1, "owner", &[], &["upsA"], 1),
            node(2, "batch1", &["batch"], &["upsA"], 1),
            node(3, "app1", &[], &["upsA"], 1),
            node(4, "db1", &[], &["upsA", "upsB"], 1),
        ] {
            s.nodes.insert(n.id, n);
        }
        s.upses.insert("upsA".into(), a);
        s.upses.insert("upsB".into(), b);
        s
    }

    fn outage(stages: Vec<StageRun>) -> Outage {
        Outage {
            id: 1,
            started_ms: NOW - 60_000,
            stages,
            kill_power: BTreeMap::new(),
            ended_ms: None,
            end_reason: String::new(),
            armed: Some(vec![]),
            drill: None,
        }
    }

    fn run(name: &str, hosts: &[NodeId], started_s_ago: i64, halted: &[NodeId]) -> StageRun {
        StageRun {
            name: name.into(),
            started_ms: NOW - started_s_ago * 1000,
            reason: String::new(),
            hosts: hosts.to_vec(),
            acks: halted
                .iter()
                .map(|h| {
                    (
                        *h,
                        Ack {
                            shutting_down_ms: Some(NOW - 1),
                            halting_ms: Some(NOW),
                            halted_ms: Some(NOW),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    fn kinds(cmds: &[Command]) -> Vec<String> {
        cmds.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn no_plan_or_all_on_line_does_nothing() {
        let s = state(
            ups("upsA", 1, None, 100.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        assert!(decide(&s, NOW).is_empty());
        let mut s2 = s.clone();
        s2.plan = None;
        s2.upses.get_mut("upsA").unwrap().status.on_battery = true;
        assert!(decide(&s2, NOW).is_empty());
    }

    #[test]
    fn a_feed_that_never_reported_starts_no_outage() {
        // Nodes announced with their feeds before any UPS report was committed.
        let mut s = state(
            ups("upsA", 1, None, 100.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.upses.clear();
        assert!(decide(&s, NOW).is_empty());
        // db1 (upsA + upsB, needs one) with only upsB known and on line: on line.
        s.upses
            .insert("upsB".into(), ups("upsB", 1, None, 100.0, 3000.0));
        let db1 = s.nodes[&4].clone();
        assert!(!supply(&db1, &s, &plan(), NOW).unwrap().on_battery);
    }

    #[test]
    fn a_ups_on_battery_starts_an_outage() {
        let s = state(
            ups("upsA", 1, Some(1), 100.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        assert_eq!(kinds(&decide(&s, NOW)), ["OutageStart(1)"]);
    }

    #[test]
    fn on_battery_trigger_waits_for_its_seconds() {
        let mut s = state(
            ups("upsA", 1, Some(29), 90.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![]));
        assert!(decide(&s, NOW).is_empty(), "29 s < 30 s");
        s.upses
            .insert("upsA".into(), ups("upsA", 1, Some(30), 90.0, 3000.0));
        let cmds = decide(&s, NOW);
        assert_eq!(kinds(&cmds), ["StageStart(1/0)"]);
        match &cmds[0] {
            Command::StageStart { hosts, reason, .. } => {
                assert_eq!(hosts, &[2]);
                assert!(reason.contains("batch1: on battery for 30 s"), "{reason}");
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn next_stage_waits_for_acks_or_timeout() {
        let mut s = state(
            ups("upsA", 1, Some(100), 50.0, 500.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![run("batch", &[2], 10, &[])]));
        assert!(
            decide(&s, NOW).is_empty(),
            "batch1 has not halted, timeout not reached"
        );
        s.outage = Some(outage(vec![run("batch", &[2], 10, &[2])]));
        assert_eq!(
            kinds(&decide(&s, NOW)),
            ["StageStart(1/1)"],
            "acked: apps may start (runtime 500 < 600)"
        );
        s.outage = Some(outage(vec![run("batch", &[2], 60, &[])]));
        assert_eq!(
            kinds(&decide(&s, NOW)),
            ["StageStart(1/1)"],
            "ack timeout passed"
        );
    }

    #[test]
    fn runtime_and_charge_triggers() {
        let mut s = state(
            ups("upsA", 1, Some(100), 50.0, 700.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![run("batch", &[2], 10, &[2])]));
        assert!(decide(&s, NOW).is_empty(), "runtime 700 >= 600");
        s.outage = Some(outage(vec![
            run("batch", &[2], 10, &[2]),
            run("apps", &[3], 10, &[3]),
        ]));
        s.upses
            .insert("upsA".into(), ups("upsA", 1, Some(100), 25.0, 700.0));
        assert!(decide(&s, NOW).is_empty(), "charge 25 >= 20");
        s.upses
            .insert("upsA".into(), ups("upsA", 1, Some(100), 19.0, 700.0));
        let cmds = decide(&s, NOW);
        assert_eq!(kinds(&cmds), ["StageStart(1/2)"]);
        match &cmds[0] {
            Command::StageStart { hosts, reason, .. } => {
                assert_eq!(hosts, &[1, 4]);
                assert!(reason.contains("owner: charge 19 % below 20 %"), "{reason}");
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn redundant_host_stays_on_line_with_one_feed() {
        let s = state(
            ups("upsA", 1, Some(100), 10.0, 60.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        let p = plan();
        let db1 = &s.nodes[&4];
        let sup = supply(db1, &s, &p, NOW).unwrap();
        assert!(!sup.on_battery, "upsB still on line and min_supplies is 1");
        assert_eq!(sup.runtime_s, Some(3000.0), "best feed");
        let mut db2 = db1.clone();
        db2.min_supplies = 2;
        let sup = supply(&db2, &s, &p, NOW).unwrap();
        assert!(sup.on_battery, "needs both feeds");
        assert_eq!(sup.runtime_s, Some(60.0), "second-best feed");
        assert!(sup.emergency.is_some(), "runtime 60 under the 120 s floor");
    }

    #[test]
    fn emergency_starts_every_remaining_stage_without_waiting() {
        let mut a = ups("upsA", 1, Some(5), 90.0, 3000.0);
        a.status.reading.as_mut().unwrap().flags.low_battery = true;
        let mut s = state(a, ups("upsB", 1, None, 100.0, 3000.0));
        s.outage = Some(outage(vec![run("batch", &[2], 1, &[])]));
        let cmds = decide(&s, NOW);
        assert_eq!(
            kinds(&cmds),
            ["StageStart(1/1)"],
            "no waiting for batch's acks"
        );
        match &cmds[0] {
            Command::StageStart { reason, .. } => {
                assert!(reason.contains("signals low battery"), "{reason}")
            }
            _ => unreachable!(),
        }
        // Applying it, the next decide starts the last stage at once too.
        s.apply(&cmds[0]);
        assert_eq!(kinds(&decide(&s, NOW)), ["StageStart(1/2)"]);
    }

    #[test]
    fn silent_ups_on_battery_is_an_emergency_after_dead_time() {
        let mut a = ups("upsA", 1, Some(5), 90.0, 3000.0);
        a.stale = true;
        a.comm_lost_since_ms = Some(NOW - 14_000);
        let mut s = state(a, ups("upsB", 1, None, 100.0, 3000.0));
        s.outage = Some(outage(vec![]));
        assert!(decide(&s, NOW).is_empty(), "14 s < dead_time 15 s");
        s.upses.get_mut("upsA").unwrap().comm_lost_since_ms = Some(NOW - 15_000);
        let cmds = decide(&s, NOW);
        assert_eq!(kinds(&cmds), ["StageStart(1/0)"]);
    }

    #[test]
    fn mains_return_cancels_what_has_not_started() {
        let mut s = state(
            ups("upsA", 1, None, 80.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![run("batch", &[2], 10, &[2])]));
        let cmds = decide(&s, NOW);
        assert_eq!(kinds(&cmds), ["OutageEnd(1)"]);
        match &cmds[0] {
            Command::OutageEnd { reason, .. } => {
                assert!(reason.contains("2 stage(s) not started are cancelled"))
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_last_ups_of_a_dual_fed_host_waits_for_it() {
        // Both UPSes on battery; every stage started; db1 (upsA + upsB, needs one) still
        // runs. One of its UPSes may go, never both.
        let mut s = state(
            ups("upsA", 1, Some(300), 5.0, 100.0),
            ups("upsB", 1, Some(300), 5.0, 100.0),
        );
        s.outage = Some(outage(vec![
            run("batch", &[2], 100, &[2]),
            run("apps", &[3], 50, &[3]),
            run("core", &[1, 4], 5, &[]),
        ]));
        let first = kinds(&decide(&s, NOW));
        assert_eq!(first, ["KillPower(upsA)"], "one feed of db1 at a time");
        for c in decide(&s, NOW) {
            s.apply(&c);
        }
        assert!(
            decide(&s, NOW).is_empty(),
            "upsB is db1's last feed while db1 runs"
        );
        // db1 acknowledges halting: it is halting, not down, while it is heard from.
        s.outage.as_mut().unwrap().stages[2]
            .acks
            .entry(4)
            .or_default()
            .halting_ms = Some(NOW);
        assert!(decide(&s, NOW + 5_000).is_empty(), "db1 halting, not down");
        // Silent for the plan's silence_s (10 s) after its last heartbeat: down, and its
        // last UPS may go, with a delay that covers what is left of its 120 s (the
        // owner is not fed by upsB).
        let later = NOW + 11_000;
        let cmds = decide(&s, later);
        assert_eq!(kinds(&cmds), ["HostDown(4 silent)", "KillPower(upsB)"]);
        let Command::KillPower { delay_s, .. } = &cmds[1] else {
            unreachable!()
        };
        assert_eq!(*delay_s, 109, "120 s from db1's halting ack, 11 s ago");
    }

    #[test]
    fn a_host_is_down_when_it_said_halted_or_went_silent_after_halting() {
        use crate::replicated::endgame::{HostPhase, phase};
        use crate::replicated::state::DownHow;
        let mut s = state(
            ups("upsA", 1, Some(300), 5.0, 100.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![run("batch", &[2, 3], 200, &[])]));
        let p = plan();
        let n = |s: &PowerState, id| s.nodes[&id].clone();
        // Told, no ack, its stage timed out (60 s), still heartbeating: running.
        assert_eq!(phase(&s, &p, &n(&s, 2), NOW), HostPhase::Running);
        // The same host silent for 10 s: unreachable, counted as down.
        assert_eq!(
            phase(&s, &p, &n(&s, 2), NOW + 10_000),
            HostPhase::Down {
                how: DownHow::Unreachable,
                at_ms: NOW
            }
        );
        // Halting ack, heard from 4 s later: halting until 10 s of silence.
        let ack = s.outage.as_mut().unwrap().stages[0]
            .acks
            .entry(2)
            .or_default();
        ack.halting_ms = Some(NOW - 4_000);
        assert_eq!(
            phase(&s, &p, &n(&s, 2), NOW + 9_000),
            HostPhase::Halting {
                since_ms: NOW - 4_000
            }
        );
        assert!(phase(&s, &p, &n(&s, 2), NOW + 10_000).is_down());
        // The decision records it once, and the silence measures its shutdown: 4 s.
        let downs: Vec<Command> = decide(&s, NOW + 10_000)
            .into_iter()
            .filter(|c| matches!(c, Command::HostDown { .. }))
            .collect();
        assert_eq!(
            kinds(&downs),
            ["HostDown(2 silent)", "HostDown(3 unreachable)"]
        );
        for c in &downs {
            assert!(s.apply(c).applied);
            assert!(!s.apply(c).applied, "recorded once");
        }
        assert_eq!(s.shutdown_measured[&2].to_silence_ms, Some(4_000));
        assert!(!s.shutdown_measured.contains_key(&3), "nothing to measure");
        // A late "halted" from host 3's shutdown path: down at once, measured too.
        s.nodes.get_mut(&3).unwrap().last_seen_ms = NOW + 20_000;
        assert!(
            s.apply(&Command::HostHalted {
                node: 3,
                at_ms: NOW + 20_000
            })
            .applied
        );
        assert!(phase(&s, &p, &n(&s, 3), NOW + 20_000).is_down());
        assert_eq!(
            s.outage.as_ref().unwrap().stages[0].acks[&3].down_how,
            Some(DownHow::Unreachable)
        );
    }

    #[test]
    fn shutdown_times_are_the_larger_of_declared_and_measured_and_set_the_kill_delay() {
        use crate::replicated::endgame::{kill_delay_s, shutdown_s};
        use crate::replicated::state::MeasuredShutdown;
        let mut s = state(
            ups("upsA", 1, Some(300), 5.0, 100.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        let mut p = plan();
        for id in 1..=4 {
            s.nodes.get_mut(&id).unwrap().shutdown_s = 30;
        }
        p.stages[1].shutdown_s = Some(200); // apps: app1
        s.plan = Some(p.clone());
        s.shutdown_measured.insert(
            2,
            MeasuredShutdown {
                outage: 1,
                to_silence_ms: Some(44_200),
                to_halted_ms: Some(41_000),
            },
        );
        assert_eq!(shutdown_s(&s, &p, &s.nodes[&1].clone()), 30, "declared");
        assert_eq!(
            shutdown_s(&s, &p, &s.nodes[&2].clone()),
            45,
            "measured, rounded up"
        );
        assert_eq!(shutdown_s(&s, &p, &s.nodes[&3].clone()), 200, "the stage's");
        // batch1 (2) halting 10 s ago and silent: down; app1 said halted; db1 has upsB.
        s.nodes.get_mut(&2).unwrap().last_seen_ms = NOW - 10_000;
        s.outage = Some(outage(vec![
            run("batch", &[2], 100, &[]),
            run("apps", &[3], 50, &[3]),
            run("core", &[1, 4], 5, &[4]),
        ]));
        s.outage.as_mut().unwrap().stages[0]
            .acks
            .entry(2)
            .or_default()
            .halting_ms = Some(NOW - 10_000);
        // Owner 1 runs: 30 s + 10 s to start it; batch1 has 45 - 10 = 35 s left.
        assert_eq!(kill_delay_s(&s, &p, "upsA", NOW), 40);
        // Once the owner itself halted (it said so), batch1's 35 s is what is left.
        let mut s2 = s.clone();
        s2.outage.as_mut().unwrap().stages[2].acks.insert(
            1,
            Ack {
                halting_ms: Some(NOW),
                halted_ms: Some(NOW),
                ..Default::default()
            },
        );
        assert_eq!(kill_delay_s(&s2, &p, "upsA", NOW), 35);
        let cmds = decide(&s, NOW);
        assert!(cmds.contains(&Command::KillPower {
            outage: 1,
            ups: "upsA".into(),
            delay_s: 40,
            at_ms: NOW
        }));
        // Never under the plan's minimum.
        p.kill_power_delay_s = 60;
        assert_eq!(kill_delay_s(&s, &p, "upsA", NOW), 60);
    }

    #[test]
    fn kill_orders_are_committed_before_the_first_stage_and_owners_may_finish_alone() {
        use crate::replicated::endgame::alone_delay;
        let mut s = state(
            ups("upsA", 1, Some(40), 50.0, 3000.0),
            ups("upsB", 4, None, 100.0, 3000.0),
        );
        s.apply(&decide(&s, NOW)[0]);
        let cmds = decide(&s, NOW);
        assert_eq!(kinds(&cmds), ["ArmKillPower(2 UPS)", "StageStart(1/0)"]);
        for c in &cmds {
            assert!(s.apply(c).applied);
        }
        let armed = s.outage.as_ref().unwrap().armed.clone().unwrap();
        // upsA (owner 1) waits for batch1, app1, db1; upsB (owner db1) for nobody.
        assert_eq!(armed[0].ups, "upsA");
        assert_eq!(armed[0].wait_for, [2, 3, 4]);
        assert_eq!(armed[1].wait_for, Vec::<NodeId>::new());
        assert!(
            kinds(&decide(&s, NOW))
                .iter()
                .all(|k| !k.starts_with("Arm")),
            "once"
        );

        // Alone (no quorum): batch1 acked halting at NOW and stopped answering at NOW;
        // app1 and db1 never acked and still answer.
        let p = s.plan.clone().unwrap();
        s.outage.as_mut().unwrap().stages[0]
            .acks
            .entry(2)
            .or_default()
            .halting_ms = Some(NOW);
        let mut reached = BTreeMap::from([(2, NOW), (3, NOW + 30_000), (4, NOW + 30_000)]);
        let order = &armed[0];
        assert_eq!(
            alone_delay(&s, &p, order, &reached, NOW, NOW + 30_000),
            None
        );
        // app1 and db1 stop answering: down only after their whole shutdown time (120 s)
        // without a word, as nobody saw them halting.
        reached.insert(3, NOW + 31_000);
        reached.insert(4, NOW + 31_000);
        assert_eq!(
            alone_delay(&s, &p, order, &reached, NOW, NOW + 150_000),
            None
        );
        // At +151 s: 120 s of silence for app1. db1 owns upsB (which waits for nobody):
        // it is not waited for, it cuts and halts on its own, so the delay covers its
        // reaction (silence_s 10 + a probe 2 + 10 to start) and its 120 s shutdown.
        assert_eq!(
            alone_delay(&s, &p, order, &reached, NOW, NOW + 151_000),
            Some(142)
        );
        // A "halted" that was committed counts at once.
        for h in [3, 4] {
            s.outage.as_mut().unwrap().stages[0].hosts.push(h);
            s.outage.as_mut().unwrap().stages[0]
                .acks
                .entry(h)
                .or_default()
                .halted_ms = Some(NOW);
        }
        assert_eq!(
            alone_delay(&s, &p, order, &reached, NOW, NOW + 40_000),
            Some(130)
        );
    }

    #[test]
    fn kill_power_waits_for_every_host_fed_only_by_the_ups() {
        let mut s = state(
            ups("upsA", 1, Some(300), 5.0, 100.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        s.outage = Some(outage(vec![
            run("batch", &[2], 100, &[2]),
            run("apps", &[3], 50, &[3]),
            run("core", &[1, 4], 5, &[4]),
        ]));
        // owner (1) has not acked but it is the one told to cut power; batch1 and app1,
        // fed only by upsA, halted. db1 has upsB too and does not count.
        assert_eq!(kinds(&decide(&s, NOW)), ["KillPower(upsA)"]);
        s.outage = Some(outage(vec![
            run("batch", &[2], 100, &[2]),
            run("apps", &[3], 5, &[]),
            run("core", &[1, 4], 5, &[4]),
        ]));
        assert!(
            decide(&s, NOW).is_empty(),
            "app1 still running: no kill power, and apps not done"
        );
    }

    #[test]
    fn decide_is_idempotent_through_apply() {
        let mut s = state(
            ups("upsA", 1, Some(40), 50.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        let c1 = decide(&s, NOW);
        assert!(s.apply(&c1[0]).applied);
        let c2 = decide(&s, NOW);
        assert_eq!(kinds(&c2), ["ArmKillPower(2 UPS)", "StageStart(1/0)"]);
        assert!(s.apply(&c2[0]).applied);
        assert!(s.apply(&c2[1]).applied);
        // A stale leader re-proposing the same commands is refused.
        assert!(!s.apply(&c2[0]).applied);
        assert!(!s.apply(&c2[1]).applied);
        assert!(!s.apply(&c1[0]).applied);
    }

    #[test]
    fn halted_hosts_come_back_by_power_cycle_when_nothing_running_depends_on_the_ups() {
        let mut s = state(
            ups("upsA", 1, None, 60.0, 3000.0),
            ups("upsB", 1, None, 100.0, 3000.0),
        );
        let mut o = outage(vec![run("batch", &[2], 100, &[2])]);
        o.ended_ms = Some(NOW - 1000);
        s.outage = Some(o);
        s.halted.insert(2);
        // owner, app1 (only upsA) still run on upsA: no power cycle of upsA.
        assert!(decide(&s, NOW).is_empty());
        s.halted.extend([1, 3]);
        // Now only db1 runs, and it has upsB.
        assert_eq!(kinds(&decide(&s, NOW)), ["PowerCycle(upsA)"]);
    }

    #[test]
    fn local_fallback_rules() {
        use std::time::Duration as D;
        let on_line = Supply {
            on_battery: false,
            on_battery_since_ms: None,
            charge: Some(100.0),
            runtime_s: Some(3000.0),
            emergency: None,
            feed: None,
        };
        let on_batt = Supply {
            on_battery: true,
            on_battery_since_ms: Some(NOW),
            ..on_line.clone()
        };
        let critical = Supply {
            emergency: Some("ups1 signals low battery".into()),
            ..on_batt.clone()
        };
        let (g, d) = (D::from_secs(10), D::from_secs(15));
        // The cluster works: never.
        assert_eq!(local_fallback(None, g, d, Some(&critical)), None);
        // Cut off, on line: never, however long.
        assert_eq!(
            local_fallback(Some(D::from_secs(100_000)), g, d, Some(&on_line)),
            None
        );
        // No known supply (no feeds): never.
        assert_eq!(
            local_fallback(Some(D::from_secs(100_000)), g, d, None),
            None
        );
        // Critical: after the grace period.
        assert_eq!(
            local_fallback(Some(D::from_secs(9)), g, d, Some(&critical)),
            None
        );
        assert!(
            local_fallback(Some(D::from_secs(10)), g, d, Some(&critical))
                .unwrap()
                .contains("critical")
        );
        // On battery, not critical: after dead_time.
        assert_eq!(
            local_fallback(Some(D::from_secs(14)), g, d, Some(&on_batt)),
            None
        );
        assert!(
            local_fallback(Some(D::from_secs(15)), g, d, Some(&on_batt))
                .unwrap()
                .contains("last known on battery")
        );
    }

    #[test]
    fn host_thresholds_are_apcupsds() {
        let p = crate::policy::Policy::default();
        let mut sup = Supply {
            on_battery: true,
            on_battery_since_ms: Some(NOW - 100_000),
            charge: Some(50.0),
            runtime_s: Some(900.0),
            emergency: None,
            feed: None,
        };
        assert_eq!(host_threshold(&p, &sup, NOW), None);
        sup.charge = Some(10.0);
        assert!(
            host_threshold(&p, &sup, NOW)
                .unwrap()
                .contains("BATTERYLEVEL")
        );
        sup.charge = Some(50.0);
        sup.runtime_s = Some(300.0);
        assert!(host_threshold(&p, &sup, NOW).unwrap().contains("MINUTES"));
        sup.runtime_s = Some(900.0);
        let t = crate::policy::Policy {
            timeout: 60,
            ..p.clone()
        };
        assert!(host_threshold(&t, &sup, NOW).unwrap().contains("TIMEOUT"));
        sup.on_battery = false;
        sup.charge = Some(1.0);
        assert_eq!(host_threshold(&p, &sup, NOW), None, "on line: never");
    }

    #[test]
    fn shipped_example_plan_is_valid() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/examples/plan.toml");
        let plan = Plan::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.stages.len(), 3);
    }

    #[test]
    fn plan_validation_names_the_stage() {
        let mut p = plan();
        p.stages[1].trigger = Trigger::default();
        assert!(p.validate().unwrap_err().contains("stage 2 (\"apps\")"));
        let mut p = plan();
        p.stages[0].hosts.clear();
        assert!(p.validate().unwrap_err().contains("names no hosts"));
    }
}
