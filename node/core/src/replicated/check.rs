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
    let hosts = state.hosts();
    let name = |id: &NodeId| tl.hosts.get(id).map_or(id.to_string(), |h| h.name.clone());
    let mut c = PlanCheck::default();
    c.lines.push(if tl.outage_going {
        "outage going on: the UPSes on battery taken to stay so, at the current load".into()
    } else {
        "as if mains failed now on every UPS, at the current load".to_string()
    });
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
    // The rule for the quorum, stated either way.
    match endgame::quorum_words(state, plan, voters) {
        Ok(Some(w)) => c.lines.push(w),
        Ok(None) => {}
        Err(e) => c
            .problems
            .push(format!("{e} (`plan apply` refuses this plan)")),
    }
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
    if let Some(q) = tl.quorum_lost_ms {
        c.lines.push(format!(
            "quorum lost at {}: nothing is committed after it",
            at(q)
        ));
    }
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
            ups_delay_note(&mut c, rec, k.delay_s);
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
    // Owners' and fallen-back hosts' halts, which no stage line shows.
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
    c.warnings.extend(plan.review(&hosts).warnings);
    c
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
mod tests {
    use super::*;
    use crate::reading::UpsReading;
    use crate::replicated::plan::{Stage, Trigger};
    use crate::replicated::state::NodeRecord;
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
        // batch at +60 (on battery 60 s), down by +180; core at the first tick with
        // runtime under 600 (+1201), db down 300 s later; kill ordered then ("halted"),
        // cut after 70 s (the owner's 60 + 10); the owner halts after it.
        assert!(text.contains("stage 1 batch: starts at +60 s"), "{text}");
        assert!(text.contains("stage 2 core: starts at +1201 s"), "{text}");
        assert!(text.contains("hosts down by +1501 s"), "{text}");
        assert!(
            text.contains("owner halts after kill power of ups1 (down by +1561 s)"),
            "{text}"
        );
        assert!(
            text.contains("UPS ups1: kill power ordered at +1501 s, cuts at +1571 s (70 s delay); margin 229 s"),
            "{text}"
        );
        assert!(
            text.contains("tightest: stage 2 core, 299 s of battery to spare"),
            "{text}"
        );
    }

    #[test]
    fn the_dry_run_lists_the_same_timeline_in_order_of_time() {
        let s = state(1800.0, [60, 120, 300]);
        let ev = timeline::predict(&s, &[], NOW).unwrap().events();
        let at = |what: &str| {
            ev.iter()
                .position(|l| l.contains(what))
                .unwrap_or_else(|| panic!("{what:?} not in {ev:#?}"))
        };
        assert_eq!(ev[0], "+0 s: mains fail on every UPS: an outage begins");
        assert!(ev[at("stage 1 (batch) starts")].starts_with("+60 s:"));
        assert!(ev[at("stage 2 (core) starts")].starts_with("+1201 s:"));
        assert!(at("db has halted") < at("UPS ups1 is told to cut power in 70 s"));
        assert!(at("UPS ups1 is told") <= at("owner halts after the kill power of ups1"));
        assert!(ev[at("owner has halted")].starts_with("+1561 s:"));
        assert!(!ev.iter().any(|l| l.contains("runs out")), "{ev:#?}");
    }

    #[test]
    fn two_owners_fed_by_each_others_ups_both_cut_and_halt() {
        // owner (1) owns ups1 and is fed by ups2; db (3) owns ups2 and is fed by ups1:
        // each owner's halt waits for its own kill power, so neither may wait for the
        // other's halt before cutting.
        let mut s = state(1800.0, [60, 120, 300]);
        let mut u2 = s.upses["ups1"].clone();
        u2.name = "ups2".into();
        u2.owner = 3;
        s.upses.insert("ups2".into(), u2);
        s.nodes.get_mut(&1).unwrap().feeds = vec!["ups2".into()];
        s.nodes.get_mut(&3).unwrap().feeds = vec!["ups1".into()];
        let tl = timeline::predict(&s, &[], NOW).unwrap();
        assert!(tl.finished, "{tl:#?}");
        // Both ordered when the core stage starts (b1 is long down), each covering the
        // shutdown of the other owner it feeds and its 10 s to start: ups1 feeds db
        // (300 s), ups2 feeds owner (60 s).
        for (u, delay) in [("ups1", 310), ("ups2", 70)] {
            let line = tl.upses.iter().find(|x| x.name == u).unwrap();
            let k = line
                .kill
                .as_ref()
                .unwrap_or_else(|| panic!("{u} never cut: {tl:#?}"));
            assert_eq!((k.ordered_ms, k.delay_s), (1_201_000, delay), "{u}");
        }
        for id in [1, 3] {
            let h = &tl.hosts[&id];
            assert_eq!(h.how, HaltPath::AfterKill, "{h:?}");
        }
    }

    /// old1, a legacy host of the core stage fed by ups1 (40 s to shut down), whose
    /// bridge runs on `runs_on`.
    fn declare_old1(s: &mut PowerState, runs_on: Option<&str>) {
        s.apply(&crate::replicated::state::Command::LegacyHostsDeclare {
            bridge: "bridge1".into(),
            hosts: vec![crate::replicated::legacy::LegacyHostDecl {
                name: "old1".into(),
                addresses: vec!["127.0.0.9".into()],
                labels: vec!["core".into()],
                feeds: vec!["ups1".into()],
                min_supplies: 1,
                protocol: "nis".into(),
                shutdown_s: 40,
            }],
            at_ms: NOW,
            runs_on: runs_on.map(str::to_string),
        });
    }

    #[test]
    fn a_bridge_host_in_the_first_stage_halts_after_its_legacy_hosts_in_the_last() {
        // b1 (stage 1, batch) runs the bridge of old1, a legacy host of stage 2 (core):
        // stage 1 does not wait for b1, b1 halts once old1 is down, and ups1 (which
        // feeds b1) cuts only after b1 is down.
        let mut s = state(1800.0, [60, 120, 300]);
        declare_old1(&mut s, Some("b1"));
        let old1 = s.legacy.keys().copied().next().unwrap();
        s.legacy.get_mut(&old1).unwrap().host.last_seen_ms = NOW;
        assert_eq!(
            endgame::deferrable(&s, 2),
            vec![endgame::Duty::Bridge("old1".into())]
        );
        let tl = timeline::predict(&s, &[], NOW).unwrap();
        assert!(tl.finished, "{tl:#?}");
        let (b1, old) = (&tl.hosts[&2], &tl.hosts[&old1]);
        assert_eq!(b1.how, HaltPath::AfterBridge, "{b1:?}");
        // core starts at +1201 s; old1 is down 40 s later; b1 halts then (120 s).
        assert_eq!(old.down_ms, Some(1_241_000), "{old:?}");
        assert_eq!(b1.halting_ms, old.down_ms, "{b1:?}");
        assert_eq!(b1.down_ms, Some(1_361_000), "{b1:?}");
        let k = tl.upses[0].kill.as_ref().unwrap();
        assert!(k.ordered_ms >= 1_361_000, "{k:?}");
        let c = check(&s, &[], NOW).unwrap();
        let text = c.lines.join("\n");
        assert!(
            text.contains("b1 halts after its bridge's hosts old1 are down (down by +1361 s)"),
            "{text}"
        );
        let ev = tl.events();
        assert!(
            ev.iter()
                .any(|l| l == "+1241 s: b1 halts: its bridge's hosts old1 are down"),
            "{ev:#?}"
        );
    }

    #[test]
    fn a_bridge_host_keeps_its_vote_until_its_legacy_hosts_stage() {
        // Three voters; batch halts b1 and db, core holds the owner and old1, a legacy
        // host. Without a bridge host, batch leaves one voter of three and old1's stage
        // could never start: refused. With its bridge on b1, b1 halts with core.
        let mut s = state(1800.0, [60, 120, 300]);
        s.nodes.get_mut(&3).unwrap().labels = vec!["batch".into()];

        let plan = s.plan.clone().unwrap();
        declare_old1(&mut s, None);
        let e = endgame::quorum_words(&s, &plan, &[1, 2, 3]).unwrap_err();
        assert!(
            e.contains("stage 1 (batch) halts b1, db (2 of 3 voters)")
                && e.contains("would never start for old1"),
            "{e}"
        );
        declare_old1(&mut s, Some("b1"));
        let q = endgame::quorum_end(&s, &plan, &[1, 2, 3]).unwrap();
        assert_eq!((q.stage, q.stranded.len()), (1, 0), "{q:?}");
        assert!(endgame::quorum_words(&s, &plan, &[1, 2, 3]).is_ok());
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
        // db takes 900 s; core starts at +1201 (runtime 599 left): 301 s short.
        let s = state(1800.0, [60, 120, 900]);
        let c = check(&s, &[], NOW).unwrap();
        assert!(!c.fits());
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("stage 2 core: db needs until +2101 s")
                    && p.contains("301 s short")),
            "{:#?}",
            c.problems
        );
        assert!(
            c.lines
                .last()
                .unwrap()
                .contains("stage 2 core runs out of battery first, 301 s short")
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
            text.contains("stage 2 core: starts at +101 s (owner: runtime 599 s below 600 s)"),
            "{text}"
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("stray is in no stage")),
            "{:#?}",
            c.warnings
        );
        // The last stage halts two of three voters (the owner stays for its kill):
        // the owner finishes alone, and the check says so.
        assert!(
            text.contains("stage 2 (core) halts b1, db (2 of 3 voters): after it nothing can be committed; the kill orders are committed before the first stage"),
            "{text}"
        );
        assert!(text.contains("quorum lost at +111 s"), "{text}");
        assert!(
            text.contains("UPS ups1: kill power ordered by owner alone (no quorum)"),
            "{text}"
        );
        assert!(c.fits(), "{:#?}", c.problems);
        // A middle stage that halts the quorum strands the stages after it.
        let mut s2 = s.clone();
        s2.nodes.get_mut(&3).unwrap().labels = vec!["batch".into()];
        s2.nodes.get_mut(&4).unwrap().labels = vec!["core".into()];
        let c2 = check(&s2, &[1, 2, 3], NOW).unwrap();
        assert!(
            c2.problems.iter().any(|w| w.contains(
                "stage 1 (batch) halts b1, db (2 of 3 voters): after it nothing can be committed, so stage 2 (core) would never start for stray"
            )),
            "{:#?}",
            c2.problems
        );
    }
}
