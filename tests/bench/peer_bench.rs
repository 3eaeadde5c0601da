//! peer-bench: a standalone upsilond and Debian's real apcupsd, side by side in the same
//! run, each driving its own Smart-UPS simulator (tests/support/smartups.rs) on a pty
//! with its apcsmart driver: resident memory, CPU per hour idle, and the time from the
//! simulator's `!` / `$` alert to the event line in each daemon's events file.
//!
//! Run (release build; needs the apcupsd package):
//!     cargo build --release --workspace --bins && target/release/peer-bench [ROUNDS] [IDLE_SECONDS]
//! Both daemons poll at their defaults (upsilond 1 s; apcupsd's apcsmart driver reads
//! the line continuously and polls every second); each round fails or restores mains in
//! both simulators at the same moment and waits for `Power failure.` / `Power is back.`
//! in both events files (read every millisecond).

use std::path::Path;
use std::time::{Duration, Instant};

use upsilon_tests::apcupsd::RealApcupsd;
use upsilon_tests::proc_stats::{ProcStats, cpu_percent};
use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{NodeProc, TestPki, free_port, percentile};

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

/// Waits until `file` has a line after the first `after` lines containing `needle`.
fn wait_line(file: &Path, after: usize, needle: &str, timeout: Duration) -> Option<Instant> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Ok(t) = std::fs::read_to_string(file)
            && t.lines().skip(after).any(|l| l.contains(needle))
        {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let idle = Duration::from_secs(args.next().and_then(|a| a.parse().ok()).unwrap_or(120));
    let dir = tempfile::tempdir().expect("tempdir");
    let link_u = dir.path().join("ttyUPS-upsilond");
    let link_a = dir.path().join("ttyUPS-apcupsd");
    let sim_u = SmartUps::start(SmartUpsOptions::new(&link_u)).expect("simulator");
    let sim_a = SmartUps::start(SmartUpsOptions::new(&link_a)).expect("simulator");

    let pki = TestPki::new();
    let events_u = pki.path().join("upsilond.events");
    let node = NodeProc::start(
        &pki,
        &format!(
            "[[ups]]\nname = \"smart1\"\ndriver = \"apcsmart\"\ndevice = \"{}\"\n\n[policy]\non_battery_delay = 1\nbattery_level = 0\nminutes = 0\n\n[events]\nfile = \"{}\"\n\n[executor]\nrecord_file = \"record.jsonl\"\n",
            link_u.display(),
            events_u.display()
        ),
    );
    let adir = dir.path().join("apcupsd");
    std::fs::create_dir_all(&adir).unwrap();
    let nis: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let apcupsd = RealApcupsd::start(&adir, &link_a, nis);
    let events_a = adir.join("events");
    // Both have read the UPS's static values and settled.
    std::thread::sleep(Duration::from_secs(10));

    println!(
        "peer-bench: standalone upsilond and apcupsd {}, each on its own Smart-UPS simulator\n",
        std::process::Command::new("apcupsd")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    let pid_u = node.child.id();
    let pid_a = apcupsd.pid();
    let (bu, ba) = (ProcStats::read(pid_u), ProcStats::read(pid_a));
    std::thread::sleep(idle);
    let (au, aa) = (ProcStats::read(pid_u), ProcStats::read(pid_a));
    let (cu, ca) = (cpu_percent(&bu, &au, idle), cpu_percent(&ba, &aa, idle));
    println!("| measure | upsilond | apcupsd | upsilond / apcupsd |\n|---|---|---|---|");
    println!(
        "| RSS, idle | {:.1} MiB | {:.1} MiB | {:.2} |",
        au.rss_mib(),
        aa.rss_mib(),
        au.rss_kib as f64 / aa.rss_kib.max(1) as f64
    );
    println!(
        "| of which allocated (anon) | {:.1} MiB | {:.1} MiB | {:.2} |",
        au.anon_kib as f64 / 1024.0,
        aa.anon_kib as f64 / 1024.0,
        au.anon_kib as f64 / aa.anon_kib.max(1) as f64
    );
    println!(
        "| CPU idle, seconds per hour (over {} s) | {:.2} s | {:.2} s | {:.0} |",
        idle.as_secs(),
        cu * 36.0,
        ca * 36.0,
        cu / ca.max(1e-9)
    );
    println!("| threads | {} | {} | |", au.threads, aa.threads);

    let mut du = Vec::new();
    let mut da = Vec::new();
    for r in 0..rounds {
        let fail = r % 2 == 0;
        let needle = if fail {
            "Power failure"
        } else {
            "Power is back"
        };
        let (nu, na) = (lines(&events_u), lines(&events_a));
        let t0 = Instant::now();
        sim_u.mains(fail);
        sim_a.mains(fail);
        let tu = wait_line(&events_u, nu, needle, Duration::from_secs(20));
        let ta = wait_line(&events_a, na, needle, Duration::from_secs(20));
        match (tu, ta) {
            (Some(u), Some(a)) => {
                du.push(u.duration_since(t0).as_secs_f64() * 1000.0);
                da.push(a.duration_since(t0).as_secs_f64() * 1000.0);
            }
            _ => eprintln!(
                "round {r}: no {needle:?} (upsilond {tu:?}, apcupsd {ta:?})\n{}",
                apcupsd.log()
            ),
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    du.sort_by(f64::total_cmp);
    da.sort_by(f64::total_cmp);
    for p in [50.0, 99.0] {
        let (u, a) = (percentile(&du, p), percentile(&da, p));
        println!(
            "| alert -> event in the events file, p{p:.0} ({} rounds) | {u:.1} ms | {a:.1} ms | {:.2} |",
            du.len(),
            u / a
        );
    }
    drop(node);
    drop(apcupsd);
}
