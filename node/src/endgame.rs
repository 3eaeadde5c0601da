//! The end game without a quorum: a UPS owner finishing alone.
//!
//! Before any stage starts, the cluster commits each UPS's kill order with the hosts it
//! waits for (`ArmKillPower`). Once the stage that halts the voters runs, nothing may be
//! committable any more: no halting acks, no "down", no kill order. Then each owner
//! finishes from what it can still observe: the committed acks and "halted" it has, and
//! its own probes of each host's API (a host that stops answering is going or gone). It
//! never waits for a commit that cannot happen. When every host its UPS feeds is down
//! it sends the kill order (marker first, so it is sent once, whoever asks later) with a
//! delay that covers what is left of their shutdowns and its own, and reports the result
//! once a quorum is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::handle::{Cluster, LeaderOp};
use crate::driver::UpsCommand;
use crate::markers::{kill_marker, write_marker};
use crate::shared::NodeShared;
use crate::staging::pending_kills;
use upsilon_client::stop::Stop;
use upsilon_core::events::EventKind;
use upsilon_core::replicated::NodeId;
use upsilon_core::replicated::endgame;
use upsilon_core::replicated::state::Command;
use upsilon_core::time::now_ms;
use upsilon_proto::v1 as pb;

/// Whether the node at `addr` answers a status request within a second and a half.
async fn answers(cluster: &Cluster, addr: &str) -> bool {
    let call = async {
        let ch = cluster.net.channel(addr).await.ok()?;
        pb::power_service_client::PowerServiceClient::new(ch)
            .get_status(pb::GetStatusRequest {})
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(1500), call).await,
        Ok(Some(_))
    )
}

/// The owner's loop: idle while the cluster can commit; cut off for a few election
/// timeouts with kill orders of its own armed, it probes and decides alone.
pub async fn finish_alone(shared: Arc<NodeShared>, cluster: Arc<Cluster>, mut stop: Stop) {
    if shared.ups_orders.is_empty() {
        return;
    }
    let grace =
        Duration::from_millis(cluster.cfg.election_timeout_ms * 6).max(Duration::from_secs(3));
    let mut cut_off_since: Option<Instant> = None;
    let mut watching_since: Option<i64> = None;
    let mut reached: BTreeMap<NodeId, i64> = BTreeMap::new();
    let mut unreported: Vec<Command> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = crate::ticks::tick(Duration::from_secs(1)) => {}
        }
        if !cluster.is_member() {
            continue;
        }
        if cluster.writable() {
            cut_off_since = None;
            watching_since = None;
            reached.clear();
            for cmd in std::mem::take(&mut unreported) {
                let sent = cluster
                    .submit(LeaderOp::Write(cmd.clone()), Duration::from_secs(3))
                    .await;
                if sent.is_err() {
                    unreported.push(cmd);
                }
            }
            continue;
        }
        if cut_off_since.get_or_insert_with(Instant::now).elapsed() < grace {
            continue;
        }
        let todo = pending_kills(&shared, &cluster);
        if todo.is_empty() {
            continue;
        }
        let start = *watching_since.get_or_insert_with(|| {
            tracing::warn!(
                "no quorum at the end of the outage: this owner finishes its kill orders alone"
            );
            now_ms()
        });
        // Probe every host waited for, all at once.
        let hosts: Vec<(NodeId, String)> = cluster.read(|s| {
            let mut ids: Vec<NodeId> = todo.iter().flat_map(|(_, k)| k.wait_for.clone()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter()
                .filter_map(|h| s.nodes.get(&h).map(|n| (h, n.addr.clone())))
                .collect()
        });
        let mut probes = tokio::task::JoinSet::new();
        for (h, addr) in hosts {
            let cluster = cluster.clone();
            probes.spawn(async move { (h, answers(&cluster, &addr).await) });
        }
        while let Some(r) = probes.join_next().await {
            if let Ok((h, true)) = r {
                reached.insert(h, now_ms());
            }
        }
        for (outage, order) in todo {
            let delay = cluster.read(|s| {
                let plan = s.plan.clone().unwrap_or_default();
                endgame::alone_delay(s, &plan, &order, &reached, start, now_ms())
            });
            let Some(delay_s) = delay else { continue };
            let m = kill_marker(&cluster, outage, &order.ups);
            if let Err(e) = write_marker(&m, "sent alone\n") {
                tracing::error!("cannot write {}: {e}", m.display());
            }
            let ups = order.ups.clone();
            tracing::warn!(%ups, "no quorum: every host the UPS feeds is down; cutting it alone with a {delay_s} s delay");
            let ordered_ms = now_ms();
            let cmd = UpsCommand::KillPower {
                delay_s,
                return_on_mains: true,
            };
            let (ok, result) = shared
                .executor
                .ups_action(&ups, "kill power", || async {
                    shared.order(&ups, cmd).await.map(|_| ())
                })
                .await;
            shared.log_event(
                EventKind::Notice,
                &ups,
                &format!(
                    "No quorum: this owner cut {ups} on its own ({delay_s} s delay) once every host it feeds was down: {result}"
                ),
            );
            unreported.push(Command::KillPowerAlone {
                outage,
                ups,
                delay_s,
                ordered_ms,
                ok,
                result,
                at_ms: now_ms(),
            });
        }
    }
}
