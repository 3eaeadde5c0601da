//! The fire drill's report, without I/O: who went when, each host's acknowledgement
//! latencies, who did not answer, kill-power timing per UPS. (Whether the plan fits the
//! batteries is `check`'s; the CLI prints both.)

use super::state::{Outage, PowerState};

/// The last drill, if the state holds one (active or ended).
pub fn last_drill(state: &PowerState) -> Option<&Outage> {
    state.outage.as_ref().filter(|o| o.is_drill())
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The report of the last drill, one line each; `None` without one. `unanswered` are
/// the hosts that never acknowledged halting.
pub fn report(state: &PowerState, now_ms: i64) -> Option<(Vec<String>, Vec<String>)> {
    let o = last_drill(state)?;
    let t0 = o.started_ms;
    let name = |id: &u64| {
        state
            .host(*id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    };
    let mut lines = vec![format!(
        "fire drill {} on {}: {}",
        o.id,
        o.drill.clone().unwrap_or_default().join(", "),
        match o.ended_ms {
            Some(end) => format!("{} after {}", o.end_reason, secs(end - t0)),
            None => format!("running for {}", secs(now_ms - t0)),
        }
    )];
    let mut unanswered = Vec::new();
    for (k, run) in o.stages.iter().enumerate() {
        lines.push(format!(
            "+{}: stage {} {} starts; hosts: {}",
            secs(run.started_ms - t0),
            k + 1,
            run.name,
            run.hosts.iter().map(name).collect::<Vec<_>>().join(", ")
        ));
        for h in &run.hosts {
            let ack = run.acks.get(h);
            let at = |t: Option<i64>| t.map(|t| format!("{} ms", t - run.started_ms));
            let line = match ack.map(|a| (at(a.shutting_down_ms), at(a.halting_ms))) {
                Some((Some(sd), Some(ha))) => format!(
                    "  {}: acknowledged in {sd}, hooks done (halting) in {ha}",
                    name(h)
                ),
                Some((Some(sd), None)) => {
                    unanswered.push(name(h));
                    format!(
                        "  {}: acknowledged in {sd}, never reported halting",
                        name(h)
                    )
                }
                _ => {
                    unanswered.push(name(h));
                    format!("  {}: did not answer", name(h))
                }
            };
            lines.push(line);
        }
    }
    for (ups, k) in &o.kill_power {
        lines.push(match k.done_ms {
            Some(done) => format!(
                "+{}: kill power {ups} ordered with a {} s delay (would cut at +{}); carried out (recorded) at +{}",
                secs(k.ordered_ms - t0),
                k.delay_s,
                secs(k.ordered_ms - t0 + k.delay_s as i64 * 1000),
                secs(done - t0)
            ),
            None => format!(
                "+{}: kill power {ups} ordered with a {} s delay; not carried out",
                secs(k.ordered_ms - t0),
                k.delay_s
            ),
        });
    }
    for ups in o.drill.iter().flatten() {
        if !o.kill_power.contains_key(ups) {
            lines.push(format!("kill power {ups}: never ordered"));
        }
    }
    // A drill does not halt anyone, so it cannot measure shutdowns: say whose the plan
    // still only has the declared value for.
    let unmeasured: Vec<String> = state
        .hosts()
        .iter()
        .filter(|n| {
            state
                .shutdown_measured
                .get(&n.id)
                .and_then(|m| m.seconds())
                .is_none()
        })
        .map(|n| n.name.clone())
        .collect();
    if !unmeasured.is_empty() {
        lines.push(format!(
            "no measured shutdown yet (the declared shutdown_s is used): {}",
            unmeasured.join(", ")
        ));
    }
    lines.push(if unanswered.is_empty() {
        "every host answered".to_string()
    } else {
        format!("did not answer: {}", unanswered.join(", "))
    });
    Some((lines, unanswered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicated::plan::decide;
    use crate::replicated::state::{Command, NodeRecord, UpsRecord};

    const T: i64 = 1_000_000;

    fn state() -> PowerState {
        let mut s = PowerState {
            plan: Some(
                toml::from_str(
                    "[[stage]]\nname = \"a\"\nhosts = [\"n2\"]\ntrigger = { charge_below = 5 }\n\n[[stage]]\nname = \"b\"\nhosts = [\"n1\"]\ntrigger = { charge_below = 5 }\n",
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        for (id, n) in [(1, "n1"), (2, "n2")] {
            s.nodes.insert(
                id,
                NodeRecord::fed_by(id, n, &["ups1"], T).shutting_down_in(30),
            );
        }
        s.upses.insert(
            "ups1".into(),
            UpsRecord::reported("ups1", 1, Default::default(), T),
        );
        s
    }

    fn step(s: &mut PowerState, t: i64) -> Vec<String> {
        let cmds = decide(s, t);
        for c in &cmds {
            s.apply(c);
        }
        cmds.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_drill_runs_every_stage_without_triggers_and_ends_by_itself() {
        let mut s = state();
        let start = Command::DrillStart {
            id: 1,
            upses: vec!["ups1".into()],
            by: "op".into(),
            at_ms: T,
        };
        assert!(s.apply(&start).applied);
        assert!(!s.apply(&start).applied, "once");
        // Charge triggers would never fire on a UPS on line: the drill starts stage a.
        assert_eq!(
            step(&mut s, T + 100),
            ["ArmKillPower(1 UPS)", "StageStart(1/0)"]
        );
        for halting in [false, true] {
            s.apply(&Command::NodeAck {
                outage: 1,
                stage: 0,
                node: 2,
                halting,
                at_ms: T + 1_000,
            });
        }
        s.apply(&Command::HostHalted {
            node: 2,
            at_ms: T + 1_100,
        });
        assert!(s.halted.is_empty(), "a drill halts nobody");
        assert!(s.shutdown_measured.is_empty(), "nor measures anything");
        assert_eq!(step(&mut s, T + 1_200), ["StageStart(1/1)"]);
        // n2 down (said halted); the owner n1 is not waited for: ups1 is ordered.
        assert_eq!(step(&mut s, T + 1_300), ["KillPower(ups1)"]);
        s.apply(&Command::UpsActionDone {
            ups: "ups1".into(),
            power_cycle: false,
            ok: true,
            result: "drill".into(),
            at_ms: T + 1_400,
        });
        // The owner n1 answers after carrying the order out; it never does here, so the
        // drill ends when its stage times out (120 s).
        assert!(step(&mut s, T + 1_500).is_empty());
        assert_eq!(
            step(&mut s, T + 1_500 + 120_000),
            ["HostDown(1 unreachable)", "OutageEnd(1)"]
        );
        let (lines, unanswered) = report(&s, T + 2_000).unwrap();
        let text = lines.join("\n");
        assert!(
            text.contains("fire drill 1 on ups1: drill complete after 121.5 s"),
            "{text}"
        );
        assert!(
            text.contains("n2: acknowledged in 900 ms, hooks done (halting) in 900 ms"),
            "{text}"
        );
        assert!(text.contains("n1: did not answer"), "{text}");
        assert_eq!(unanswered, ["n1"]);
        assert!(
            text.contains("no measured shutdown yet (the declared shutdown_s is used): n1, n2"),
            "{text}"
        );
        assert!(
            text.contains("kill power ups1 ordered with a 40 s delay"),
            "{text}"
        );
        // After the drill, nothing is power-cycled: nobody halted.
        assert!(decide(&s, T + 3_000).is_empty());
    }

    #[test]
    fn a_real_power_failure_ends_the_drill_and_the_plan_takes_over() {
        let mut s = state();
        s.apply(&Command::DrillStart {
            id: 1,
            upses: vec!["ups1".into()],
            by: "op".into(),
            at_ms: T,
        });
        step(&mut s, T + 100);
        s.upses.get_mut("ups1").unwrap().status.on_battery = true;
        assert_eq!(step(&mut s, T + 200), ["OutageEnd(1)"]);
        assert!(
            s.recent_events(1)[0]
                .message
                .contains("Fire drill 1 ended: a real power failure")
        );
        assert_eq!(step(&mut s, T + 300), ["OutageStart(2)"]);
        // An unknown UPS or a running outage refuses a drill.
        assert!(
            !s.apply(&Command::DrillStart {
                id: 3,
                upses: vec!["ups1".into()],
                by: "op".into(),
                at_ms: T,
            })
            .applied
        );
    }
}
