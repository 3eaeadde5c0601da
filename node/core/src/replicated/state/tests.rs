//! `apply` checked directly.

use super::*;
use crate::replicated::NodeId;
use crate::view::UpsStatus;

fn up(id: NodeId, name: &str) -> Command {
    Command::NodeUp {
        id,
        name: name.into(),
        addr: format!("127.0.0.{id}:7443"),
        labels: vec![],
        version: "0".into(),
        feeds: vec![],
        min_supplies: 1,
        shutdown_s: 120,
        at_ms: 1,
    }
}

fn report(seq: u64, at_ms: i64, events: &[&str]) -> Command {
    Command::UpsReport(Box::new(UpsReport {
        ups: "ups1".into(),
        owner: 1,
        seq,
        at_ms,
        events: events
            .iter()
            .map(|n| ReportedEvent {
                at_ms,
                name: n.to_string(),
                message: format!("{n} text"),
            })
            .collect(),
        status: UpsStatus {
            driver: "sim".into(),
            reading: None,
            statflag: 0x0500_0008,
            comm_lost: false,
            on_battery: false,
            time_on_battery_s: 0,
            transfers: 0,
            shutdown: None,
            comm_error: None,
        },
    }))
}

#[test]
fn reports_apply_in_order_and_old_ones_are_ignored() {
    let mut s = PowerState::default();
    s.apply(&up(1, "a"));
    assert!(s.apply(&report(1, 10, &["powerout"])).applied);
    assert!(
        !s.apply(&report(1, 11, &["powerout"])).applied,
        "same seq ignored"
    );
    assert!(s.apply(&report(2, 12, &["onbattery"])).applied);
    let names: Vec<_> = s.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["powerout", "onbattery"]);
    assert_eq!(s.events[1].node, "a");
    assert_eq!(s.nodes[&1].last_seen_ms, 12);
}

#[test]
fn stale_marks_once_and_a_new_report_clears_it() {
    let mut s = PowerState::default();
    s.apply(&up(1, "a"));
    s.apply(&report(5, 100, &[]));
    let stale = Command::UpsStale {
        ups: "ups1".into(),
        owner: 1,
        seq: 5,
        at_ms: 200,
    };
    assert!(s.apply(&stale).applied);
    assert!(!s.apply(&stale).applied);
    assert!(s.upses["ups1"].stale);
    // After a restart the owner's seq starts again: a stale UPS accepts it.
    assert!(s.apply(&report(1, 300, &[])).applied);
    assert!(!s.upses["ups1"].stale);
    let names: Vec<_> = s.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["commfailure", "commok"]);
}

#[test]
fn stale_never_overrides_a_newer_report() {
    let mut s = PowerState::default();
    s.apply(&report(1, 500, &[]));
    // Decided on seq 1, but seq 2 was committed first: the UPS is not silent.
    s.apply(&report(2, 600, &[]));
    let stale = Command::UpsStale {
        ups: "ups1".into(),
        owner: 1,
        seq: 1,
        at_ms: 400,
    };
    assert!(!s.apply(&stale).applied);
}

fn report_from(owner: NodeId, seq: u64, at_ms: i64) -> Command {
    let Command::UpsReport(mut r) = report(seq, at_ms, &[]) else {
        unreachable!()
    };
    r.owner = owner;
    Command::UpsReport(r)
}

#[test]
fn a_second_owner_of_one_ups_name_is_refused_until_the_owner_is_stale() {
    let mut s = PowerState::default();
    s.apply(&up(1, "a"));
    s.apply(&up(2, "b"));
    assert!(s.apply(&report_from(1, 10, 100)).applied);
    // b reports a UPS of the same name: refused, one event however often it reports.
    for i in 0..5 {
        assert!(!s.apply(&report_from(2, 20 + i, 200 + i as i64)).applied);
        assert!(s.apply(&report_from(1, 30 + i, 200 + i as i64)).applied);
    }
    assert_eq!(s.upses["ups1"].owner, 1);
    let rival = s.upses["ups1"].rival.clone().unwrap();
    assert_eq!((rival.node, rival.since_ms, rival.last_ms), (2, 200, 204));
    let conflicts = s
        .events
        .iter()
        .filter(|e| e.name == "ownerconflict")
        .count();
    assert_eq!(conflicts, 1, "{:?}", s.events);
    // The owner goes silent: the leader marks it stale; then b takes over.
    let seq = s.upses["ups1"].seq;
    s.apply(&Command::UpsStale {
        ups: "ups1".into(),
        owner: 1,
        seq,
        at_ms: 300,
    });
    assert!(s.apply(&report_from(2, 40, 310)).applied);
    assert_eq!(s.upses["ups1"].owner, 2);
    assert!(s.upses["ups1"].rival.is_none());
    // Now a is the one refused.
    assert!(!s.apply(&report_from(1, 50, 320)).applied);
    assert_eq!(s.upses["ups1"].rival.as_ref().unwrap().node, 1);
    // An operator releases the name: the next reporter owns it.
    s.apply(&Command::UpsRelease {
        ups: "ups1".into(),
        by: "operator".into(),
        at_ms: 330,
    });
    assert!(s.apply(&report_from(1, 60, 340)).applied);
    assert_eq!(s.upses["ups1"].owner, 1);
    // An owner that left the cluster does not hold the name.
    s.apply(&Command::NodeRemoved { id: 1, at_ms: 350 });
    assert!(s.apply(&report_from(2, 70, 360)).applied);
    assert_eq!(s.upses["ups1"].owner, 2);
}

#[test]
fn event_texts_are_bounded_on_a_character_boundary() {
    let mut s = PowerState::default();
    let long = "é".repeat(MAX_EVENT_TEXT);
    s.apply(&Command::Notice {
        at_ms: 1,
        node: "a".into(),
        message: long,
    });
    let m = &s.events[0].message;
    assert!(
        m.len() <= MAX_EVENT_TEXT && m.len() >= MAX_EVENT_TEXT - 1,
        "{}",
        m.len()
    );
    assert!(m.chars().all(|c| c == 'é'));
}

#[test]
fn event_history_is_bounded() {
    let mut s = PowerState::default();
    for i in 0..(EVENT_HISTORY as u64 + 10) {
        s.apply(&Command::Notice {
            at_ms: i as i64,
            node: "a".into(),
            message: "x".into(),
        });
    }
    assert_eq!(s.events.len(), EVENT_HISTORY);
    assert_eq!(s.events.back().unwrap().seq, EVENT_HISTORY as u64 + 10);
}

#[test]
fn apply_is_deterministic() {
    let cmds = vec![
        up(1, "a"),
        up(2, "b"),
        report(1, 10, &["powerout"]),
        Command::Heartbeat { id: 2, at_ms: 20 },
    ];
    let mut a = PowerState::default();
    let mut b = PowerState::default();
    for c in &cmds {
        a.apply(c);
    }
    for c in &cmds {
        b.apply(c);
    }
    assert_eq!(a, b);
    let json = serde_json::to_vec(&a).unwrap();
    assert_eq!(serde_json::from_slice::<PowerState>(&json).unwrap(), a);
}
