//! endgame-bench: `plan check`'s predicted end game against a real outage on a cluster
//! of real `upsilond` processes with a generated plan.
//!
//! Run:
//!     cargo build --release --workspace --bins && target/release/endgame-bench [NODES] [SEED]
//! (default 25 nodes, seed 1). Three voters (n1 and n2 own ups1 and ups2, n3 does not),
//! the rest learners; each host is fed by ups1, ups2 or both (`min_supplies` 1 or 2)
//! and takes 2-8 s to halt (record mode stands in for the halt: the daemon exits after
//! that long, so voters really go and the quorum with them); the plan has four stages on `on_battery_s` triggers, the owners anywhere, n3
//! in the last. `plan check` is read before mains fail on both UPSes; then every stage
//! start and kill order the cluster commits is compared with it.

use std::time::Duration;

use upsilon_core::testing::Rng;
use upsilon_tests::{ClusterSpec, TestCluster, event_lines, stdout, wait_for};

/// "+N s" after `key` in a line, as `plan check` prints it.
fn at_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.strip_prefix('+')?;
    rest[..rest.find(' ')?].parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(25);
    let seed: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut rng = Rng(seed);
    let stages = 4;
    let mut stage_of: Vec<usize> = Vec::new();
    let mut spec = ClusterSpec::new(nodes, 3)
        .ups_on(&[1, 2])
        .local_thresholds_off()
        .poll_ms(1000)
        .timing("")
        .no_faults();
    for i in 1..=nodes {
        let feeds = match rng.below(3) {
            0 => "feeds = [\"ups1\"]",
            1 => "feeds = [\"ups2\"]",
            _ if rng.chance(50) => "feeds = [\"ups1\", \"ups2\"]\nmin_supplies = 2",
            _ => "feeds = [\"ups1\", \"ups2\"]",
        };
        let stage = if i == 3 {
            stages - 1
        } else {
            rng.below(stages as u64) as usize
        };
        stage_of.push(stage);
        let shutdown = 2 + rng.below(7);
        spec = spec
            .node(
                i,
                &format!("{feeds}\nlabels = [\"s{stage}\"]\nshutdown_s = {shutdown}"),
            )
            .executor_of(
                i,
                &format!(
                    "record_halt = \"exit\"\nrecord_halt_after_ms = {}",
                    shutdown * 1000
                ),
            );
    }
    let mut plan = String::from("silence_s = 3\nkill_power_delay_s = 5\nruntime_floor_s = 0\n");
    for k in 0..stages {
        plan.push_str(&format!(
            "\n[[stage]]\nname = \"s{k}\"\nhosts = [\"label:s{k}\"]\ntrigger = {{ on_battery_s = {} }}\nack_timeout_s = 60\n",
            3 + 5 * k
        ));
    }
    println!(
        "endgame-bench: {nodes} nodes, seed {seed}; owners n1 (ups1) in stage {}, n2 (ups2) in stage {}",
        stage_of[0] + 1,
        stage_of[1] + 1
    );
    let c = spec
        .plan(&plan)
        .start_formed_within(Duration::from_secs(600));
    let check = wait_for(Duration::from_secs(120), || {
        let text = stdout(&c.cli(1, &["plan", "check"]));
        let ready = text.contains("stage 4")
            && !text.contains("(yet)")
            && text.matches("UPS ups").count() >= 2;
        ready.then_some(text)
    })
    .expect("plan check never saw the whole cluster");
    let predicted_stages: Vec<Option<f64>> = (1..=stages)
        .map(|k| {
            check
                .lines()
                .find(|l| l.starts_with(&format!("stage {k} ")))
                .and_then(|l| at_after(l, ": starts at "))
        })
        .collect();
    let predicted_kill = |ups: &str| {
        check
            .lines()
            .find(|l| l.starts_with(&format!("UPS {ups}: kill power ordered")))
            .and_then(|l| at_after(l, " at "))
    };
    let predicted_kills = [predicted_kill("ups1"), predicted_kill("ups2")];

    c.cli(1, &["sim", "set", "--ups", "ups1", "--on-battery"]);
    c.cli(1, &["sim", "set", "--ups", "ups2", "--on-battery"]);
    // The daemons exit as they halt: the history is read from whichever node still
    // answers, and kill power from the owners' executor records (an owner left without
    // a quorum cuts alone, which commits only once a quorum is back).
    let mut h = Vec::new();
    let kill_at = |c: &TestCluster, i: usize| {
        c.records(i)
            .into_iter()
            .find(|r| r["action"] == "killpower")
            .and_then(|r| r["at_unix_ms"].as_i64())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        if let Some(lines) = (1..=nodes)
            .rev()
            .map(|i| event_lines(&c.pki, c.addr(i)))
            .find(|l| !l.is_empty())
        {
            h = lines;
        }
        let owners_done = (1..=2)
            .all(|i| kill_at(&c, i).is_some() || c.log_of(i).contains("halting without cutting"));
        if owners_done {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let t0 = h
        .iter()
        .rfind(|l| l.message.starts_with("Outage") && l.message.contains("began"))
        .map(|l| l.at_ms)
        .expect("an outage began");
    let measured = |needle: &str| {
        h.iter()
            .find(|l| l.at_ms >= t0 && l.message.contains(needle))
            .map(|l| (l.at_ms - t0) as f64 / 1000.0)
    };
    println!("\n| event | predicted (plan check) | measured | difference |");
    println!("|---|---|---|---|");
    let mut worst: f64 = 0.0;
    let mut row = |what: String, p: Option<f64>, m: Option<f64>| {
        let diff = match (p, m) {
            (Some(p), Some(m)) => {
                worst = worst.max((m - p).abs());
                format!("{:+.1} s", m - p)
            }
            _ => "-".into(),
        };
        let s = |x: Option<f64>| x.map_or("-".into(), |x| format!("+{x:.1} s"));
        println!("| {what} | {} | {} | {diff} |", s(p), s(m));
    };
    for (k, predicted) in predicted_stages.iter().enumerate() {
        row(
            format!("stage {} (s{k})", k + 1),
            *predicted,
            measured(&format!("Stage {} (s{k}) started", k + 1)),
        );
    }
    for (i, (u, p)) in ["ups1", "ups2"].iter().zip(predicted_kills).enumerate() {
        let done = kill_at(&c, i + 1).map(|t| (t - t0) as f64 / 1000.0);
        row(format!("kill power {u} (carried out)"), p, done);
    }
    println!("\nlargest difference: {worst:.1} s");
    println!("\nplan check as read before the outage:\n{check}");
}
