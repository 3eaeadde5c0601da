//! `plan check` checked directly.

use super::*;
use crate::reading::UpsReading;
use crate::replicated::plan::{Stage, Trigger};
use crate::replicated::state::NodeRecord;
use crate::view::UpsStatus;

const NOW: i64 = 1_000_000_000;

fn node(id: NodeId, name: &str, label: &str, shutdown_s: u32) -> NodeRecord {
    NodeRecord::fed_by(id, name, &["ups1"], NOW)
        .labelled(&[label])
        .shutting_down_in(shutdown_s)
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
        UpsRecord::reported(
            "ups1",
            1,
            UpsStatus {
                reading: Some(r),
                ..Default::default()
            },
            NOW,
        ),
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
        text.contains(
            "UPS ups1: kill power ordered at +1501 s, cuts at +1571 s (70 s delay); margin 229 s"
        ),
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
        c.problems.iter().any(
            |p| p.contains("stage 2 core: db needs until +2101 s") && p.contains("301 s short")
        ),
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
