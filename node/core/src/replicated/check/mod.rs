//! `upsilon plan check`, without I/O: does the plan fit the batteries at the current
//! load, and does it fit the cluster?
//!
//! Every time it prints comes from [`timeline::predict`], which plays the coordinator
//! itself forward on a model of the batteries (see there); this module only puts the
//! timeline into words and judges it: a host down after its supply ran out, a UPS
//! empty before its kill power cuts, a stage that never starts, a plan that strands
//! hosts once the quorum is gone.

use std::collections::BTreeSet;

use super::NodeId;
use super::endgame;
use super::plan::{Plan, trigger_words};
use super::state::{PowerState, UpsRecord};
use super::timeline::{self, HaltPath, Timeline, seconds};

/// What the check found; `lines` is the report in words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanCheck {
    pub lines: Vec<String>,
    /// The plan runs out of battery somewhere: what and by how much.
    pub problems: Vec<String>,
    /// Plan and cluster do not match (hosts no stage selects, a quorum halted early).
    pub warnings: Vec<String>,
}

impl PlanCheck {
    /// True when no host or UPS would run out of battery.
    pub fn fits(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The UPS's own delay against the one the plan needs: programmed where the driver can
/// (apcsmart raises the EEPROM grace at kill power, up to 600 s on a Smart-UPS; usbhid
/// and modbus write the delay with the order), otherwise only checked.
fn ups_delay_note(c: &mut PlanCheck, u: &UpsRecord, need_s: u32) {
    let grace = u
        .status
        .reading
        .as_ref()
        .and_then(|r| r.details.get("DSHUTD"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
    let name = &u.name;
    match u.status.driver.as_str() {
        "sim" => {}
        // Written with the kill order: HID's shutdown delay, Modbus's outlet group
        // turn-off delay.
        "usbhid" | "modbus" => {}
        "apcsmart" if need_s > 600 => c.warnings.push(format!(
            "UPS {name}: the plan needs a {need_s} s delay; a Smart-UPS's grace (EEPROM) tops out at 600 s: shorten the owner's shutdown_s"
        )),
        "apcsmart" => {
            if let Some(g) = grace.filter(|g| *g < need_s) {
                c.lines.push(format!(
                    "UPS {name}: its grace delay (EEPROM) is {g} s; the driver raises it to cover {need_s} s at kill power"
                ));
            }
        }
        other => match grace {
            Some(g) if g >= need_s => {}
            Some(g) => c.warnings.push(format!(
                "UPS {name}: its own delay is {g} s, shorter than the {need_s} s the plan needs, and the {other} driver cannot change it"
            )),
            None => c.warnings.push(format!(
                "UPS {name}: the {other} driver cannot program a delay and reports none: check that the UPS waits {need_s} s after a kill-power order"
            )),
        },
    }
}

fn secs(x: f64) -> String {
    format!("{:.0} s", x)
}

/// Checks `state`'s plan against its UPSes and hosts; `voters` are the cluster's voters
/// (empty when unknown, e.g. a standalone node). The times come from
/// [`timeline::predict`], the model the coordinator itself runs in.
pub fn check(state: &PowerState, voters: &[NodeId], now_ms: i64) -> Option<PlanCheck> {
    let tl = timeline::predict(state, voters, now_ms)?;
    Some(render(state, voters, &tl))
}

fn at(ms: i64) -> String {
    if ms < 0 {
        format!("-{}", seconds(-ms))
    } else {
        format!("+{}", seconds(ms))
    }
}

/// `plan check`'s report from a predicted timeline.
pub fn render(state: &PowerState, voters: &[NodeId], tl: &Timeline) -> PlanCheck {
    let plan: &Plan = state.plan.as_ref().expect("a timeline comes from a plan");
    let mut c = PlanCheck::default();
    c.lines.push(if tl.outage_going {
        "outage going on: the UPSes on battery taken to stay so, at the current load".into()
    } else {
        "as if mains failed now on every UPS, at the current load".to_string()
    });
    batteries(&mut c, state, tl);
    quorum_rule(&mut c, state, plan, voters);
    let worst = stages(&mut c, plan, tl);
    if let Some(q) = tl.quorum_lost_ms {
        c.lines.push(format!(
            "quorum lost at {}: nothing is committed after it",
            at(q)
        ));
    }
    kill_orders(&mut c, state, tl);
    other_halts(&mut c, tl);
    if let Some((m, stage)) = worst {
        c.lines.push(if m < 0.0 {
            format!("{stage} runs out of battery first, {} short", secs(-m))
        } else {
            format!("tightest: {stage}, {} of battery to spare", secs(m))
        });
    }
    against_the_cluster(&mut c, state, plan);
    c
}

/// Each UPS's runtime, and feeds nobody reports.
fn batteries(c: &mut PlanCheck, state: &PowerState, tl: &Timeline) {
    let hosts = state.hosts();
    for u in &tl.upses {
        c.lines.push(match u.runtime_s {
            Some(r) => format!(
                "UPS {}: {} of runtime{}{}",
                u.name,
                secs(r),
                u.charge
                    .map_or(String::new(), |c| format!(", {c:.0} % charge")),
                if u.on_battery { "" } else { " (on line)" }
            ),
            None => format!(
                "UPS {}: reports no runtime: the check cannot time it",
                u.name
            ),
        });
        if u.runtime_s.is_none() {
            c.warnings
                .push(format!("UPS {} reports no runtime: not checked", u.name));
        }
    }
    // A feed nobody reports (a typo, or an owner not yet up) leaves its hosts untimed:
    // "fits" must not read as "checked".
    for n in &hosts {
        for f in n.feeds.iter().filter(|f| !state.upses.contains_key(*f)) {
            c.warnings.push(format!(
                "host {} is fed by UPS {f}, which no node reports (yet): its supply is not checked",
                n.name
            ));
        }
    }
}

/// The rule for the quorum, stated either way.
fn quorum_rule(c: &mut PlanCheck, state: &PowerState, plan: &Plan, voters: &[NodeId]) {
    match endgame::quorum_words(state, plan, voters) {
        Ok(Some(w)) => c.lines.push(w),
        Ok(None) => {}
        Err(e) => c
            .problems
            .push(format!("{e} (`plan apply` refuses this plan)")),
    }
}

/// One line per stage: when it starts and why, whom it waits for, each host's halt and
/// battery left. Returns the tightest margin and its stage.
fn stages(c: &mut PlanCheck, plan: &Plan, tl: &Timeline) -> Option<(f64, String)> {
    let name = |id: &NodeId| tl.hosts.get(id).map_or(id.to_string(), |h| h.name.clone());
    let mut worst: Option<(f64, String)> = None;
    for st in &tl.stages {
        let label = format!("stage {} {}", st.index + 1, st.name);
        let Some(start) = st.start_ms else {
            let why = if tl.quorum_lost_ms.is_some() {
                "never starts: no quorum is left to start it".to_string()
            } else {
                format!(
                    "does not start before +{} ({}: cannot be timed from the readings, or never fires)",
                    seconds(tl.end_ms),
                    trigger_words(&plan.stages[st.index].trigger)
                )
            };
            c.lines.push(format!("{label}: {why}"));
            if tl.quorum_lost_ms.is_none() {
                c.warnings.push(format!(
                    "{label}: its trigger cannot be timed from the readings"
                ));
            }
            for h in st.hosts.iter().filter_map(|h| tl.hosts.get(h)) {
                if h.duties.is_empty() && h.down_ms.is_some() {
                    c.lines.push(format!(
                        "  {}: {} at +{} (battery left then {})",
                        h.name,
                        how_words(h.how),
                        seconds(h.down_ms.unwrap_or(0)),
                        h.margin_s.map_or("unknown".into(), secs)
                    ));
                }
            }
            continue;
        };
        let mut parts = Vec::new();
        let mut last_down = start;
        for h in st.hosts.iter().filter_map(|h| tl.hosts.get(h)) {
            if !h.duties.is_empty() && h.how != HaltPath::Stage {
                parts.push(format!(
                    "{} {} (down by {})",
                    h.name,
                    endgame::deferred_words(&h.duties),
                    h.down_ms.map_or("never".into(), at)
                ));
                continue;
            }
            if let Some(d) = h.down_ms {
                last_down = last_down.max(d);
            }
            let left = h.margin_s.map_or("unknown".into(), secs);
            parts.push(format!(
                "{} {} (battery left then {left})",
                h.name,
                secs(f64::from(h.shutdown_s))
            ));
            if let (Some(m), Some(d)) = (h.margin_s, h.down_ms) {
                if m < 0.0 {
                    c.problems.push(format!(
                        "{label}: {} needs until {} to shut down but its supply runs out at {}: {} short",
                        h.name,
                        at(d),
                        at(d + (m * 1000.0) as i64),
                        secs(-m)
                    ));
                }
                if worst.as_ref().is_none_or(|(w, _)| m < *w) {
                    worst = Some((m, label.clone()));
                }
            }
        }
        let waits = match (st.waits_for.is_empty(), st.done_ms) {
            (true, _) => String::new(),
            (false, Some(done)) => format!(
                "; waits for {}: {}",
                st.waits_for.iter().map(name).collect::<Vec<_>>().join(", "),
                seconds(done - start)
            ),
            (false, None) => format!(
                "; waits for {}",
                st.waits_for.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
        };
        c.lines.push(format!(
            "{label}: starts at {} ({}){waits}; hosts down by {}: {}",
            at(start),
            st.reason,
            at(last_down),
            if parts.is_empty() {
                "no host".to_string()
            } else {
                parts.join(", ")
            }
        ));
    }
    worst
}

/// Each UPS's kill order, its delay and margin.
fn kill_orders(c: &mut PlanCheck, state: &PowerState, tl: &Timeline) {
    let name = |id: &NodeId| tl.hosts.get(id).map_or(id.to_string(), |h| h.name.clone());
    for u in &tl.upses {
        let Some(k) = &u.kill else {
            if u.on_battery {
                c.warnings.push(format!(
                    "UPS {}: not cut before +{}: it feeds a host that is never down (in no stage?), and kill power waits for it",
                    u.name,
                    seconds(tl.end_ms)
                ));
            }
            continue;
        };
        if let Some(rec) = state.upses.get(&u.name) {
            ups_delay_note(c, rec, k.delay_s);
        }
        let by = if k.alone {
            format!(" by {} alone (no quorum)", name(&u.owner))
        } else {
            String::new()
        };
        match u.margin_s() {
            Some(m) => {
                c.lines.push(format!(
                    "UPS {}: kill power ordered{by} at {}, cuts at {} ({} delay); margin {}",
                    u.name,
                    at(k.ordered_ms),
                    at(k.cut_ms()),
                    secs(f64::from(k.delay_s)),
                    secs(m)
                ));
                if m < 0.0 {
                    c.problems.push(format!(
                        "UPS {}: runs out at {} before its kill power cuts at {}: {} short (its owner may die mid-shutdown, and the UPS may not come back on its own)",
                        u.name,
                        at(k.cut_ms() + (m * 1000.0) as i64),
                        at(k.cut_ms()),
                        secs(-m)
                    ));
                }
            }
            None => c.lines.push(format!(
                "UPS {}: kill power ordered{by} at {}, cuts at {}",
                u.name,
                at(k.ordered_ms),
                at(k.cut_ms())
            )),
        }
    }
}

/// Owners' and fallen-back hosts' halts, which no stage line shows.
fn other_halts(c: &mut PlanCheck, tl: &Timeline) {
    for h in tl.hosts.values() {
        let shown = h
            .stage
            .and_then(|k| tl.stages.get(k))
            .is_some_and(|s| s.start_ms.is_some() && h.how == HaltPath::Stage);
        if shown || h.how == HaltPath::Before {
            continue;
        }
        match (h.how, h.down_ms) {
            (HaltPath::Never, _) if h.stage.is_none() && h.duties.is_empty() => {}
            (HaltPath::Never, _) => {
                c.lines.push(format!(
                    "{}: not down before +{}",
                    h.name,
                    seconds(tl.end_ms)
                ));
                if h.margin_s.is_some() {
                    c.problems.push(format!(
                        "{}: never goes down before its supply runs out",
                        h.name
                    ));
                }
            }
            (how, Some(d)) => {
                c.lines.push(format!(
                    "{}: {} at {}, down by {} (battery left then {})",
                    h.name,
                    how_words(how),
                    at(h.halting_ms.unwrap_or(d)),
                    at(d),
                    h.margin_s.map_or("unknown".into(), secs)
                ));
                if let Some(m) = h.margin_s.filter(|m| *m < 0.0) {
                    c.problems.push(format!(
                        "{}: halts at {} but its supply runs out {} before it is down",
                        h.name,
                        at(h.halting_ms.unwrap_or(d)),
                        secs(-m)
                    ));
                }
            }
            (_, None) => {}
        }
    }
}

/// The plan against the cluster: hosts in no stage, and the plan's own review.
fn against_the_cluster(c: &mut PlanCheck, state: &PowerState, plan: &Plan) {
    let hosts = state.hosts();
    let selected: BTreeSet<NodeId> = (0..plan.stages.len())
        .flat_map(|k| plan.stage_hosts(k, &hosts))
        .collect();
    for n in &hosts {
        if !selected.contains(&n.id) && !n.feeds.is_empty() {
            c.warnings.push(format!(
                "{} is in no stage: it is never told to shut down, and kill power waits for it",
                n.name
            ));
        }
    }
    c.warnings.extend(plan.review(&hosts).warnings);
}

fn how_words(how: HaltPath) -> &'static str {
    match how {
        HaltPath::Stage => "halts in its stage",
        HaltPath::AfterKill => "halts after its kill power",
        HaltPath::AfterBridge => "halts once its bridge's hosts are down",
        HaltPath::Fallback => "falls back to its own shutdown (no quorum)",
        HaltPath::FeedCut => "halts without cutting its own UPS (a UPS feeding it is cut first)",
        HaltPath::Before => "already down",
        HaltPath::Never => "never halts",
    }
}

#[cfg(test)]
mod tests;
