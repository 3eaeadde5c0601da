//! One real `upsilond` process and the real `upsilon` CLI over mutual TLS on loopback:
//! status, a simulated outage through to the recorded shutdown, events file, hooks,
//! watch, config checking, and the demo.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use upsilon_tests::*;

const SIM_UPS: &str = "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\npoll_interval_ms = 200\n";

#[test]
fn status_json_across_processes() {
    let pki = TestPki::new();
    let node = NodeProc::start(&pki, SIM_UPS);
    let v = wait_for(Duration::from_secs(10), || {
        let v = status_json(&pki, node.addr);
        (v["ups"][0]["status"] == "ONLINE").then_some(v)
    })
    .expect("UPS reported ONLINE");
    assert_eq!(v["node"], "node1");
    assert_eq!(v["ups"][0]["name"], "ups1");
    assert_eq!(v["ups"][0]["charge_percent"], 100.0);
    assert_eq!(v["ups"][0]["statflag"], "0x05000008");
    assert_eq!(v["ups"][0]["driver"], "sim");
    assert_eq!(v["nodes"][0]["name"], "node1");
    assert_eq!(v["pending"]["kind"], "none");
    assert_eq!(v["pending"]["executor_mode"], "record");
    assert_eq!(v["policy"]["battery_level_percent"], 10);

    // The human table shows the same.
    let o = operator(&pki, &node, &["status"]);
    let table = stdout(&o);
    assert!(table.contains("ups1  ONLINE"), "{table}");
    assert!(table.contains("PENDING ACTION: NONE"), "{table}");
}

#[test]
fn outage_to_recorded_shutdown_with_events_file_and_hooks() {
    let pki = TestPki::new();
    let hooks = pki.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let calls = pki.path().join("hook-calls");
    for ev in ["powerout", "onbattery", "loadlimit", "doshutdown"] {
        let p = hooks.join(ev);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{ev} $*\" >> '{}'\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let extra = format!(
        "{SIM_UPS}\n[policy]\nbattery_level = 50\nminutes = 0\non_battery_delay = 1\n\n[events]\nfile = \"events\"\n\n[hooks]\nscript_dir = \"hooks\"\n\n[executor]\nmode = \"record\"\nrecord_file = \"record.jsonl\"\nshutdown_command = [\"/bin/sh\", \"-c\", \"touch {}\"]\n",
        pki.path().join("HALTED").display()
    );
    let node = NodeProc::start(&pki, &extra);
    wait_ups_status(&pki, &node, "ONLINE", 10);

    let o = upsilon(
        &pki,
        node.addr,
        Some("operator"),
        &[
            "sim",
            "set",
            "--on-battery",
            "--charge",
            "60",
            "--drain",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ups1: on battery"), "{}", stdout(&o));

    let v = wait_for(Duration::from_secs(30), || {
        let v = status_json(&pki, node.addr);
        (v["pending"]["kind"] == "shutting-down" && v["pending"]["shutdown_handled"] == true)
            .then_some(v)
    })
    .expect("shutdown decided and recorded");
    assert_eq!(v["pending"]["reason"], "loadlimit");
    assert_eq!(v["ups"][0]["status"], "SHUTTING DOWN");
    assert!(
        !pki.path().join("HALTED").exists(),
        "record mode must not run the shutdown command"
    );

    // Events through the API, in apcupsd's order.
    let o = operator(&pki, &node, &["events", "--json"]);
    let names: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|n| n != "notice")
        .collect();
    assert_eq!(names, ["powerout", "onbattery", "loadlimit", "doshutdown"]);

    // The events file, in apcupsd 3.14's format.
    let text = std::fs::read_to_string(pki.path().join("events")).unwrap();
    let msgs: Vec<&str> = text.lines().map(|l| &l[27..]).collect();
    assert_eq!(
        &msgs[1..],
        [
            "Power failure.",
            "Running on UPS batteries.",
            "Battery charge below low limit.",
            "Initiating system shutdown!"
        ],
        "{text}"
    );
    for l in text.lines() {
        let b = l.as_bytes();
        assert!(
            b.len() > 27 && b[4] == b'-' && b[10] == b' ' && b[19] == b' ' && &l[25..27] == "  ",
            "{l:?}"
        );
        assert!(b[20] == b'+' || b[20] == b'-', "{l:?}");
    }

    // Hooks ran with apccontrol's arguments; the shutdown command was only recorded.
    let calls = wait_for(Duration::from_secs(5), || {
        let c = std::fs::read_to_string(&calls).unwrap_or_default();
        c.contains("doshutdown").then_some(c)
    })
    .expect("doshutdown hook ran");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "powerout ups1 1 1",
            "onbattery ups1 1 1",
            "loadlimit ups1 1 1",
            "doshutdown ups1 1 1"
        ]
    );
    let rec = std::fs::read_to_string(pki.path().join("record.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(rec.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "shutdown");
    assert_eq!(last["ran"], false);

    // Mains return does not undo the latched shutdown (apcupsd 3.14).
    operator(&pki, &node, &["sim", "set", "--on-line"]);
    // Once the node saw mains back (its status says SHUTTING DOWN, on line).
    let v = wait_status(&pki, &node, Duration::from_secs(10), "mains back", |v| {
        ups_of(v)["flags"]["online"] == true
    });
    assert_eq!(v["pending"]["kind"], "shutting-down", "{v}");
}

#[test]
fn hook_exit_99_skips_the_shutdown_command() {
    let pki = TestPki::new();
    let hooks = pki.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let p = hooks.join("doshutdown");
    std::fs::write(&p, "#!/bin/sh\nexit 99\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let extra =
        format!("{SIM_UPS}\n[policy]\non_battery_delay = 0\n\n[hooks]\nscript_dir = \"hooks\"\n");
    let node = NodeProc::start(&pki, &extra);
    wait_ups_status(&pki, &node, "ONLINE", 10);
    operator(
        &pki,
        &node,
        &["sim", "set", "--on-battery", "--low-battery", "on"],
    );
    let v = wait_for(Duration::from_secs(20), || {
        let v = status_json(&pki, node.addr);
        (v["pending"]["shutdown_handled"] == true).then_some(v)
    })
    .expect("shutdown handled");
    assert_eq!(v["pending"]["reason"], "failing");
    let cmds = v["pending"]["commands"].to_string();
    assert!(cmds.contains("skipped: a hook exited 99"), "{cmds}");
}

/// `upsilon sim set ARGS` as the operator, then the node's status once its UPS reads
/// `status` (10 s at most).
fn sim_until(pki: &TestPki, node: &NodeProc, args: &[&str], status: &str) -> serde_json::Value {
    let set: Vec<&str> = ["sim", "set"].iter().chain(args).copied().collect();
    upsilon(pki, node.addr, Some("operator"), &set);
    wait_for(Duration::from_secs(10), || {
        let v = status_json(pki, node.addr);
        (v["ups"][0]["status"] == status).then_some(v)
    })
    .unwrap_or_else(|| panic!("the UPS never read {status} after sim set {args:?}"))
}

#[test]
fn comm_loss_on_battery_shuts_down_after_dead_time_and_on_mains_does_not() {
    let pki = TestPki::new();
    let extra = format!("{SIM_UPS}\n[policy]\ndead_time = 2\non_battery_delay = 0\n");
    let node = NodeProc::start(&pki, &extra);
    wait_ups_status(&pki, &node, "ONLINE", 10);
    sim_until(&pki, &node, &["--comm-lost"], "COMMLOST");
    // Past the 2 s dead time, on mains: no shutdown.
    holds_for(Duration::from_secs(3), "no shutdown on mains", || {
        let v = status_json(&pki, node.addr);
        (v["pending"]["kind"] == "none")
            .then_some(())
            .ok_or(v.to_string())
    });
    sim_until(&pki, &node, &["--comm-ok", "--on-battery"], "ONBATT");
    operator(&pki, &node, &["sim", "set", "--comm-lost"]);
    let v = wait_for(Duration::from_secs(15), || {
        let v = status_json(&pki, node.addr);
        (v["pending"]["kind"] == "shutting-down").then_some(v)
    })
    .expect("comm lost on battery shuts down");
    assert_eq!(v["pending"]["reason"], "notice");
    let o = operator(&pki, &node, &["events"]);
    let ev = stdout(&o);
    assert!(
        ev.contains("commfailure")
            && ev.contains("commok")
            && ev.contains("loss of comm with UPS while on batteries"),
        "{ev}"
    );
}

#[test]
fn watch_streams_events_live() {
    let pki = TestPki::new();
    let node = NodeProc::start(&pki, SIM_UPS);
    let (ca, cert, key) = pki.files("operator");
    let mut child = Command::new(bin("upsilon"))
        .args(["watch", "--json"])
        .env("UPSILON_ENDPOINT", node.addr.to_string())
        .env("UPSILON_CA", ca)
        .env("UPSILON_CERT", cert)
        .env("UPSILON_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first line is the current status.
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first watch line");
    assert!(first.starts_with("{\"status\""), "{first}");
    operator(&pki, &node, &["sim", "set", "--on-battery"]);
    let got = wait_for(Duration::from_secs(10), || {
        let l = rx.recv_timeout(Duration::from_millis(200)).ok()?;
        l.contains("\"name\":\"powerout\"").then_some(l)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.is_some(), "powerout reached the watch stream");
}

#[test]
fn client_config_file_is_used() {
    let pki = TestPki::new();
    let node = NodeProc::start(&pki, SIM_UPS);
    let cfg = pki.path().join("client.toml");
    std::fs::write(
        &cfg,
        format!(
            "endpoint = \"{}\"\nca = \"certs/ca.pem\"\ncert = \"certs/operator.pem\"\nkey = \"certs/operator.key\"\n",
            node.addr
        ),
    )
    .unwrap();
    let o = Command::new(bin("upsilon"))
        .args(["--client-config", cfg.to_str().unwrap(), "status", "--json"])
        .env_remove("UPSILON_ENDPOINT")
        .env_remove("UPSILON_CA")
        .env_remove("UPSILON_CERT")
        .env_remove("UPSILON_KEY")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["node"], "node1");

    std::fs::write(&cfg, "endpont = \"x\"\n").unwrap();
    let o = Command::new(bin("upsilon"))
        .args(["--client-config", cfg.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_says(&stderr(&o), "client.toml:1: endpont: unknown field");
}

#[test]
fn check_config_accepts_good_and_locates_errors() {
    let pki = TestPki::new();
    let good = pki.path().join("good.toml");
    let base = "[node]\nname = \"node1\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node1.pem\"\nkey = \"certs/node1.key\"\n";
    std::fs::write(&good, format!("{base}\n{SIM_UPS}")).unwrap();
    let o = Command::new(bin("upsilond"))
        .arg("--check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_says(&stdout(&o), "OK (node node1, 1 UPS, executor record mode)");

    let cases = [
        (
            format!("{base}\n[policy]\nminutes = -3\n"),
            ":10: policy.minutes: invalid value",
        ),
        (
            format!("{base}\n[policy]\nbattery_level = 101\n"),
            ":10: policy.battery_level: 101 is not a percentage",
        ),
        (
            format!("{base}\n[executor]\nmode = \"yolo\"\n"),
            ":10: executor.mode: unknown variant `yolo`",
        ),
        (
            base.replace("certs/node1.pem", "certs/missing.pem"),
            "certs/missing.pem",
        ),
        (
            base.replace("certs/node1.pem", "certs/operator.pem"),
            "has role operator; a node needs a certificate issued with --role node",
        ),
        (
            format!(
                "{base}\n[[ups]]\nname = \"u\"\ndriver = \"sim\"\nscenario = \"bad-scenario.toml\"\n"
            ),
            "bad-scenario.toml:3: step.mains: unknown variant `off`",
        ),
        ("this is not toml".to_string(), "bad.toml:1:"),
    ];
    std::fs::write(
        pki.path().join("bad-scenario.toml"),
        "name = \"bad\"\n[[step]]\nmains = \"off\"\nat_s = 1\n",
    )
    .unwrap();
    for (text, want) in cases {
        let bad = pki.path().join("bad.toml");
        std::fs::write(&bad, &text).unwrap();
        let o = Command::new(bin("upsilond"))
            .arg("--check-config")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = stderr(&o);
        assert!(err.contains(want), "want {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn demo_runs_the_staged_shutdown_in_order_then_cancels_the_second_outage() {
    let o = Command::new(bin("upsilon")).arg("demo").output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "demo failed: {}\n{out}", stderr(&o));
    let pos = |want: &str| {
        out.find(want)
            .unwrap_or_else(|| panic!("missing {want:?} in demo output:\n{out}"))
    };
    assert!(pos("Stage 1 (batch) started") < pos("Stage 2 (apps) started"));
    assert!(pos("Stage 2 (apps) started") < pos("Stage 3 (core) started"));
    assert!(pos("Stage 3 (core) started") < pos("UPS ups1 ordered to cut power"));
    // plan check and a fire drill come first.
    assert!(pos("the plan fits the batteries") < pos("fire drill 1 on ups1, ups2: drill complete"));
    assert!(pos("every host answered") < pos("Stage 1 (batch) started"));
    // Each `upsilon status` the demo shows (during the outage, at the end) fits a
    // 24 x 80 terminal.
    for (at, _) in out.match_indices("`upsilon status` on ") {
        let block: Vec<&str> = out[at..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect();
        let block: Vec<&str> = block
            .iter()
            .rev()
            .skip_while(|l| l.is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .copied()
            .collect();
        assert!(
            block.len() <= 24,
            "{} lines:\n{}",
            block.len(),
            block.join("\n")
        );
        for l in &block {
            assert!(
                l.chars().count() <= 80,
                "over 80 columns: {l:?}\n{}",
                block.join("\n")
            );
        }
        assert!(
            block.iter().any(|l| l.starts_with("NODE")),
            "{}",
            block.join("\n")
        );
    }
    assert_eq!(out.matches("`upsilon status` on ").count(), 2, "{out}");
    for want in [
        "n4: recorded: shutdown -h now",
        "n1: recorded: kill power ups1",
        "2 stage(s) not started are cancelled",
        "3 voters + 2 learners",
        "Demo finished",
    ] {
        pos(want);
    }
}

#[test]
fn demo_standalone_plays_a_scenario() {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/scenarios/short-blip.toml");
    let o = Command::new(bin("upsilon"))
        .args(["demo", "--nodes", "1", "--duration", "9", "--scenario"])
        .arg(&scenario)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "demo failed: {}\n{out}", stderr(&o));
    assert!(
        out.contains("Power failure.") && out.contains("Power is back. UPS running on mains."),
        "{out}"
    );
    assert!(out.contains("no shutdown was needed"), "{out}");
}
