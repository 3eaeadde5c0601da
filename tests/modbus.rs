//! The `modbus` driver in a real `upsilond`: serial RTU against an SMT on a pty paced
//! as 9600 baud (tests/support/modbus_slave.rs), and Modbus over USB against the
//! emulated USB device (tests/support/fakeusb.rs). Values as apcupsd's modbus driver
//! reads them, an outage, comm loss and recovery, kill power by SimpleSignalingCommand,
//! and a staged shutdown of a cluster ending with the UPS's output off.

use std::time::Duration;

use upsilon_core::ups::modbus::reg;
use upsilon_tests::fakeusb::FakeUsb;
use upsilon_tests::modbus_slave::{ModbusSlave, smt1500};
use upsilon_tests::*;

fn ups_toml(device: &str, poll_ms: u64) -> String {
    format!(
        "[[ups]]\nname = \"smt1\"\ndriver = \"modbus\"\ndevice = \"{device}\"\npoll_interval_ms = {poll_ms}\n"
    )
}

#[test]
fn an_smt_on_a_serial_line_is_read_and_killed_with_simple_signalling() {
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let mut regs = smt1500();
    regs.regs.insert(reg::MOG_OFF_DELAY, 2);
    let ups = ModbusSlave::start(&link, regs).unwrap();
    let node = sending_node(&pki, &ups_toml(&link.display().to_string(), 500));
    let v = wait_ups_status(&pki, &node, "ONLINE", 20);
    let u = ups_of(&v);
    assert_eq!(u["driver"], "modbus", "{u}");
    assert_eq!(u["model"], "Smart-UPS 1500", "{u}");
    assert_eq!(u["serial_number"], "AS1234567890", "{u}");
    assert_eq!(u["firmware"], "UPS 09.8 (ID18)", "{u}");
    assert_eq!(u["charge_percent"], 100.0, "{u}");
    assert_eq!(u["runtime_seconds"], 1830.0, "{u}");
    assert_eq!(u["line_voltage"], 230.0, "{u}");
    assert_eq!(u["load_percent"], 20.0, "{u}");
    assert_eq!(u["battery_voltage"], 27.0, "{u}");

    ups.on_battery(true);
    wait_ups_status(&pki, &node, "ONBATT", 10);
    ups.low_battery();
    wait_status(&pki, &node, Duration::from_secs(10), "LOWBATT", |v| {
        ups_of(v)["status"]
            .as_str()
            .is_some_and(|s| s.contains("LOWBATT"))
    });

    // An operator's kill power keeps the UPS's own delay (2 s here).
    kill_power_sent(&pki, &node, "smt1");
    assert_eq!(ups.writes(), [(reg::SIMPLE_SIGNALING_COMMAND, vec![1])]);
    wait_for(Duration::from_secs(10), || ups.output_off().then_some(()))
        .expect("the output goes off after the UPS's delay");
    ups.on_battery(false);
    wait_for(Duration::from_secs(5), || (!ups.output_off()).then_some(()))
        .expect("the output returns with mains");
    // A self test is ReplaceBatteryTestCommand = 1.
    let o = operator(&pki, &node, &["ups", "self-test"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        ups.writes().last().unwrap(),
        &(reg::REPLACE_BATTERY_TEST_COMMAND, vec![1])
    );
}

#[test]
fn silence_bad_crc_and_exceptions_are_comm_errors_and_recover() {
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let ups = ModbusSlave::start(&link, smt1500()).unwrap();
    let node = NodeProc::start(&pki, &ups_toml(&link.display().to_string(), 300));
    wait_ups_status(&pki, &node, "ONLINE", 20);
    // One corrupted answer: retried, never a comm failure.
    ups.corrupt_next();
    let sent = wait_for(Duration::from_secs(5), || {
        (!ups.corruption_pending()).then(|| ups.requests().len())
    })
    .expect("the corrupted answer was sent");
    // Then a whole poll (three requests) answered after it.
    wait_for(Duration::from_secs(5), || {
        (ups.requests().len() >= sent + 3).then_some(())
    })
    .expect("polls went on after the bad CRC");
    let ev = stdout(&operator(&pki, &node, &["events"]));
    assert!(!ev.contains("Communications with UPS lost"), "{ev}");
    // Silent: comm lost, in words.
    ups.silent(true);
    let v = wait_ups_status(&pki, &node, "COMMLOST", 15);
    let err = ups_of(&v)["comm_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("no answer"), "{err}");
    ups.silent(false);
    wait_ups_status(&pki, &node, "ONLINE", 10);
    // A unit without the dynamic registers answers an exception: an error, no panic.
    ups.forget(reg::INPUT_VOLTAGE);
    let v = wait_ups_status(&pki, &node, "COMMLOST", 15);
    let err = ups_of(&v)["comm_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("illegal data address"), "{err}");
    let ev = stdout(&operator(&pki, &node, &["events"]));
    assert!(ev.contains("Communications with UPS restored"), "{ev}");
    // A device that does not exist is a comm failure naming it.
    drop(node);
    let node = NodeProc::start(&pki, &ups_toml("/dev/ttyNOSUCH", 300));
    let v = wait_ups_status(&pki, &node, "COMMLOST", 15);
    let err = ups_of(&v)["comm_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("cannot open /dev/ttyNOSUCH"), "{err}");
}

#[test]
fn modbus_over_usb_reads_the_same_values_and_kills_with_the_cluster_delay() {
    let pki = TestPki::new();
    let usb = FakeUsb::smart_ups(&pki.path().join("usb.sock"));
    let mut slave = smt1500();
    slave.crc = false;
    usb.attach_modbus(slave, 0x91);
    let node = sending_node(&pki, &ups_toml("usb", 500));
    let v = wait_ups_status(&pki, &node, "ONLINE", 20);
    let u = ups_of(&v);
    assert_eq!(u["model"], "Smart-UPS 1500", "{u}");
    assert_eq!(u["runtime_seconds"], 1830.0, "{u}");
    usb.modbus(|m| m.regs.insert(reg::UPS_STATUS + 1, 1 << 2));
    wait_ups_status(&pki, &node, "ONBATT", 10);
    let o = operator(&pki, &node, &["ups", "power-off", "--confirm"]);
    assert!(o.status.success(), "{o:?}\n{}", node.log_text());
    assert_eq!(
        usb.modbus(|m| m.writes.clone()),
        [(reg::SIMPLE_SIGNALING_COMMAND, vec![2])]
    );
}

#[test]
fn a_staged_shutdown_over_modbus_ends_with_the_ups_output_off() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyUPS");
    let ups = ModbusSlave::start(&link, smt1500()).unwrap();
    let c = two_stage_cluster("smt1", ups_toml(&link.display().to_string(), 300));

    ups.on_battery(true);
    wait_for(Duration::from_secs(60), || {
        ups.events()
            .iter()
            .any(|(_, e)| e.starts_with("shutdown with return accepted"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no kill power reached the UPS\n{}", c.logs()));
    assert_shut_down_once(&c, 2..=3);
    // The owner's 1 s shutdown (+10 s to start it) needs 11 s: the turn-off delay is
    // written first, then the command, once.
    let w = ups.writes();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].0, reg::MOG_OFF_DELAY, "{w:?}");
    assert!(w[0].1[0] >= 11, "{w:?}");
    assert_eq!(w[1], (reg::SIMPLE_SIGNALING_COMMAND, vec![1]));
    wait_for(Duration::from_secs(20), || {
        (shutdowns(&c, 1) == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the owner never halted\n{}", c.logs()));
    wait_for(Duration::from_secs(40), || ups.output_off().then_some(()))
        .expect("the output goes off after the delay");
    wait_for(Duration::from_secs(20), || {
        let o = c.cli(3, &["events", "-n", "1000"]);
        stdout(&o).contains("kill power done").then_some(())
    })
    .expect("kill power done is in the replicated history");
}
