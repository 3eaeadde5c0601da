//! The apcsmart driver in a real `upsilond` against the Smart-UPS simulator on a pty
//! (tests/support/smartups.rs): values as apcupsd reports them, alerts reaching
//! another node before the next poll, comm loss and recovery, the kill-power byte
//! sequences with their timing, self test, and bad bytes, a silent port, a vanished
//! and a busy device.

use std::path::Path;
use std::time::{Duration, Instant};

use upsilon_node::driver::sim::SimChange;
use upsilon_tests::smartups::{Mode, SmartUps, SmartUpsOptions};
use upsilon_tests::*;

fn ups_toml(device: &Path, poll_ms: u64) -> String {
    format!(
        "[[ups]]\nname = \"smart1\"\ndriver = \"apcsmart\"\ndevice = \"{}\"\npoll_interval_ms = {poll_ms}\n",
        device.display()
    )
}

fn ups_of(v: &serde_json::Value) -> serde_json::Value {
    v["ups"][0].clone()
}

fn wait_status(pki: &TestPki, node: &NodeProc, what: &str, secs: u64) -> serde_json::Value {
    wait_for(Duration::from_secs(secs), || {
        let v = status_json(pki, node.addr);
        (ups_of(&v)["status"] == what).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "status never became {what}; last {}\nlog:\n{}",
            status_json(pki, node.addr),
            node.log_text()
        )
    })
}

fn events(pki: &TestPki, node: &NodeProc) -> String {
    stdout(&upsilon(pki, node.addr, Some("operator"), &["events"]))
}

#[test]
fn reads_every_value_as_apcupsd_would() {
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let sim = SmartUps::start(SmartUpsOptions::new(&link)).unwrap();
    let node = NodeProc::start(&pki, &ups_toml(&link, 300));
    let v = wait_status(&pki, &node, "ONLINE", 20);
    let u = ups_of(&v);
    assert_eq!(u["driver"], "apcsmart");
    assert_eq!(u["statflag"], "0x05000008");
    assert_eq!(u["model"], "Smart-UPS 1500");
    assert_eq!(u["firmware"], "601.3.I");
    assert_eq!(u["serial_number"], "AS1234567890");
    assert_eq!(u["battery_date"], "11/29/20");
    assert_eq!(u["line_voltage"], 230.0);
    assert_eq!(u["max_line_voltage"], 232.0);
    assert_eq!(u["min_line_voltage"], 228.0);
    assert_eq!(u["output_voltage"], 230.0);
    assert_eq!(u["line_frequency_hz"], 50.0);
    assert_eq!(u["load_percent"], 35.0);
    assert_eq!(u["battery_voltage"], 27.3);
    assert_eq!(u["internal_temp_c"], 31.5);
    assert_eq!(u["last_transfer"], "No transfers since turnon");
    assert_eq!(u["self_test"], "NO");
    // 900 s at full load * 100/35 = 2571 s -> `j` says 0043 minutes.
    assert_eq!(u["runtime_seconds"], 43.0 * 60.0);
    assert!(u["charge_percent"].as_f64().unwrap() >= 99.9, "{u}");
    let d = &u["details"];
    for (k, want) in [
        ("SENSE", "High"),
        ("DWAKE", "0 Seconds"),
        ("DSHUTD", "20 Seconds"),
        ("DLOWBATT", "2 Minutes"),
        ("LOTRANS", "196.0 Volts"),
        ("HITRANS", "253.0 Volts"),
        ("RETPCT", "0.0 Percent"),
        ("ALARMDEL", "5 Seconds"),
        ("STESTI", "336"),
        ("DIPSW", "0x00"),
        ("REG1", "0x00"),
        ("REG2", "0x00"),
        ("REG3", "0x00"),
        ("MANDATE", "11/29/20"),
        ("NOMOUTV", "230 Volts"),
        ("NOMBATTV", "24.0 Volts"),
        ("EXTBATTS", "0"),
        ("BADBATTS", "0"),
        ("UPSNAME", "UPS_IDEN"),
    ] {
        assert_eq!(d[k], want, "{k} in {d}");
    }
    // Not a Measure-UPS: no humidity or ambient temperature.
    assert!(
        d.get("HUMIDITY").is_none() && d.get("AMBTEMP").is_none(),
        "{d}"
    );

    // The byte log: the handshake, capabilities, and a link check before every `Q`.
    let rx: Vec<u8> = sim.received().iter().map(|r| r.byte).collect();
    assert_eq!(rx[0], b'Y');
    assert!(rx.contains(&b'a') && rx.contains(&0x01), "{rx:?}");
    assert!(
        !rx.contains(&b'h'),
        "h is not in the capability string: {rx:?}"
    );
    // (The first `Q` is capability discovery, right after `a`.)
    for (i, _) in rx.iter().enumerate().filter(|(_, b)| **b == b'Q').skip(1) {
        assert_eq!(rx[..i].iter().rev().find(|b| **b != b'Q'), Some(&b'Y'));
    }

    // Battery disconnected (register 2, bit 0x20) and a trimmed line.
    sim.set(&SimChange {
        battery_present: Some(false),
        ..Default::default()
    });
    wait_status(&pki, &node, "ONLINE NOBATT", 10);
}

#[test]
fn old_firmware_model_comes_from_v() {
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let mut opts = SmartUpsOptions::new(&link);
    opts.old_firmware = true;
    let sim = SmartUps::start(opts).unwrap();
    let node = NodeProc::start(&pki, &ups_toml(&link, 300));
    let v = wait_status(&pki, &node, "ONLINE", 60);
    let u = ups_of(&v);
    assert_eq!(u["model"], "Smart-UPS 700");
    assert_eq!(u["firmware"], "GWD");
    // Without `a`, every command was tried once.
    let rx: Vec<u8> = sim.received().iter().map(|r| r.byte).collect();
    assert!(rx.contains(&b'h') && rx.contains(&b'V'), "{rx:?}");
}
