//! apcupsd's NIS served by upsilond, read by Debian's unmodified `apcaccess`
//! (the `apcupsd` package; tests/run-all.sh installs it): every field parses, the
//! values are the ones `upsilon status --json` shows, and the host's truth (on battery,
//! shutting down, the cluster lost) reaches the apcupsd side. Failure paths: a port
//! already taken, a client outside the allow-list.

use std::net::SocketAddr;
use std::time::Duration;

use upsilon_tests::apcupsd::{RealApcupsd, apcaccess, get, number, wait_nis_status};
use upsilon_tests::*;

const SIM_UPS: &str = "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\npoll_interval_ms = 200\n";

#[test]
fn apcaccess_reads_a_node_as_it_read_apcupsd() {
    let pki = TestPki::new();
    let extra = format!("{SIM_UPS}\n[policy]\nbattery_level = 50\nminutes = 0\n");
    let node = NodeProc::start(&pki, &extra);
    let recs = wait_nis_status(node.nis, "ONLINE", 15, || node.log_text());
    let v = status_json(&pki, node.addr);
    let u = &v["ups"][0];

    // apcupsd's layout: the header, then keys in apcupsd's order, END APC last.
    let keys: Vec<&str> = recs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[0], "APC");
    assert_eq!(keys.last(), Some(&"END APC"));
    let order = [
        "DATE",
        "HOSTNAME",
        "VERSION",
        "UPSNAME",
        "CABLE",
        "DRIVER",
        "UPSMODE",
        "STARTTIME",
        "MODEL",
        "STATUS",
        "LINEV",
        "LOADPCT",
        "BCHARGE",
        "TIMELEFT",
        "MBATTCHG",
        "MINTIMEL",
        "MAXTIME",
        "NUMXFERS",
        "TONBATT",
        "CUMONBATT",
        "XOFFBATT",
        "STATFLAG",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|k| {
            keys.iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("no {k} in {keys:?}"))
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "keys out of apcupsd's order: {keys:?}"
    );
    let header = get(&recs, "APC");
    let n: usize = header.split(',').nth(1).unwrap().parse().unwrap();
    assert_eq!(n, recs.len() - 1, "the header counts the records: {header}");

    // The values `upsilon status` shows.
    assert_eq!(get(&recs, "UPSNAME"), "ups1");
    assert_eq!(get(&recs, "MODEL"), u["model"].as_str().unwrap());
    assert_eq!(get(&recs, "STATFLAG"), u["statflag"].as_str().unwrap());
    assert_eq!(
        number(&recs, "BCHARGE"),
        u["charge_percent"].as_f64().unwrap()
    );
    assert_eq!(
        number(&recs, "LOADPCT"),
        u["load_percent"].as_f64().unwrap()
    );
    assert_eq!(number(&recs, "LINEV"), u["line_voltage"].as_f64().unwrap());
    let minutes = u["runtime_seconds"].as_f64().unwrap() / 60.0;
    assert!(
        (number(&recs, "TIMELEFT") - minutes).abs() < 0.06,
        "{recs:?} vs {u}"
    );
    assert_eq!(number(&recs, "MBATTCHG"), 50.0);
    assert!(get(&recs, "VERSION").starts_with("3.14.14 "));

    // On battery: ONBATT; below BATTERYLEVEL the node decides: SHUTTING DOWN.
    let o = operator(&pki, &node, &["sim", "set", "--on-battery"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = wait_nis_status(node.nis, "ONBATT", 15, || node.log_text());
    assert!(number(&recs, "TONBATT") >= 0.0);
    let o = operator(&pki, &node, &["sim", "set", "--charge", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = wait_nis_status(node.nis, "SHUTTING DOWN", 15, || node.log_text());
    let flag = u32::from_str_radix(get(&recs, "STATFLAG").trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flag & 0x200, 0, "STATFLAG has the shutdown bit: {recs:?}");
}

#[test]
fn a_taken_port_is_a_warning_and_an_outsider_is_refused() {
    // apcupsd still holding the port during a migration: the node runs on without NIS.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let pki = TestPki::new();
    let extra = format!("{SIM_UPS}\n[nis]\nlisten = \"127.0.0.1:{port}\"\n");
    let node = NodeProc::start(&pki, &extra);
    assert!(
        node.wait_log(
            "cannot listen for NIS on 127.0.0.1:",
            Duration::from_secs(10)
        ),
        "{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("is apcupsd"),
        "{}",
        node.log_text()
    );
    assert_eq!(status_json(&pki, node.addr)["node"], "node1");
    drop(node);

    // A client outside the allowed networks is closed unanswered, and logged.
    let pki = TestPki::new();
    let nis = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "{SIM_UPS}\n[nis]\nlisten = [\"{nis}\"]\nallow = [\"192.0.2.0/24\", \"10.1.2.3\"]\n"
    );
    let node = NodeProc::start(&pki, &extra);
    let addr: SocketAddr = nis.parse().unwrap();
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).ok()
    })
    .expect("NIS listening");
    let e = apcaccess(addr).unwrap_err();
    assert!(!e.contains("STATUS"), "{e}");
    assert!(
        node.wait_log(
            "NIS: refused a client outside the allowed networks peer=127.0.0.1:",
            Duration::from_secs(10)
        ),
        "{}",
        node.log_text()
    );
}

#[test]
fn a_member_without_a_ups_serves_its_supply_and_its_own_truth() {
    let _g = serial();
    // n1 owns ups1; n3 drives none and is fed by ups1; its stage is the only one.
    let plan = plan_text(&[("hosts", "\"n3\"", "on_battery_s = 2", 30)]);
    let c = ClusterSpec::new(3, 3)
        .local_thresholds_off()
        .feeds(&["ups1"])
        .plan(&plan)
        .start_formed();
    c.wait_plan(2);
    let n3 = c.nodes[2].as_ref().unwrap().nis;
    let recs = wait_nis_status(n3, "ONLINE", 30, || c.logs());
    assert_eq!(
        get(&recs, "UPSNAME"),
        "ups1",
        "a supply is named after its main feed"
    );
    assert_eq!(get(&recs, "DRIVER"), "Upsilon cluster");

    c.cli(1, &["sim", "set", "--on-battery"]);
    // ONBATT first (the stage waits 2 s), then SHUTTING DOWN once n3's stage starts.
    wait_nis_status(n3, "ONBATT", 30, || c.logs());
    wait_nis_status(n3, "SHUTTING DOWN", 30, || c.logs());
    // n1 drives ups1 and is in no stage: it still reads plain ONBATT.
    let n1 = c.nodes[0].as_ref().unwrap().nis;
    assert_eq!(get(&apcaccess(n1).unwrap(), "STATUS"), "ONBATT");
}

#[test]
fn a_member_that_lost_the_cluster_serves_commlost() {
    let _g = serial();
    let mut c = ClusterSpec::new(3, 3).feeds(&["ups1"]).start();
    let n3 = c.nodes[2].as_ref().unwrap().nis;
    wait_nis_status(n3, "ONLINE", 30, || c.logs());
    // Both other voters gone: n3 has no quorum and cannot vouch for anything.
    c.kill(1);
    c.kill(2);
    wait_nis_status(n3, "COMMLOST", 60, || c.logs());
}

#[test]
fn a_node_reads_a_ups_through_a_real_apcupsd_with_the_net_driver() {
    use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
    let scratch = tempfile::tempdir().unwrap();
    let link = scratch.path().join("ttyUPS");
    let sim = SmartUps::start(SmartUpsOptions::new(&link)).unwrap();
    let nis: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let apcupsd_dir = scratch.path().join("apcupsd");
    let mut apcupsd = RealApcupsd::start(&apcupsd_dir, &link, nis);
    let recs = wait_nis_status(nis, "ONLINE", 30, || apcupsd.log());

    // A two-node cluster: n1 reads the UPS through apcupsd, n2 only hears of it.
    let c = ClusterSpec::new(2, 2)
        .ups_toml(
            1,
            format!(
                "[[ups]]\nname = \"ups1\"\ndriver = \"net\"\ndevice = \"{nis}\"\npoll_interval_ms = 1000\n"
            ),
        )
        .start();
    let pki = &c.pki;
    let node = c.nodes[0].as_ref().unwrap();
    let other = c.nodes[1].as_ref().unwrap();
    let v = wait_status(pki, node, Duration::from_secs(20), "ONLINE", |v| {
        v["ups"][0]["status"] == "ONLINE"
    });
    let u = &v["ups"][0];
    assert_eq!(u["driver"], "net");
    assert_eq!(u["model"].as_str(), Some(get(&recs, "MODEL")));
    assert_eq!(u["charge_percent"].as_f64(), Some(number(&recs, "BCHARGE")));
    assert_eq!(u["line_voltage"].as_f64(), Some(number(&recs, "LINEV")));
    assert_eq!(u["serial_number"].as_str(), Some(get(&recs, "SERIALNO")));
    let minutes = u["runtime_seconds"].as_f64().unwrap() / 60.0;
    assert!(
        (minutes - number(&recs, "TIMELEFT")).abs() < 1.0,
        "{u} vs {recs:?}"
    );

    // Mains fail at the UPS: apcupsd sees it, the node hears it from apcupsd, and the
    // outage reaches every node.
    sim.mains(true);
    wait_status(pki, node, Duration::from_secs(20), "ONBATT", |v| {
        v["ups"][0]["status"] == "ONBATT"
    });
    wait_status(pki, other, Duration::from_secs(20), "ONBATT on n2", |v| {
        v["ups"][0]["status"] == "ONBATT"
    });
    assert!(
        node.wait_log("Power failure.", Duration::from_secs(10)),
        "{}",
        node.log_text()
    );
    sim.mains(false);
    wait_status(pki, node, Duration::from_secs(20), "ONLINE again", |v| {
        v["ups"][0]["status"] == "ONLINE"
    });

    // apcupsd gone: a comm failure with the reason, never a healthy UPS.
    apcupsd.stop();
    let v = wait_status(pki, node, Duration::from_secs(30), "COMMLOST", |v| {
        v["ups"][0]["status"] == "COMMLOST"
    });
    let why = v["ups"][0]["comm_error"].as_str().unwrap_or("").to_string();
    assert!(why.contains("NIS server"), "{v}");
}
