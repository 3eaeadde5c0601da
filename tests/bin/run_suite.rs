//! Runs every test binary of the workspace, several at a time, longest first: the real
//! process tests spend most of their time waiting on timers and peers, so on two cores
//! three of them side by side take a third of the time one after the other did.
//!
//! Input: the JSON that `cargo test --workspace --no-run --message-format=json` printed
//! (every test executable, already built: nothing is compiled twice). Each binary runs
//! from its package's directory, as `cargo test` runs it, with its output in
//! `target/test-logs/<package>-<target>.log`; a failing one's log is printed whole.
//! Every binary runs even after a failure. At the end: each binary's time, and how many
//! binaries and tests passed.
//!
//! `UPSILON_TEST_JOBS` sets how many run at once (default 3).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test executable.
#[derive(Debug, Clone)]
struct TestBinary {
    name: String,
    package: String,
    dir: PathBuf,
    exe: PathBuf,
}

/// What a run of one binary came to.
#[derive(Debug)]
struct Outcome {
    name: String,
    ok: bool,
    took: Duration,
    /// passed, failed, skipped, summed over its `test result:` lines.
    counts: (u64, u64, u64),
}

/// Seconds each long binary took in the last full run (BENCHMARKS.md, "Test suite"):
/// the longest start first, so that no lane is left with a long one at the end.
const EXPECTED_S: &[(&str, u64)] = &[
    ("randomized", 190),
    ("randomized_2", 190),
    ("staged", 180),
    ("hardening", 125),
    ("endgame", 110),
    ("single_node", 90),
    ("apcsmart", 90),
    ("bridge", 65),
    ("master_slave", 45),
    ("cluster", 30),
    ("nis", 25),
    ("modbus", 20),
    ("timeline_property", 15),
    ("outage_simulation", 11),
];

fn expected(b: &TestBinary) -> u64 {
    EXPECTED_S
        .iter()
        .find(|(n, _)| *n == b.name)
        .map_or(5, |(_, s)| *s)
}

fn binaries(json: &str) -> Result<Vec<TestBinary>, String> {
    let mut out = Vec::new();
    for line in json.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let manifest = v["manifest_path"]
            .as_str()
            .ok_or("an artifact without manifest_path")?;
        let package = v["package_id"]
            .as_str()
            .and_then(|id| id.rsplit('#').next())
            .map(|p| p.split('@').next().unwrap_or(p).to_string())
            .unwrap_or_default();
        out.push(TestBinary {
            name: v["target"]["name"].as_str().unwrap_or("?").to_string(),
            package,
            dir: Path::new(manifest).parent().unwrap().to_path_buf(),
            exe: PathBuf::from(exe),
        });
    }
    if out.is_empty() {
        return Err("no test executable in the input: pass the output of `cargo test --workspace --no-run --message-format=json`".into());
    }
    Ok(out)
}

fn counts(log: &str) -> Option<(u64, u64, u64)> {
    let mut found = false;
    let mut c = (0, 0, 0);
    for l in log.lines().filter(|l| l.starts_with("test result:")) {
        found = true;
        let w: Vec<&str> = l.split_whitespace().collect();
        let n = |i: usize| {
            w.get(i)
                .and_then(|x| x.trim_end_matches(';').parse::<u64>().ok())
                .unwrap_or(0)
        };
        c.0 += n(3);
        c.1 += n(5);
        c.2 += n(7);
    }
    found.then_some(c)
}

fn run(b: &TestBinary, logs: &Path) -> Outcome {
    let log_path = logs.join(format!("{}-{}.log", b.package, b.name));
    let started = Instant::now();
    let status = std::fs::File::create(&log_path).and_then(|f| {
        let err = f.try_clone()?;
        Command::new(&b.exe)
            .current_dir(&b.dir)
            .env("CARGO_MANIFEST_DIR", &b.dir)
            .env("CARGO_PKG_NAME", &b.package)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(err)
            .status()
    });
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let c = counts(&log);
    let ok = status.as_ref().is_ok_and(|s| s.success()) && c.is_some();
    let verdict = if ok { "ok" } else { "FAILED" };
    let (p, f, s) = c.unwrap_or((0, 0, 0));
    let mut say = format!(
        "==> {} ({}) {verdict}: {p} passed, {f} failed, {s} skipped in {:.0} s\n",
        b.name,
        b.package,
        took.as_secs_f64()
    );
    if !ok {
        if let Err(e) = &status {
            say.push_str(&format!("cannot run {}: {e}\n", b.exe.display()));
        }
        say.push_str(&log);
    }
    print!("{say}");
    Outcome {
        name: format!("{} ({})", b.name, b.package),
        ok,
        took,
        counts: (p, f, s),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(input) = args.get(1) else {
        eprintln!("usage: run-suite <cargo test --no-run --message-format=json output>");
        std::process::exit(2);
    };
    let json = std::fs::read_to_string(input).unwrap_or_else(|e| {
        eprintln!("run-suite: {input}: {e}");
        std::process::exit(2);
    });
    let mut all = binaries(&json).unwrap_or_else(|e| {
        eprintln!("run-suite: {e}");
        std::process::exit(2);
    });
    all.sort_by_key(|b| std::cmp::Reverse(expected(b)));
    let jobs: usize = std::env::var("UPSILON_TEST_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j > 0)
        .unwrap_or(3);
    let logs = PathBuf::from("target/test-logs");
    std::fs::create_dir_all(&logs).expect("create target/test-logs");
    let logs = std::fs::canonicalize(logs).expect("target/test-logs");
    println!("running {} test binaries, {jobs} at a time", all.len());
    let queue = Arc::new(Mutex::new(all.into_iter().collect::<VecDeque<_>>()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let lanes: Vec<_> = (0..jobs)
        .map(|_| {
            let (queue, outcomes, logs) = (queue.clone(), outcomes.clone(), logs.clone());
            std::thread::spawn(move || {
                loop {
                    let Some(b) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let o = run(&b, &logs);
                    outcomes.lock().unwrap().push(o);
                }
            })
        })
        .collect();
    for l in lanes {
        l.join().expect("a lane panicked");
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort_by_key(|o| std::cmp::Reverse(o.took));
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    println!("time per test binary:");
    for o in &outcomes {
        println!("  {:>6.1} s  {}", o.took.as_secs_f64(), o.name);
    }
    if !failed.is_empty() {
        println!(
            "failed: {}",
            failed
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (p, f, s) = outcomes.iter().fold((0, 0, 0), |a, o| {
        (a.0 + o.counts.0, a.1 + o.counts.1, a.2 + o.counts.2)
    });
    println!(
        "{} test binaries: {} ok, {} failed ({p} tests passed, {f} failed, {s} skipped)",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
