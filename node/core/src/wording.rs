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
        let mut deferred = vec![];
        for h in &r.hosts {
            let Some(n) = s.host(*h) else {
                waiting.push(name(h));
                continue;
            };
            let acked = r.acks.get(h).is_some_and(|a| a.halting_ms.is_some());
            let duties = crate::replicated::endgame::duties(s, *h);
            if !acked && !duties.is_empty() {
                deferred.push(format!(
                    "{} ({})",
                    n.name,
                    crate::replicated::endgame::deferred_short(&duties)
                ));
                continue;
            }
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
        if !deferred.is_empty() {
            parts.push(format!("halts after kill power: {}", deferred.join(", ")));
        }
        let state = if waiting.is_empty() && halting.is_empty() && deferred.is_empty() {
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

/// A host's state in a few words, for the node list: `up`, `shutting down`, `halting
/// 12 s`, `down (halted)`, `halts after kill of ups1` (a UPS owner whose stage started).
pub fn host_state(s: &PowerState, id: u64, now_ms: i64) -> String {
    use crate::replicated::endgame::{HostPhase, duties, phase};
    let Some(n) = s.host(id) else {
        return "unknown".into();
    };
    let plan = s.plan.clone().unwrap_or_default();
    let active = s.outage.as_ref().filter(|o| o.ended_ms.is_none());
    let run = active.and_then(|o| o.stages.iter().find(|r| r.hosts.contains(&id)));
    let ack = run.and_then(|r| r.acks.get(&id));
    // After the outage: a host recorded halted that still answers (a record-mode host,
    // whose halt was only recorded) is up; one that is silent is down.
    if active.is_none() && s.halted.contains(&id) {
        let answering = now_ms - n.last_seen_ms < plan.silence_s as i64 * 1000;
        return if answering {
            "up (halt recorded)".into()
        } else {
            "down (halted)".into()
        };
    }
    let waiting = duties(s, id);
    if run.is_some() && !waiting.is_empty() && ack.is_none_or(|a| a.halting_ms.is_none()) {
        return crate::replicated::endgame::deferred_short(&waiting);
    }
    match phase(s, &plan, n, now_ms) {
        HostPhase::Down { how, .. } => format!("down ({})", how.as_str()),
        HostPhase::Halting { since_ms } => {
            format!("halting {} s", (now_ms - since_ms).max(0) / 1000)
        }
        HostPhase::Running if ack.is_some_and(|a| a.shutting_down_ms.is_some()) => {
            "shutting down".into()
        }
        HostPhase::Running => "up".into(),
    }
}
