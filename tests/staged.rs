//! The staged cluster shutdown with real processes on loopback: stages in order, each
//! host shutting down exactly once, kill power last; mains returning mid-plan cancels
//! the rest; a leader SIGKILLed mid-plan changes nothing about the order or the count.

use std::time::Duration;

use upsilon_tests::*;

/// n1 and n2: core; n3: apps; n4: batch (learner). All fed by the UPS of node
/// `owner` (named `ups<owner>`). n1 bootstraps with the plan file.
fn cluster(plan: &str, drain: f64, owner: usize) -> TestCluster {
    let c = ClusterSpec::new(4, 3)
        .ups_on(&[owner])
        // Local apcupsd rules off: the plan decides.
        .local_thresholds_off()
        .hooks()
        .feeds(&[&format!("ups{owner}")])
        .labels(&["core", "core", "apps", "batch"])
        .plan(plan)
        .start_formed();
    let o = c.cli(owner, &["sim", "set", "--drain", &drain.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The plan is proposed from n1's config once the cluster is up.
    c.wait_plan(2);
    c
}

/// batch, apps and core by label, 2 s and 4 s on battery, then charge below 70 %.
fn plan(apps_on_battery_s: u64) -> String {
    three_stage_plan(BY_LABEL, [2, apps_on_battery_s], 70, [30, 30, 30])
}

fn names(c: &TestCluster, i: usize) -> Vec<String> {
    let o = c.cli(i, &["events", "--json", "-n", "1000"]);
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            format!(
                "{} {}",
                v["name"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in history:\n{}", lines.join("\n")))
}

#[test]
fn full_outage_runs_stages_in_order_and_kills_power_last() {
    let _g = serial();
    let c = cluster(&plan(4), 2.0, 1);
    let o = c.cli(1, &["shutdown", "--dry-run", "--assume-outage"]);
    let dry = stdout(&o);
    // The dry run is plan check's model: the UPS drains from its runtime, so the
    // charge trigger of "core" fires too, after the other two, and kill power is last.
    let at = |what: &str| {
        dry.find(what)
            .unwrap_or_else(|| panic!("{what:?} not in the dry run:\n{dry}"))
    };
    assert!(
        at("stage 1 (batch) starts") < at("stage 2 (apps) starts"),
        "{dry}"
    );
    assert!(
        at("stage 2 (apps) starts") < at("stage 3 (core) starts: "),
        "{dry}"
    );
    assert!(dry.contains("charge"), "{dry}");
    assert!(
        at("stage 3 (core) starts") < at("UPS ups1 is told"),
        "{dry}"
    );

    c.cli(1, &["sim", "set", "--on-battery"]);
    let done = wait_for(Duration::from_secs(60), || {
        let h = names(&c, 3);
        h.iter()
            .any(|l| l.starts_with("notice UPS ups1 kill power done"))
            .then_some(h)
    });
    let h =
        done.unwrap_or_else(|| panic!("no kill power\n{}\n{}", names(&c, 3).join("\n"), c.logs()));
    let batch = position(&h, "Stage 1 (batch) started");
    let n4_halting = position(&h, "n4 is halting");
    let apps = position(&h, "Stage 2 (apps) started");
    let core = position(&h, "Stage 3 (core) started");
    let kill = position(&h, "killpower UPS ups1 ordered");
    assert!(
        batch < n4_halting && n4_halting < apps && apps < core && core < kill,
        "{}",
        h.join("\n")
    );
    // The UPS owner halts last, after carrying out its kill-power order: wait for it.
    for i in 1..=4 {
        wait_for(Duration::from_secs(15), || {
            (shutdowns(&c, i) >= 1).then_some(())
        });
    }
    holds_for(
        Duration::from_secs(1),
        "one shutdown per host",
        || match (1..=4).find(|i| shutdowns(&c, *i) != 1) {
            Some(i) => Err(format!("n{i}: {:?}", c.records(i))),
            None => Ok(()),
        },
    );
    let killed: Vec<_> = c
        .records(1)
        .into_iter()
        .filter(|r| r["action"] == "killpower")
        .collect();
    assert_eq!(killed.len(), 1, "one kill-power order carried out");
    // status shows the outage and that every host acknowledged.
    let o = c.cli(2, &["status"]);
    let t = stdout(&o);
    assert!(
        t.contains("OUTAGE: outage 1") && t.contains("stage 3 core: started"),
        "{t}"
    );
}

#[test]
fn mains_return_between_stages_cancels_the_rest() {
    let _g = serial();
    let c = cluster(&plan(600), 0.1, 1);
    c.cli(1, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(30), || {
        names(&c, 2)
            .iter()
            .any(|l| l.contains("n4 is halting"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("batch did not run\n{}", c.logs()));
    c.cli(1, &["sim", "set", "--on-line"]);
    let h = wait_for(Duration::from_secs(20), || {
        let h = names(&c, 3);
        h.iter().any(|l| l.starts_with("cancel ")).then_some(h)
    })
    .unwrap_or_else(|| panic!("no cancellation\n{}", names(&c, 3).join("\n")));
    assert!(
        h.iter()
            .any(|l| l.contains("2 stage(s) not started are cancelled")),
        "{}",
        h.join("\n")
    );
    holds_for(Duration::from_secs(2), "the cancellation", || {
        let h = names(&c, 3);
        if h.iter().any(|l| l.contains("Stage 2")) {
            return Err(h.join("\n"));
        }
        let counts: Vec<usize> = (1..=4).map(|i| shutdowns(&c, i)).collect();
        // n4 (batch) shut down; n1-n3 keep running.
        (counts == [0, 0, 0, 1])
            .then_some(())
            .ok_or(format!("shutdowns {counts:?}"))
    });
}

/// A doshutdown hook that takes `secs`: it holds a stage between "shutting down" and
/// "halting", so the leader can be killed while acknowledgements are outstanding.
fn slow_hook(c: &TestCluster, secs: u32) {
    use std::os::unix::fs::PermissionsExt;
    let dir = c.pki.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("doshutdown");
    std::fs::write(&p, format!("#!/bin/sh\nsleep {secs}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn leader_sigkill_before_the_first_stage() {
    let _g = serial();
    leader_sigkill_at("Outage 1 began");
}

#[test]
fn leader_sigkill_while_a_stage_awaits_acks() {
    let _g = serial();
    leader_sigkill_at("n4 is shutting down");
}

#[test]
fn leader_sigkill_after_a_stage_acked() {
    let _g = serial();
    leader_sigkill_at("n4 is halting");
}

/// Kills the leader (n1) when `needle` appears in the history, restarts it later, and
/// checks every stage started once, in order, and every host shut down exactly once.
fn leader_sigkill_at(needle: &str) {
    // Slow drain: the apps stage waits 8 s, long enough to kill the leader before it.
    let slow = plan(8);
    // The UPS belongs to n2, so killing the leader (n1) does not silence it.
    let mut c = cluster(&slow, 1.0, 2);
    slow_hook(&c, 3);
    c.cli(2, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(30), || {
        names(&c, 2)
            .iter()
            .any(|l| l.contains(needle))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{needle:?} never happened\n{}", c.logs()));
    let leader = c.writable_leader(2).unwrap() as usize;
    assert_eq!(leader, 1, "n1 bootstrapped");
    c.kill(1);
    wait_for(Duration::from_secs(20), || {
        c.writable_leader(3).filter(|l| *l != 1)
    })
    .unwrap_or_else(|| panic!("no new leader\n{}", c.logs()));
    // n1 (a core host) stays down 3 s of the plan (the fault's length), comes back
    // mid-plan and must still run its stage exactly once.
    std::thread::sleep(Duration::from_secs(3));
    c.start_node(1);
    let h = wait_for(Duration::from_secs(90), || {
        let h = names(&c, 3);
        h.iter()
            .any(|l| l.contains("Stage 3 (core) started"))
            .then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "plan did not continue after the leader died\n{}\n{}",
            names(&c, 3).join("\n"),
            c.logs()
        )
    });
    let stage_starts: Vec<&String> = h.iter().filter(|l| l.starts_with("stagestart")).collect();
    assert_eq!(stage_starts.len(), 3, "each stage once: {stage_starts:?}");
    assert!(
        position(&h, "Stage 1") < position(&h, "Stage 2")
            && position(&h, "Stage 2") < position(&h, "Stage 3")
    );
    wait_for(Duration::from_secs(30), || {
        ((1..=4).all(|i| shutdowns(&c, i) == 1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "hosts did not shut down once each: {:?}",
            (1..=4).map(|i| shutdowns(&c, i)).collect::<Vec<_>>()
        )
    });
    holds_for(Duration::from_secs(2), "one shutdown per host", || {
        let counts: Vec<usize> = (1..=4).map(|i| shutdowns(&c, i)).collect();
        (counts == [1; 4])
            .then_some(())
            .ok_or(format!("shutdowns {counts:?}"))
    });
    for i in 1..=4 {
        // apccontrol's arguments: the UPS that feeds the host (never empty, also on a
        // host that drives none), connected 1 only on the node that drives it.
        let hooks: Vec<serde_json::Value> = c
            .records(i)
            .into_iter()
            .filter(|r| r["action"] == "hook" && r["event"] == "doshutdown")
            .collect();
        assert!(!hooks.is_empty(), "n{i} ran no doshutdown hook");
        for h in &hooks {
            let connected = if i == 2 { "1" } else { "0" };
            assert_eq!(h["argv"][1], "ups2", "n{i}: {h}");
            assert_eq!(h["argv"][2], connected, "n{i}: {h}");
        }
    }
}

#[test]
fn partition_minority_never_starts_a_stage_and_majority_finishes() {
    let _g = serial();
    let plan = three_stage_plan(BY_LABEL, [2, 2], 95, [5, 5, 10]);
    let c = ClusterSpec::new(5, 5)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .labels(&["core", "core", "core", "batch", "apps"])
        .plan(&plan)
        .start_formed();
    // Known to the minority-to-be.
    c.wait_plan(5);

    c.partition(&[1, 2, 3], &[4, 5]);
    let s = wait_for(Duration::from_secs(20), || {
        let s = c.status(4)?;
        (s["cluster"]["writable"] == false).then_some(s)
    })
    .unwrap_or_else(|| panic!("minority still claims writes\n{}", c.logs()));
    assert!(s["cluster"]["detail"].as_str().unwrap().len() > 5);

    c.cli(1, &["sim", "set", "--on-battery", "--drain", "0.5"]);
    let h = wait_for(Duration::from_secs(60), || {
        let h = names(&c, 2);
        h.iter().any(|l| l.starts_with("killpower")).then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "majority did not finish\n{}\n{}",
            names(&c, 2).join("\n"),
            c.logs()
        )
    });
    assert!(position(&h, "Stage 1 (batch)") < position(&h, "Stage 2 (apps)"));
    assert!(position(&h, "Stage 2 (apps)") < position(&h, "Stage 3 (core)"));
    for i in 1..=3 {
        wait_for(Duration::from_secs(10), || {
            (shutdowns(&c, i) == 1).then_some(())
        })
        .unwrap_or_else(|| panic!("n{i} did not shut down once: {:?}", c.records(i)));
    }
    // The minority saw none of it and started nothing.
    for i in 4..=5 {
        let h = names(&c, i);
        assert!(
            !h.iter().any(|l| l.contains("Stage")),
            "n{i} saw a stage: {}",
            h.join("\n")
        );
        assert_eq!(
            shutdowns(&c, i),
            0,
            "n{i} shut down on stale data: {:?}",
            c.records(i)
        );
    }
}
