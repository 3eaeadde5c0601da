//! What a node keeps on disk must survive an upgrade: a snapshot of the replicated state
//! and log entries, written by an earlier version (fixtures in
//! `tests/fixtures/stored-state-v1/`), load and apply to exactly the state that version
//! reached. A change to `PowerState`, `Command` or anything they hold that breaks this
//! would cost an upgraded cluster its history.
//!
//! The fixtures were written by this file's generator
//! (`UPSILON_WRITE_GOLDEN=v2 cargo test -p upsilon-node --test stored_state`) and are never
//! regenerated for a format that was released: add a new version beside them.
//! `stored-state-v2` (December 2026) adds the end game's, the bridges' and membership's
//! commands and is checked byte for byte: the state serializes to exactly the text that
//! build wrote, so moving types between modules cannot change what a node stores.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use openraft::EntryPayload;
use openraft::alias::EntryOf;
use upsilon_core::policy::ShutdownRule;
use upsilon_core::reading::{UpsFlags, UpsReading};
use upsilon_core::replicated::state::{Command, PowerState, ReportedEvent, UpsReport};
use upsilon_core::view::UpsStatus;
use upsilon_node::cluster::TypeConfig;

type C = TypeConfig;

const T0: i64 = 1_780_000_000_000;

fn dir() -> PathBuf {
    fixtures("v1")
}

fn fixtures(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/stored-state-{version}"))
}

fn up(id: u64, name: &str, labels: &[&str], feeds: &[&str]) -> Command {
    Command::NodeUp {
        id,
        name: name.into(),
        addr: format!("10.0.0.{id}:7443"),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        version: "0.1.0".into(),
        feeds: feeds.iter().map(|s| s.to_string()).collect(),
        min_supplies: 1,
        shutdown_s: 120,
        at_ms: T0 + id as i64,
    }
}

fn report(owner: u64, seq: u64, at: i64, on_battery: bool, events: &[&str]) -> Command {
    let mut reading = UpsReading::empty(
        UpsFlags {
            online: !on_battery,
            on_battery,
            battery_present: true,
            ..Default::default()
        },
        SystemTime::UNIX_EPOCH + Duration::from_millis(at as u64),
    );
    reading.charge_percent = Some(if on_battery { 81.5 } else { 100.0 });
    reading.runtime_s = Some(1830.0);
    reading.line_voltage = Some(if on_battery { 0.0 } else { 229.4 });
    reading.model = "Smart-UPS 1500".into();
    reading.serial_number = "AS1234567890".into();
    reading.details.insert("SENSE".into(), "High".into());
    Command::UpsReport(Box::new(UpsReport {
        ups: "ups1".into(),
        owner,
        seq,
        at_ms: at,
        events: events
            .iter()
            .map(|n| ReportedEvent {
                at_ms: at,
                name: n.to_string(),
                message: format!("{n} text"),
            })
            .collect(),
        status: UpsStatus {
            driver: "apcsmart".into(),
            reading: Some(reading),
            statflag: if on_battery { 0x0500_0010 } else { 0x0500_0008 },
            comm_lost: false,
            on_battery,
            time_on_battery_s: if on_battery { 3 } else { 0 },
            transfers: 1,
            shutdown: on_battery.then_some((ShutdownRule::Runtime, at)),
            comm_error: None,
        },
    }))
}

/// Everything up to the snapshot.
fn before_snapshot() -> Vec<Command> {
    let plan = toml::from_str(
        "kill_power_delay_s = 30\nruntime_floor_s = 120\n\n[[stage]]\nname = \"batch\"\nhosts = [\"label:batch\"]\ntrigger = { on_battery_s = 30 }\nack_timeout_s = 60\n\n[[stage]]\nname = \"core\"\nhosts = [\"n1\", \"n2\"]\ntrigger = { runtime_below_s = 600 }\ncommand = [\"/sbin/poweroff\"]\n",
    )
    .unwrap();
    vec![
        up(1, "n1", &["core"], &["ups1"]),
        up(2, "n2", &["core"], &["ups1"]),
        up(3, "n3", &["batch"], &["ups1"]),
        Command::Heartbeat {
            id: 2,
            at_ms: T0 + 10,
        },
        report(1, 100, T0 + 20, false, &["commok"]),
        Command::SetPlan {
            plan,
            at_ms: T0 + 30,
            by: "operator".into(),
        },
        Command::Notice {
            at_ms: T0 + 40,
            node: "n1".into(),
            message: "hello".into(),
        },
    ]
}

/// The log after the snapshot: an outage run to its end, and the rest.
fn after_snapshot() -> Vec<Command> {
    vec![
        report(1, 200, T0 + 1000, true, &["powerout", "onbattery"]),
        report(3, 5, T0 + 1001, true, &[]),
        Command::OutageStart {
            id: 1,
            at_ms: T0 + 1100,
        },
        Command::StageStart {
            outage: 1,
            stage: 0,
            name: "batch".into(),
            hosts: vec![3],
            reason: "on battery 30 s".into(),
            at_ms: T0 + 31_000,
        },
        Command::NodeAck {
            outage: 1,
            stage: 0,
            node: 3,
            halting: false,
            at_ms: T0 + 31_100,
        },
        Command::NodeAck {
            outage: 1,
            stage: 0,
            node: 3,
            halting: true,
            at_ms: T0 + 31_200,
        },
        Command::KillPower {
            outage: 1,
            ups: "ups1".into(),
            delay_s: 30,
            at_ms: T0 + 40_000,
        },
        Command::UpsActionDone {
            ups: "ups1".into(),
            power_cycle: false,
            ok: true,
            result: "recorded".into(),
            at_ms: T0 + 40_100,
        },
        Command::OutageEnd {
            id: 1,
            at_ms: T0 + 50_000,
            reason: "mains returned".into(),
        },
        Command::PowerCycle {
            ups: "ups1".into(),
            at_ms: T0 + 60_000,
        },
        Command::UpsStale {
            ups: "ups1".into(),
            owner: 1,
            seq: 200,
            at_ms: T0 + 70_000,
        },
        report(1, 300, T0 + 71_000, false, &["mainsback"]),
        Command::MemberProblem {
            id: 3,
            problem: Some("node 3 lost log entries".into()),
            at_ms: T0 + 72_000,
        },
        Command::RevokeCert {
            serial: "0a1b".into(),
            name: "old-laptop".into(),
            reason: "lost".into(),
            by: "operator".into(),
            at_ms: T0 + 73_000,
        },
        Command::UpsRelease {
            ups: "ups1".into(),
            by: "operator".into(),
            at_ms: T0 + 74_000,
        },
        Command::NodeRemoved {
            id: 3,
            at_ms: T0 + 75_000,
        },
    ]
}

fn entry(index: u64, cmd: &Command) -> String {
    let json = serde_json::json!({
        "log_id": {"leader_id": {"term": 2, "node_id": 1}, "index": index},
        "payload": {"Normal": cmd},
    });
    // What the store writes is the entry's own serialization: go through it.
    let e: EntryOf<C> = serde_json::from_value(json).unwrap();
    serde_json::to_string(&e).unwrap()
}

/// Writes a version's fixtures: the snapshot after `before_snapshot()`, the log of
/// `after`, and the state it applies to.
fn write_fixtures(dir: &std::path::Path, after: &[Command]) {
    let mut s = PowerState::default();
    for c in before_snapshot() {
        s.apply(&c);
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("snapshot.json"),
        serde_json::to_string_pretty(&s).unwrap(),
    )
    .unwrap();
    let mut log = String::new();
    for (i, c) in after.iter().enumerate() {
        s.apply(c);
        log.push_str(&entry(100 + i as u64, c));
        log.push('\n');
    }
    std::fs::write(dir.join("log.jsonl"), log).unwrap();
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&s).unwrap(),
    )
    .unwrap();
}

#[test]
fn stored_state_from_an_earlier_version_loads_and_applies_identically() {
    // v1 was released: only its own generator rewrites it, by name.
    if std::env::var("UPSILON_WRITE_GOLDEN").as_deref() == Ok("v1") {
        write_fixtures(&dir(), &after_snapshot());
    }
    let read = |f: &str| {
        std::fs::read_to_string(dir().join(f))
            .unwrap_or_else(|e| panic!("{f}: {e} (fixtures missing?)"))
    };
    let mut state: PowerState = serde_json::from_str(&read("snapshot.json")).unwrap();
    let mut applied = 0;
    for line in read("log.jsonl").lines() {
        let e: EntryOf<C> = serde_json::from_str(line).unwrap();
        if let EntryPayload::Normal(cmd) = &e.payload {
            state.apply(cmd);
            applied += 1;
        }
    }
    assert_eq!(applied, after_snapshot().len());
    let expected: PowerState = serde_json::from_str(&read("expected.json")).unwrap();
    assert_eq!(state, expected);
    // The history the fixtures carry, spot-checked in words.
    let names: Vec<&str> = state.events.iter().map(|e| e.name.as_str()).collect();
    for want in [
        "powerout",
        "outage",
        "stagestart",
        "nodeack",
        "killpower",
        "outageend",
        "powercycle",
        "commfailure",
        "memberrefused",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(state.revoked.contains_key("0a1b"));
    assert!(!state.nodes.contains_key(&3));
}

/// v2's log after the snapshot: v1's, then a bridge's hosts (with the node it runs on),
/// a drill, the end game's armed orders, halts and an owner's kill alone, and a voter's
/// seat owed and given back.
fn after_snapshot_v2() -> Vec<Command> {
    use upsilon_core::replicated::legacy::{LegacyHostDecl, LegacyState};
    use upsilon_core::replicated::state::{ArmedKill, DownHow};
    let mut log = after_snapshot();
    log.extend([
        Command::LegacyHostsDeclare {
            bridge: "bridge-a".into(),
            hosts: vec![LegacyHostDecl {
                name: "nas1".into(),
                addresses: vec!["10.0.0.40".into()],
                labels: vec!["batch".into()],
                feeds: vec!["ups1".into()],
                min_supplies: 1,
                protocol: "nis".into(),
                shutdown_s: 90,
            }],
            at_ms: T0 + 80_000,
            runs_on: Some("n2".into()),
        },
        Command::LegacyHostSeen {
            bridge: "bridge-a".into(),
            name: "nas1".into(),
            state: LegacyState::Polling,
            at_ms: T0 + 80_100,
        },
        Command::DrillStart {
            id: 2,
            upses: vec!["ups1".into()],
            by: "operator".into(),
            at_ms: T0 + 90_000,
        },
        Command::OutageEnd {
            id: 2,
            at_ms: T0 + 95_000,
            reason: "drill over".into(),
        },
        report(1, 400, T0 + 100_000, true, &["powerout"]),
        Command::OutageStart {
            id: 3,
            at_ms: T0 + 100_100,
        },
        Command::ArmKillPower {
            outage: 3,
            orders: vec![ArmedKill {
                ups: "ups1".into(),
                owner: 1,
                wait_for: vec![2],
            }],
            at_ms: T0 + 100_200,
        },
        Command::StageStart {
            outage: 3,
            stage: 1,
            name: "core".into(),
            hosts: vec![1, 2],
            reason: "runtime below 600 s".into(),
            at_ms: T0 + 101_000,
        },
        Command::NodeAck {
            outage: 3,
            stage: 1,
            node: 2,
            halting: true,
            at_ms: T0 + 101_100,
        },
        Command::HostHalted {
            node: 2,
            at_ms: T0 + 102_000,
        },
        Command::HostDown {
            outage: 3,
            node: 2,
            how: DownHow::Halted,
            last_seen_ms: T0 + 102_000,
            at_ms: T0 + 102_100,
        },
        Command::KillPowerAlone {
            outage: 3,
            ups: "ups1".into(),
            delay_s: 30,
            ordered_ms: T0 + 103_000,
            ok: true,
            result: "recorded".into(),
            at_ms: T0 + 103_100,
        },
        Command::Seen {
            seen: vec![(1, T0 + 104_000)],
            at_ms: T0 + 104_000,
        },
        Command::VoterSeat {
            id: 2,
            owed: true,
            at_ms: T0 + 105_000,
        },
        Command::VoterSeat {
            id: 2,
            owed: false,
            at_ms: T0 + 106_000,
        },
    ]);
    log
}

#[test]
fn stored_state_v2_loads_applies_and_serializes_byte_for_byte() {
    if std::env::var("UPSILON_WRITE_GOLDEN").as_deref() == Ok("v2") {
        write_fixtures(&fixtures("v2"), &after_snapshot_v2());
    }
    let dir = fixtures("v2");
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e} (fixtures missing?)"))
    };
    let snapshot = read("snapshot.json");
    let mut state: PowerState = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(serde_json::to_string_pretty(&state).unwrap(), snapshot);
    let mut applied = 0;
    for (line, want) in read("log.jsonl").lines().zip(after_snapshot_v2()) {
        let e: EntryOf<C> = serde_json::from_str(line).unwrap();
        // Each entry reads back as the command this build writes, and writes the same.
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
        if let EntryPayload::Normal(cmd) = &e.payload {
            assert_eq!(*cmd, want);
            state.apply(cmd);
            applied += 1;
        }
    }
    assert_eq!(applied, after_snapshot_v2().len());
    assert_eq!(
        serde_json::to_string_pretty(&state).unwrap(),
        read("expected.json")
    );
    assert!(
        state
            .legacy
            .values()
            .any(|h| h.runs_on.as_deref() == Some("n2"))
    );
    assert!(state.seats_owed.is_empty());
}
