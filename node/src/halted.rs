//! The late "halted" of a host's own shutdown path: `upsilond --report-halted`, run by
//! the package's shutdown hook after the daemon stopped and before the network goes.
//!
//! It tells the cluster, with the node's own certificate, that this host is about to
//! halt, so the cluster sees it down at once (rather than after `silence_s` without a
//! heartbeat) and measures how long its shutdown took. It is optional and best effort:
//! with no quorum, or no network left, it gives up after its deadline and the cluster
//! falls back on silence.

use std::time::{Duration, Instant};

use crate::cluster::duties::PEERS_FILE;
use crate::cluster::handle::{LeaderOp, LeaderReply};
use crate::cluster::network;
use upsilon_core::config::NodeConfig;
use upsilon_core::replicated::Command;
use upsilon_core::time::now_ms;

/// The addresses to try: the members the daemon last knew, then the seeds.
fn addresses(cfg: &NodeConfig) -> Result<Vec<String>, String> {
    let c = cfg
        .cluster
        .as_ref()
        .ok_or("this node has no [cluster]: there is no cluster to tell")?;
    let mut out: Vec<String> = std::fs::read_to_string(c.data_dir.join(PEERS_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    for s in &c.seeds {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no member address known: {} is missing (the daemon writes it while it runs) and [cluster] seeds is empty",
            c.data_dir.join(PEERS_FILE).display()
        ));
    }
    Ok(out)
}

/// The leader's address in a "not the leader" answer.
fn leader_in(answer: &str) -> Option<String> {
    let rest = answer.split("the leader is at ").nth(1)?;
    Some(rest.trim_end_matches(')').trim().to_string())
}

/// Sends "halted" to the leader; the answer says where it was committed.
pub async fn report(cfg: &NodeConfig, deadline: Duration) -> Result<String, String> {
    let id = cfg.cluster.as_ref().map(|c| c.id).unwrap_or_default();
    let queue = addresses(cfg)?;
    let tls = upsilon_client::tls::client_config(
        &cfg.tls.ca,
        Some((cfg.tls.cert.as_path(), cfg.tls.key.as_path())),
    )
    .map_err(|e| format!("[tls]: {e}"))?;
    let op = LeaderOp::Write(Command::HostHalted {
        node: id,
        at_ms: now_ms(),
    });
    let until = Instant::now() + deadline;
    let mut errors = Vec::new();
    let mut next: Option<String> = None;
    let mut tries = 0;
    while Instant::now() < until && tries < queue.len() + 8 {
        let addr = next
            .take()
            .unwrap_or_else(|| queue[tries % queue.len()].clone());
        tries += 1;
        let left = until.saturating_duration_since(Instant::now());
        let sent = network::forward_with::<LeaderOp, Result<LeaderReply, String>>(&tls, &addr, &op);
        match tokio::time::timeout(left, sent).await {
            Ok(Ok(Ok(_))) => return Ok(addr),
            Ok(Ok(Err(e))) | Ok(Err(e)) => {
                if let Some(leader) = leader_in(&e) {
                    next = Some(leader);
                } else {
                    errors.push(format!("{addr}: {e}"));
                }
            }
            Err(_) => errors.push(format!("{addr}: no answer in time")),
        }
    }
    Err(format!(
        "the cluster did not take \"halted\" ({}); it will see this host down once it falls silent",
        if errors.is_empty() {
            "no leader".to_string()
        } else {
            errors.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_leader_is_read_from_a_redirect() {
        assert_eq!(
            super::leader_in("this node is not the leader (the leader is at 127.0.0.2:7443)"),
            Some("127.0.0.2:7443".into())
        );
        assert_eq!(super::leader_in("permission denied"), None);
    }
}
