//! Staged-shutdown plans as the tests write them, the stage times the cluster's
//! history and `plan check` show, and the two-stage cluster several driver tests play.

use std::time::Duration;

use crate::{ClusterSpec, EventLine, TestCluster, wait_for};

/// A 3-node cluster whose node 1 owns UPS `ups` (its `[[ups]]` TOML given) feeding
/// every host, hosts recorded and UPS orders sent, with a two-stage plan (apps = n2
/// and n3 after 1 s on battery, core = n1 after 3 s; each host's shutdown takes 1 s),
/// once the plan and the UPS's ONLINE status have reached node 2.
pub fn two_stage_cluster(ups: &str, ups_toml: String) -> TestCluster {
    let c = ClusterSpec::new(3, 3)
        .ups_toml(1, ups_toml)
        .local_thresholds_off()
        // The UPS gets the real orders; host shutdowns are only recorded.
        .executor("ups_commands = \"send\"")
        .feeds(&[ups])
        .every_node("shutdown_s = 1")
        .labels(&["core", "apps", "apps"])
        .plan("kill_power_delay_s = 1\nruntime_floor_s = 0\n\n[[stage]]\nname = \"apps\"\nhosts = [\"label:apps\"]\ntrigger = { on_battery_s = 1 }\nack_timeout_s = 30\n\n[[stage]]\nname = \"core\"\nhosts = [\"label:core\"]\ntrigger = { on_battery_s = 3 }\nack_timeout_s = 30\n")
        .start_formed();
    c.wait_plan(2);
    wait_for(Duration::from_secs(20), || {
        let online = c
            .status(2)
            .is_some_and(|s| s["ups"][0]["status"] == "ONLINE");
        online.then_some(())
    })
    .unwrap_or_else(|| panic!("the UPS never reached node 2\n{}", c.logs()));
    c
}

/// Each of `hosts` recorded exactly one shutdown.
pub fn assert_shut_down_once(c: &TestCluster, hosts: impl IntoIterator<Item = usize>) {
    for i in hosts {
        assert_eq!(
            shutdowns(c, i),
            1,
            "n{i} must shut down exactly once: {:?}",
            c.records(i)
        );
    }
}

/// How many shutdowns host `i` recorded.
pub fn shutdowns(c: &TestCluster, i: usize) -> usize {
    c.records(i)
        .iter()
        .filter(|r| r["action"] == "shutdown")
        .count()
}

/// A staged-shutdown plan's TOML: kill power 5 s after the last stage, no runtime
/// floor, and one `[[stage]]` per `(name, hosts, trigger, ack_timeout_s)`, e.g.
/// `("batch", r#""label:batch""#, "on_battery_s = 2", 30)`.
pub fn plan_text(stages: &[(&str, &str, &str, u64)]) -> String {
    let mut t = String::from("kill_power_delay_s = 5\nruntime_floor_s = 0\n");
    for (name, hosts, trigger, ack) in stages {
        t.push_str(&format!(
            "\n[[stage]]\nname = \"{name}\"\nhosts = [{hosts}]\ntrigger = {{ {trigger} }}\nack_timeout_s = {ack}\n"
        ));
    }
    t
}

/// Seconds after the outage began at which each stage started, from the cluster's
/// history.
pub fn committed_stage_starts(h: &[EventLine]) -> Vec<f64> {
    let t0 = h
        .iter()
        .rfind(|l| l.message.starts_with("Outage") && l.message.contains("began"))
        .map(|l| l.at_ms)
        .expect("an outage began");
    h.iter()
        .filter(|l| {
            l.at_ms >= t0 && l.message.starts_with("Stage ") && l.message.contains(") started")
        })
        .map(|l| (l.at_ms - t0) as f64 / 1000.0)
        .collect()
}

/// The stages the cluster's history `h` says started, in seconds after the outage
/// began: as many as `plan check` predicted (its text `check`), each within 2 s of its
/// prediction.
pub fn assert_stages_as_predicted(h: &[EventLine], check: &str) -> Vec<f64> {
    let predicted = predicted_stage_starts(check);
    let committed = committed_stage_starts(h);
    assert_eq!(committed.len(), predicted.len(), "{h:#?}\n{check}");
    for (k, (p, m)) in predicted.iter().zip(&committed).enumerate() {
        assert!(
            (p - m).abs() <= 2.0,
            "stage {}: predicted +{p} s, committed +{m:.1} s\n{check}",
            k + 1
        );
    }
    committed
}

/// The stage start times `plan check` predicts, in seconds ("stage K name: starts at +N s").
pub fn predicted_stage_starts(check: &str) -> Vec<f64> {
    check
        .lines()
        .filter(|l| l.starts_with("stage ") && l.contains(": starts at +"))
        .map(|l| {
            let rest = &l[l.find(": starts at +").unwrap() + 13..];
            rest[..rest.find(' ').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The plan most cluster tests play: `batch`, then `apps` after `on_battery_s` on
/// battery each, then `core` when the charge falls below `charge_below`; `hosts` are
/// each stage's TOML host list.
pub fn three_stage_plan(
    hosts: [&str; 3],
    on_battery_s: [u64; 2],
    charge_below: u32,
    ack_timeout_s: [u64; 3],
) -> String {
    plan_text(&[
        (
            "batch",
            hosts[0],
            &format!("on_battery_s = {}", on_battery_s[0]),
            ack_timeout_s[0],
        ),
        (
            "apps",
            hosts[1],
            &format!("on_battery_s = {}", on_battery_s[1]),
            ack_timeout_s[1],
        ),
        (
            "core",
            hosts[2],
            &format!("charge_below = {charge_below}"),
            ack_timeout_s[2],
        ),
    ])
}

/// The stage hosts by label: `label:batch`, `label:apps`, `label:core`.
pub const BY_LABEL: [&str; 3] = ["\"label:batch\"", "\"label:apps\"", "\"label:core\""];
