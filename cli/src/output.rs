//! How the CLI shows things: the one-screen status table, event lines, and the JSON
//! shapes of `--json` (stable field names, enums as words).

use serde_json::{Value, json};
use upsilon_proto::v1 as pb;

pub use upsilon_core::time::local_date_ms as local_time;

fn opt(v: Option<f64>, unit: &str, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}{unit}"))
}

pub fn action_kind(k: i32) -> &'static str {
    match pb::ActionKind::try_from(k).unwrap_or(pb::ActionKind::Unspecified) {
        pb::ActionKind::None => "none",
        pb::ActionKind::Watching => "watching",
        pb::ActionKind::ShuttingDown => "shutting-down",
        pb::ActionKind::Unspecified => "unknown",
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The width the default status fits.
pub const SCREEN_WIDTH: usize = 80;

/// `text` broken at spaces into lines of at most `width` characters, the ones after the
/// first indented by `indent` (a word longer than a line stays whole).
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let body = text.trim_start();
    let lead = &text[..text.len() - body.len()];
    let mut out = String::new();
    let mut line = lead.to_string();
    // Whether `line` holds a word yet (beyond its lead or indent).
    let mut worded = false;
    for word in body.split(' ').filter(|w| !w.is_empty()) {
        let len = line.chars().count();
        if worded && len + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if worded {
            line.push(' ');
        }
        line.push_str(word);
        worded = true;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// Each line of `text` wrapped to the screen, continuation lines indented by 4.
fn wrap_lines(text: &str) -> String {
    text.lines()
        .map(|l| wrap(l, SCREEN_WIDTH, "    "))
        .collect()
}

/// The one-screen status: by default what fits 80 columns (the demo cluster in 24
/// lines); `long` adds addresses, ids, lag, versions, drivers, line voltage, the
/// executor's records and the policy, unwrapped.
pub fn status_table(s: &pb::StatusReply, long: bool) -> String {
    let mut out = format!(
        "Upsilon status from node {} at {}{}\n\n",
        s.node_name,
        local_time(s.generated_at_unix_ms),
        if long { "" } else { " (--long: more)" }
    );
    let mut head = vec!["UPS", "STATUS", "CHARGE", "RUNTIME", "LOAD"];
    if long {
        head.push("LINEV");
    }
    head.push("ON BATT");
    if long {
        head.push("DRIVER");
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for u in &s.ups {
        let mut row = vec![
            u.ups_name.clone(),
            u.status_text.clone(),
            opt(u.charge_percent, " %", 1),
            opt(u.runtime_seconds.map(|s| s / 60.0), " min", 1),
            opt(u.load_percent, " %", 1),
        ];
        if long {
            row.push(opt(u.line_voltage, " V", 1));
        }
        row.push(if u.time_on_battery_s > 0 {
            format!("{} s", u.time_on_battery_s)
        } else {
            "-".into()
        });
        if long {
            row.push(u.driver.clone());
        }
        rows.push(row);
    }
    if s.ups.is_empty() {
        out.push_str("(no UPS on this node)\n");
    } else {
        out.push_str(&table(&rows));
        for u in s.ups.iter().filter(|u| !u.comm_error.is_empty()) {
            out.push_str(&format!("  {}: {}\n", u.ups_name, u.comm_error));
        }
    }
    out.push('\n');
    out.push_str(&nodes_table(&s.nodes, s.generated_at_unix_ms, long));
    if !s.legacy_hosts.is_empty() {
        out.push_str(&legacy_table(&s.legacy_hosts, s.generated_at_unix_ms, long));
    }
    if let Some(c) = s.cluster.as_ref().filter(|c| c.enabled) {
        let text = if long {
            cluster_line(c)
        } else {
            wrap_lines(&cluster_short(c))
        };
        out.push_str(&text);
    }
    if long {
        out.push('\n');
    }
    if let Some(p) = &s.pending {
        if long {
            out.push_str(&format!(
                "PENDING ACTION: {}\n  {}\n",
                action_kind(p.kind).to_uppercase(),
                p.detail
            ));
            if p.since_unix_ms > 0 {
                out.push_str(&format!("  since {}\n", local_time(p.since_unix_ms)));
            }
            out.push_str(&format!("  executor: {} mode\n", p.executor_mode));
            for c in &p.commands {
                out.push_str(&format!("  - {c}\n"));
            }
        } else {
            let since = if p.since_unix_ms > 0 {
                format!(" (since {})", local_time(p.since_unix_ms))
            } else {
                String::new()
            };
            out.push_str(&wrap_lines(&format!(
                "PENDING ACTION: {}{since}: {}",
                action_kind(p.kind).to_uppercase(),
                p.detail.strip_prefix("no action: ").unwrap_or(&p.detail)
            )));
        }
    }
    if let Some(pol) = s.policy.as_ref().filter(|_| long) {
        out.push_str(&format!(
            "POLICY: BATTERYLEVEL {} %, MINUTES {}, TIMEOUT {}, ONBATTERYDELAY {} s, dead_time {} s\n",
            pol.battery_level_percent,
            pol.minutes,
            if pol.timeout_seconds == 0 { "off".to_string() } else { format!("{} s", pol.timeout_seconds) },
            pol.on_battery_delay_seconds,
            pol.dead_time_seconds
        ));
    }
    out
}

/// The cluster in the default status: leader, membership, writes, warnings, outage.
fn cluster_short(c: &pb::ClusterInfo) -> String {
    cluster_text(c, false)
}

/// One line about the cluster: leader, term, membership, and whether writes commit.
pub fn cluster_line(c: &pb::ClusterInfo) -> String {
    cluster_text(c, true)
}

/// The cluster's lines; `long` adds the leader's id and the applied index, and puts
/// why writes are not accepted on a line of its own.
fn cluster_text(c: &pb::ClusterInfo, long: bool) -> String {
    let leader = if c.leader.is_empty() {
        "none".to_string()
    } else if long {
        format!("{} (id {})", c.leader, c.leader_id)
    } else {
        c.leader.clone()
    };
    let applied = if long {
        format!(", applied index {}", c.last_applied)
    } else {
        String::new()
    };
    let mut text = format!(
        "CLUSTER: leader {leader}, term {}, {} voters + {} learners{applied}: ",
        c.term, c.voters, c.learners
    );
    if c.writable {
        text.push_str("accepting writes\n");
    } else if long {
        text.push_str(&format!("NOT ACCEPTING WRITES\n  {}\n", c.detail));
    } else {
        text.push_str(&format!("NOT ACCEPTING WRITES: {}\n", c.detail));
    }
    for w in &c.warnings {
        text.push_str(&format!("WARNING: {w}\n"));
    }
    if !c.outage.is_empty() {
        text.push_str(&format!("OUTAGE: {}\n", c.outage));
        for s in &c.stages {
            text.push_str(&format!("  {s}\n"));
        }
    }
    text
}

/// The members table; `long` adds ids, addresses, lag and versions.
pub fn nodes_table(nodes: &[pb::NodeInfo], now_ms: i64, long: bool) -> String {
    let head: &[&str] = if long {
        &[
            "NODE",
            "ID",
            "ROLE",
            "ADDRESS",
            "UPS",
            "STATE",
            "LAG",
            "LAST SEEN",
            "VERSION",
        ]
    } else {
        &["NODE", "ROLE", "UPS", "STATE", "LAST SEEN"]
    };
    let mut rows = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    let dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    for n in nodes {
        let seen = if n.last_seen_unix_ms <= 0 {
            "never".into()
        } else {
            format!(
                "{:.0} s ago",
                ((now_ms - n.last_seen_unix_ms).max(0) as f64) / 1000.0
            )
        };
        let ups = dash(&n.ups_names.join(","));
        let state = dash(&n.state);
        rows.push(if long {
            vec![
                n.name.clone(),
                if n.id == 0 {
                    "-".into()
                } else {
                    n.id.to_string()
                },
                n.role.clone(),
                n.address.clone(),
                ups,
                state,
                n.lag.map_or("-".into(), |l| l.to_string()),
                seen,
                dash(&n.version),
            ]
        } else {
            vec![n.name.clone(), n.role.clone(), ups, state, seen]
        });
    }
    table(&rows)
}

/// The legacy hosts (apcupsd clients served by a bridge) and their state.
/// `long` adds the bridge, addresses and labels.
pub fn legacy_table(hosts: &[pb::LegacyHostInfo], now_ms: i64, long: bool) -> String {
    let mut rows = vec![
        [
            "LEGACY HOST",
            "STATE",
            "SINCE",
            "BRIDGE",
            "ADDRESSES",
            "LABELS",
            "SUPPLY",
            "STAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let dash = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    for h in hosts {
        let supply = h.served.as_ref().map_or("-".to_string(), |u| {
            let mut text = format!("{} {}", u.ups_name, u.status_text);
            if h.shutting_down {
                text.push_str(" +SHUTDOWN");
            }
            text
        });
        let mut row = vec![
            h.name.clone(),
            if h.protocol == "master-slave" && h.state == "silent" {
                "silent (SLAVEDOWN)".to_string()
            } else if h.never_polled && (h.state == "polling" || h.state == "silent") {
                "never connected".to_string()
            } else {
                h.state.clone()
            },
            format!(
                "{:.0} s ago",
                ((now_ms - h.state_since_unix_ms).max(0) as f64) / 1000.0
            ),
            h.bridge.clone(),
            dash(&h.addresses),
            dash(&h.labels),
            supply,
            if h.stage.is_empty() {
                "-".into()
            } else {
                h.stage.clone()
            },
        ];
        if !long {
            row.drain(3..6);
        }
        rows.push(row);
    }
    if !long {
        rows[0].drain(3..6);
    }
    table(&rows)
}

pub fn legacy_json(h: &pb::LegacyHostInfo) -> Value {
    json!({
        "name": h.name, "state": h.state, "state_since_unix_ms": h.state_since_unix_ms,
        "bridge": h.bridge, "addresses": h.addresses, "labels": h.labels, "feeds": h.feeds,
        "min_supplies": h.min_supplies, "protocol": h.protocol,
        "served": h.served.as_ref().map(ups_json), "shutting_down": h.shutting_down,
        "stage": h.stage, "never_polled": h.never_polled,
    })
}

pub fn event_line(e: &pb::Event) -> String {
    let ups = if e.ups_name.is_empty() {
        String::new()
    } else {
        format!(" [{}]", e.ups_name)
    };
    format!(
        "{}  {:<13}{} {}",
        local_time(e.at_unix_ms),
        e.name,
        ups,
        e.message
    )
}

pub fn ups_json(u: &pb::UpsReading) -> Value {
    let f = u.flags.unwrap_or_default();
    json!({
        "name": u.ups_name,
        "status": u.status_text,
        "statflag": format!("0x{:08X}", u.statflag),
        "flags": {
            "online": f.online, "on_battery": f.on_battery, "low_battery": f.low_battery,
            "replace_battery": f.replace_battery, "overload": f.overload, "calibration": f.calibration,
            "trim": f.trim, "boost": f.boost, "comm_lost": f.comm_lost,
            "shutting_down": f.shutting_down, "battery_present": f.battery_present,
        },
        "charge_percent": u.charge_percent,
        "runtime_seconds": u.runtime_seconds,
        "load_percent": u.load_percent,
        "line_voltage": u.line_voltage,
        "output_voltage": u.output_voltage,
        "battery_voltage": u.battery_voltage,
        "min_line_voltage": u.min_line_voltage,
        "max_line_voltage": u.max_line_voltage,
        "line_frequency_hz": u.line_frequency_hz,
        "internal_temp_c": u.internal_temp_c,
        "nominal_power_watts": u.nominal_power_watts,
        "model": u.model,
        "serial_number": u.serial_number,
        "firmware": u.firmware,
        "battery_date": u.battery_date,
        "last_transfer": u.last_transfer,
        "self_test": u.self_test,
        "time_on_battery_seconds": u.time_on_battery_s,
        "transfers": u.transfers,
        "driver": u.driver,
        "read_at_unix_ms": u.read_at_unix_ms,
        "details": u.details.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "comm_error": u.comm_error,
    })
}

pub fn event_json(e: &pb::Event) -> Value {
    json!({
        "seq": e.seq, "at_unix_ms": e.at_unix_ms, "name": e.name,
        "ups": e.ups_name, "message": e.message, "node": e.node_name,
    })
}

pub fn status_json(s: &pb::StatusReply) -> Value {
    let p = s.pending.clone().unwrap_or_default();
    let pol = s.policy.unwrap_or_default();
    json!({
        "node": s.node_name,
        "generated_at_unix_ms": s.generated_at_unix_ms,
        "ups": s.ups.iter().map(ups_json).collect::<Vec<_>>(),
        "nodes": s.nodes.iter().map(|n| json!({
            "name": n.name, "id": n.id, "role": n.role, "address": n.address,
            "ups": n.ups_names, "version": n.version, "last_seen_unix_ms": n.last_seen_unix_ms,
            "lag": n.lag,
        })).collect::<Vec<_>>(),
        "legacy_hosts": s.legacy_hosts.iter().map(legacy_json).collect::<Vec<_>>(),
        "cluster": s.cluster.as_ref().map(|c| json!({
            "enabled": c.enabled, "leader": c.leader, "leader_id": c.leader_id, "term": c.term,
            "writable": c.writable, "detail": c.detail, "last_applied": c.last_applied,
            "snapshot_index": c.snapshot_index,
            "voters": c.voters, "learners": c.learners,
            "outage": c.outage, "stages": c.stages, "warnings": c.warnings,
            "state_index": c.state_index, "state_digest": c.state_digest,
        })),
        "pending": {
            "kind": action_kind(p.kind),
            "reason": p.reason,
            "detail": p.detail,
            "since_unix_ms": p.since_unix_ms,
            "executor_mode": p.executor_mode,
            "commands": p.commands,
            "shutdown_handled": p.shutdown_handled,
        },
        "policy": {
            "battery_level_percent": pol.battery_level_percent,
            "minutes": pol.minutes,
            "timeout_seconds": pol.timeout_seconds,
            "on_battery_delay_seconds": pol.on_battery_delay_seconds,
            "dead_time_seconds": pol.dead_time_seconds,
        },
    })
}

/// `upsilon plan` as text.
pub fn plan_text(p: &pb::PlanReply) -> String {
    if !p.has_plan {
        return "no plan: set one with `upsilon plan apply FILE`\n".into();
    }
    let mut rows = vec![
        ["#", "STAGE", "HOSTS", "TRIGGER", "ACK TIMEOUT", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for (i, s) in p.stages.iter().enumerate() {
        let hosts = if s.hosts.is_empty() {
            format!("(none: {})", s.selectors.join(", "))
        } else {
            s.hosts.join(",")
        };
        let mut state = s.state.clone();
        if !s.waiting_for.is_empty() {
            state.push_str(&format!("; waiting for {}", s.waiting_for.join(", ")));
        }
        rows.push(vec![
            (i + 1).to_string(),
            s.name.clone(),
            hosts,
            s.trigger.clone(),
            format!("{} s", s.ack_timeout_s),
            state,
        ]);
    }
    let mut out = table(&rows);
    let deferred: Vec<&String> = p.stages.iter().flat_map(|s| &s.deferred).collect();
    for d in &deferred {
        out.push_str(&format!("{d}: no stage waits for it\n"));
    }
    out.push_str(&format!(
        "emergency: runtime under {} s, a UPS low-battery signal, or a UPS on battery silent for {} s starts every remaining stage\nkill power: each UPS cuts its outlets at least {} s after its order (longer while a host it powers may still be shutting down), returning with mains\n",
        p.runtime_floor_s, p.dead_time_s, p.kill_power_delay_s
    ));
    if !p.shutdown_times.is_empty() {
        let mut rows = vec![
            ["HOST", "SHUTDOWN DECLARED", "MEASURED", "COUNTED"]
                .map(String::from)
                .to_vec(),
        ];
        for h in &p.shutdown_times {
            rows.push(vec![
                h.host.clone(),
                format!("{} s", h.declared_s),
                h.measured_s.map_or("-".into(), |m| format!("{m} s")),
                format!("{} s", h.used_s),
            ]);
        }
        out.push_str(&table(&rows));
        out.push_str(&format!(
            "a host is down once it said \"halted\" or is silent {} s after its halting acknowledgement\n",
            p.silence_s
        ));
    }
    if !p.outage.is_empty() {
        out.push_str(&format!("outage: {}\n", p.outage));
    }
    out.push_str("would do now:\n");
    for l in &p.now {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

pub fn plan_check_text(c: &pb::PlanCheck) -> String {
    let mut out = String::new();
    for l in &c.lines {
        out.push_str(&format!("{l}\n"));
    }
    for w in &c.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for p in &c.problems {
        out.push_str(&format!("DOES NOT FIT: {p}\n"));
    }
    out.push_str(if c.fits {
        "the plan fits the batteries at the current load\n"
    } else {
        "the plan does NOT fit the batteries at the current load\n"
    });
    out
}

pub fn plan_check_json(c: &pb::PlanCheck) -> Value {
    json!({
        "fits": c.fits, "lines": c.lines, "problems": c.problems, "warnings": c.warnings,
    })
}

pub fn plan_json(p: &pb::PlanReply) -> Value {
    json!({
        "shutdown_times": p.shutdown_times.iter().map(|h| json!({
            "host": h.host, "declared_s": h.declared_s, "measured_s": h.measured_s,
            "used_s": h.used_s,
        })).collect::<Vec<_>>(),
        "silence_s": p.silence_s,
        "has_plan": p.has_plan,
        "stages": p.stages.iter().map(|s| json!({
            "name": s.name, "selectors": s.selectors, "hosts": s.hosts, "trigger": s.trigger,
            "ack_timeout_s": s.ack_timeout_s, "state": s.state, "waiting_for": s.waiting_for,
            "deferred": s.deferred,
        })).collect::<Vec<_>>(),
        "outage": p.outage,
        "now": p.now,
        "runtime_floor_s": p.runtime_floor_s,
        "dead_time_s": p.dead_time_s,
        "kill_power_delay_s": p.kill_power_delay_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_the_lead_and_indents_what_follows() {
        let w = wrap(
            "  stage 1 batch: started (n4: on battery for 5 s); halting: n4 for 3 s of 120 s",
            40,
            "    ",
        );
        assert_eq!(
            w,
            "  stage 1 batch: started (n4: on battery\n    for 5 s); halting: n4 for 3 s of 120\n    s\n"
        );
        assert!(w.lines().all(|l| l.chars().count() <= 40), "{w}");
        // A word longer than a line stays whole.
        let long = format!("x {} y", "z".repeat(50));
        assert_eq!(
            wrap(&long, 20, "  "),
            format!("x\n  {}\n  y\n", "z".repeat(50))
        );
    }
}
