//! Debian's own apcupsd event scripts, unmodified, run by Upsilon as apcupsd runs them.
//!
//! The reference is what apcupsd does for an event: exec `/etc/apcupsd/apccontrol
//! <event> <ups> <connected> <powered>`, Debian's real file, which exports `SYSADMIN`
//! and `APCUPSD_MAIL`, runs `/etc/apcupsd/<event>` (Debian's stock onbattery,
//! offbattery, commfailure, commok and changeme mail root with `$APCUPSD_MAIL`), then
//! writes its line to `wall`. Recorder `mail` and `wall` programs first on PATH write
//! down what each run sends. Upsilon must send exactly the same: its executor with
//! `script_dir = "/etc/apcupsd"` (the apcupsd directory: its apccontrol runs), with a
//! directory holding only the stock scripts (Upsilon does apccontrol's part), and a real
//! `upsilond` in record mode through an outage, where the shutdown is recorded and
//! nothing halts. A failing script is reported in `upsilon events` with its status and
//! stderr.
//!
//! This binary holds one test: it puts the recorders on the process's PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use upsilon_core::config::{ExecutorMode, ExecutorSection, HooksSection};
use upsilon_core::events::{Event, EventKind};
use upsilon_node::executor::Executor;
use upsilon_tests::*;

const EVENTS: [&str; 5] = [
    "onbattery",
    "offbattery",
    "commfailure",
    "commok",
    "changeme",
];

fn write_exec(p: &Path, body: &str) {
    std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `mail` and `wall` that append what they were given to `log`: mail's arguments and
/// the first line of its body, wall's whole message.
fn recorders(dir: &Path, log: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let l = log.display();
    write_exec(
        &dir.join("mail"),
        &format!("first=$(head -n 1)\ncat > /dev/null\necho \"mail $* :: $first\" >> '{l}'"),
    );
    write_exec(&dir.join("wall"), &format!("echo \"wall $(cat)\" >> '{l}'"));
}

fn take(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text.lines().map(str::to_string).collect()
}

fn event(kind: EventKind) -> Event {
    Event {
        seq: 1,
        at: SystemTime::now(),
        kind,
        ups_name: "ups1".into(),
        message: kind.message().into(),
    }
}

fn executor(script_dir: PathBuf, record: &Path) -> Executor {
    Executor::new(
        &ExecutorSection {
            mode: ExecutorMode::Record,
            shutdown_command: vec!["/bin/false".into(), "must-not-run".into()],
            record_file: Some(record.to_path_buf()),
            ..Default::default()
        },
        &HooksSection {
            script_dir: Some(script_dir),
            apccontrol: None,
            timeout_s: 20,
        },
    )
    .with_driven(vec!["ups1".into()])
}

/// Waits until `log` holds `n` lines, then takes them.
fn take_when(log: &Path, n: usize, what: &str, node: &NodeProc) -> Vec<String> {
    wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        (text.lines().count() >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: {:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default(),
            node.log_text()
        )
    });
    take(log)
}

#[test]
fn debian_apcupsd_scripts_send_the_mail_they_send_under_apcupsd() {
    let etc = Path::new("/etc/apcupsd");
    assert!(
        etc.join("apccontrol").exists() && etc.join("onbattery").exists(),
        "Debian's apcupsd package is needed (tests/run-all.sh installs it)"
    );
    let pki = TestPki::new();
    let bin_dir = pki.path().join("recorders");
    let log = pki.path().join("sent.log");
    recorders(&bin_dir, &log);
    // The only test in this binary: nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        );
    }

    // What apcupsd sends: its apccontrol, exactly as it execs it.
    let mut reference = Vec::new();
    for ev in EVENTS {
        let st = std::process::Command::new(etc.join("apccontrol"))
            .args([ev, "ups1", "1", "1"])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "apccontrol {ev}: {st}");
        let sent = take(&log);
        assert_eq!(sent.len(), 2, "{ev}: a mail and a wall line: {sent:?}");
        assert!(sent[0].starts_with("mail -s "), "{sent:?}");
        reference.push(sent);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Upsilon's executor on the apcupsd directory, and on the stock scripts alone.
    let stock = pki.path().join("stock");
    std::fs::create_dir_all(&stock).unwrap();
    for ev in EVENTS {
        std::fs::copy(etc.join(ev), stock.join(ev)).unwrap();
    }
    for (dir, with_wall) in [(etc.to_path_buf(), true), (stock.clone(), false)] {
        let ex = executor(dir.clone(), &pki.path().join("record.jsonl"));
        for (ev, want) in EVENTS.iter().zip(&reference) {
            rt.block_on(ex.handle(&event(EventKind::from_name(ev).unwrap())));
            let sent = take(&log);
            let want: Vec<String> = want
                .iter()
                .filter(|l| with_wall || l.starts_with("mail "))
                .cloned()
                .collect();
            assert_eq!(sent, want, "{ev} with script_dir {}", dir.display());
        }
        let recs = ex.records();
        assert!(
            recs.iter().all(|r| r.outcome.starts_with("exit status 0")),
            "{recs:#?}"
        );
    }

    // A real node in record mode with script_dir = /etc/apcupsd, through an outage to a
    // recorded shutdown: the same mail and wall lines, apccontrol's doshutdown line, and
    // no halt.
    let node = NodeProc::start(
        &pki,
        "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\npoll_interval_ms = 200\n\n[policy]\nbattery_level = 10\nminutes = 0\non_battery_delay = 0\n\n[hooks]\nscript_dir = \"/etc/apcupsd\"\n\n[executor]\nmode = \"record\"\nrecord_file = \"node-record.jsonl\"\nshutdown_command = [\"/bin/false\", \"must-not-run\"]\n",
    );
    wait_ups_status(&pki, &node, "ONLINE", 10);
    let sim = |args: &[&str]| {
        let mut a = vec!["sim", "set"];
        a.extend_from_slice(args);
        let o = upsilon(&pki, node.addr, Some("operator"), &a);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    for (args, k) in [
        (&["--on-battery"][..], 0),
        (&["--on-line"][..], 1),
        (&["--comm-lost"][..], 2),
        (&["--comm-ok"][..], 3),
    ] {
        sim(args);
        let sent = take_when(&log, 2, EVENTS[k], &node);
        assert_eq!(sent, reference[k], "{}", EVENTS[k]);
    }
    sim(&["--on-battery", "--charge", "5"]);
    let sent = take_when(&log, 4, "the outage's lines", &node);
    let wall = |l: &str| format!("wall {l}");
    for want in [
        reference[0][0].clone(),
        wall("Remaining battery charge below limit on UPS ups1. Doing shutdown."),
        wall("UPS ups1 initiated Shutdown Sequence"),
    ] {
        assert!(sent.contains(&want), "{want:?} not in {sent:#?}");
    }
    let records = std::fs::read_to_string(pki.path().join("node-record.jsonl")).unwrap();
    let shutdown: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "shutdown")
        .collect();
    assert_eq!(shutdown.len(), 1, "{records}");
    assert_eq!(shutdown[0]["ran"], false, "{records}");
    assert!(
        records.contains("not run: the executor carries out doshutdown's default action itself"),
        "{records}"
    );
    let events = events_text(&pki, &node);
    assert!(!events.contains("failed"), "{events}");
    drop(node);

    // A script that fails: its status and stderr in the node's events.
    let pki2 = TestPki::new();
    let hooks = pki2.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    write_exec(
        &hooks.join("onbattery"),
        "echo 'cannot reach the pager gateway' >&2\nexit 4",
    );
    let node = NodeProc::start(
        &pki2,
        "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\npoll_interval_ms = 200\n\n[policy]\nbattery_level = 0\nminutes = 0\non_battery_delay = 0\n\n[hooks]\nscript_dir = \"hooks\"\n",
    );
    wait_ups_status(&pki2, &node, "ONLINE", 10);
    let o = operator(&pki2, &node, &["sim", "set", "--on-battery"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = wait_for(Duration::from_secs(20), || {
        events_text(&pki2, &node)
            .lines()
            .find(|l| l.contains("Event script"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no failure event\n{}", node.log_text()));
    assert!(
        line.contains(
            "/onbattery (onbattery) failed: exit status 4; stderr: cannot reach the pager gateway."
        ),
        "{line}"
    );
}
