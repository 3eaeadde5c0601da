//! The plan, supplies and the coordinator checked directly.

use super::*;
use crate::reading::UpsReading;
use crate::replicated::NodeId;
use crate::replicated::state::{Ack, Command, NodeRecord, Outage, PowerState, StageRun, UpsRecord};
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
        min_supplies: min,
        ..NodeRecord::fed_by(id, name, feeds, NOW).labelled(labels)
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
    let status = UpsStatus {
        driver: "sim".into(),
        reading: Some(r),
        on_battery: on_battery_for_s.is_some(),
        ..Default::default()
    };
    UpsRecord {
        on_battery_since_ms: on_battery_for_s.map(|s| NOW - s * 1000),
        ..UpsRecord::reported(name, owner, status, NOW)
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
