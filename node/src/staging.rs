//! What every cluster member does for the staged shutdown.
//!
//! - [`coordinate`]: on the leader, after each apply and on a timer, propose what the
//!   pure [`upsilon_core::replicated::plan::decide`] returns. A new leader simply does the same; the state
//!   machine refuses anything already done, so no stage starts twice.
//! - [`run_my_stages`]: when a started stage names this host, run its hooks and shutdown
//!   command once (a marker file written first makes it at-most-once across restarts),
//!   and acknowledge "shutting down" then "halting" through the log.
//! - [`carry_out_ups_orders`]: a UPS owner sends its UPS the kill-power (or power-cycle)
//!   order once, and reports the result.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::handle::{Cluster, LeaderOp};
use crate::driver::UpsCommand;
use crate::markers::{self, kill_marker, marker_dir, stage_marker, write_marker};
use crate::shared::NodeShared;
use upsilon_client::stop::Stop;
use upsilon_core::replicated::endgame::Duty;
use upsilon_core::replicated::plan::{self, Plan};
use upsilon_core::replicated::state::{ArmedKill, Command};
use upsilon_core::time::now_ms;

/// A stage marker's text when a UPS owner's deferred halt was never needed.
const STAYED_UP: &str = "stayed up";

const WRITE_DEADLINE: Duration = Duration::from_secs(3);

/// The tick of a loop with work in hand (an outage, an order, a leader's decisions).
const BUSY: Duration = Duration::from_millis(500);
/// The tick of a loop with nothing in hand: every apply wakes it anyway, this is only
/// the safety net (and what lets an idle learner sleep).
const IDLE: Duration = Duration::from_secs(5);

/// Waits for the next apply, a tick of `period` (shared with the node's other loops,
/// see `ticks`), or shutdown; false on shutdown.
async fn next_round(
    changed: &mut tokio::sync::watch::Receiver<u64>,
    period: Duration,
    stop: &mut Stop,
) -> bool {
    tokio::select! {
        _ = stop.recv() => false,
        _ = changed.changed() => true,
        _ = crate::ticks::tick(period) => true,
    }
}

/// The leader's coordinator loop; every member also proposes its configured plan when
/// the cluster has none.
pub async fn coordinate(cluster: Arc<Cluster>, mut stop: Stop) {
    let mut changed = cluster.sm.subscribe();
    let mut plan_tried: Option<Instant> = None;
    // The leader's decisions depend on the clock (stage deadlines); others only retry
    // proposing the plan file.
    let period = |c: &Cluster| if c.is_leader() { BUSY } else { IDLE };
    while next_round(&mut changed, period(&cluster), &mut stop).await {
        if !cluster.is_member() {
            continue;
        }
        if let Some(path) = &cluster.cfg.plan {
            let missing = cluster.read(|s| s.plan.is_none());
            if missing && plan_tried.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                plan_tried = Some(Instant::now());
                propose_plan_file(&cluster, path).await;
            }
        }
        if !cluster.is_leader() {
            continue;
        }
        let cmds = cluster.read(|s| plan::decide(s, now_ms()));
        for c in cmds {
            tracing::info!("coordinator proposes {c}");
            if let Err(e) = cluster.submit(LeaderOp::Write(c), WRITE_DEADLINE).await {
                tracing::warn!("coordinator could not commit: {e}");
                break;
            }
        }
    }
}

async fn propose_plan_file(cluster: &Cluster, path: &Path) {
    match Plan::load(path) {
        Ok(plan) => {
            let cmd = Command::SetPlan {
                plan,
                at_ms: now_ms(),
                by: cluster.name.clone(),
            };
            if let Err(e) = cluster.submit(LeaderOp::Write(cmd), WRITE_DEADLINE).await {
                tracing::warn!("cannot set the plan from {}: {e}", path.display());
            }
        }
        Err(e) => tracing::error!("cannot use the plan file: {e}"),
    }
}

/// One stage run that concerns this host.
#[derive(Debug, Clone)]
struct MyStage {
    outage: u64,
    stage: usize,
    name: String,
    reason: String,
    command: Option<Vec<String>>,
    acked_shutting_down: bool,
    acked_halting: bool,
    said_halted: bool,
    /// The outage is a fire drill: hooks only, everything else recorded.
    drill: Option<Vec<String>>,
}

/// Shuts this host down unless another path already did in this power event (the
/// claim in `markers`); true if it ran (or recorded) the shutdown.
pub(crate) async fn shut_down_once(
    shared: &NodeShared,
    cluster: &Cluster,
    reason: &str,
    command: Option<&[String]>,
) -> bool {
    let Some(claim) = markers::claim(cluster) else {
        return false;
    };
    let ups = host_ups(shared, cluster);
    shared
        .executor
        .cluster_shutdown(&ups, reason, command, &|| claim.launching())
        .await;
    claim.done();
    true
}

/// The UPS name this host's hooks get (apccontrol's second argument, never empty): a
/// UPS it drives, else its first feed, else a UPS on battery, else any of the cluster's,
/// else the node's own name.
pub(crate) fn host_ups(shared: &NodeShared, cluster: &Cluster) -> String {
    let mut own: Vec<&String> = shared.ups_orders.keys().collect();
    own.sort();
    if let Some(u) = own.first() {
        return u.to_string();
    }
    cluster
        .read(|s| {
            s.nodes
                .get(&cluster.id)
                .and_then(|n| n.feeds.first().cloned())
                .or_else(|| {
                    s.upses
                        .values()
                        .find(|u| u.status.on_battery)
                        .map(|u| u.name.clone())
                })
                .or_else(|| s.upses.keys().next().cloned())
        })
        .unwrap_or_else(|| shared.name.clone())
}

async fn ack(cluster: &Cluster, s: &MyStage, halting: bool) -> bool {
    let cmd = Command::NodeAck {
        outage: s.outage,
        stage: s.stage,
        node: cluster.id,
        halting,
        at_ms: now_ms(),
    };
    cluster
        .submit(LeaderOp::Write(cmd), WRITE_DEADLINE)
        .await
        .is_ok()
}

/// Runs this host's stages, once each, and acknowledges them.
pub async fn run_my_stages(shared: Arc<NodeShared>, cluster: Arc<Cluster>, mut stop: Stop) {
    let dir = cluster
        .cfg
        .marker_dir
        .clone()
        .unwrap_or_else(|| cluster.cfg.data_dir.clone());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(
            "cannot create the stage marker directory {}: {e}",
            dir.display()
        );
    }
    let running: Arc<Mutex<HashSet<(u64, usize)>>> = Arc::default();
    // Stages whose halt this process stood in for (record mode), or saw run.
    let mut stood_in: HashSet<(u64, usize)> = HashSet::new();
    let mut changed = cluster.sm.subscribe();
    // Stages run only during an outage.
    let period = |c: &Cluster| {
        if c.read(|s| s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none())) {
            BUSY
        } else {
            IDLE
        }
    };
    while next_round(&mut changed, period(&cluster), &mut stop).await {
        if !cluster.caught_up() {
            continue;
        }
        let mine: Vec<MyStage> = cluster.read(|s| {
            let Some(o) = s.outage.as_ref() else {
                return vec![];
            };
            o.stages
                .iter()
                .enumerate()
                .filter(|(_, r)| r.hosts.contains(&cluster.id))
                .map(|(k, r)| {
                    let ack = r.acks.get(&cluster.id);
                    let st = s.plan.as_ref().and_then(|p| p.stages.get(k));
                    MyStage {
                        outage: o.id,
                        stage: k,
                        name: r.name.clone(),
                        reason: r.reason.clone(),
                        command: st.and_then(|x| x.command.clone()),
                        acked_shutting_down: ack.is_some_and(|a| a.shutting_down_ms.is_some()),
                        acked_halting: ack.is_some_and(|a| a.halting_ms.is_some()),
                        said_halted: ack.is_some_and(|a| a.halted_ms.is_some()),
                        drill: o.drill.clone(),
                    }
                })
                .collect()
        });
        for st in mine {
            let key = (st.outage, st.stage);
            if running.lock().expect("running lock").contains(&key) {
                continue;
            }
            if st.acked_halting {
                // Carried out already, by this host (maybe before its store was
                // replaced, so without a marker here): never again. Record mode: a
                // restart after the halting ack halts again as the host would have.
                let ran_here = stage_marker(&dir, st.outage, st.stage).exists();
                if ran_here && !st.said_halted && stood_in.insert(key) {
                    let (shared, cluster) = (shared.clone(), cluster.clone());
                    let drill = st.drill.is_some();
                    tokio::spawn(
                        async move { stand_in_halt(&shared, &cluster, drill, true).await },
                    );
                }
                continue;
            }
            let path = stage_marker(&dir, st.outage, st.stage);
            // An owner whose deferred halt the end of the outage made unnecessary: it
            // never began to shut down, so there is nothing to acknowledge.
            if std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == STAYED_UP) {
                continue;
            }
            // A stage marker left "started" by a run that never reached the point of no
            // return (killed in its hooks): the shutdown provably did not start; run it.
            let unfinished = std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == "started")
                && !markers::launched(&cluster, st.outage);
            if unfinished {
                tracing::warn!(
                    stage = %st.name,
                    "this host's stage was interrupted before its shutdown started; running it again"
                );
            }
            if path.exists() && !unfinished {
                // Already run (perhaps before a restart): never again; finish the acks,
                // and in record mode halt again as the host would have.
                if !st.acked_shutting_down {
                    ack(&cluster, &st, false).await;
                }
                if !st.acked_halting {
                    ack(&cluster, &st, true).await;
                }
                continue;
            }
            if let Err(e) = write_marker(&path, "started\n") {
                tracing::error!(
                    "cannot write stage marker {}: {e}; not running the stage to stay at-most-once",
                    path.display()
                );
                continue;
            }
            running.lock().expect("running lock").insert(key);
            // run_stage stands in for the halt itself.
            stood_in.insert(key);
            let (shared, cluster, running) = (shared.clone(), cluster.clone(), running.clone());
            tokio::spawn(async move {
                run_stage(&shared, &cluster, &st, &path).await;
                running.lock().expect("running lock").remove(&key);
            });
        }
    }
}

async fn run_stage(shared: &NodeShared, cluster: &Cluster, st: &MyStage, marker: &Path) {
    tracing::warn!(stage = %st.name, "cluster shutdown reached this host: {}", st.reason);
    ack(cluster, st, false).await;
    if st.drill.is_none() && !wait_for_bridged_hosts(cluster, st, marker).await {
        return;
    }
    let my_upses: Vec<String> = shared.ups_orders.keys().cloned().collect();
    let drilled = |u: &String| st.drill.as_ref().is_some_and(|d| d.contains(u));
    let owned_on_battery: Vec<String> = cluster.read(|s| {
        my_upses
            .iter()
            .filter(|u| drilled(u) || s.upses.get(*u).is_some_and(|r| r.status.on_battery))
            .cloned()
            .collect()
    });
    if !owned_on_battery.is_empty() {
        if let Some(dir) = shared.powerfail_dir.as_ref().filter(|_| st.drill.is_none()) {
            // apcupsd's killpower flag: the halt script cuts the UPS late in the halt.
            let flag = dir.join("powerfail");
            match std::fs::write(&flag, b"") {
                Ok(()) => tracing::warn!("wrote {}", flag.display()),
                Err(e) => tracing::error!("cannot write {}: {e}", flag.display()),
            }
        }
        // This host carries the kill-power orders for its UPSes: its halt is deferred
        // until they are carried out (no stage waits for it), however many stages that
        // takes, as long as the outage lasts, and not once its UPS signals low battery.
        tracing::warn!(
            stage = %st.name,
            "this host {}: it halts once they are carried out",
            upsilon_core::replicated::endgame::deferred_words(
                &owned_on_battery
                    .iter()
                    .map(|u| Duty::KillPower(u.clone()))
                    .collect::<Vec<_>>()
            )
        );
        loop {
            // Done by the cluster's order, or by this owner alone (no quorum).
            let done = owned_on_battery.iter().all(|u| {
                kill_marker(cluster, st.outage, u).exists()
                    || cluster.read(|s| {
                        s.outage.as_ref().is_some_and(|o| {
                            o.kill_power.get(u).is_some_and(|k| k.done_ms.is_some())
                        })
                    })
            });
            if done {
                break;
            }
            // A UPS that feeds this host is ordered cut while no order for its own has
            // come (its UPS still waits for a host): it must be down before that cut, so
            // at the last moment that allows it halts, uncut.
            let feed_cut = cluster.read(|s| {
                let o = s.outage.as_ref().filter(|o| o.id == st.outage)?;
                let mine_ordered = owned_on_battery
                    .iter()
                    .any(|u| o.kill_power.contains_key(u));
                let me = s.nodes.get(&cluster.id)?;
                // An order for its own UPS may still come until it must start to be down
                // before that cut.
                let plan = s.plan.clone().unwrap_or_default();
                let settled = |f: &String| {
                    o.kill_power.get(f).is_some_and(|k| {
                        now_ms()
                            >= upsilon_core::replicated::endgame::feed_cut_deadline_ms(
                                s, &plan, me, k,
                            )
                    })
                };
                me.feeds
                    .iter()
                    .filter(|f| !owned_on_battery.contains(f))
                    .find(|f| settled(f))
                    .filter(|_| !mine_ordered)
                    .cloned()
            });
            if let Some(feed) = feed_cut {
                tracing::error!(
                    "{feed}, which feeds this host, is ordered cut before this owner's own UPS: halting without cutting {}",
                    owned_on_battery.join(", ")
                );
                break;
            }
            let over = cluster.read(|s| {
                s.outage
                    .as_ref()
                    .is_none_or(|o| o.id != st.outage || o.ended_ms.is_some())
            });
            if over {
                // Its halt was deferred, so its shutdown never started: it stays up, and
                // the killpower flag must not cut its UPS at some later halt.
                if let Some(dir) = shared.powerfail_dir.as_ref().filter(|_| st.drill.is_none()) {
                    let _ = std::fs::remove_file(dir.join("powerfail"));
                }
                if let Err(e) = write_marker(marker, &format!("{STAYED_UP}\n")) {
                    tracing::error!("cannot update stage marker {}: {e}", marker.display());
                }
                tracing::warn!(
                    stage = %st.name,
                    "the outage ended before this owner's kill power: this host stays up"
                );
                return;
            }
            // Its own reading: mains may be back on its UPS alone.
            let (back, low) = {
                let ups = shared.ups.lock().expect("ups lock");
                let mine = || ups.iter().filter(|(u, _)| owned_on_battery.contains(u));
                let back = st.drill.is_none() && mine().all(|(_, v)| !v.status.on_battery);
                let low = mine().any(|(_, v)| {
                    v.status
                        .reading
                        .as_ref()
                        .is_some_and(|r| r.flags.low_battery)
                });
                (back, low)
            };
            if back {
                tracing::info!("mains are back on this owner's UPS: no kill power to wait for");
                break;
            }
            if low {
                tracing::error!(
                    "low battery before every host this owner's UPS feeds was down: halting without cutting it"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let reason = format!("(stage {}: {})", st.name, st.reason);
    if st.drill.is_some() {
        // Nothing is claimed in a drill: a real outage right after must still act.
        let ups = host_ups(shared, cluster);
        shared
            .executor
            .drill_shutdown(&ups, &reason, st.command.as_deref())
            .await;
    } else if !shut_down_once(shared, cluster, &reason, st.command.as_deref()).await {
        tracing::warn!(
            "this host already shut down in this outage; acknowledging stage {} only",
            st.name
        );
    }
    if let Err(e) = write_marker(marker, "done\n") {
        tracing::error!("cannot update stage marker {}: {e}", marker.display());
    }
    // Until it is in, as long as the outage lasts.
    while !ack(cluster, st, true).await {
        let active = cluster.read(|s| {
            s.outage
                .as_ref()
                .is_some_and(|o| o.id == st.outage && o.ended_ms.is_none())
        });
        if !active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stand_in_halt(shared, cluster, st.drill.is_some(), false).await;
}

/// A bridge runs on this host (`[bridge] runs_on`): its halt waits, however many stages
/// that takes, until the bridge's legacy hosts in the plan are down (or acknowledged
/// halting), since only the bridge tells them and reports them halted. It stops waiting
/// when a UPS that feeds this host signals low battery or is ordered to cut power (it
/// must be down first), and if the cluster falls silent the local fallback takes over.
/// False when the outage ended first: the host stays up (recorded in the marker).
async fn wait_for_bridged_hosts(cluster: &Cluster, st: &MyStage, marker: &Path) -> bool {
    use upsilon_core::replicated::endgame;
    let me = cluster.id;
    let pending = |s: &upsilon_core::replicated::state::PowerState| -> Vec<String> {
        endgame::bridged_hosts(&endgame::duties(s, me))
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    let first = cluster.read(pending);
    if first.is_empty() {
        return true;
    }
    let words: Vec<Duty> = first.iter().cloned().map(Duty::Bridge).collect();
    tracing::warn!(
        stage = %st.name,
        "this host {} (a bridge runs on it): no stage waits for it",
        endgame::deferred_words(&words)
    );
    loop {
        let (left, over, danger) = cluster.read(|s| {
            let over = s
                .outage
                .as_ref()
                .is_none_or(|o| o.id != st.outage || o.ended_ms.is_some());
            let danger = s.nodes.get(&me).and_then(|n| {
                n.feeds.iter().find_map(|f| {
                    let low = s.upses.get(f).is_some_and(|u| {
                        u.status
                            .reading
                            .as_ref()
                            .is_some_and(|r| r.flags.low_battery)
                    });
                    let cut = s
                        .outage
                        .as_ref()
                        .is_some_and(|o| o.kill_power.contains_key(f));
                    (low || cut).then(|| {
                        format!(
                            "{f}, which feeds this host, {}",
                            if cut {
                                "is ordered to cut power"
                            } else {
                                "signals low battery"
                            }
                        )
                    })
                })
            });
            (pending(s), over, danger)
        });
        if over {
            if let Err(e) = write_marker(marker, &format!("{STAYED_UP}\n")) {
                tracing::error!("cannot update stage marker {}: {e}", marker.display());
            }
            tracing::warn!(
                stage = %st.name,
                "the outage ended while this host's bridge served its legacy hosts: this host stays up"
            );
            return false;
        }
        if left.is_empty() {
            tracing::warn!(
                stage = %st.name,
                "the legacy hosts of the bridge on this host are down: halting"
            );
            return true;
        }
        if let Some(why) = danger {
            tracing::error!(
                "{why} while the legacy hosts {} of this host's bridge are not down: halting now",
                left.join(", ")
            );
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Record mode: what the host's real halt would do next, so the cluster sees it down.
/// Live mode: nothing (the host halts; the package's shutdown hook sends "halted").
/// In a drill, whatever the mode: "halted" at once (the host does not halt).
/// `restarted`: the daemon started again after this host's halting ack; it halts again
/// only while the host would still be going down (the outage on and its supply on
/// battery): a host that boots once power is back stays up.
async fn stand_in_halt(shared: &NodeShared, cluster: &Cluster, drill: bool, restarted: bool) {
    use upsilon_core::config::RecordHalt;
    let stand_in = if drill {
        Some((RecordHalt::Report, Duration::ZERO))
    } else {
        shared.executor.stand_in_halt()
    };
    let Some((what, after)) = stand_in else {
        return;
    };
    if what == RecordHalt::None {
        return;
    }
    tokio::time::sleep(after).await;
    if restarted {
        let going_down = cluster.read(|s| {
            let outage_on = s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
            let plan = s.plan.clone().unwrap_or_default();
            let on_battery = s
                .nodes
                .get(&cluster.id)
                .and_then(|n| plan::supply(n, s, &plan, now_ms()))
                .is_none_or(|sup| sup.on_battery);
            outage_on && on_battery
        });
        if !going_down {
            tracing::info!(
                "record mode: power is back since this host's halting acknowledgement; it stays up"
            );
            return;
        }
    }
    match what {
        RecordHalt::Report => {
            let cmd = Command::HostHalted {
                node: cluster.id,
                at_ms: now_ms(),
            };
            // Until it is in, as long as the outage lasts (a frozen or partitioned
            // moment must not leave the host looking alive forever).
            loop {
                match cluster
                    .submit(LeaderOp::Write(cmd.clone()), WRITE_DEADLINE)
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        let active = cluster
                            .read(|s| s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none()));
                        if !active {
                            break;
                        }
                        tracing::warn!("record mode: could not report this host halted yet: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        RecordHalt::Exit => {
            tracing::warn!(
                "record mode: exiting as the halted host would (record_halt = \"exit\")"
            );
            std::process::exit(0);
        }
        RecordHalt::None => {}
    }
}

/// This owner's armed kill orders still to carry out at the end of the plan (every stage
/// started but those of owners alone, its UPS on battery by its own reading, no marker
/// yet), with their outage.
pub(crate) fn pending_kills(shared: &NodeShared, cluster: &Cluster) -> Vec<(u64, ArmedKill)> {
    let on_battery = |ups: &str| {
        shared
            .ups
            .lock()
            .expect("ups lock")
            .get(ups)
            .is_some_and(|v| v.status.on_battery)
    };
    let orders: Vec<(u64, ArmedKill)> = cluster.read(|s| {
        let Some(o) = s
            .outage
            .as_ref()
            .filter(|o| o.ended_ms.is_none() && !o.is_drill())
        else {
            return vec![];
        };
        let Some(armed) = &o.armed else {
            return vec![];
        };
        // The plan's end, where the kill orders belong: every stage started, or the
        // ones left hold only owners, whose halts wait for their kill power anyway.
        let end = s
            .plan
            .as_ref()
            .is_some_and(|p| upsilon_core::replicated::endgame::plan_end_reached(s, p));
        if !end {
            return vec![];
        }
        armed
            .iter()
            .filter(|k| k.owner == cluster.id)
            .filter(|k| o.kill_power.get(&k.ups).is_none_or(|r| r.done_ms.is_none()))
            .map(|k| (o.id, k.clone()))
            .collect()
    });
    orders
        .into_iter()
        // Our own reading, not the committed one: mains may be back.
        .filter(|(_, k)| shared.ups_orders.contains_key(&k.ups) && on_battery(&k.ups))
        .filter(|(o, k)| !kill_marker(cluster, *o, &k.ups).exists())
        .collect()
}

/// Kill-power and power-cycle orders for this node's UPSes.
pub async fn carry_out_ups_orders(shared: Arc<NodeShared>, cluster: Arc<Cluster>, mut stop: Stop) {
    let mut done: HashSet<(u64, String, bool)> = HashSet::new();
    // Results not yet committed: sent again each round (apply ignores a second copy);
    // the order itself is never carried out twice.
    let mut unreported: Vec<Command> = Vec::new();
    let mut changed = cluster.sm.subscribe();
    // Orders exist only during an outage or a power cycle; unreported results are
    // retried every busy tick.
    let period = |c: &Cluster, unreported: &[Command]| {
        let pending = |s: &upsilon_core::replicated::state::PowerState| {
            s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none())
                || s.power_cycled.values().any(|k| k.done_ms.is_none())
        };
        if !unreported.is_empty() || c.read(pending) {
            BUSY
        } else {
            IDLE
        }
    };
    while next_round(&mut changed, period(&cluster, &unreported), &mut stop).await {
        if !cluster.caught_up() {
            continue;
        }
        for cmd in std::mem::take(&mut unreported) {
            if cluster
                .submit(LeaderOp::Write(cmd.clone()), WRITE_DEADLINE)
                .await
                .is_err()
            {
                unreported.push(cmd);
            }
        }
        let drill = cluster.read(|s| s.outage.as_ref().is_some_and(|o| o.is_drill()));
        let orders: Vec<(u64, String, bool, u32)> = cluster.read(|s| {
            // Only UPSes the cluster records as ours: a node whose UPS merely shares a
            // name with another node's (a refused rival) must never act on its orders.
            let mine = |u: &String| {
                shared.ups_orders.contains_key(u)
                    && s.upses.get(u).is_some_and(|r| r.owner == cluster.id)
            };
            let mut v = Vec::new();
            if let Some(o) = &s.outage {
                for (u, k) in &o.kill_power {
                    if k.done_ms.is_none() && mine(u) {
                        v.push((o.id, u.clone(), false, k.delay_s));
                    }
                }
            }
            for (u, k) in &s.power_cycled {
                if k.done_ms.is_none() && mine(u) {
                    v.push((s.next_outage_id, u.clone(), true, 10));
                }
            }
            v
        });
        for (outage, ups, cycle, delay_s) in orders {
            let key = (outage, ups.clone(), cycle);
            if done.contains(&key) {
                continue;
            }
            done.insert(key);
            let what = if cycle { "power cycle" } else { "kill power" };
            if drill && !cycle {
                let (ok, result) = shared.executor.drill_ups_action(&ups, what);
                unreported.push(Command::UpsActionDone {
                    ups: ups.clone(),
                    power_cycle: false,
                    ok,
                    result,
                    at_ms: now_ms(),
                });
                continue;
            }
            if !cycle {
                let m = kill_marker(&cluster, outage, &ups);
                if m.exists() {
                    // Sent already: before a restart, or by this owner alone.
                    unreported.push(Command::UpsActionDone {
                        ups: ups.clone(),
                        power_cycle: false,
                        ok: true,
                        result: "sent earlier by this owner (its marker says so)".into(),
                        at_ms: now_ms(),
                    });
                    continue;
                }
                if let Err(e) = write_marker(&m, "sent\n") {
                    // Telling a UPS twice beats never telling it.
                    tracing::error!("cannot write {}: {e}", m.display());
                }
            }
            let cmd = UpsCommand::KillPower {
                delay_s,
                return_on_mains: true,
            };
            let (ok, result) = shared
                .executor
                .ups_action(&ups, what, || async {
                    shared.order(&ups, cmd).await.map(|_| ())
                })
                .await;
            let cmd = Command::UpsActionDone {
                ups: ups.clone(),
                power_cycle: cycle,
                ok,
                result,
                at_ms: now_ms(),
            };
            if cluster
                .submit(LeaderOp::Write(cmd.clone()), WRITE_DEADLINE)
                .await
                .is_err()
            {
                tracing::warn!(%ups, "could not report the {what} result yet; retrying");
                unreported.push(cmd);
            }
        }
    }
}

/// Watches this node's link to the quorum; if it is cut off and its supply is (or was
/// last known) in danger, it shuts itself down without the cluster (once per outage).
pub async fn local_fallback(shared: Arc<NodeShared>, cluster: Arc<Cluster>, mut stop: Stop) {
    let grace = Duration::from_secs(10);
    let mut cut_off_since: Option<Instant> = None;
    let mut done = false;
    let mut threshold_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = crate::ticks::tick(BUSY) => {}
        }
        if !cluster.is_member() || !cluster.caught_up() {
            continue;
        }
        let writable = cluster.writable();
        if writable {
            cut_off_since = None;
            // apcupsd's thresholds still apply to this host's own supply.
            let hit = cluster.read(|s| {
                let plan = s.plan.clone()?;
                let n = s.nodes.get(&cluster.id)?;
                let sup = plan::supply(n, s, &plan, now_ms())?;
                plan::host_threshold(&shared.policy, &sup, now_ms())
            });
            match hit {
                None => threshold_since = None,
                Some(why) => {
                    let since = *threshold_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= upsilon_core::policy::DEBOUNCE
                        && shut_down_once(
                            &shared,
                            &cluster,
                            &format!("(host threshold: {why})"),
                            None,
                        )
                        .await
                    {
                        tracing::warn!("this host's own threshold: {why}; shut it down");
                        shared.log_event(
                            upsilon_core::events::EventKind::Notice,
                            "",
                            &format!("Host threshold: {why}."),
                        );
                    }
                }
            }
            continue;
        }
        let since = *cut_off_since.get_or_insert_with(Instant::now);
        if done {
            continue;
        }
        let (supply, dead_time, outage) = cluster.read(|s| {
            let plan = s.plan.clone().unwrap_or_default();
            let sup = s
                .nodes
                .get(&cluster.id)
                .and_then(|n| plan::supply(n, s, &plan, now_ms()));
            (sup, Duration::from_secs(plan.dead_time_s), s.next_outage_id)
        });
        let Some(reason) =
            plan::local_fallback(Some(since.elapsed()), grace, dead_time, supply.as_ref())
        else {
            continue;
        };
        // An owner with a kill order still to carry out alone halts after it (as with
        // the plan), unless its own supply is critical.
        let critical = supply.as_ref().is_some_and(|s| s.emergency.is_some());
        if !critical && !pending_kills(&shared, &cluster).is_empty() {
            continue;
        }
        let path = marker_dir(&cluster).join(format!("fallback-{outage}.marker"));
        done = true;
        if path.exists() {
            continue;
        }
        if let Err(e) = write_marker(&path, "started\n") {
            tracing::error!(
                "cannot write {}: {e}; not shutting down alone",
                path.display()
            );
            continue;
        }
        tracing::error!("local fallback: {reason}; shutting this host down without the cluster");
        shared.log_event(
            upsilon_core::events::EventKind::Notice,
            "",
            &format!("Local fallback: {reason}."),
        );
        shut_down_once(
            &shared,
            &cluster,
            &format!("(local fallback: {reason})"),
            None,
        )
        .await;
    }
}
