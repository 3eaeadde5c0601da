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

/// The current outage and its stages in words, for `upsilon status`: per stage who has
/// not acknowledged, who is halting (for how long, of its shutdown time), who is down.
pub fn outage_lines(s: &PowerState, now_ms: i64) -> (String, Vec<String>) {
    let Some(o) = s.outage.as_ref() else {
        return (String::new(), vec![]);
    };
    let name = |id: &u64| {
        s.host(*id)
            .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
    };
    let what = if o.is_drill() { "fire drill" } else { "outage" };
    let head = match o.ended_ms {
        None => format!(
            "{what} {} since {}: {} of {} stage(s) started",
            o.id,
            format_date(from_unix_ms(o.started_ms)),
            o.stages.len(),
            s.plan.as_ref().map_or(0, |p| p.stages.len())
        ),
        Some(end) => format!(
            "{what} {} ended {}: {}",
            o.id,
            format_date(from_unix_ms(end)),
            o.end_reason
        ),
    };
    let mut lines = Vec::new();
    let plan = s.plan.clone().unwrap_or_default();
    for (k, r) in o.stages.iter().enumerate() {
        use crate::replicated::endgame::{HostPhase, phase, shutdown_s};
        let (mut waiting, mut halting, mut down) = (vec![], vec![], vec![]);
        for h in &r.hosts {
            let Some(n) = s.host(*h) else {
                waiting.push(name(h));
                continue;
            };
            let acked = r.acks.get(h).is_some_and(|a| a.halting_ms.is_some());
            match phase(s, &plan, n, now_ms) {
                HostPhase::Down { how, .. } => down.push(format!("{} ({})", n.name, how.as_str())),
                HostPhase::Halting { since_ms } => halting.push(format!(
                    "{} for {} s of {} s",
                    n.name,
                    (now_ms - since_ms).max(0) / 1000,
                    shutdown_s(s, &plan, n)
                )),
                HostPhase::Running if !acked => waiting.push(n.name.clone()),
                HostPhase::Running => halting.push(n.name.clone()),
            }
        }
        let mut parts = vec![];
        if !waiting.is_empty() {
            parts.push(format!("not yet acknowledged: {}", waiting.join(", ")));
        }
        if !halting.is_empty() {
            parts.push(format!("halting: {}", halting.join(", ")));
        }
        if !down.is_empty() {
            parts.push(format!("down: {}", down.join(", ")));
        }
        let state = if waiting.is_empty() && halting.is_empty() {
            "every host down".to_string()
        } else {
            parts.join("; ")
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
            None => format!(
                "kill power {u}: ordered with a {} s delay, not yet carried out",
                k.delay_s
            ),
        });
    }
    (head, lines)
}
