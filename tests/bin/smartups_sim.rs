//! `smartups-sim`: plays an APC Smart-UPS on a pseudo-terminal.
//!
//! ```text
//! smartups-sim --link /tmp/ttyUPS [--scenario deploy/scenarios/power-failure.toml]
//!              [--grace-s 20] [--old-firmware]
//! ```
//! Point a node at it with `driver = "apcsmart"` and `device = "/tmp/ttyUPS"`. Commands
//! on stdin change it while it runs: `mains fail|return`, `charge N`, `load N`,
//! `low on|off|auto`, `mode normal|silent|garbage|truncated|wronglength`, `alert C`,
//! `vanish`, `reappear`, `quit`. Every byte received is printed to stderr with its time.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use upsilon_core::ups::sim::{Scenario, SimChange};
use upsilon_tests::smartups::{Mode, SmartUps, SmartUpsOptions};

fn usage() -> ! {
    eprintln!("usage: smartups-sim --link PATH [--scenario FILE] [--grace-s N] [--old-firmware]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut link: Option<PathBuf> = None;
    let mut scenario: Option<PathBuf> = None;
    let mut grace: u32 = 20;
    let mut old = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--link" => link = args.next().map(PathBuf::from),
            "--scenario" => scenario = args.next().map(PathBuf::from),
            "--grace-s" => {
                grace = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--old-firmware" => old = true,
            _ => usage(),
        }
    }
    let Some(link) = link else { usage() };
    let mut opts = SmartUpsOptions::new(&link);
    opts.grace_s = grace;
    opts.old_firmware = old;
    if let Some(p) = scenario {
        match Scenario::load(&p) {
            Ok(s) => {
                opts.spec = s.ups;
                opts.steps = s.steps;
            }
            Err(e) => {
                eprintln!("smartups-sim: {e}");
                std::process::exit(1);
            }
        }
    }
    let ups = match SmartUps::start(opts) {
        Ok(u) => u,
        Err(e) => {
            eprintln!(
                "smartups-sim: cannot create the pty at {}: {e}",
                link.display()
            );
            std::process::exit(1);
        }
    };
    println!("Smart-UPS simulator on {}", link.display());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Echo received bytes from a side thread.
        scope.spawn(|| {
            let mut shown = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let all = ups.received();
                for r in &all[shown..] {
                    eprintln!("{:>10.3} s  RX {:?}", r.at.as_secs_f64(), r.byte as char);
                }
                shown = all.len();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        commands(&ups);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

fn commands(ups: &SmartUps) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        let ok = match w.as_slice() {
            ["mains", "fail"] => {
                ups.mains(true);
                true
            }
            ["mains", "return"] => {
                ups.mains(false);
                true
            }
            ["charge", v] | ["load", v] => match v.parse::<f64>() {
                Ok(x) => {
                    let mut c = SimChange::default();
                    if w[0] == "charge" {
                        c.charge = Some(x);
                    } else {
                        c.load = Some(x);
                    }
                    ups.set(&c);
                    true
                }
                Err(_) => false,
            },
            ["low", v] => {
                let l = match *v {
                    "on" => Some(Some(true)),
                    "off" => Some(Some(false)),
                    "auto" => Some(None),
                    _ => None,
                };
                l.map(|low| {
                    ups.set(&SimChange {
                        low_battery: Some(low),
                        ..Default::default()
                    })
                })
                .is_some()
            }
            ["mode", m] => {
                let mode = match *m {
                    "normal" => Some(Mode::Normal),
                    "silent" => Some(Mode::Silent),
                    "garbage" => Some(Mode::Garbage),
                    "truncated" => Some(Mode::Truncated),
                    "wronglength" => Some(Mode::WrongLength),
                    _ => None,
                };
                mode.map(|m| ups.set_mode(m)).is_some()
            }
            ["alert", c] if c.len() == 1 => {
                ups.send_raw(c.as_bytes());
                true
            }
            ["vanish"] => {
                ups.vanish();
                true
            }
            ["reappear"] => ups.reappear().is_ok(),
            ["quit"] => break,
            [] => true,
            _ => false,
        };
        if !ok {
            eprintln!("smartups-sim: not understood: {line:?}");
        }
    }
}
