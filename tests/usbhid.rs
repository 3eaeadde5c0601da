//! The `usbhid` driver in a real `upsilond` against an emulated USB UPS
//! (tests/support/fakeusb.rs: `FakeHid` on the `UPSILON_USB_EMULATOR` socket; this
//! machine has no USB stack, docs/hardware/usb-hid.md §7): a Back-UPS's values, an interrupt "AC
//! lost" reaching every node of a cluster without waiting for a poll, unplug and
//! replug as commfailure and commok, and kill power as apcupsd's exact writes for a
//! Back-UPS and a Smart-UPS.

use std::time::{Duration, Instant};

use upsilon_core::ups::hid::descriptor::ReportType;
use upsilon_tests::fakeusb::{FakeUsb, back_ups};
use upsilon_tests::*;

fn ups_toml(poll_ms: u64) -> String {
    format!(
        "[[ups]]\nname = \"usb1\"\ndriver = \"usbhid\"\nvendor = 0x051d\npoll_interval_ms = {poll_ms}\n"
    )
}

#[test]
fn an_interrupt_ac_lost_reaches_every_node_without_waiting_for_a_poll() {
    // A 30 s poll: only the interrupt report can bring the news sooner.
    let c = ClusterSpec::new(3, 3)
        .ups_on(&[])
        .ups_toml(1, ups_toml(30_000))
        .start();
    // The device appears after the node started: the driver looks for it every second.
    let usb = FakeUsb::back_ups(&c.pki.path().join("usb-n1.sock"));
    c.wait_formed(1, 3, 0, Duration::from_secs(40));
    let ups_on = |i: usize| c.status(i).map(|v| ups_of(&v)).unwrap_or_default();
    let u = wait_for(Duration::from_secs(30), || {
        let u = ups_on(3);
        (u["status"] == "ONLINE").then_some(u)
    })
    .unwrap_or_else(|| panic!("ONLINE never reached node 3; logs:\n{}", c.logs()));
    // The values apcupsd shows for this Back-UPS.
    assert_eq!(u["model"], "Back-UPS ES 850G2", "{u}");
    assert_eq!(u["serial_number"], "4B1234P56789", "{u}");
    assert_eq!(u["charge_percent"], 100.0, "{u}");
    assert_eq!(u["runtime_seconds"], 1380.0, "{u}");
    assert_eq!(u["driver"], "usbhid", "{u}");

    let t0 = Instant::now();
    // AC lost: ACPresent off, then Discharging, each an interrupt report.
    usb.change(&[0x13, 0]);
    usb.change(&[0x06, 0, 1]);
    for i in 1..=3 {
        wait_for(Duration::from_secs(10), || {
            (ups_on(i)["status"] == "ONBATT").then_some(())
        })
        .unwrap_or_else(|| panic!("ONBATT did not reach node {i}; logs:\n{}", c.logs()));
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}; the poll interval is 30 s"
    );
    let ev = c.events(2);
    assert!(ev.iter().any(|(n, _)| n == "powerout"), "{ev:?}");
    // Low battery and shutdown imminent, by interrupt too.
    usb.change(&[0x14, 1, 1]);
    wait_for(Duration::from_secs(10), || {
        ups_on(3)["status"]
            .as_str()
            .is_some_and(|s| s.contains("LOWBATT"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("LOWBATT did not reach node 3: {}", ups_on(3)));
    usb.change(&[0x14, 0, 0]);
    usb.change(&[0x06, 1, 0]);
    usb.change(&[0x13, 1]);
    wait_for(Duration::from_secs(10), || {
        (ups_on(3)["status"] == "ONLINE").then_some(())
    })
    .expect("mains return reached node 3");
}

#[test]
fn unplug_and_replug_are_commfailure_and_commok() {
    let pki = TestPki::new();
    let usb = FakeUsb::back_ups(&pki.path().join("usb.sock"));
    let node = NodeProc::start(&pki, &ups_toml(500));
    wait_ups_status(&pki, &node, "ONLINE", 20);
    usb.unplug();
    let v = wait_ups_status(&pki, &node, "COMMLOST", 10);
    let err = ups_of(&v)["comm_error"].as_str().unwrap_or("").to_string();
    assert!(
        err.contains("disconnected") || err.contains("no USB UPS"),
        "{err}"
    );
    // Back: found again within about a second, whatever the poll interval.
    usb.replug();
    wait_ups_status(&pki, &node, "ONLINE", 10);
    let ev = events_text(&pki, &node);
    let fail = ev
        .find("Communications with UPS lost")
        .unwrap_or_else(|| panic!("{ev}"));
    let ok = ev
        .find("Communications with UPS restored")
        .unwrap_or_else(|| panic!("{ev}"));
    assert!(
        fail < ok || ev.matches("Communications").count() == 2,
        "{ev}"
    );
    // A device with another serial number is not this UPS.
    drop(node);
    let node = NodeProc::start(
        &pki,
        "[[ups]]\nname = \"usb1\"\ndriver = \"usbhid\"\nserial = \"OTHER\"\npoll_interval_ms = 500\n",
    );
    let v = wait_status(&pki, &node, Duration::from_secs(10), "no match", |v| {
        ups_of(v)["comm_error"]
            .as_str()
            .is_some_and(|e| e.contains("no USB UPS matching"))
    });
    assert!(
        ups_of(&v)["comm_error"]
            .as_str()
            .unwrap()
            .contains("serial \"4B1234P56789\""),
        "{v}"
    );
}

#[test]
fn kill_power_is_apcupsds_writes_for_a_back_ups_and_a_smart_ups() {
    // Back-UPS: return at once with mains (capacity 0, startup delay 10 s), then
    // hibernate after the delay (apcupsd's 60 s for an operator's kill-power).
    let pki = TestPki::new();
    let usb = FakeUsb::back_ups(&pki.path().join("usb.sock"));
    let node = sending_node(&pki, &ups_toml(500));
    wait_ups_status(&pki, &node, "ONLINE", 20);
    kill_power_sent(&pki, &node, "usb1");
    assert_eq!(
        usb.writes(),
        [
            (ReportType::Feature, vec![0x21, 0]),
            (ReportType::Feature, vec![0x22, 10, 0]),
            (ReportType::Feature, vec![0x23, 60, 0]),
        ]
    );
    let o = operator(&pki, &node, &["ups", "self-test"]);
    assert!(
        !o.status.success(),
        "this Back-UPS has no Test usage: {o:?}"
    );
    drop(node);
    drop(usb);

    // Smart-UPS: DelayBeforeStartup, then DelayBeforeShutdown (which starts both).
    let pki = TestPki::new();
    let usb = FakeUsb::smart_ups(&pki.path().join("usb.sock"));
    let node = sending_node(&pki, &ups_toml(500));
    let v = wait_ups_status(&pki, &node, "ONLINE", 20);
    assert_eq!(ups_of(&v)["runtime_seconds"], 21000.0, "{v}");
    kill_power_sent(&pki, &node, "usb1");
    assert_eq!(
        usb.writes(),
        [
            (ReportType::Feature, vec![0x28, 64, 0]),
            (ReportType::Feature, vec![0x12, 60, 0]),
        ]
    );
    // Power off (stays off): DelayBeforeShutdown alone.
    let o = operator(&pki, &node, &["ups", "power-off", "--confirm"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        usb.writes().last().unwrap(),
        &(ReportType::Feature, vec![0x12, 60, 0])
    );
    assert!(node.log_text().contains("usbhid"), "{}", node.log_text());
}

#[test]
fn bad_reports_and_a_malformed_descriptor_are_errors_not_crashes() {
    let pki = TestPki::new();
    let usb = FakeUsb::back_ups(&pki.path().join("usb.sock"));
    let node = NodeProc::start(&pki, &ups_toml(500));
    wait_ups_status(&pki, &node, "ONLINE", 20);
    // A report ID the descriptor does not have, a short status report, an empty one
    // and an oversized capacity report (some Back-UPS overflow the declared size: the
    // declared fields are read).
    usb.change_quietly(&[0x0c, 55, 0x10, 0x0e]);
    usb.raw_interrupt(&[0x77, 1, 2, 3]);
    usb.raw_interrupt(&[0x0c]);
    usb.raw_interrupt(&[]);
    usb.raw_interrupt(&[0x0c, 55, 0x10, 0x0e, 0xff, 0xff, 0xff]);
    let v = wait_status(&pki, &node, Duration::from_secs(10), "55 %", |v| {
        ups_of(v)["charge_percent"] == 55.0
    });
    assert_eq!(ups_of(&v)["runtime_seconds"], 3600.0, "{v}");
    assert_eq!(ups_of(&v)["status"], "ONLINE", "{v}");
    // A device whose descriptor is garbage: a comm failure saying so, and the daemon
    // keeps serving.
    usb.set_descriptor(&[0x05, 0x84, 0x09, 0x04, 0xa1, 0x01, 0xb1]);
    usb.unplug();
    usb.replug();
    let v = wait_ups_status(&pki, &node, "COMMLOST", 10);
    let err = ups_of(&v)["comm_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("descriptor"), "{err}");
    usb.set_descriptor(&back_ups().descriptor);
    usb.unplug();
    usb.replug();
    wait_ups_status(&pki, &node, "ONLINE", 10);
}
