//! The end game on real processes: hosts whose daemons really stop after their halting
//! acknowledgement are seen down by silence, a host's shutdown hook (`upsilond
//! --report-halted`, run after its daemon stopped) says "halted", each host's shutdown
//! is measured and shown by `upsilon plan`, the kill-power order waits for them and its
//! delay covers what is left; `upsilon plan check` against the live batteries.

use std::time::Duration;

use upsilon_tests::*;

/// n1-n3: voters, stage core (n1 owns ups1); n4: apps, its daemon kept running after the
/// halt ("none": the test stops it and runs the shutdown hook); n5: batch, its daemon
/// exits 2.5 s after its halting ack. Everyone is fed by ups1.
fn cluster() -> TestCluster {
    let plan = format!(
        "silence_s = 3\n{}",
        three_stage_plan(BY_LABEL, [1, 2], 99, [30, 30, 30])
    );
    let c = ClusterSpec::new(5, 3)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .labels(&["core", "core", "core", "apps", "batch"])
        .shutdown_s(&[5, 5, 5, 1, 20])
        .executor_of(4, "record_halt = \"none\"")
        .executor_of(5, "record_halt = \"exit\"\nrecord_halt_after_ms = 2500")
        .plan(&plan)
        .start_formed();
    c.wait_plan(2);
    c
}

/// Writes the cluster's shared `hooks/doshutdown` script (`[hooks] script_dir = "hooks"`).
fn doshutdown_hook(c: &TestCluster, body: &str) {
    let hooks = c.pki.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("doshutdown");
    std::fs::write(&hook, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn position(lines: &[EventLine], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.message.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "{needle:?} not in history:\n{}",
                lines
                    .iter()
                    .map(|l| format!("{} {}", l.name, l.message))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

#[test]
fn hosts_are_down_when_silent_or_halted_and_kill_power_waits_for_them() {
    let _g = serial();
    let mut c = cluster();

    // The plan fits ups1 (about 40 minutes of simulated runtime) and says so.
    let o = c.cli(2, &["plan", "check"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(text.contains("stage 1 batch: starts at +1 s"), "{text}");
    assert!(text.contains("UPS ups1: kill power ordered"), "{text}");
    assert!(text.contains("the plan fits"), "{text}");

    c.cli(1, &["sim", "set", "--drain", "2.0"]);
    c.cli(1, &["sim", "set", "--on-battery"]);

    // n4 acknowledges halting and keeps running (record_halt = "none"); stop its daemon
    // and run the shutdown hook, as systemd would on the way down.
    wait_for(Duration::from_secs(60), || {
        let e = event_lines(&c.pki, c.addr(1));
        e.iter()
            .any(|l| l.message.contains("n4 is halting"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("n4 never acknowledged halting\n{}", c.logs()));
    // n4's host takes 1.5 s to shut down (before its daemon is stopped): its measured
    // shutdown time, asserted below, includes it.
    std::thread::sleep(Duration::from_millis(1500));
    let st = c.stop(4, Duration::from_secs(10)).expect("n4 stops");
    assert!(st.success(), "n4: {st}");
    let cfg = c.pki.path().join("n4.toml");
    let hook = std::process::Command::new(bin("upsilond"))
        .args(["--config"])
        .arg(&cfg)
        .args(["--report-halted", "--report-timeout", "10"])
        .current_dir(c.pki.path())
        .output()
        .unwrap();
    assert!(
        hook.status.success(),
        "--report-halted: {}{}",
        stdout(&hook),
        stderr(&hook)
    );
    assert!(stdout(&hook).contains("n4 halts"), "{}", stdout(&hook));

    let h = wait_for(Duration::from_secs(90), || {
        let e = event_lines(&c.pki, c.addr(1));
        e.iter()
            .any(|l| l.message.contains("UPS ups1 kill power done"))
            .then_some(e)
    })
    .unwrap_or_else(|| panic!("no kill power\n{}", c.logs()));

    // n5's daemon exited by itself after its halting ack: it was seen down by silence.
    let n5 = c.nodes[4].as_mut().unwrap().child.try_wait().unwrap();
    assert!(n5.is_some_and(|s| s.success()), "n5 exited: {n5:?}");
    let n5_down = position(&h, "n5 is down: silent since");
    let n4_halted = position(&h, "n4 halted (");
    let n2_halted = position(&h, "n2 halted (");
    let n3_halted = position(&h, "n3 halted (");
    let kill = position(&h, "UPS ups1 ordered to cut power in");
    assert!(
        n5_down < kill && n4_halted < kill && n2_halted < kill && n3_halted < kill,
        "kill power before every host it feeds was down:\n{}",
        h.iter()
            .map(|l| format!("{} {} {}", l.at_ms, l.name, l.message))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The delay covers the owner's own 5 s shutdown (plus 10 s to start it), and what is
    // left of n5's declared 20 s.
    let delay: u32 = h[kill]
        .message
        .split("cut power in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|d| d.parse().ok())
        .unwrap();
    assert!(delay >= 15, "kill delay {delay} s: {}", h[kill].message);

    // Each host shut down once; the measured durations are in the plan.
    assert_shut_down_once(&c, [2, 3, 5]);
    let o = c.cli(2, &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let times = v["shutdown_times"].as_array().unwrap();
    let of = |name: &str| {
        times
            .iter()
            .find(|t| t["host"] == name)
            .unwrap_or_else(|| panic!("{name} not in {times:?}"))
            .clone()
    };
    // For BENCHMARKS.md (with --nocapture): what the cluster measured.
    for t in times {
        eprintln!(
            "measured shutdown: {} declared {} s, measured {} s, counted {} s",
            t["host"].as_str().unwrap_or("?"),
            t["declared_s"],
            t["measured_s"],
            t["used_s"]
        );
    }
    for l in h
        .iter()
        .filter(|l| l.message.contains("is down:") || l.message.contains(" halted ("))
    {
        eprintln!("event: {}", l.message);
    }
    // n5: about 2.5 s from halting ack to its last heartbeat (500 ms apart); declared 20.
    let n5 = of("n5");
    let m5 = n5["measured_s"].as_u64().expect("n5 measured");
    assert!((2..=4).contains(&m5), "n5 measured {m5} s: {n5}");
    assert_eq!(n5["used_s"], 20, "{n5}");
    // n4: at least 1.5 s from its halting ack to the hook's "halted", over its declared 1.
    let n4 = of("n4");
    let m4 = n4["measured_s"].as_u64().expect("n4 measured");
    assert!(m4 >= 2, "n4 measured {m4} s: {n4}");
    assert_eq!(n4["used_s"], n4["measured_s"], "measured wins: {n4}");
    assert_eq!(n4["declared_s"], 1);
    let text = stdout(&c.cli(2, &["plan"]));
    assert!(text.contains("SHUTDOWN DECLARED"), "{text}");
}

#[test]
fn plan_check_fails_a_plan_that_outlasts_the_battery() {
    let _g = serial();
    let c = ClusterSpec::new(1, 1)
        .feeds(&["ups1"])
        .labels(&["core"])
        .start_formed();
    // The only stage starts at 10 minutes of runtime left and its host takes an hour.
    c.apply_plan_until_accepted(
        "[[stage]]\nname = \"core\"\nhosts = [\"label:core\"]\ntrigger = { runtime_below_s = 600 }\nshutdown_s = 3600\n",
        "long.toml",
    );
    // Once n1's announcement (with its label) is in.
    let (o, text) = wait_for(Duration::from_secs(15), || {
        let o = c.cli(1, &["plan", "check"]);
        let text = stdout(&o);
        (!text.contains("(yet)")).then_some((o, text))
    })
    .expect("n1 announced with its label");
    assert_eq!(o.status.code(), Some(1), "{text}{}", stderr(&o));
    // n1 owns ups1: it halts after cutting it, and its 3600 s outlast the battery.
    assert!(text.contains("n1 halts after kill power of ups1"), "{text}");
    assert!(text.contains("DOES NOT FIT: n1: halts at +"), "{text}");
    assert!(
        text.contains("DOES NOT FIT: UPS ups1: runs out at"),
        "{text}"
    );
    let o = c.cli(1, &["plan", "--json", "check"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fits"], false);
}

/// The last stage halts two of the three voters: the quorum goes with them, and nothing
/// can be committed after. n1 (a voter, owner of ups1, which feeds everyone) finishes
/// alone from the kill order committed before the first stage: it cuts ups1 once every
/// host it feeds stopped answering, then halts itself. ups4 (owner n4, a learner; it
/// also feeds dual-fed n3) goes first, while the quorum lasts. Mains return, the halted
/// hosts boot (restarted), and what n1 did alone is committed.
#[test]
fn the_last_stage_halts_the_quorum_and_owners_still_cut_their_upses() {
    let _g = serial();
    let exit = "record_halt = \"exit\"\nrecord_halt_after_ms = 2000";
    let plan = "silence_s = 3\nkill_power_delay_s = 5\nruntime_floor_s = 0\n\n[[stage]]\nname = \"batch\"\nhosts = [\"label:batch\"]\ntrigger = { on_battery_s = 1 }\nack_timeout_s = 30\n\n[[stage]]\nname = \"last\"\nhosts = [\"label:last\"]\ntrigger = { on_battery_s = 3 }\nack_timeout_s = 5\n";
    // The last stage's 5 s ack timeout is shorter than n1 needs to see everyone down
    // alone: it must still cut before it halts.
    let mut c = ClusterSpec::new(5, 3)
        .ups_on(&[1, 4])
        .local_thresholds_off()
        .node(1, "feeds = [\"ups1\"]")
        .node(2, "feeds = [\"ups1\"]")
        .node(3, "feeds = [\"ups1\", \"ups4\"]\nmin_supplies = 1")
        .node(4, "feeds = [\"ups4\"]")
        .node(5, "feeds = [\"ups1\"]")
        .labels(&["last", "last", "last", "last", "batch"])
        .every_node("shutdown_s = 4")
        .executor_of(1, "record_halt = \"none\"")
        .executor_of(2, exit)
        .executor_of(3, exit)
        .executor_of(4, "record_halt = \"none\"")
        .executor_of(5, exit)
        .plan(plan)
        .start_formed();
    wait_for(Duration::from_secs(15), || {
        let o = c.cli(2, &["plan", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["has_plan"] == true && v["shutdown_times"].as_array()?.len() == 5).then_some(())
    })
    .unwrap_or_else(|| panic!("plan never replicated\n{}", c.logs()));
    // plan check sees the last stage halting every voter.
    let text = stdout(&c.cli(1, &["plan", "check"]));
    assert!(
        text.contains("(2 of 3 voters): after it nothing can be committed"),
        "{text}"
    );
    assert!(
        text.contains("UPS ups1: kill power ordered by n1 alone (no quorum)"),
        "{text}"
    );

    c.cli(1, &["sim", "set", "--on-battery"]);
    c.cli(4, &["sim", "set", "--on-battery"]);

    // Both owners cut alone: their executors record it.
    let kill_of = |c: &TestCluster, i: usize, ups: &str| {
        c.records(i)
            .into_iter()
            .find(|r| r["action"] == "killpower" && r["argv"][1] == ups)
    };
    let (k1, k4) = wait_for(Duration::from_secs(120), || {
        Some((kill_of(&c, 1, "ups1")?, kill_of(&c, 4, "ups4")?))
    })
    .unwrap_or_else(|| panic!("the owners never cut their UPSes\n{}", c.logs()));
    let h = event_lines(&c.pki, c.addr(1));
    let at = |needle: &str| {
        h.iter()
            .find(|l| l.message.contains(needle))
            .unwrap_or_else(|| {
                panic!(
                    "{needle:?} not in n1's history:\n{}",
                    h.iter()
                        .map(|l| format!("{} {}", l.at_ms, l.message))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .at_ms
    };
    let armed = at("Kill orders committed before any host halts");
    let first_stage = at("Stage 1 (batch) started");
    assert!(armed <= first_stage, "armed after the first stage");
    // ups1 is cut after every host it feeds acknowledged halting, plus their 2 s to
    // exit and 3 s of silence, by n1 alone: nothing could be committed by then.
    let n2 = at("n2 is halting");
    let n3 = at("n3 is halting");
    let n5 = at("n5 is halting");
    let k1_at = k1["at_unix_ms"].as_i64().unwrap();
    let k4_at = k4["at_unix_ms"].as_i64().unwrap();
    for (who, t) in [("n2", n2), ("n3", n3), ("n5", n5)] {
        assert!(
            k1_at >= t + 5000,
            "ups1 cut at {k1_at}, {who} halting at {t}"
        );
    }
    assert!(
        !h.iter()
            .any(|l| l.message.contains("UPS ups1 ordered to cut power")),
        "a kill order for ups1 was committed without a quorum?"
    );
    assert!(
        c.log_of(1).contains("cutting it alone with a 14 s delay"),
        "{}",
        c.log_of(1)
    );
    // ups4 feeds n3 (which has ups1 too) and its owner: the cluster could cut it while
    // the quorum lasted, one feed of n3 at a time, before ups1: the right order. Its
    // delay covers its owner's 4 s and 10 s to start.
    assert!(k4_at <= k1_at, "ups4 at {k4_at}, ups1 at {k1_at}");
    assert!(
        h.iter()
            .any(|l| l.message.contains("UPS ups4 ordered to cut power in 14 s")),
        "ups4's kill order"
    );
    // The owners halted after cutting, once each.
    for (i, k) in [(1, k1_at), (4, k4_at)] {
        let rec = wait_for(Duration::from_secs(20), || {
            c.records(i).into_iter().find(|r| r["action"] == "shutdown")
        })
        .unwrap_or_else(|| panic!("n{i} never halted\n{}", c.log_of(i)));
        assert!(
            rec["at_unix_ms"].as_i64().unwrap() >= k,
            "n{i} halted before cutting"
        );
    }
    for i in [2, 3, 5] {
        let st = c.nodes[i - 1].as_mut().unwrap().child.try_wait().unwrap();
        assert!(st.is_some_and(|s| s.success()), "n{i}: {st:?}");
    }

    // Mains return; power comes back on the cut outlets and the halted hosts boot.
    c.cli(1, &["sim", "set", "--on-line"]);
    c.cli(4, &["sim", "set", "--on-line"]);
    for i in [2, 3, 5] {
        c.start_node(i);
    }
    let h = wait_for(Duration::from_secs(60), || {
        let h = event_lines(&c.pki, c.addr(1));
        // Reported by the owner, or answered to a kill order proposed meanwhile with
        // "sent earlier" (its marker): either way, once.
        let done = |ups: &str| {
            h.iter()
                .any(|l| l.message.contains(&format!("UPS {ups} kill power done")))
        };
        let back = ["n2", "n3", "n5"]
            .iter()
            .all(|n| h.iter().any(|l| l.message == format!("{n} is back up.")));
        let ended = h.iter().any(|l| l.message.contains("Outage 1 ended"));
        (done("ups1") && done("ups4") && back && ended).then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "the cluster never recorded the owners' cuts and the hosts' return\n{}\n{}",
            event_lines(&c.pki, c.addr(1))
                .iter()
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            c.logs()
        )
    });
    // Each host shut down once in the outage.
    assert_shut_down_once(&c, 1..=5);
    // The owners' cuts were not repeated by a kill order once the quorum returned.
    for (i, ups) in [(1, "ups1"), (4, "ups4")] {
        let n = c
            .records(i)
            .iter()
            .filter(|r| r["action"] == "killpower" && r["argv"][1] == ups)
            .count();
        assert_eq!(n, 1, "{ups} cut {n} times");
    }
    drop(h);
}

/// Exactly once where it matters: n2's daemon is SIGKILLed in its stage's doshutdown
/// hook (before the point of no return: the shutdown command provably did not start),
/// and in a second outage while its shutdown command runs (after it). A harmless
/// shutdown command in live mode shows what really ran: the first time it runs after
/// the restart, the second time never again.
#[test]
fn a_host_killed_before_its_shutdown_command_runs_it_after_restart_and_never_twice() {
    let _g = serial();
    let mut c = ClusterSpec::new(3, 3)
        .local_thresholds_off()
        .hooks()
        .feeds(&["ups1"])
        .labels(&["core", "apps", "core"])
        .plan(&plan_text(&[
            ("apps", "\"label:apps\"", "on_battery_s = 1", 120),
            ("core", "\"label:core\"", "charge_below = 1", 120),
        ]))
        .start();
    let runs = c.pki.path().join("runs.txt");
    doshutdown_hook(&c, &format!("echo hook >> {}\nsleep 4", runs.display()));
    // n2 in live mode with a harmless shutdown command that takes 4 s.
    c.set_executor(
        2,
        &format!(
            "mode = \"live\"\nshutdown_command = [\"/bin/sh\", \"-c\", \"echo run >> {}; sleep 4\"]",
            runs.display()
        ),
    );
    c.kill(2);
    c.start_node(2);
    c.wait_formed(1, 3, 0, Duration::from_secs(40));
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    let halting = |c: &TestCluster| {
        event_lines(&c.pki, c.addr(1))
            .iter()
            .filter(|l| l.message.starts_with("n2 is halting"))
            .count()
    };

    // Outage 1: killed inside the doshutdown hook.
    c.cli(1, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(40), || {
        (lines() == ["hook"]).then_some(())
    })
    .unwrap_or_else(|| panic!("n2's hook never ran: {:?}\n{}", lines(), c.logs()));
    c.kill(2);
    c.start_node(2);
    wait_for(Duration::from_secs(40), || (halting(&c) == 1).then_some(()))
        .unwrap_or_else(|| panic!("n2 never acknowledged halting\n{}", c.log_of(2)));
    wait_for(Duration::from_secs(10), || {
        lines().iter().any(|l| l == "run").then_some(())
    });
    assert_eq!(lines(), ["hook", "hook", "run"], "rerun after the restart");
    assert!(
        c.log_of(2)
            .contains("interrupted before its shutdown started; running it again"),
        "{}",
        c.log_of(2)
    );

    // Mains return; outage 2: killed while its shutdown command runs.
    c.cli(1, &["sim", "set", "--on-line"]);
    wait_for(Duration::from_secs(30), || {
        event_lines(&c.pki, c.addr(1))
            .iter()
            .any(|l| l.message.contains("Outage 1 ended"))
            .then_some(())
    })
    .expect("outage 1 ends");
    std::fs::write(&runs, "").unwrap();
    c.cli(1, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(40), || {
        (lines() == ["hook", "run"]).then_some(())
    })
    .unwrap_or_else(|| panic!("n2's command never ran: {:?}\n{}", lines(), c.logs()));
    c.kill(2);
    c.start_node(2);
    wait_for(Duration::from_secs(40), || (halting(&c) == 2).then_some(()))
        .unwrap_or_else(|| panic!("n2 never acknowledged halting again\n{}", c.log_of(2)));
    // Longer than the command takes (4 s): it would have run again by then.
    holds_for(
        Duration::from_secs(6),
        "the command never runs twice",
        || {
            (lines() == ["hook", "run"])
                .then_some(())
                .ok_or(format!("{:?}", lines()))
        },
    );
}

/// The UPS owner's own monitor shuts its host down while the outage is not committed
/// yet (n1 cut off from the other voters); once the outage is committed and n1's stage
/// reaches it, the stage does not shut it down a second time.
#[test]
fn the_owners_monitor_and_its_stage_never_both_shut_it_down() {
    let _g = serial();
    let c = ClusterSpec::new(3, 3)
        .local_thresholds_off()
        .policy("timeout = 1\non_battery_delay = 0")
        .node(1, "feeds = [\"ups1\"]")
        .labels(&["core", "other", "other"])
        .plan(&plan_text(&[(
            "core",
            "\"label:core\"",
            "on_battery_s = 1",
            60,
        )]))
        .start_formed();
    c.wait_plan(1);
    c.partition(&[1], &[2, 3]);
    // n1 knows it cannot commit before mains fail.
    wait_status(
        &c.pki,
        c.nodes[0].as_ref().unwrap(),
        Duration::from_secs(30),
        "n1 without a quorum",
        |s| s["cluster"]["writable"] == false,
    );
    c.cli(1, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(30), || {
        (shutdowns(&c, 1) == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("n1's monitor never shut it down\n{}", c.log_of(1)));
    for i in 1..=3 {
        std::fs::write(c.pki.path().join(format!("fault-n{i}")), "").unwrap();
    }
    // The outage commits and n1's stage starts and is acknowledged, without a second
    // shutdown.
    wait_for(Duration::from_secs(60), || {
        event_lines(&c.pki, c.addr(2))
            .iter()
            .any(|l| l.message.starts_with("n1 is halting"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("n1's stage never acknowledged\n{}", c.logs()));
    // n1's stage reached its host and found it already shut down.
    assert!(
        c.nodes[0]
            .as_ref()
            .unwrap()
            .wait_log("already shut down", Duration::from_secs(10)),
        "{}",
        c.log_of(1)
    );
    assert_eq!(shutdowns(&c, 1), 1, "{:?}", c.records(1));
}

/// `upsilon drill` on a live cluster: every stage runs with the hooks told it is a drill
/// (UPSILON_DRILL=1), shutdowns and the kill order are only recorded, nobody is marked
/// halted, and the report names every host's latencies and says the plan fits. A second
/// drill is ended at once by a real power failure, and the real plan takes over.
#[test]
fn a_fire_drill_runs_the_plan_without_shutting_anything_down() {
    let _g = serial();
    let c = ClusterSpec::new(3, 3)
        .local_thresholds_off()
        .hooks()
        .feeds(&["ups1"])
        .labels(&["core", "apps", "core"])
        .every_node("shutdown_s = 30")
        .plan(&plan_text(&[
            ("apps", "\"label:apps\"", "on_battery_s = 60", 30),
            ("core", "\"label:core\"", "charge_below = 10", 30),
        ]))
        .start();
    let seen = c.pki.path().join("drill-env.txt");
    let slow = c.pki.path().join("hook-sleep");
    std::fs::write(&slow, "0").unwrap();
    doshutdown_hook(
        &c,
        &format!(
            "echo \"drill=$UPSILON_DRILL\" >> {}\nsleep \"$(cat {})\"",
            seen.display(),
            slow.display()
        ),
    );
    c.wait_formed(1, 3, 0, Duration::from_secs(40));
    wait_for(Duration::from_secs(15), || {
        let o = c.cli(1, &["plan", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["has_plan"] == true && v["shutdown_times"].as_array()?.len() == 3).then_some(())
    })
    .expect("plan");

    let o = c.cli(2, &["drill", "--ups", "ups1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    assert!(o.status.success(), "{v:#}\n{}", c.logs());
    let report = v["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(report.contains("drill complete"), "{report}");
    assert!(
        report.contains("stage 1 apps starts; hosts: n2"),
        "{report}"
    );
    assert!(
        report.contains("stage 2 core starts; hosts: n1, n3"),
        "{report}"
    );
    for n in ["n1", "n2", "n3"] {
        assert!(
            report.contains(&format!("  {n}: acknowledged in")),
            "{n}: {report}"
        );
    }
    // The owner's 30 s (+10) is the kill order's delay.
    assert!(
        report.contains("kill power ups1 ordered with a 40 s delay"),
        "{report}"
    );
    assert!(report.contains("every host answered"), "{report}");
    assert_eq!(v["fits"], true, "{v:#}");
    // Hooks knew; nothing ran; nobody is halted.
    let env = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(env.lines().count(), 3, "{env}");
    assert!(env.lines().all(|l| l == "drill=1"), "{env}");
    for i in 1..=3 {
        for r in c.records(i) {
            if r["action"] == "shutdown" || r["action"] == "killpower" {
                assert!(
                    r["outcome"].as_str().unwrap().starts_with("drill"),
                    "n{i}: {r}"
                );
                assert_eq!(r["ran"], false);
            }
        }
    }
    let h = event_lines(&c.pki, c.addr(1));
    assert!(!h.iter().any(|l| l.message.contains("is back up")));
    assert!(
        decide_nothing_pending(&c),
        "a drill leaves nothing to power-cycle"
    );

    // A second drill; a real power failure stops it and the real plan starts.
    std::fs::write(&slow, "5").unwrap();
    let o = c.cli(2, &["drill", "--ups", "ups1", "--timeout", "1"]);
    assert!(stdout(&o).contains("still running"), "{}", stdout(&o));
    c.cli(1, &["sim", "set", "--on-battery"]);
    let h = wait_for(Duration::from_secs(30), || {
        let h = event_lines(&c.pki, c.addr(1));
        h.iter()
            .any(|l| l.message.contains("Outage") && l.message.contains("began"))
            .then_some(h)
    })
    .unwrap_or_else(|| panic!("no real outage after the drill\n{}", c.logs()));
    let ended = h
        .iter()
        .position(|l| l.message.contains("ended: a real power failure"))
        .expect("the drill ended by the real failure");
    let began = h
        .iter()
        .position(|l| l.message.contains("Outage") && l.message.contains("began"))
        .unwrap();
    assert!(ended < began);
}

/// `upsilon plan` has nothing to do right after a drill.
fn decide_nothing_pending(c: &TestCluster) -> bool {
    let o = c.cli(1, &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["now"].as_array().is_some_and(|n| {
        n.iter()
            .all(|l| !l.as_str().unwrap_or("").contains("PowerCycle"))
    })
}

/// Node `i`'s executor records its UPS's kill power within `cut`, then its own shutdown
/// within `halt`, in that order.
fn owner_cuts_then_halts(c: &TestCluster, i: usize, cut: Duration, halt: Duration) {
    let record = |action: &str| c.records(i).into_iter().find(|r| r["action"] == action);
    let kill = wait_for(cut, || record("killpower"))
        .unwrap_or_else(|| panic!("n{i} never cut its UPS\n{}", c.logs()));
    let down = wait_for(halt, || record("shutdown"))
        .unwrap_or_else(|| panic!("n{i} never halted after its kill power\n{}", c.logs()));
    assert!(
        kill["at_unix_ms"].as_i64() <= down["at_unix_ms"].as_i64(),
        "n{i} halted before cutting its UPS: {kill} {down}"
    );
}

/// A UPS owner listed in a middle stage: its halt waits for its kill power, no stage
/// waits for it (the next starts on its own trigger, not after its ack timeout), and
/// every tool says so. `plan check`'s predicted stage starts match the committed ones
/// within 2 s.
#[test]
fn an_owner_in_a_middle_stage_halts_after_its_kill_power_and_no_stage_waits_for_it() {
    let _g = serial();
    let c = ClusterSpec::new(4, 3)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .labels(&["owner", "core", "core", "apps"])
        .shutdown_s(&[3, 2, 2, 2])
        .executor("record_halt = \"report\"\nrecord_halt_after_ms = 2000")
        .start_formed();
    c.apply_plan_until_accepted(
        "silence_s = 3\nkill_power_delay_s = 5\nruntime_floor_s = 0\n\n\
         [[stage]]\nname = \"apps\"\nhosts = [\"label:apps\"]\ntrigger = { on_battery_s = 2 }\nack_timeout_s = 60\n\n\
         [[stage]]\nname = \"owner\"\nhosts = [\"label:owner\"]\ntrigger = { on_battery_s = 3 }\nack_timeout_s = 60\n\n\
         [[stage]]\nname = \"core\"\nhosts = [\"label:core\"]\ntrigger = { on_battery_s = 6 }\nack_timeout_s = 60\n",
        "middle.toml",
    );
    // Every tool states the rule before the outage.
    let text = wait_for(Duration::from_secs(15), || {
        let text = stdout(&c.cli(2, &["plan"]));
        text.contains("n1 halts after kill power of ups1")
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("`upsilon plan` never said how n1 halts\n{}", c.logs()));
    assert!(text.contains("no stage waits for it"), "{text}");
    let check = wait_for(Duration::from_secs(15), || {
        let o = c.cli(2, &["plan", "check"]);
        let text = stdout(&o);
        (o.status.success() && !text.contains("(yet)")).then_some(text)
    })
    .unwrap_or_else(|| panic!("plan check never fitted\n{}", c.logs()));
    assert!(
        check.contains("n1 halts after kill power of ups1"),
        "{check}"
    );
    let predicted = predicted_stage_starts(&check);
    assert_eq!(predicted.len(), 3, "{check}");
    let o = c.cli(2, &["plan", "check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan check --json is not JSON ({e}): {}", stdout(&o)));
    assert_eq!(v["fits"], true, "{v:#}");

    // An order for a UPS another node drives reaches that node; one for a UPS nobody
    // drives is refused, naming what there is.
    let o = c.cli(2, &["sim", "set", "--ups", "nope", "--on-battery"]);
    assert!(
        !o.status.success() && stderr(&o).contains("n2 drives no simulated UPS named nope"),
        "{}",
        stderr(&o)
    );
    let o = c.cli(2, &["sim", "set", "--ups", "ups1", "--on-battery"]);
    assert!(
        o.status.success() && stdout(&o).contains("which drives it"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // While its stage runs, `upsilon status` says how n1 halts, in 80 columns.
    let screen = wait_for(Duration::from_secs(20), || {
        let text = stdout(&c.cli(2, &["status"]));
        text.lines()
            .any(|l| l.starts_with("n1 ") && l.contains("halts after kill of ups1"))
            .then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "`upsilon status` never showed n1's deferred halt\n{}",
            c.logs()
        )
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    // n1 cuts ups1 once n2, n3 and n4 said "halted", then halts.
    owner_cuts_then_halts(&c, 1, Duration::from_secs(90), Duration::from_secs(30));
    let h = event_lines(&c.pki, c.addr(2));
    let committed = assert_stages_as_predicted(&h, &check);
    // The core stage did not wait out the owner's 60 s ack timeout.
    assert!(committed[2] < 20.0, "{committed:?}");
}

/// The first stage halts two of the three voters, the UPS owner (the third) is in the
/// last: `plan apply` accepts it and `plan check` says how it ends (the owner cuts
/// alone, then halts), and so it goes. A plan that would leave a host to a stage
/// nothing can start any more is refused, naming it.
#[test]
fn a_first_stage_that_halts_two_of_three_voters_ends_with_the_owner_alone() {
    let _g = serial();
    let exit = "record_halt = \"exit\"\nrecord_halt_after_ms = 1000";
    let c = ClusterSpec::new(4, 3)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .labels(&["owner", "first", "first", "later"])
        .shutdown_s(&[2, 1, 1, 1])
        .executor_of(1, "record_halt = \"none\"")
        .executor_of(2, exit)
        .executor_of(3, exit)
        .executor_of(4, exit)
        .start_formed();
    let stranded = c.pki.path().join("stranded.toml");
    let head = "silence_s = 3\nkill_power_delay_s = 5\nruntime_floor_s = 0\n\n\
         [[stage]]\nname = \"first\"\nhosts = [\"label:first\"]\ntrigger = { on_battery_s = 1 }\nack_timeout_s = 30\n\n";
    std::fs::write(
        &stranded,
        format!("{head}[[stage]]\nname = \"last\"\nhosts = [\"label:owner\", \"label:later\"]\ntrigger = {{ on_battery_s = 3 }}\nack_timeout_s = 30\n"),
    )
    .unwrap();
    let refused = wait_for(Duration::from_secs(20), || {
        let o = c.cli(1, &["plan", "apply", stranded.to_str().unwrap()]);
        let e = stderr(&o);
        e.contains("would never start").then_some(e)
    })
    .unwrap_or_else(|| panic!("the stranding plan was not refused\n{}", c.logs()));
    assert!(
        refused.contains("stage 1 (first) halts n2, n3 (2 of 3 voters)")
            && refused.contains("stage 2 (last) would never start for n4")
            && refused.contains("Move n4 into stage 1"),
        "{refused}"
    );
    let plan = c.pki.path().join("first.toml");
    std::fs::write(
        &plan,
        format!("{head}[[stage]]\nname = \"last\"\nhosts = [\"label:owner\"]\ntrigger = {{ on_battery_s = 3 }}\nack_timeout_s = 30\n")
            .replace("[\"label:first\"]", "[\"label:first\", \"label:later\"]"),
    )
    .unwrap();
    let o = c.cli(1, &["plan", "apply", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_says(&stderr(&o), "each UPS owner finishes alone");
    // --json prints JSON alone, the warnings in it.
    let o = c.cli(1, &["plan", "apply", plan.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan apply --json is not JSON ({e}): {}", stdout(&o)));
    assert!(
        v["warnings"].to_string().contains("finishes alone"),
        "{v:#}"
    );
    let check = stdout(&c.cli(1, &["plan", "check"]));
    assert!(
        check.contains("UPS ups1: kill power ordered by n1 alone (no quorum)"),
        "{check}"
    );
    assert!(check.contains("quorum lost at +"), "{check}");

    c.cli(1, &["sim", "set", "--on-battery"]);
    // n2, n3 and n4 halt in the first stage (their daemons exit); n1, left without a
    // quorum, cuts ups1 alone once they are silent, then halts.
    owner_cuts_then_halts(&c, 1, Duration::from_secs(90), Duration::from_secs(60));
}
