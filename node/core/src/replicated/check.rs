//! `upsilon plan check`, without I/O: does the plan fit the batteries at the current
//! load, and does it fit the cluster?
//!
//! The model is deliberately simple and errs on the safe side: every UPS is taken to be
//! on battery from now on (those already on battery go on), each drains linearly from
//! its reported runtime at the current load (load that drops as hosts halt is not
//! counted), charge falls in proportion, acknowledgements are prompt, and each host
//! takes its shutdown time (the larger of declared and measured). Stages start in
//! order, each at its trigger or at the runtime floor, never before the one before it.

use std::collections::{BTreeMap, BTreeSet};

use super::NodeId;
use super::endgame::{self, OWNER_START_S};
use super::plan::{Plan, Trigger, trigger_words};
use super::state::{NodeRecord, PowerState, UpsRecord};

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

/// A UPS as the check sees it: seconds of runtime left now, charge, seconds on battery.
#[derive(Debug, Clone, Copy)]
struct Battery {
    runtime_s: Option<f64>,
    charge: Option<f64>,
    on_battery_s: f64,
}

fn battery(u: &UpsRecord, now_ms: i64) -> Battery {
    let r = u.status.reading.as_ref();
    Battery {
        runtime_s: r.and_then(|r| r.runtime_s),
        charge: r.and_then(|r| r.charge_percent),
        on_battery_s: u
            .on_battery_since_ms
            .filter(|_| u.status.on_battery)
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
    }
}

/// The feed a host's supply hangs on: the `min_supplies`-th longest runtime.
fn host_battery(n: &NodeRecord, bats: &BTreeMap<String, Battery>) -> Option<Battery> {
    let mut feeds: Vec<Battery> = n
        .feeds
        .iter()
        .filter_map(|f| bats.get(f).copied())
        .collect();
    feeds.sort_by(|a, b| {
        b.runtime_s
            .unwrap_or(0.0)
            .total_cmp(&a.runtime_s.unwrap_or(0.0))
    });
    feeds.get(n.min_supplies.max(1) as usize - 1).copied()
}

/// Seconds from now until `t` fires for a host on `b` (None: it cannot be computed).
fn trigger_in(t: &Trigger, b: &Battery) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut take = |x: f64| best = Some(best.map_or(x, |b: f64| b.min(x)).max(0.0));
    if let Some(limit) = t.on_battery_s {
        take(limit as f64 - b.on_battery_s);
    }
    if let (Some(limit), Some(rt)) = (t.runtime_below_s, b.runtime_s) {
        take(rt - limit as f64);
    }
    if let (Some(limit), Some(rt), Some(c)) = (t.charge_below, b.runtime_s, b.charge)
        && c > 0.0
    {
        take(rt * (1.0 - limit / c));
    }
    best
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
/// (empty when unknown, e.g. a standalone node).
pub fn check(state: &PowerState, voters: &[NodeId], now_ms: i64) -> Option<PlanCheck> {
    let plan: &Plan = state.plan.as_ref()?;
    let hosts = state.hosts();
    let bats: BTreeMap<String, Battery> = state
        .upses
        .values()
        .map(|u| (u.name.clone(), battery(u, now_ms)))
        .collect();
    let mut c = PlanCheck::default();
    let active = state.outage.as_ref().filter(|o| o.ended_ms.is_none());
    c.lines.push(match active {
        Some(o) => format!(
            "outage {} going on: every UPS taken to stay on battery, at the current load",
            o.id
        ),
        None => "as if mains failed now on every UPS, at the current load".to_string(),
    });
    for (name, b) in &bats {
        c.lines.push(match b.runtime_s {
            Some(r) => format!(
                "UPS {name}: {} of runtime{}",
                secs(r),
                b.charge
                    .map_or(String::new(), |c| format!(", {c:.0} % charge"))
            ),
            None => format!("UPS {name}: reports no runtime: the check cannot time it"),
        });
        if b.runtime_s.is_none() {
            c.warnings
                .push(format!("UPS {name} reports no runtime: not checked"));
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
    // The runtime floor: every remaining stage starts when any host's supply falls under it.
    let floor_at = hosts
        .iter()
        .filter_map(|n| host_battery(n, &bats)?.runtime_s)
        .map(|r| (r - plan.runtime_floor_s as f64).max(0.0))
        .reduce(f64::min);
    let mut start: Vec<Option<f64>> = Vec::new();
    let mut down_at: BTreeMap<NodeId, f64> = BTreeMap::new();
    let mut worst: Option<(f64, String)> = None;
    for (k, st) in plan.stages.iter().enumerate() {
        let ids = plan.stage_hosts(k, &hosts);
        let started = active.and_then(|o| o.stages.get(k)).map(|r| {
            (r.started_ms - now_ms) as f64 / 1000.0 // before now: negative
        });
        let (at, why) = if let Some(t) = started {
            (Some(t), "started".to_string())
        } else {
            let trig = ids
                .iter()
                .filter_map(|h| state.host(*h))
                .filter_map(|n| trigger_in(&st.trigger, &host_battery(n, &bats)?))
                .reduce(f64::min);
            let prev = start.last().copied().flatten().unwrap_or(0.0);
            let (t, why) = match (trig, floor_at) {
                (Some(t), Some(f)) if f < t => (Some(f), "runtime floor".to_string()),
                (Some(t), _) => (Some(t), trigger_words(&st.trigger)),
                (None, Some(f)) => (Some(f), "runtime floor".to_string()),
                (None, None) => (None, String::new()),
            };
            (t.map(|t| t.max(prev)), why)
        };
        start.push(at);
        let Some(at) = at else {
            c.lines.push(format!(
                "stage {} {}: cannot be timed (no runtime or charge to trigger on)",
                k + 1,
                st.name
            ));
            c.warnings.push(format!(
                "stage {} {}: its trigger cannot be timed from the readings",
                k + 1,
                st.name
            ));
            continue;
        };
        let mut parts = Vec::new();
        let mut last_down = at;
        for h in &ids {
            let Some(n) = state.host(*h) else { continue };
            let took = endgame::shutdown_s(state, plan, n) as f64;
            let down = at + took;
            last_down = last_down.max(down);
            down_at.insert(*h, down);
            let left = host_battery(n, &bats).and_then(|b| b.runtime_s);
            match left {
                Some(r) => {
                    let margin = r - down;
                    parts.push(format!(
                        "{} {} (battery left then {})",
                        n.name,
                        secs(took),
                        secs(margin)
                    ));
                    if margin < 0.0 {
                        c.problems.push(format!(
                            "stage {} {}: {} needs until +{} to shut down but its supply runs out at +{}: {} short",
                            k + 1,
                            st.name,
                            n.name,
                            secs(down),
                            secs(r),
                            secs(-margin)
                        ));
                    }
                    if worst.as_ref().is_none_or(|(m, _)| margin < *m) {
                        worst = Some((margin, format!("stage {} {}", k + 1, st.name)));
                    }
                }
                None => parts.push(format!("{} {} (battery unknown)", n.name, secs(took))),
            }
        }
        c.lines.push(format!(
            "stage {} {}: starts at +{} ({why}); hosts down by +{}: {}",
            k + 1,
            st.name,
            secs(at),
            secs(last_down),
            if parts.is_empty() {
                "no host".to_string()
            } else {
                parts.join(", ")
            }
        ));
    }
    // Kill power: each UPS once every host that needs it is down, plus silence_s for the
    // cluster to see it, then its delay (which covers its owner's own shutdown).
    let all_started = start.iter().copied().flatten().reduce(f64::max);
    for (name, b) in &bats {
        let Some(u) = state.upses.get(name) else {
            continue;
        };
        let need: Vec<f64> = hosts
            .iter()
            .filter(|n| n.id != u.owner && n.feeds.iter().any(|f| f == name))
            .map(|n| down_at.get(&n.id).copied().unwrap_or(f64::INFINITY))
            .collect();
        let Some(started) = all_started else { continue };
        let order = need
            .iter()
            .copied()
            .map(|d| d + plan.silence_s as f64)
            .fold(started, f64::max);
        if !order.is_finite() {
            c.warnings.push(format!(
                "UPS {name}: feeds a host no stage selects: it is never cut while that host runs"
            ));
            continue;
        }
        let owner_s = state
            .host(u.owner)
            .map_or(0, |n| endgame::shutdown_s(state, plan, n) + OWNER_START_S);
        let delay = plan.kill_power_delay_s.max(owner_s) as f64;
        ups_delay_note(&mut c, u, delay as u32);
        let cut = order + delay;
        match b.runtime_s {
            Some(r) => {
                c.lines.push(format!(
                    "UPS {name}: kill power ordered at +{}, cuts at +{} ({} delay); margin {}",
                    secs(order),
                    secs(cut),
                    secs(delay),
                    secs(r - cut)
                ));
                if r < cut {
                    c.problems.push(format!(
                        "UPS {name}: runs out at +{} before its kill power cuts at +{}: {} short (its owner may die mid-shutdown, and the UPS may not come back on its own)",
                        secs(r),
                        secs(cut),
                        secs(cut - r)
                    ));
                }
            }
            None => c.lines.push(format!(
                "UPS {name}: kill power ordered at +{}, cuts at +{}",
                secs(order),
                secs(cut)
            )),
        }
    }
    if let Some((m, stage)) = worst {
        c.lines.push(if m < 0.0 {
            format!("{stage} runs out of battery first, {} short", secs(-m))
        } else {
            format!("tightest: {stage}, {} of battery to spare", secs(m))
        });
    }
    // The plan against the cluster.
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
    for n in &hosts {
        for f in n.feeds.iter().filter(|f| !state.upses.contains_key(*f)) {
            c.warnings.push(format!(
                "{} is fed by {f}, which no node reports: it does not count until it does (a misspelt name?)",
                n.name
            ));
        }
    }
    c.warnings.extend(plan.review(&hosts).warnings);
    if !voters.is_empty() {
        let quorum = voters.len() / 2 + 1;
        let mut halted = BTreeSet::new();
        for (k, st) in plan.stages.iter().enumerate() {
            for h in plan.stage_hosts(k, &hosts) {
                if voters.contains(&h) {
                    halted.insert(h);
                }
            }
            let left = voters.len() - halted.len();
            if left < quorum && k + 1 < plan.stages.len() {
                c.warnings.push(format!(
                    "stage {} {} halts {} of {} voters: later stages and kill power cannot be committed after it",
                    k + 1,
                    st.name,
                    halted.len(),
                    voters.len()
                ));
                break;
            }
            if left < quorum {
                c.lines.push(format!(
                    "stage {} {} (the last) halts {} of {} voters: no commit after it; the kill orders are committed before the first stage and each UPS owner finishes alone",
                    k + 1,
                    st.name,
                    halted.len(),
                    voters.len()
                ));
            }
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::UpsReading;
    use crate::replicated::plan::Stage;
    use crate::view::UpsStatus;

    const NOW: i64 = 1_000_000_000;

    fn node(id: NodeId, name: &str, label: &str, shutdown_s: u32) -> NodeRecord {
        NodeRecord {
            id,
            name: name.into(),
            addr: String::new(),
            labels: vec![label.into()],
            last_seen_ms: NOW,
            version: String::new(),
            feeds: vec!["ups1".into()],
            min_supplies: 1,
            shutdown_s,
        }
    }

    fn state(runtime_s: f64, shutdowns: [u32; 3]) -> PowerState {
        let stage = |name: &str, trigger: Trigger| Stage {
            name: name.into(),
            hosts: vec![format!("label:{name}")],
            trigger,
            ack_timeout_s: 60,
            command: None,
            shutdown_s: None,
        };
        let mut s = PowerState {
            plan: Some(Plan {
                stages: vec![
                    stage(
                        "batch",
                        Trigger {
                            on_battery_s: Some(60),
                            ..Default::default()
                        },
                    ),
                    stage(
                        "core",
                        Trigger {
                            runtime_below_s: Some(600),
                            ..Default::default()
                        },
                    ),
                ],
                runtime_floor_s: 120,
                ..Default::default()
            }),
            ..Default::default()
        };
        for n in [
            node(1, "owner", "core", shutdowns[0]),
            node(2, "b1", "batch", shutdowns[1]),
            node(3, "db", "core", shutdowns[2]),
        ] {
            s.nodes.insert(n.id, n);
        }
        let r = UpsReading::basic(false, 100.0, runtime_s, std::time::SystemTime::UNIX_EPOCH);
        s.upses.insert(
            "ups1".into(),
            UpsRecord {
                name: "ups1".into(),
                owner: 1,
                seq: 1,
                status: UpsStatus {
                    reading: Some(r),
                    ..Default::default()
                },
                stale: false,
                last_report_ms: NOW,
                on_battery_since_ms: None,
                comm_lost_since_ms: None,
                rival: None,
            },
        );
        s
    }

    #[test]
    fn a_plan_that_fits_reports_each_stage_and_the_margin_at_kill_power() {
        let s = state(1800.0, [60, 120, 300]);
        let c = check(&s, &[], NOW).unwrap();
        assert!(c.fits(), "{c:#?}");
        let text = c.lines.join("\n");
        // batch at +60 (on battery 60 s), down by +180; core at +1200 (runtime < 600),
        // db down by +1500; kill ordered at +1510, cut after 70 s (owner 60 + 10).
        assert!(text.contains("stage 1 batch: starts at +60 s"), "{text}");
        assert!(text.contains("stage 2 core: starts at +1200 s"), "{text}");
        assert!(text.contains("hosts down by +1500 s"), "{text}");
        assert!(
            text.contains("UPS ups1: kill power ordered at +1510 s, cuts at +1580 s (70 s delay); margin 220 s"),
            "{text}"
        );
        assert!(
            text.contains("tightest: stage 2 core, 300 s of battery to spare"),
            "{text}"
        );
    }

    #[test]
    fn the_ups_delay_is_programmed_where_the_driver_can_and_checked_elsewhere() {
        // The owner's 60 s + 10 s to start it: 70 s needed.
        let mut s = state(1800.0, [60, 120, 300]);
        let u = s.upses.get_mut("ups1").unwrap();
        u.status.driver = "apcsmart".into();
        let r = u.status.reading.as_mut().unwrap();
        r.details.insert("DSHUTD".into(), "20 Seconds".into());
        let c = check(&s, &[], NOW).unwrap();
        assert!(
            c.lines.iter().any(|l| l
                == "UPS ups1: its grace delay (EEPROM) is 20 s; the driver raises it to cover 70 s at kill power"),
            "{:#?}",
            c.lines
        );
        s.upses.get_mut("ups1").unwrap().status.driver = "net".into();
        let c = check(&s, &[], NOW).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains(
                "its own delay is 20 s, shorter than the 70 s the plan needs, and the net driver cannot change it"
            )),
            "{:#?}",
            c.warnings
        );
    }

    #[test]
    fn a_host_fed_by_a_ups_nobody_reports_is_a_warning_not_silence() {
        let mut s = state(1800.0, [60, 120, 300]);
        s.upses.clear();
        let c = check(&s, &[], NOW).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("is fed by UPS ups1, which no node reports (yet)")),
            "{:#?}",
            c.warnings
        );
    }

    #[test]
    fn a_plan_that_does_not_fit_names_the_stage_and_the_shortfall() {
        // db takes 900 s; core starts at +1200 (runtime 600 left): 300 s short.
        let s = state(1800.0, [60, 120, 900]);
        let c = check(&s, &[], NOW).unwrap();
        assert!(!c.fits());
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("stage 2 core: db needs until +2100 s")
                    && p.contains("300 s short")),
            "{:#?}",
            c.problems
        );
        assert!(
            c.lines
                .last()
                .unwrap()
                .contains("stage 2 core runs out of battery first, 300 s short")
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.starts_with("UPS ups1: runs out"))
        );
    }

    #[test]
    fn the_floor_pulls_stages_forward_and_the_cluster_is_checked() {
        // 700 s of runtime: the floor (120 s) is at +580, before batch's own trigger
        // would matter for core (runtime < 600 at +100).
        let mut s = state(700.0, [10, 10, 10]);
        s.nodes.insert(4, {
            let mut n = node(4, "stray", "none", 10);
            n.labels.clear();
            n
        });
        let c = check(&s, &[1, 2, 3], NOW).unwrap();
        let text = c.lines.join("\n");
        assert!(
            text.contains("stage 2 core: starts at +100 s (runtime < 600 s)"),
            "{text}"
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("stray is in no stage")),
            "{:#?}",
            c.warnings
        );
        assert!(
            text.contains("stage 2 core (the last) halts 3 of 3 voters: no commit after it"),
            "{text}"
        );
        // A middle stage that halts the quorum strands the stages after it.
        let mut s2 = s.clone();
        s2.nodes.get_mut(&1).unwrap().labels = vec!["batch".into()];
        s2.nodes.get_mut(&3).unwrap().labels = vec!["batch".into()];
        let c2 = check(&s2, &[1, 2, 3], NOW).unwrap();
        assert!(
            c2.warnings.iter().any(|w| w.contains(
                "stage 1 batch halts 3 of 3 voters: later stages and kill power cannot be committed after it"
            )),
            "{:#?}",
            c2.warnings
        );
    }
}
