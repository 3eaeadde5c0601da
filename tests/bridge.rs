//! `upsilon-bridge` with the real thing: Debian's unmodified apcupsd as `UPSTYPE net`
//! clients of the bridge (their own configs, a recording `apccontrol` whose
//! `doshutdown` stops the daemon as a halt would, loopback only) and its `apcaccess`.
//! Two legacy hosts in two stages shut down in stage order, the second stage waiting
//! for the first host's "halted"; a restarted bridge resumes from the replicated
//! record. Failure paths: a host that never polls, the followed node dying, the bridge
//! losing the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use upsilon_tests::apcupsd::{RealApcupsd, apcaccess, get, number, wait_nis_status};
use upsilon_tests::*;

fn loopback() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// The cluster's events as (at ms, message), oldest first.
fn events(c: &TestCluster, i: usize) -> Vec<(i64, String)> {
    event_lines(&c.pki, c.addr(i))
        .into_iter()
        .map(|e| (e.at_ms, e.message))
        .collect()
}

/// When the first event containing `text` happened, waiting up to `secs` for it.
fn event_at(c: &TestCluster, text: &str, secs: u64, why: impl Fn() -> String) -> i64 {
    wait_for(Duration::from_secs(secs), || {
        events(c, 1)
            .into_iter()
            .find(|(_, m)| m.contains(text))
            .map(|(t, _)| t)
    })
    .unwrap_or_else(|| {
        let h: Vec<String> = events(c, 1).into_iter().map(|(_, m)| m).collect();
        panic!("no event {text:?}\n{}\n{}", h.join("\n"), why())
    })
}

fn legacy<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["legacy_hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no legacy host {name} in {v}"))
}

fn has_legacy(v: &serde_json::Value, name: &str, state: &str) -> bool {
    v["legacy_hosts"]
        .as_array()
        .is_some_and(|a| a.iter().any(|h| h["name"] == name && h["state"] == state))
}

fn apply_plan(c: &TestCluster, text: &str) {
    let path = c.pki.path().join("plan.toml");
    std::fs::write(&path, text).unwrap();
    let o = c.cli(1, &["plan", "apply", path.to_str().unwrap()]);
    assert!(o.status.success(), "plan apply: {}", stderr(&o));
}

/// The first `apccontrol` call named `event`, waiting up to `secs`.
fn call_at(a: &RealApcupsd, event: &str, secs: u64) -> Option<i64> {
    wait_for(Duration::from_secs(secs), || {
        a.apccontrol_calls()
            .into_iter()
            .find(|(_, e)| e == event)
            .map(|(t, _)| t)
    })
}

#[test]
fn legacy_apcupsd_clients_shut_down_at_their_stage_through_the_bridge() {
    let _g = serial();
    let c = ClusterSpec::new(3, 3).start_formed();
    let (nis, own1, own2) = (loopback(), loopback(), loopback());
    let mut bridge = c.bridge(
        &[1, 2, 3],
        "bridge1",
        "halt_silence_s = 4",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"legacy1\"\nlisten = \"{own1}\"\nlabels = [\"early\"]\nfeeds = [\"ups1\"]\n\n[[host]]\nname = \"legacy2\"\nlisten = \"{own2}\"\nfeeds = [\"ups1\"]\n"
        ),
    );
    let node = c.nodes[0].as_ref().unwrap();
    let polltime = 2;
    let mut old1 = RealApcupsd::net_client(&c.pki.path().join("old1"), own1, polltime);
    let old2 = RealApcupsd::net_client(&c.pki.path().join("old2"), own2, polltime);
    let v = wait_status(
        &c.pki,
        node,
        Duration::from_secs(30),
        "both legacy hosts",
        |v| has_legacy(v, "legacy1", "polling") && has_legacy(v, "legacy2", "polling"),
    );
    let l1 = legacy(&v, "legacy1");
    assert_eq!(l1["bridge"], "bridge1");
    assert_eq!(l1["stage"], "");
    assert_eq!(l1["served"]["name"], "ups1");

    // apcaccess against the bridge (a peer that is no declared host): the cluster's
    // UPS, every field parsed, values as `upsilon status --json` has them.
    let recs = wait_nis_status(nis, "ONLINE", 20, || bridge.log_text());
    let v = status_json(&c.pki, node.addr);
    let u = &v["ups"][0];
    assert_eq!(get(&recs, "UPSNAME"), "ups1");
    assert_eq!(Some(number(&recs, "BCHARGE")), u["charge_percent"].as_f64());
    assert_eq!(Some(number(&recs, "LINEV")), u["line_voltage"].as_f64());
    assert_eq!(get(&recs, "MODEL"), u["model"].as_str().unwrap());
    // A legacy host's own address serves its supply, under its main feed's name.
    let r1 = apcaccess(own1).unwrap();
    assert_eq!(get(&r1, "UPSNAME"), "ups1");
    assert_eq!(get(&r1, "STATUS"), "ONLINE");

    apply_plan(
        &c,
        &plan_text(&[
            ("early", "\"label:early\"", "on_battery_s = 1", 60),
            ("late", "\"legacy2\"", "on_battery_s = 1", 60),
        ]),
    );
    let o = c.cli(1, &["nodes"]);
    let t = stdout(&o);
    assert!(
        t.contains("LEGACY HOST") && t.contains("legacy1") && t.contains("1 (early)"),
        "{t}"
    );

    c.cli(1, &["sim", "set", "--on-battery"]);
    let stage1 = event_at(&c, "Stage 1 (early) started", 30, || bridge.log_text());
    let down1 = call_at(&old1, "doshutdown", 30).unwrap_or_else(|| {
        panic!(
            "legacy1 never shut down:\n{}\n{}",
            old1.log(),
            bridge.log_text()
        )
    });
    assert!(down1 >= stage1, "legacy1 shut down before its stage");
    // The later host sees the outage, never the shutdown bits, while stage 1 runs.
    assert!(call_at(&old2, "onbattery", 10).is_some(), "{}", old2.log());
    assert!(
        !old2
            .apccontrol_calls()
            .iter()
            .any(|(_, e)| e == "doshutdown" || e == "remotedown"),
        "legacy2 shut down in stage 1: {:?}",
        old2.apccontrol_calls()
    );
    println!(
        "BENCH stage start -> legacy doshutdown (POLLTIME {polltime} s, 1 s polls on battery): {} ms",
        down1 - stage1
    );

    // The bridge acknowledges legacy1 through the log: told, then halted once its
    // apcupsd (stopped by doshutdown) has been silent for halt_silence_s; only then
    // does stage 2 start.
    let told1 = event_at(&c, "legacy1 is shutting down", 10, || bridge.log_text());
    let halted1 = event_at(&c, "legacy1 is halting", 30, || bridge.log_text());
    let stage2 = event_at(&c, "Stage 2 (late) started", 30, || bridge.log_text());
    assert!(stage1 <= told1 && told1 < halted1 && halted1 <= stage2);
    assert!(old1.exited(), "legacy1's apcupsd still runs");

    // The bridge dies right after telling legacy2; a new one resumes from the record:
    // it does not tell again, and still declares legacy2 halted.
    event_at(&c, "legacy2 is shutting down", 30, || bridge.log_text());
    bridge.kill();
    let down2 = call_at(&old2, "doshutdown", 30).expect("legacy2 shut down");
    assert!(down2 >= stage2, "legacy2 shut down before its stage");
    bridge.restart();
    event_at(&c, "legacy2 is halting", 40, || bridge.log_text());
    let h = events(&c, 1);
    for name in ["legacy1", "legacy2"] {
        let told = h
            .iter()
            .filter(|(_, m)| m.contains(&format!("{name} is shutting down")))
            .count();
        assert_eq!(told, 1, "{name} told once: {h:?}");
    }
    let v = wait_status(&c.pki, node, Duration::from_secs(10), "both halted", |v| {
        has_legacy(v, "legacy1", "halted") && has_legacy(v, "legacy2", "halted")
    });
    assert_eq!(legacy(&v, "legacy2")["shutting_down"], true);
    let o = c.cli(2, &["status"]);
    assert!(stdout(&o).contains("halted"), "{}", stdout(&o));
    drop(old2);
}

#[test]
fn a_silent_host_is_not_waited_for_and_a_bridge_without_the_cluster_serves_commlost() {
    let _g = serial();
    let mut c = ClusterSpec::new(3, 3).start_formed();
    let nis = loopback();
    // It follows n2 first; `byaddr` is known by the address its requests come from.
    let bridge = c.bridge(
        &[2, 1, 3],
        "bridge1",
        "silent_after_s = 3\nhalt_silence_s = 3\ncluster_timeout_s = 3",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"ghost\"\naddresses = [\"127.0.0.9\"]\nlabels = [\"early\"]\nfeeds = [\"ups1\"]\n\n[[host]]\nname = \"byaddr\"\naddresses = [\"127.0.0.8\"]\nfeeds = [\"ups1\"]\n"
        ),
    );
    let node = c.nodes[0].as_ref().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A status request from 127.0.0.8, as apcaccess would send it.
    let from_byaddr = || -> String {
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.8:0".parse().unwrap()).unwrap();
            let mut conn = s.connect(nis).await.unwrap();
            use upsilon_legacy_bridge::nis;
            nis::write_message(&mut conn, b"status").await.unwrap();
            let msgs = nis::read_reply(&mut conn, 64 * 1024, Duration::from_secs(5))
                .await
                .unwrap();
            msgs.iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect()
        })
    };
    let status_of = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("STATUS "))
            .map(|l| l[11..].trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        status_of(
            &wait_for(Duration::from_secs(20), || {
                let t = from_byaddr();
                (status_of(&t) == "ONLINE").then_some(t)
            })
            .unwrap_or_else(|| panic!("byaddr never read ONLINE: {}", bridge.log_text()))
        ),
        "ONLINE"
    );
    // ghost never polls: silent, and the screen says it never connected; byaddr polls.
    let v = wait_status(&c.pki, node, Duration::from_secs(20), "ghost silent", |v| {
        has_legacy(v, "ghost", "silent")
            && has_legacy(v, "byaddr", "polling")
            && v["legacy_hosts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|h| h["name"] == "byaddr" && h["never_polled"] == false)
            })
    });
    assert!(
        v["legacy_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "ghost" && h["never_polled"] == true),
        "{v:#}"
    );
    let screen = stdout(&c.cli(1, &["status"]));
    let row = |name: &str| {
        screen
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{screen}"))
            .to_string()
    };
    assert!(row("ghost").contains("never connected"), "{screen}");
    assert!(row("byaddr").contains("polling"), "{screen}");

    apply_plan(
        &c,
        &plan_text(&[
            ("early", "\"label:early\"", "on_battery_s = 1", 5),
            ("late", "\"byaddr\"", "on_battery_s = 1", 60),
        ]),
    );
    c.cli(1, &["sim", "set", "--on-battery"]);
    let stage1 = event_at(&c, "Stage 1 (early) started", 30, || bridge.log_text());
    // Nobody fetches ghost's bits: the stage's 5 s ack timeout moves the plan on.
    let stage2 = event_at(&c, "Stage 2 (late) started", 30, || bridge.log_text());
    assert!(
        stage2 - stage1 >= 5000,
        "stage 2 started {} ms after stage 1",
        stage2 - stage1
    );
    // The bridge serves it once its picture of the cluster has the stage (it follows
    // n2, which may apply the commit a moment after n1 reported it).
    wait_for(Duration::from_secs(10), || {
        (status_of(&from_byaddr()) == "SHUTTING DOWN").then_some(())
    })
    .unwrap_or_else(|| panic!("byaddr never read SHUTTING DOWN: {}", from_byaddr()));
    assert!(
        !events(&c, 1).iter().any(|(_, m)| m.contains("ghost is")),
        "ghost acked"
    );

    // The followed node dies: the bridge moves to the next one (n1) and serves on,
    // past its 3 s cluster timeout.
    c.kill(2);
    wait_for(Duration::from_secs(20), || {
        let log = bridge.log_text();
        let lost = log.find("lost the cluster through 127.0.0.2")?;
        log[lost..]
            .contains("following the cluster through 127.0.0.1")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no failover to n1:\n{}", bridge.log_text()));
    holds_for(Duration::from_secs(4), "serving through n1", || {
        let recs = apcaccess(nis)?;
        (get(&recs, "STATUS") == "ONBATT" && get(&recs, "UPSNAME") == "ups1")
            .then_some(())
            .ok_or(format!("{recs:?}"))
    });

    // Quorum lost (n3 gone too) and then every node: COMMLOST, never a healthy UPS.
    c.kill(3);
    let recs = wait_nis_status(nis, "COMMLOST", 30, || bridge.log_text());
    assert_eq!(get(&recs, "UPSNAME"), "ups1");
    c.kill(1);
    // Its stage started: SHUTTING DOWN wins over COMMLOST in STATUS (as apcupsd's),
    // and STATFLAG carries both.
    let statflag = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("STATFLAG "))
            .and_then(|l| u32::from_str_radix(l[11..].trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    use upsilon_core::reading::statflag::{COMMLOST, ONBATT, SHUTDOWN};
    let t = wait_for(Duration::from_secs(20), || {
        let t = from_byaddr();
        (statflag(&t) & COMMLOST != 0).then_some(t)
    })
    .unwrap_or_else(|| panic!("byaddr never read COMMLOST:\n{}", bridge.log_text()));
    assert_eq!(statflag(&t) & (ONBATT | SHUTDOWN), ONBATT | SHUTDOWN, "{t}");
    assert_eq!(status_of(&t), "SHUTTING DOWN", "{t}");
}

/// The bridge runs on n2 (`runs_on = "n2"`), which the plan halts first, while its
/// legacy host is in the last stage: n2's halt waits until legacy1 is down (told by
/// the bridge, then silent), no stage waits for n2, ups1 cuts only after n2 is down,
/// and `plan`, `plan check` and `status` say so. Predicted stage starts match the
/// committed ones within 2 s. A `runs_on` naming no node is refused by name and the
/// hosts are declared without it.
#[test]
fn a_bridge_host_in_the_first_stage_halts_after_its_legacy_host_in_the_last() {
    let _g = serial();
    let c = ClusterSpec::new(3, 3)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .every_node("shutdown_s = 2")
        .executor("record_halt = \"report\"\nrecord_halt_after_ms = 2000")
        .start_formed();
    let (nis, own1) = (loopback(), loopback());
    let typo = c.bridge(
        &[1, 2, 3],
        "bridge2",
        "runs_on = \"n9\"",
        &format!(
            "[nis]\nlisten = \"{}\"\n\n[[host]]\nname = \"other\"\naddresses = [\"127.0.0.7\"]\nfeeds = [\"ups1\"]\n",
            loopback()
        ),
    );
    let bridge = c.bridge(
        &[1, 2, 3],
        "bridge1",
        "halt_silence_s = 3\nruns_on = \"n2\"",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"legacy1\"\nlisten = \"{own1}\"\nfeeds = [\"ups1\"]\nshutdown_s = 5\n"
        ),
    );
    let old1 = RealApcupsd::net_client(&c.pki.path().join("old1"), own1, 2);
    let node = c.nodes[0].as_ref().unwrap();
    wait_status(
        &c.pki,
        node,
        Duration::from_secs(30),
        "legacy1 polling",
        |v| has_legacy(v, "legacy1", "polling"),
    );
    let refused = wait_for(Duration::from_secs(20), || {
        let t = typo.log_text();
        t.contains("no node of the cluster has that name")
            .then_some(t)
    })
    .unwrap_or_else(|| panic!("runs_on = n9 was not refused: {}", typo.log_text()));
    assert!(
        refused.contains("runs_on = \"n9\"") && refused.contains("its nodes: n1, n2, n3"),
        "{refused}"
    );
    drop(typo);

    apply_plan(
        &c,
        "silence_s = 3\nkill_power_delay_s = 5\nruntime_floor_s = 0\n\n\
         [[stage]]\nname = \"first\"\nhosts = [\"n2\"]\ntrigger = { on_battery_s = 1 }\nack_timeout_s = 60\n\n\
         [[stage]]\nname = \"last\"\nhosts = [\"legacy1\", \"n1\", \"n3\"]\ntrigger = { on_battery_s = 3 }\nack_timeout_s = 60\n",
    );
    let rule = "n2 halts after its bridge's hosts legacy1 are down";
    let text = stdout(&c.cli(2, &["plan"]));
    assert!(text.contains(rule), "{text}");
    let check = wait_for(Duration::from_secs(15), || {
        let o = c.cli(2, &["plan", "check"]);
        let text = stdout(&o);
        (o.status.success() && !text.contains("(yet)")).then_some(text)
    })
    .unwrap_or_else(|| panic!("plan check never fitted\n{}", c.logs()));
    assert!(check.contains(rule), "{check}");
    let predicted = predicted_stage_starts(&check);
    assert_eq!(predicted.len(), 2, "{check}");

    c.cli(1, &["sim", "set", "--on-battery"]);
    // While legacy1's stage runs, n2 is up and the screen says what it waits for.
    let screen = wait_for(Duration::from_secs(30), || {
        let text = stdout(&c.cli(1, &["status"]));
        text.lines()
            .any(|l| l.starts_with("n2 ") && l.contains("halts after legacy1"))
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("status never showed n2's deferred halt\n{}", c.logs()));
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    let legacy_down = event_at(&c, "legacy1 is halting", 60, || bridge.log_text());
    let n2_halting = event_at(&c, "n2 is halting", 30, || c.logs());
    assert!(
        legacy_down <= n2_halting,
        "n2 halted before legacy1 was down"
    );
    assert!(call_at(&old1, "doshutdown", 1).is_some(), "{}", old1.log());
    let kill = wait_for(Duration::from_secs(60), || {
        c.records(1)
            .into_iter()
            .find(|r| r["action"] == "killpower")
    })
    .unwrap_or_else(|| panic!("n1 never cut ups1\n{}", c.logs()));
    let n2_halted = event_at(&c, "n2 halted (", 10, || c.logs());
    assert!(
        kill["at_unix_ms"].as_i64().unwrap() >= n2_halted,
        "ups1 cut before n2 was down: {kill}"
    );
    let h = event_lines(&c.pki, c.addr(1));
    assert_stages_as_predicted(&h, &check);
    // Stage 2 did not wait for n2.
    let stage2 = event_at(&c, "Stage 2 (last) started", 1, || c.logs());
    assert!(stage2 < n2_halting, "stage 2 waited for n2");
}

/// One cluster UPS on battery at 3 % with its low-battery signal on. The bridge's NIS for
/// a legacy host tells what the owner's own NIS tells: STATUS ONBATT LOWBATT, the same
/// STATFLAG and the same fields (real `apcaccess` on both), and NUT's `apcupsd-ups` +
/// `upsmon` secondary reading the bridge sees OB LB and runs its SHUTDOWNCMD, as the one
/// reading the node does, though no stage told it to.
#[test]
fn the_bridge_tells_a_legacy_host_what_the_owner_tells_its_own() {
    let _g = serial();
    let c = ClusterSpec::new(3, 3).local_thresholds_off().start_formed();
    let (nis, own) = (loopback(), loopback());
    let bridge = c.bridge(
        &[1, 2, 3],
        "bridge1",
        "",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"nuthost\"\nlisten = \"{own}\"\nfeeds = [\"ups1\"]\n"
        ),
    );
    let node = c.nodes[0].as_ref().unwrap();
    wait_status(
        &c.pki,
        node,
        Duration::from_secs(30),
        "nuthost declared",
        |v| {
            v["legacy_hosts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|h| h["name"] == "nuthost"))
        },
    );
    // No stage holds it (the low-battery signal starts every stage at once, as an
    // emergency): only the UPS's own truth may shut it down.
    apply_plan(
        &c,
        &plan_text(&[("late", "\"n3\"", "on_battery_s = 3600", 60)]),
    );
    wait_nis_status(own, "ONLINE", 30, || bridge.log_text());
    let by_node = upsilon_tests::nut::NutChain::start(&c.pki.path().join("nut-node"), node.nis);
    let by_bridge = upsilon_tests::nut::NutChain::start(&c.pki.path().join("nut-bridge"), own);
    for chain in [&by_node, &by_bridge] {
        wait_for(Duration::from_secs(30), || {
            (chain.var("ups.status").as_deref() == Some("OL")).then_some(())
        })
        .unwrap_or_else(|| panic!("NUT never read OL: {:?}\n{}", chain.upsc(), chain.logs()));
    }

    let o = c.cli(
        1,
        &[
            "sim",
            "set",
            "--on-battery",
            "--charge",
            "3",
            "--low-battery",
            "on",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mine = wait_nis_status(node.nis, "ONBATT LOWBATT", 30, || c.logs());
    let told = wait_nis_status(own, "ONBATT LOWBATT", 30, || bridge.log_text());
    // Every field the node serves, the bridge serves, with the same value; what may
    // differ is when and by whom it was said, and how the UPS is reached.
    let keys = |r: &[(String, String)]| r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&mine),
        keys(&told),
        "node:\n{mine:#?}\nbridge:\n{told:#?}"
    );
    // APC carries the record's length (hostname and driver differ); charge, runtime
    // and time on battery move between the two reads.
    let own_only = [
        "APC",
        "DATE",
        "HOSTNAME",
        "STARTTIME",
        "END APC",
        "CABLE",
        "DRIVER",
        "TONBATT",
        "TIMELEFT",
        "BCHARGE",
    ];
    let differ: Vec<String> = mine
        .iter()
        .zip(&told)
        .filter(|((k, a), (_, b))| !own_only.contains(&k.as_str()) && a != b)
        .map(|((k, a), (_, b))| format!("{k}: node {a:?}, bridge {b:?}"))
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
    assert_eq!(get(&told, "STATFLAG"), get(&mine, "STATFLAG"));
    assert!((number(&told, "BCHARGE") - number(&mine, "BCHARGE")).abs() <= 1.0);

    // NUT on both: OB LB, and upsmon's SHUTDOWNCMD.
    for (name, chain) in [("node", &by_node), ("bridge", &by_bridge)] {
        wait_for(Duration::from_secs(30), || {
            let status = chain.var("ups.status")?;
            (status.contains("OB") && status.contains("LB")).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "NUT reading the {name} never saw OB LB: {:?}\n{}",
                chain.upsc(),
                chain.logs()
            )
        });
        wait_for(Duration::from_secs(30), || chain.shut_down().then_some(())).unwrap_or_else(
            || {
                panic!(
                    "upsmon reading the {name} never shut down: {:?}\n{}",
                    chain.upsc(),
                    chain.logs()
                )
            },
        );
    }
    // Not by a stage: none holds it.
    let v = status_json(&c.pki, node.addr);
    assert_eq!(legacy(&v, "nuthost")["shutting_down"], false, "{v:#}");
}
