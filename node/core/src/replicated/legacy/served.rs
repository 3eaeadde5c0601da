//! [`served`]: what a bridge serves a legacy host, from the replicated state alone.

use super::super::NodeId;
use super::super::plan::{self, Plan};
use super::super::state::PowerState;
use crate::view::UpsStatus;

/// What a legacy host is served: its supply under its main feed's name, and the
/// shutdown bits once its stage started.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyServed {
    pub ups_name: String,
    pub status: UpsStatus,
    pub shutting_down: bool,
    /// The plan's stage that selects it (1-based number and name), if one does.
    pub stage: Option<(usize, String)>,
}

/// What legacy host `id` is served at `now_ms`, from the replicated state alone (so
/// every node, and a restarted bridge, serves the same).
pub fn served(state: &PowerState, id: NodeId, now_ms: i64) -> Option<LegacyServed> {
    let rec = state.legacy.get(&id)?;
    let no_plan = Plan::default();
    let p = state.plan.as_ref().unwrap_or(&no_plan);
    let status = match plan::supply(&rec.host, state, p, now_ms) {
        Some(s) => plan::supply_status(&s, state, now_ms),
        None => UpsStatus::default(),
    };
    // Shutting down while a started stage of the open outage holds it.
    let shutting_down = state
        .outage
        .as_ref()
        .filter(|o| o.ended_ms.is_none())
        .is_some_and(|o| o.stages.iter().any(|r| r.hosts.contains(&id)));
    let hosts = state.hosts();
    let stage = state.plan.as_ref().and_then(|p| {
        (0..p.stages.len())
            .find(|&k| p.stage_hosts(k, &hosts).contains(&id))
            .map(|k| (k + 1, p.stages[k].name.clone()))
    });
    Some(LegacyServed {
        ups_name: rec.host.feeds.first().cloned().unwrap_or_default(),
        status,
        shutting_down,
        stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::UpsReading;
    use crate::replicated::legacy::{LEGACY_ID_BASE, LegacyHostDecl, LegacyState};
    use crate::replicated::plan::decide;
    use crate::replicated::state::{Command, PowerState, UpsReport};

    const T0: i64 = 1_700_000_000_000;

    fn decl(name: &str, labels: &[&str]) -> LegacyHostDecl {
        LegacyHostDecl {
            name: name.into(),
            addresses: vec!["127.0.0.1".into()],
            labels: labels.iter().map(|s| s.to_string()).collect(),
            feeds: vec!["ups1".into()],
            min_supplies: 1,
            protocol: "nis".into(),
            shutdown_s: 120,
        }
    }

    fn report(seq: u64, on_battery: bool, at_ms: i64) -> Command {
        let r = UpsReading::basic(on_battery, 80.0, 1200.0, crate::time::from_unix_ms(at_ms));
        Command::UpsReport(Box::new(UpsReport {
            ups: "ups1".into(),
            owner: 1,
            seq,
            at_ms,
            status: UpsStatus {
                driver: "sim".into(),
                reading: Some(r),
                on_battery,
                ..Default::default()
            },
            events: vec![],
        }))
    }

    /// One node owning ups1; plan: stage "old" (label:old), then stage "rest" (oldB).
    fn cluster() -> PowerState {
        let mut s = PowerState::default();
        s.apply(&Command::NodeUp {
            id: 1,
            name: "owner".into(),
            addr: "127.0.0.1:7000".into(),
            labels: vec![],
            version: "test".into(),
            feeds: vec!["ups1".into()],
            min_supplies: 1,
            shutdown_s: 120,
            at_ms: T0,
        });
        let plan: Plan = toml::from_str(
            r#"
            [[stage]]
            name = "old"
            hosts = ["label:old"]
            trigger = { on_battery_s = 0 }
            [[stage]]
            name = "rest"
            hosts = ["oldB"]
            trigger = { on_battery_s = 0 }
            "#,
        )
        .unwrap();
        s.apply(&Command::SetPlan {
            plan,
            at_ms: T0,
            by: "test".into(),
        });
        s.apply(&report(1, false, T0));
        s
    }

    fn declare(s: &mut PowerState, bridge: &str, hosts: Vec<LegacyHostDecl>) -> bool {
        s.apply(&Command::LegacyHostsDeclare {
            bridge: bridge.into(),
            hosts,
            at_ms: T0,
            runs_on: None,
        })
        .applied
    }

    fn seen(s: &mut PowerState, name: &str, state: LegacyState, at_ms: i64) -> bool {
        s.apply(&Command::LegacyHostSeen {
            bridge: "br".into(),
            name: name.into(),
            state,
            at_ms,
        })
        .applied
    }

    /// Runs the coordinator until it proposes nothing more at `now`.
    fn settle(s: &mut PowerState, now: i64) {
        for _ in 0..10 {
            let cmds = decide(s, now);
            if cmds.is_empty() {
                return;
            }
            for c in cmds {
                s.apply(&c);
            }
        }
    }

    fn id(s: &PowerState, name: &str) -> NodeId {
        s.legacy_host(name).unwrap().host.id
    }

    #[test]
    fn declarations_are_checked() {
        assert!(decl("a", &[]).validate().is_ok());
        let mut d = decl("label:x", &[]);
        assert!(d.validate().unwrap_err().contains("label:"));
        d = decl("a", &[]);
        d.feeds.clear();
        assert!(d.validate().unwrap_err().contains("names no feeds"));
        d = decl("a", &[]);
        d.min_supplies = 2;
        assert!(d.validate().unwrap_err().contains("min_supplies = 2"));
        d = decl("a", &[]);
        d.protocol = "snmp".into();
        assert!(
            d.validate()
                .unwrap_err()
                .contains("use one of: nis, master-slave")
        );
    }

    #[test]
    fn a_host_never_seen_polling_is_told_apart_until_its_first_poll() {
        let mut s = cluster();
        assert!(declare(&mut s, "br", vec![decl("oldA", &[])]));
        assert!(
            !s.legacy_host("oldA").unwrap().polled,
            "declared, never seen"
        );
        let seen = |s: &mut PowerState, state| {
            s.apply(&Command::LegacyHostSeen {
                bridge: "br".into(),
                name: "oldA".into(),
                state,
                at_ms: 5_000,
            })
            .applied
        };
        // Silent says nothing about a poll.
        assert!(seen(&mut s, LegacyState::Silent));
        assert!(!s.legacy_host("oldA").unwrap().polled);
        assert!(seen(&mut s, LegacyState::Polling));
        assert!(s.legacy_host("oldA").unwrap().polled);
        // A host still polling: the first poll is recorded once, with an event.
        let mut s = cluster();
        declare(&mut s, "br", vec![decl("oldA", &[])]);
        assert!(seen(&mut s, LegacyState::Polling));
        assert!(s.legacy_host("oldA").unwrap().polled);
        let last = s.events.back().unwrap().message.clone();
        assert_eq!(last, "Legacy host oldA polls bridge br.");
        assert!(!seen(&mut s, LegacyState::Polling), "once");
    }

    #[test]
    fn a_redeclaration_changes_nothing_and_a_dropped_host_is_forgotten() {
        let mut s = cluster();
        assert!(declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])]
        ));
        let a = id(&s, "oldA");
        assert!(a > LEGACY_ID_BASE);
        // A restarted bridge declares the same: nothing is written.
        assert!(!declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])]
        ));
        // A name clash with a node is refused, the rest applies.
        assert!(declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("owner", &[])]
        ));
        assert!(s.legacy_host("owner").is_none());
        assert!(
            s.legacy_host("oldB").is_none(),
            "oldB was no longer declared"
        );
        assert_eq!(id(&s, "oldA"), a, "a host keeps its id");
        let last = s.events.back().unwrap().message.clone();
        assert!(last.contains("no longer declares oldB"), "{last}");
        assert!(
            last.contains("a node of the cluster has that name"),
            "{last}"
        );
    }

    #[test]
    fn legacy_hosts_are_told_in_stage_order_and_their_acks_move_the_plan() {
        let mut s = cluster();
        declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])],
        );
        let (a, b) = (id(&s, "oldA"), id(&s, "oldB"));
        let quiet = served(&s, a, T0).unwrap();
        assert_eq!(quiet.ups_name, "ups1");
        assert!(!quiet.status.on_battery && !quiet.shutting_down);
        assert_eq!(quiet.stage, Some((1, "old".to_string())));

        // Power fails: stage 1 (label:old) starts; only oldA is told.
        let t = T0 + 10_000;
        s.apply(&report(2, true, t));
        settle(&mut s, t);
        let o = s.outage.as_ref().unwrap();
        assert_eq!(o.stages.len(), 1);
        assert_eq!(o.stages[0].hosts, vec![a]);
        assert!(served(&s, a, t).unwrap().shutting_down);
        let sb = served(&s, b, t).unwrap();
        assert!(sb.status.on_battery && !sb.shutting_down);

        // Told, then halted: the next stage starts without waiting for the timeout.
        assert!(seen(&mut s, "oldA", LegacyState::Told, t + 1000));
        assert!(
            !seen(&mut s, "oldA", LegacyState::Told, t + 1500),
            "told once"
        );
        settle(&mut s, t + 2000);
        assert_eq!(s.outage.as_ref().unwrap().stages.len(), 1);
        assert!(seen(&mut s, "oldA", LegacyState::Halted, t + 3000));
        settle(&mut s, t + 4000);
        let o = s.outage.as_ref().unwrap();
        assert_eq!(o.stages.len(), 2);
        assert_eq!(o.stages[1].hosts, vec![b]);
        assert!(served(&s, b, t + 4000).unwrap().shutting_down);
        assert!(s.halted.contains(&a));
        assert_eq!(s.legacy_host("oldA").unwrap().state, LegacyState::Halted);

        // Mains return; oldA polls again after its power cycle: back up.
        s.apply(&report(3, false, t + 60_000));
        settle(&mut s, t + 60_000);
        assert!(!served(&s, b, t + 60_000).unwrap().shutting_down);
        assert!(seen(&mut s, "oldA", LegacyState::Polling, t + 90_000));
        assert!(!s.halted.contains(&a));
    }

    #[test]
    fn told_before_the_stage_starts_is_refused() {
        let mut s = cluster();
        declare(&mut s, "br", vec![decl("oldA", &["old"])]);
        assert!(!seen(&mut s, "oldA", LegacyState::Told, T0));
        assert_eq!(s.legacy_host("oldA").unwrap().state, LegacyState::Polling);
        assert!(seen(&mut s, "oldA", LegacyState::Silent, T0));
        assert!(!seen(&mut s, "nobody", LegacyState::Silent, T0));
    }
}
