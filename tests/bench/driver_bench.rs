//! driver-bench: how long a power failure seen by the `modbus` or `usbhid` driver takes
//! to be applied on every node.
//!
//! Run (release build recommended):
//!     cargo build --release --workspace --bins && target/release/driver-bench modbus [ROUNDS] [POLL_MS]
//!     target/release/driver-bench usbhid [ROUNDS]
//! A 5-node cluster on loopback (3 voters, 2 learners); node 1 drives the UPS.
//! `modbus`: an SMT speaking RTU on a pty whose frames are paced as on a 9600 baud line
//! (tests/support/modbus_slave.rs), polled every POLL_MS (default 1000): Modbus has no
//! alerts, so the time is the wait for the next poll plus the poll (three exchanges on
//! the line) plus the commit. `usbhid`: the emulated Back-UPS (tests/support/fakeusb.rs)
//! with a 30 s poll: an interrupt report ends the wait. Each round fails or restores
//! mains; the bench waits until every node's Watch stream delivers `powerout` or
//! `mainsback`.

use std::time::Duration;

use upsilon_tests::fakeusb::FakeUsb;
use upsilon_tests::modbus_slave::{ModbusSlave, smt1500};
use upsilon_tests::{ClusterSpec, EventWatch, mains_round_trips, percentile};

enum Ups {
    Modbus(ModbusSlave),
    Usb(FakeUsb),
}

impl Ups {
    fn mains(&self, fail: bool) {
        match self {
            Ups::Modbus(s) => s.on_battery(fail),
            Ups::Usb(u) => {
                if fail {
                    u.change(&[0x13, 0]);
                    u.change(&[0x06, 0, 1]);
                } else {
                    u.change(&[0x06, 1, 0]);
                    u.change(&[0x13, 1]);
                }
            }
        }
    }
}

struct Result {
    applied: Vec<f64>,
    /// Modbus: one poll's three exchanges, first request to last, ms.
    poll_ms: Vec<f64>,
}

async fn run(driver: &str, rounds: usize, poll_ms: u64) -> Result {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUPS");
    let nodes = 5;
    let (ups_toml, modbus) = match driver {
        "modbus" => (
            format!(
                "[[ups]]\nname = \"smt1\"\ndriver = \"modbus\"\ndevice = \"{}\"\npoll_interval_ms = {poll_ms}\n",
                link.display()
            ),
            Some(ModbusSlave::start(&link, smt1500()).expect("pty slave")),
        ),
        _ => (
            "[[ups]]\nname = \"usb1\"\ndriver = \"usbhid\"\npoll_interval_ms = 30000\n".to_string(),
            None,
        ),
    };
    let c = tokio::task::block_in_place(|| {
        ClusterSpec::new(nodes, 3)
            .ups_toml(1, ups_toml)
            .no_faults()
            .start_formed_within(Duration::from_secs(120))
    });
    let ups = match modbus {
        Some(m) => Ups::Modbus(m),
        None => Ups::Usb(FakeUsb::back_ups(&c.pki.path().join("usb-n1.sock"))),
    };
    // The first report (the USB device appears after the node started) is in everywhere.
    tokio::task::block_in_place(|| c.wait_ups_everywhere("ONLINE", Duration::from_secs(60)));
    let mut watch = EventWatch::start(&c, nodes).await;
    let mut applied = mains_round_trips(&mut watch, rounds, Duration::from_millis(300), |fail| {
        ups.mains(fail)
    })
    .await;
    // Polls: requests come in threes, back to back; a gap longer than the poll's own
    // exchanges starts the next poll.
    let mut poll = Vec::new();
    if let Ups::Modbus(m) = &ups {
        let at = m.requests();
        let mut start = 0;
        for i in 1..=at.len() {
            let gap = i == at.len() || at[i].duration_since(at[i - 1]) > Duration::from_millis(300);
            if gap {
                if i - start == 3 {
                    poll.push(at[i - 1].duration_since(at[start]).as_secs_f64() * 1000.0);
                }
                start = i;
            }
        }
    }
    drop(watch);
    drop(c);
    applied.sort_by(f64::total_cmp);
    poll.sort_by(f64::total_cmp);
    Result {
        applied,
        poll_ms: poll,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let driver = args.next().unwrap_or_else(|| "modbus".into());
    if driver != "modbus" && driver != "usbhid" {
        eprintln!("usage: driver-bench modbus|usbhid [ROUNDS] [POLL_MS]");
        std::process::exit(2);
    }
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let poll_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(&driver, rounds, poll_ms));
    let how = if driver == "modbus" {
        format!("modbus RTU on a pty paced at 9600 baud, poll {poll_ms} ms")
    } else {
        "usbhid (emulated), interrupt reports, poll 30 s".to_string()
    };
    println!(
        "| 5 nodes (3 voters), {how} | mains change -> applied on every node ({rounds} rounds) | p50 {:.0} ms | p99 {:.0} ms | max {:.0} ms |",
        percentile(&r.applied, 50.0),
        percentile(&r.applied, 99.0),
        r.applied.last().copied().unwrap_or(0.0)
    );
    if !r.poll_ms.is_empty() {
        println!(
            "| | one poll (3 exchanges) on the line, {} polls | p50 {:.0} ms | p99 {:.0} ms | |",
            r.poll_ms.len(),
            percentile(&r.poll_ms, 50.0),
            percentile(&r.poll_ms, 99.0)
        );
    }
}
