//! The cluster's state in sentences, once, as plain strings: the outage and its stages,
//! the problems an operator must fix. `upsilon status` shows them through the API; a web
//! page, metrics labels and the legacy servers are to use the same words.

use crate::replicated::state::PowerState;
use crate::time::{format_date, from_unix_ms};

/// Problems in the replicated state an operator must fix, in words.
pub fn cluster_warnings(s: &PowerState) -> Vec<String> {
    let name = |id: u64| {
        s.nodes
            .get(&id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    };
    let mut out: Vec<String> = s.member_problems.values().cloned().collect();
    for u in s.upses.values() {
        if let Some(r) = &u.rival {
            out.push(format!(
                "two nodes report a UPS named {ups}: {owner} owns it, {rival}'s reports are refused (since {since}); rename one, or `upsilon ups release {ups}` to move it",
                ups = u.name,
                owner = name(u.owner),
                rival = name(r.node),
                since = format_date(from_unix_ms(r.since_ms)),
            ));
        }
    }
    out
}

/// The current outage and its stages in words, for `upsilon status`.
pub fn outage_lines(s: &PowerState) -> (String, Vec<String>) {
    let Some(o) = s.outage.as_ref() else {
        return (String::new(), vec![]);
    };
    let name = |id: &u64| {
        s.host(*id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    };
    let head = match o.ended_ms {
        None => format!(
            "outage {} since {}: {} of {} stage(s) started",
            o.id,
            format_date(from_unix_ms(o.started_ms)),
            o.stages.len(),
            s.plan.as_ref().map_or(0, |p| p.stages.len())
        ),
        Some(end) => format!(
            "outage {} ended {}: {}",
            o.id,
            format_date(from_unix_ms(end)),
            o.end_reason
        ),
    };
    let mut lines = Vec::new();
    for (k, r) in o.stages.iter().enumerate() {
        let waiting: Vec<String> = r
            .hosts
            .iter()
            .filter(|h| r.acks.get(*h).is_none_or(|a| a.halting_ms.is_none()))
            .map(name)
            .collect();
        let state = if waiting.is_empty() {
            "every host halting".to_string()
        } else {
            format!("not yet acknowledged: {}", waiting.join(", "))
        };
        lines.push(format!(
            "stage {} {}: started ({}); {state}",
            k + 1,
            r.name,
            r.reason
        ));
    }
    for (u, k) in &o.kill_power {
        lines.push(match k.done_ms {
            Some(_) => format!("kill power {u}: {}", k.result),
            None => format!("kill power {u}: ordered, not yet carried out"),
        });
    }
    (head, lines)
}
