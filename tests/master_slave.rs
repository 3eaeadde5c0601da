//! apcupsd 3.10/3.12's master/slave protocol against a node's `legacy-master` driver
//! (Upsilon as the slave), with a test peer written from docs/protocols/master-slave.md playing the
//! unmodified master: first contact and the reply's bytes, packets turned into a
//! reading, ShutDown as a low-battery signal, and each failure the manual lists
//! (unauthorised master, bad APC magic, bad user magic, a dropped connection, a master
//! that goes silent) as an event in apcupsd's words; and a real 3.12.4 master's habits
//! at its start and restart (its first contact carries no reading).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use upsilon_tests::legacy_peer::{FakeMaster, FakeSlave, MasterPacket, field, magic};
use upsilon_tests::*;

fn events(pki: &TestPki, node: &NodeProc) -> Vec<(String, String)> {
    event_lines(pki, node.addr)
        .into_iter()
        .map(|e| (e.name, e.message))
        .collect()
}

/// Waits for an event whose message starts with `text`; returns its name and message.
fn wait_event(pki: &TestPki, node: &NodeProc, text: &str) -> (String, String) {
    wait_for(Duration::from_secs(15), || {
        events(pki, node)
            .into_iter()
            .find(|(_, m)| m.starts_with(text))
    })
    .unwrap_or_else(|| {
        panic!(
            "no event {text:?}: {:?}\n{}",
            events(pki, node),
            node.log_text()
        )
    })
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

#[test]
fn a_legacy_master_feeds_a_node_and_every_failure_is_named() {
    let pki = TestPki::new();
    let netport: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let node = NodeProc::start(
        &pki,
        &format!(
            "[[ups]]\nname = \"oldups\"\ndriver = \"legacy-master\"\nlisten = \"{netport}\"\nmaster = \"127.0.0.1\"\nuser_magic = \"slaveMagic123\"\ntimeout_s = 3\npoll_interval_ms = 500\n"
        ),
    );
    // Nothing yet: COMMLOST, and after the timeout the master is "not responding".
    assert_eq!(
        wait_event(&pki, &node, "Master not responding.").0,
        "mastertimeout"
    );

    // A master at the wrong address is refused unread.
    let mut intruder = FakeMaster::connect("127.0.0.2".parse().unwrap(), netport).unwrap();
    assert!(intruder.closed_by_slave());
    let msg = wait_event(&pki, &node, "Unauthorised attempt from master 127.0.0.2");
    assert!(msg.1.contains("set master = \"127.0.0.2\""), "{msg:?}");

    // First contact: the reply echoes the packet with our magics and ChangeBatt 1000.
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    let mut first = MasterPacket::new(0, "");
    first.batt_chg = 100;
    first.time_left = 45;
    m.send(&first).unwrap();
    let r = m.reply().unwrap();
    assert_eq!(magic(&r, 60), "apcupsd-linux-6.0");
    assert_eq!(magic(&r, 80), "slaveMagic123");
    assert_eq!(field(&r, 7), 1000, "ChangeBatt: a persistent slave");
    assert_eq!((field(&r, 3), field(&r, 5), field(&r, 6)), (100, 10, 45));
    assert_eq!(&r[..28], &first.bytes()[..28], "the rest is echoed");
    let learned = magic(&r, 80);
    let mut p = MasterPacket::new(1, &learned);
    p.batt_chg = 100;
    p.time_left = 45;
    m.send(&p).unwrap();
    assert_eq!(
        wait_event(&pki, &node, "Connect from master 127.0.0.1 succeeded").0,
        "masterconnect"
    );
    let v = wait_status(&pki, &node, Duration::from_secs(10), "ONLINE", |v| {
        v["ups"][0]["status"] == "ONLINE"
    });
    assert_eq!(v["ups"][0]["charge_percent"], 100.0);
    assert_eq!(v["ups"][0]["runtime_seconds"], 2700.0);
    assert_eq!(v["ups"][0]["driver"], "legacy-master");

    // On battery, every second as a master does during a power event.
    p.on_batt = 1;
    p.batt_chg = 90;
    p.time_left = 40;
    for _ in 0..3 {
        m.send(&p).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_status(&pki, &node, Duration::from_secs(10), "ONBATT", |v| {
        v["ups"][0]["status"] == "ONBATT"
    });
    wait_event(&pki, &node, "Power failure.");

    // The master keeps an old user magic: refused, connection closed.
    m.send(&MasterPacket::new(1, "wrongMagic")).unwrap();
    assert!(m.closed_by_slave());
    let e = wait_event(&pki, &node, "Bad user magic from master: wrongMagic");
    assert_eq!(e.0, "notice");

    // Reconnect (remote_state 2): answered again; then ShutDown set reads as low battery.
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    m.send(&MasterPacket::new(2, &learned)).unwrap();
    assert_eq!(magic(&m.reply().unwrap(), 80), "slaveMagic123");
    p.shutdown = 1_795_524_484;
    p.batt_low = 1;
    m.send(&p).unwrap();
    let v = wait_status(&pki, &node, Duration::from_secs(10), "LOWBATT", |v| {
        v["ups"][0]["flags"]["low_battery"] == true
    });
    assert!(
        v["ups"][0]["status"].as_str().unwrap().contains("LOWBATT"),
        "{v}"
    );

    // The master drops the connection: a read failure, and at once not responding (as
    // a 3.12.4 slave reports it).
    drop(m);
    wait_event(&pki, &node, "Read failure from socket.");
    assert_eq!(
        wait_event(
            &pki,
            &node,
            "Master not responding. (the master at 127.0.0.1 closed"
        )
        .0,
        "mastertimeout"
    );
    wait_status(&pki, &node, Duration::from_secs(10), "COMMLOST", |v| {
        v["ups"][0]["comm_error"]
            .as_str()
            .is_some_and(|e| e.contains("Master not responding."))
    });

    // A peer that is not an apcupsd 3.x master (or a NIS port given for NETPORT).
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    let mut bogus = MasterPacket::new(0, "");
    bogus.apc_magic = "bogus-magic-xyz".into();
    m.send(&bogus).unwrap();
    assert!(m.closed_by_slave());
    let msg = wait_event(&pki, &node, "Bad APC magic from master: bogus-magic-xyz");
    assert!(msg.1.contains("not an apcupsd 3.x master"), "{msg:?}");

    // Garbage one byte at a time and a short packet never stall the listener: a good
    // master is served meanwhile.
    let mut slow = FakeMaster::connect(LOCAL, netport).unwrap();
    use std::io::Write;
    slow.stream.write_all(&[0u8; 10]).unwrap();
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    m.send(&MasterPacket::new(2, &learned)).unwrap();
    assert_eq!(field(&m.reply().unwrap(), 7), 1000);
}

/// When the first event named `name` (or whose message starts with `name`) happened.
fn event_time(pki: &TestPki, node: &NodeProc, name: &str, after_ms: i64) -> i64 {
    wait_for(Duration::from_secs(15), || {
        event_lines(pki, node.addr)
            .into_iter()
            .find(|e| e.at_ms >= after_ms && (e.name == name || e.message.starts_with(name)))
            .map(|e| e.at_ms)
    })
    .unwrap_or_else(|| panic!("no {name:?}: {:?}\n{}", events(pki, node), node.log_text()))
}

/// What a real apcupsd 3.12.4 master does, taken as it is (docs/compat.md): before
/// any master the slave is waiting, not timed out, until the timeout really passes; a
/// master's first contact, sent before it read its UPS (OnBatt, BattChg, TimeLeft 0),
/// carries no reading; a master that closes its connection (restarted mid-outage) is
/// lost at once, and its restart's first contact is no "mains back".
#[test]
fn a_real_masters_start_and_restart_are_taken_as_they_are() {
    let pki = TestPki::new();
    let netport: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let started = upsilon_core::time::now_ms();
    let node = NodeProc::start(
        &pki,
        &format!(
            "[[ups]]\nname = \"oldups\"\ndriver = \"legacy-master\"\nlisten = \"{netport}\"\nmaster = \"127.0.0.1\"\ntimeout_s = 6\npoll_interval_ms = 200\n"
        ),
    );
    // Waiting: the UPS is unknown, and neither mastertimeout nor commfailure is raised.
    let v = wait_status(&pki, &node, Duration::from_secs(10), "waiting", |v| {
        v["ups"][0]["comm_error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting for the first reading from master"))
    });
    assert!(
        !events(&pki, &node)
            .iter()
            .any(|(n, _)| n == "mastertimeout" || n == "commfailure"),
        "{:?}\n{v}",
        events(&pki, &node)
    );
    // Only once the timeout has passed since the start is the master not responding.
    let timeout_at = event_time(&pki, &node, "mastertimeout", 0);
    assert!(
        timeout_at - started >= 5_500,
        "mastertimeout {} ms after the start",
        timeout_at - started
    );

    // A master starts: its first contact is answered, and reads as nothing.
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    m.send(&MasterPacket::new(0, "")).unwrap();
    let learned = magic(&m.reply().unwrap(), 80);
    let first = event_time(&pki, &node, "masterconnect", 0);
    let v = status_json(&pki, node.addr);
    assert_ne!(v["ups"][0]["status"], "ONLINE", "{v}");
    assert_ne!(v["ups"][0]["charge_percent"], 0.0, "{v}");
    // Its data, a few seconds later.
    let mut p = MasterPacket::new(1, &learned);
    p.batt_chg = 100;
    p.time_left = 45;
    m.send(&p).unwrap();
    let v = wait_status(&pki, &node, Duration::from_secs(10), "ONLINE", |v| {
        v["ups"][0]["status"] == "ONLINE"
    });
    assert_eq!(v["ups"][0]["charge_percent"], 100.0);
    p.on_batt = 1;
    p.batt_chg = 90;
    p.time_left = 40;
    m.send(&p).unwrap();
    wait_status(&pki, &node, Duration::from_secs(10), "ONBATT", |v| {
        v["ups"][0]["status"] == "ONBATT"
    });
    let out = event_time(&pki, &node, "powerout", first);

    // The master is restarted mid-outage: its connection closes, lost at once (not
    // after the 6 s timeout).
    let closed_at = upsilon_core::time::now_ms();
    drop(m);
    let lost = event_time(
        &pki,
        &node,
        "Master not responding. (the master at",
        closed_at,
    );
    assert!(
        lost - closed_at < 3_000,
        "lost {} ms after the close",
        lost - closed_at
    );
    wait_status(&pki, &node, Duration::from_secs(10), "COMMLOST", |v| {
        v["ups"][0]["status"] == "COMMLOST"
    });
    // Its new first contact (before it read its UPS) is no mains back; its data is.
    let mut m = FakeMaster::connect(LOCAL, netport).unwrap();
    m.send(&MasterPacket::new(0, "")).unwrap();
    let learned = magic(&m.reply().unwrap(), 80);
    event_time(&pki, &node, "masterconnect", lost);
    let v = status_json(&pki, node.addr);
    assert_ne!(v["ups"][0]["status"], "ONLINE", "{v}");
    let mut p = MasterPacket::new(1, &learned);
    p.on_batt = 1;
    p.batt_chg = 88;
    p.time_left = 39;
    m.send(&p).unwrap();
    wait_status(&pki, &node, Duration::from_secs(10), "ONBATT again", |v| {
        v["ups"][0]["status"] == "ONBATT" && v["ups"][0]["charge_percent"] == 88.0
    });
    let h = event_lines(&pki, node.addr);
    assert!(
        !h.iter()
            .any(|e| e.at_ms >= out && (e.name == "mainsback" || e.name == "offbattery")),
        "a false mains-back: {:?}",
        events(&pki, &node)
    );
}

/// When the first packet satisfying `ok` reached `slave`, waiting up to `secs`.
fn packet_at(slave: &FakeSlave, secs: u64, ok: impl Fn(&[u8]) -> bool) -> Option<i64> {
    wait_for(Duration::from_secs(secs), || {
        slave
            .packets()
            .into_iter()
            .find(|(_, b)| ok(b))
            .map(|(t, _)| t)
    })
}

fn cluster_event_at(c: &TestCluster, text: &str, secs: u64) -> i64 {
    wait_for(Duration::from_secs(secs), || {
        event_lines(&c.pki, c.addr(1))
            .into_iter()
            .find(|e| e.message.contains(text))
            .map(|e| e.at_ms)
    })
    .unwrap_or_else(|| {
        let o = c.cli(1, &["events", "-n", "500"]);
        panic!("no event {text:?}:\n{}\n{}", stdout(&o), c.logs())
    })
}

#[test]
fn the_bridge_as_master_tells_slaves_in_stage_order() {
    let _g = serial();
    let c = ClusterSpec::new(1, 1).start_formed();
    let mut s1 = FakeSlave::start("s1magic");
    let s2 = FakeSlave::start("");
    let nis = format!("127.0.0.1:{}", free_port());
    let bridge = c.bridge(
        &[1],
        "bridge1",
        "nettime_s = 2\nhalt_silence_s = 3",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"gone\"\nprotocol = \"master-slave\"\naddresses = [\"127.0.0.1\"]\nnetport = {}\nfeeds = [\"ups1\"]\n\n[[host]]\nname = \"slave1\"\nprotocol = \"master-slave\"\naddresses = [\"127.0.0.1\"]\nnetport = {}\nuser_magic = \"s1magic\"\nlabels = [\"early\"]\nfeeds = [\"ups1\"]\n\n[[host]]\nname = \"slave2\"\nprotocol = \"master-slave\"\naddresses = [\"127.0.0.1\"]\nnetport = {}\nfeeds = [\"ups1\"]\n",
            free_port(),
            s1.addr.port(),
            s2.addr.port()
        ),
    );
    // First contact, then the learned magic; the host's supply in the fields.
    packet_at(&s1, 20, |b| field(b, 12) == 1 && magic(b, 80) == "s1magic").unwrap_or_else(|| {
        panic!(
            "slave1 got no packet: {:?}\n{}",
            s1.packets().len(),
            bridge.log_text()
        )
    });
    let (_, first) = s1.packets()[0].clone();
    assert_eq!(field(&first, 12), 0, "first contact");
    assert_eq!(magic(&first, 60), "apcupsd-linux-6.0");
    assert_eq!(magic(&first, 80), "");
    let (_, b) = s1.packets().last().unwrap().clone();
    assert_eq!(
        (field(&b, 0), field(&b, 4), field(&b, 5)),
        (0, 0, 2),
        "on line, no shutdown, NETTIME 2"
    );
    assert_eq!((field(&b, 13), field(&b, 14)), (1, 1), "capabilities");
    assert!(
        field(&b, 3) > 0 && field(&b, 6) > 0,
        "charge and minutes: {b:?}"
    );

    // A slave that refuses connections is down at once: SLAVEDOWN, as a 3.12 master
    // showed it, in `upsilon status` and the bridge's NIS.
    let node = c.nodes[0].as_ref().unwrap();
    wait_status(&c.pki, node, Duration::from_secs(20), "gone silent", |v| {
        v["legacy_hosts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|h| h["name"] == "gone" && h["state"] == "silent")
        })
    });
    let o = c.cli(1, &["status"]);
    assert!(stdout(&o).contains("silent (SLAVEDOWN)"), "{}", stdout(&o));
    let recs = upsilon_tests::apcupsd::wait_nis_status(
        nis.parse().unwrap(),
        "ONLINE SLAVEDOWN",
        10,
        || bridge.log_text(),
    );
    assert_eq!(upsilon_tests::apcupsd::get(&recs, "UPSNAME"), "ups1");

    let plan = c.pki.path().join("plan.toml");
    std::fs::write(
        &plan,
        plan_text(&[
            ("early", "\"label:early\"", "on_battery_s = 1", 60),
            ("late", "\"slave2\"", "on_battery_s = 1", 60),
        ]),
    )
    .unwrap();
    let o = c.cli(1, &["plan", "apply", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    c.cli(1, &["sim", "set", "--on-battery"]);
    let onbatt = cluster_event_at(&c, "Power failure.", 20);
    let first_onbatt = packet_at(&s1, 20, |b| field(b, 0) == 1).expect("an OnBatt packet");
    let stage1 = cluster_event_at(&c, "Stage 1 (early) started", 30);
    let told1 = packet_at(&s1, 20, |b| field(b, 4) != 0).expect("slave1 told");
    // slave2 sees the outage every second, never ShutDown, while stage 1 runs.
    assert!(packet_at(&s2, 10, |b| field(b, 0) == 1).is_some());
    assert!(
        !s2.packets().iter().any(|(_, b)| field(b, 4) != 0),
        "slave2 told in stage 1"
    );
    println!(
        "BENCH UPS on battery -> slave's first OnBatt packet: {} ms; stage start -> ShutDown packet: {} ms",
        first_onbatt - onbatt,
        told1 - stage1
    );
    cluster_event_at(&c, "slave1 is shutting down", 10);

    // slave1 goes down: the bridge's writes fail, silence, "halted", then stage 2.
    s1.halt();
    let halted1 = cluster_event_at(&c, "slave1 is halting", 30);
    let stage2 = cluster_event_at(&c, "Stage 2 (late) started", 30);
    assert!(halted1 <= stage2);
    let told2 = packet_at(&s2, 20, |b| field(b, 4) != 0).expect("slave2 told");
    assert!(told2 >= stage2);
    cluster_event_at(&c, "slave2 is shutting down", 10);
    // The failure to reach slave1 is in the cluster's history, in apcupsd's words.
    cluster_event_at(&c, "slave1: ", 10);
    let v = status_json(&c.pki, c.nodes[0].as_ref().unwrap().addr);
    let states: Vec<_> = v["legacy_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("slave1".into(), "halted".into())),
        "{states:?}"
    );
    drop(bridge);
}

#[test]
fn legacy_check_names_each_misconfiguration() {
    let _g = serial();
    let c = ClusterSpec::new(1, 1).start_formed();
    // A program that greets first (an SSH server, say) on the port given as NETPORT.
    let banner = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let banner_port = banner.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in banner.incoming().flatten() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let wrong_magic = FakeSlave::start("zzz");
    let good = FakeSlave::start("");
    let nis = format!("127.0.0.1:{}", free_port());
    let bridge = c.bridge(
        &[1],
        "bridge1",
        "",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n{}{}{}{}{}",
            host("refused", free_port(), None),
            host("nisport", c.nis_port, None),
            host("banner", banner_port, None),
            host("magic", wrong_magic.addr.port(), Some("s1magic")),
            host("good", good.addr.port(), None),
        ),
    );
    let node = c.nodes[0].as_ref().unwrap();
    wait_status(
        &c.pki,
        node,
        Duration::from_secs(20),
        "five legacy hosts",
        |v| v["legacy_hosts"].as_array().is_some_and(|a| a.len() == 5),
    );
    let o = c.cli(
        1,
        &[
            "legacy",
            "check",
            bridge.config.to_str().unwrap(),
            "--handshake",
        ],
    );
    let out = stdout(&o);
    assert!(!o.status.success(), "{out}");
    let line = |peer: &str| {
        out.lines()
            .filter(|l| l.contains(&format!(" {peer} (")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        line("refused").contains("FAIL") && line("refused").contains("refused the connection"),
        "{out}"
    );
    assert!(
        line("nisport").contains("not apcupsd 3.10-3.12") || line("nisport").contains("NIS port"),
        "{out}"
    );
    // Whether it greets before or after our request, it is named as no apcupsd slave.
    assert!(
        line("banner").contains("FAIL")
            && line("banner").contains("SSH-2.0")
            && line("banner").contains("not an apcupsd slave"),
        "{out}"
    );
    assert!(
        line("magic").contains("FAIL")
            && line("magic").contains("the slave's USERMAGIC is \"zzz\""),
        "{out}"
    );
    assert!(
        !line("good").contains("FAIL") && line("good").contains("persistent"),
        "{out}"
    );
    assert!(
        out.contains("ok   bridge NIS: port free") && out.contains("running upsilon-bridge itself"),
        "{out}"
    );

    // Without --handshake a NIS port is named as such.
    let o = c.cli(1, &["legacy", "check", bridge.config.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.contains(" nisport (") && l.contains("is an apcupsd NIS port")),
        "{out}"
    );

    // A node config: NETPORT taken by another program is named.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = c.pki.path().join("slave-node.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nname = \"n9\"\nlisten = \"127.0.0.9:{}\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/n1.pem\"\nkey = \"certs/n1.key\"\n\n[[ups]]\nname = \"oldups\"\ndriver = \"legacy-master\"\nlisten = \"127.0.0.1:{port}\"\nmaster = \"192.0.2.10\"\n",
            free_port()
        ),
    )
    .unwrap();
    let o = c.cli(1, &["legacy", "check", cfg.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(!o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("FAIL oldups: port free: NETPORT 127.0.0.1:")
            && out.contains(&format!("(pid {})", std::process::id())),
        "{out}"
    );
    drop(held);
}

/// A master-slave `[[host]]` on loopback port `port`.
fn host(name: &str, port: u16, magic: Option<&str>) -> String {
    let magic = magic.map_or(String::new(), |m| format!("user_magic = \"{m}\"\n"));
    format!(
        "\n[[host]]\nname = \"{name}\"\nprotocol = \"master-slave\"\naddresses = [\"127.0.0.1\"]\nnetport = {port}\n{magic}feeds = [\"ups1\"]\n"
    )
}

#[test]
fn the_bridge_pushes_an_outage_and_a_stage_to_a_nodes_legacy_master_driver() {
    let _g = serial();
    let c = ClusterSpec::new(1, 1).start_formed();
    // An Upsilon node as the old master's slave: standalone, its UPS pushed to it.
    let netport = free_port();
    let slave = NodeProc::start(
        &c.pki,
        &format!(
            "[[ups]]\nname = \"frommaster\"\ndriver = \"legacy-master\"\nlisten = \"127.0.0.1:{netport}\"\nmaster = \"127.0.0.1\"\nuser_magic = \"upsilon\"\npoll_interval_ms = 500\n\n[executor]\nrecord_file = \"record-slave.jsonl\"\n"
        ),
    );
    let nis = format!("127.0.0.1:{}", free_port());
    let bridge = c.bridge(
        &[1],
        "bridge1",
        "nettime_s = 5\nhalt_silence_s = 3",
        &format!(
            "[nis]\nlisten = \"{nis}\"\n\n[[host]]\nname = \"oldhost\"\nprotocol = \"master-slave\"\naddresses = [\"127.0.0.1\"]\nnetport = {netport}\nuser_magic = \"upsilon\"\nfeeds = [\"ups1\"]\n"
        ),
    );
    // The node reads the cluster's supply through the bridge, as a slave would.
    wait_status(
        &c.pki,
        &slave,
        Duration::from_secs(20),
        "ONLINE from the bridge",
        |v| v["ups"][0]["status"] == "ONLINE" && v["ups"][0]["charge_percent"].as_f64().is_some(),
    );
    let plan = c.pki.path().join("plan.toml");
    std::fs::write(
        &plan,
        plan_text(&[("old", "\"oldhost\"", "on_battery_s = 2", 60)]),
    )
    .unwrap();
    let o = c.cli(1, &["plan", "apply", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    c.cli(1, &["sim", "set", "--on-battery"]);
    wait_status(&c.pki, &slave, Duration::from_secs(20), "ONBATT", |v| {
        v["ups"][0]["status"] == "ONBATT"
    });
    let stage = cluster_event_at(&c, "Stage 1 (old) started", 30);
    // ShutDown in the packets reads as a low-battery signal: the node shuts down.
    let records = c.pki.path().join("record-slave.jsonl");
    let shutdown_at = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&records)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["action"] == "shutdown")
            .and_then(|r| r["at_unix_ms"].as_i64())
    })
    .unwrap_or_else(|| {
        panic!(
            "the slave node never shut down:\n{}\n{}",
            slave.log_text(),
            bridge.log_text()
        )
    });
    assert!(shutdown_at >= stage);
    println!(
        "BENCH stage start -> the slave node's doshutdown: {} ms",
        shutdown_at - stage
    );
    cluster_event_at(&c, "oldhost is shutting down", 10);
    let o = upsilon(
        &c.pki,
        slave.addr,
        Some("operator"),
        &["events", "-n", "50"],
    );
    let ev = stdout(&o);
    assert!(
        ev.contains("Connect from master 127.0.0.1 succeeded")
            && ev.contains("Battery power exhausted."),
        "{ev}"
    );
}
