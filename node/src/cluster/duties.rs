//! What a cluster member does on its own: get admitted (seeds), announce itself, send
//! heartbeats, report its UPSes, and, on the leader, mark UPSes whose owner went silent.
//! Every timestamp is taken here and travels inside the command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use super::handle::{Cluster, LeaderOp, WriteError};
use upsilon_client::stop::Stop;
use upsilon_core::replicated::state::{Command, ReportedEvent, UpsReport};
use upsilon_core::time::now_ms;

static JOIN_LOG: upsilon_core::ratelimit::LogLimiter = upsilon_core::ratelimit::LogLimiter::new();

/// Until this node is a member: ask each seed to admit it. Then announce it, and ask
/// to become a voter if configured.
pub async fn join_and_announce(cluster: Arc<Cluster>, version: String, mut stop: Stop) {
    let mut attempt = 0u32;
    while !cluster.is_member() {
        if cluster.cfg.seeds.is_empty() {
            // A bootstrapping node becomes a member as soon as its own first
            // membership applies (a tenth of a second): nothing to warn about unless
            // that takes long.
            let due = if cluster.cfg.bootstrap { 100 } else { 0 };
            if attempt == due {
                tracing::warn!(
                    "not a cluster member and no seeds configured: run `upsilon nodes join` for node {} or set [cluster] seeds",
                    cluster.id
                );
            }
        } else {
            for seed in &cluster.cfg.seeds {
                match ask_to_join(&cluster, seed).await {
                    Ok(()) => {
                        tracing::info!(%seed, "admitted to the cluster as a learner");
                        cluster.note_refusal("join", None);
                        break;
                    }
                    // Said once, then once a minute with a count, until it changes.
                    Err(e) if e.contains("another data directory") => {
                        if let Some(n) = JOIN_LOG.note(&e) {
                            tracing::error!(
                                %seed,
                                "the cluster refuses this node: {e}{}",
                                upsilon_core::ratelimit::repeats(n)
                            );
                        }
                        cluster.note_refusal("join", Some(e));
                    }
                    Err(e) => {
                        if let Some(n) = JOIN_LOG.note(&e) {
                            tracing::warn!(
                                %seed,
                                "cannot join the cluster yet: {e}{}",
                                upsilon_core::ratelimit::repeats(n)
                            );
                        }
                    }
                }
            }
        }
        attempt += 1;
        // A bootstrapped node only waits for its own membership to apply: soon.
        let pause = if cluster.cfg.seeds.is_empty() {
            100
        } else {
            500
        };
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
    }
    let up = Command::NodeUp {
        id: cluster.id,
        name: cluster.name.clone(),
        addr: cluster.addr.clone(),
        labels: cluster.cfg.labels.clone(),
        feeds: cluster.cfg.feeds.clone(),
        min_supplies: cluster.cfg.min_supplies,
        shutdown_s: cluster.cfg.shutdown_s,
        version,
        at_ms: now_ms(),
    };
    let mut tries = 0u32;
    let announced = loop {
        match cluster
            .submit(LeaderOp::Write(up.clone()), Duration::from_secs(5))
            .await
        {
            Ok(r) => break r.index(),
            // The second failure is already worth a word: a node that cannot announce
            // itself never asks to become a voter.
            Err(e) if tries == 1 || tries % 10 == 9 => {
                tracing::warn!("cannot announce this node yet: {e}")
            }
            Err(e) => tracing::debug!("announce failed, retrying: {e}"),
        }
        tries += 1;
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    // A damaged store set aside at start goes into the cluster's history, once.
    if let Some(note) = &cluster.set_aside {
        let cmd = Command::Notice {
            at_ms: now_ms(),
            node: cluster.name.clone(),
            message: format!("{}: {note}.", cluster.name),
        };
        if let Err(e) = cluster
            .submit(LeaderOp::Write(cmd), Duration::from_secs(5))
            .await
        {
            tracing::warn!("cannot record the set-aside store in the cluster's events: {e}");
        }
    }
    // Judge our role on a membership at least as new as the announcement: a store that
    // catches up from an older snapshot can show, for a moment, the membership from
    // before it was removed and re-added (as a voter, say) and would never ask to be
    // promoted.
    while cluster.metrics().last_applied.map_or(0, |l| l.index()) < announced {
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    // A node configured as a voter asks for a seat (below the self-promotion limit); a
    // seat the cluster owes it (its store re-admitted) is taken back, whatever its
    // config says, by `take_back_owed_seat` below.
    if cluster.cfg.voter {
        let mut told = false;
        let mut asked = false;
        loop {
            let is_voter = cluster
                .metrics()
                .membership_config
                .voter_ids()
                .any(|v| v == cluster.id);
            if is_voter {
                if !asked {
                    tracing::info!("already a voter of the cluster");
                }
                break;
            }
            asked = true;
            match cluster
                .submit(
                    LeaderOp::SetVoter {
                        id: cluster.id,
                        voter: true,
                    },
                    Duration::from_secs(15),
                )
                .await
            {
                Ok(_) => tracing::info!("promoted to voter"),
                Err(WriteError::Refused(e)) if e.contains("operator promotes") => {
                    // Not a failure: the cluster has its first voters; an operator
                    // decides on more. Ask again now and then, quietly.
                    if !told {
                        tracing::info!("staying a learner: {e}");
                        told = true;
                    }
                    tokio::select! {
                        _ = stop.recv() => return,
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    }
                    continue;
                }
                Err(e) => tracing::warn!("cannot become a voter yet: {e}"),
            }
            tokio::select! {
                _ = stop.recv() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    take_back_owed_seat(&cluster, stop).await;
}

/// A seat can come to be owed while this node runs: the leader re-admits a store it
/// found rewound (an older copy restored under a running node's feet) or wiped, perhaps
/// just after this node judged itself a voter on the membership its old store held.
/// So, for as long as it runs: whenever the cluster owes this node a voter's seat and
/// it is a caught-up learner, it asks for the seat back.
async fn take_back_owed_seat(cluster: &Cluster, mut stop: Stop) {
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let owed = cluster.read(|s| s.seats_owed.contains(&cluster.id));
        let learner = cluster.is_member()
            && !cluster
                .metrics()
                .membership_config
                .voter_ids()
                .any(|v| v == cluster.id);
        if !owed || !learner || !cluster.caught_up() {
            continue;
        }
        let ask = LeaderOp::SetVoter {
            id: cluster.id,
            voter: true,
        };
        match cluster.submit(ask, Duration::from_secs(15)).await {
            Ok(_) => {
                tracing::info!("a voter again: the seat given up when the store was re-admitted")
            }
            Err(e) => {
                if let Some(n) = SEAT_LOG.note(&e.to_string()) {
                    tracing::warn!(
                        "cannot take back this node's voter seat yet: {e}{}",
                        upsilon_core::ratelimit::repeats(n)
                    );
                }
            }
        }
    }
}

static SEAT_LOG: upsilon_core::ratelimit::LogLimiter = upsilon_core::ratelimit::LogLimiter::new();

/// While this node is not a member (refused, rejoining, not yet admitted) it follows the
/// power state read-only from any member it can reach (its seeds, the peers it knew),
/// so its stage still runs and is acknowledged through the leader: its host is never
/// left unprotected. A member again, it reads its own replicated state.
pub async fn follow_while_out(cluster: Arc<Cluster>, mut stop: Stop) {
    let mut said = false;
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !cluster.out_of_membership() {
            if cluster.following() {
                tracing::info!("a member again: reading the replicated state, no longer following");
            }
            cluster.set_followed(None);
            said = false;
            continue;
        }
        let mut peers: Vec<String> = cluster.cfg.seeds.clone();
        if let Ok(text) = std::fs::read_to_string(cluster.cfg.data_dir.join(PEERS_FILE)) {
            peers.extend(text.lines().map(str::to_string).filter(|l| !l.is_empty()));
        }
        peers.retain(|p| *p != cluster.addr);
        peers.dedup();
        let mut got = None;
        for p in &peers {
            if let Ok(f) = super::network::read_state(&cluster.net, p).await {
                got = Some((p.clone(), f));
                break;
            }
        }
        match got {
            Some((from, f)) => {
                if !said {
                    let why = if cluster.is_member() && !cluster.refused() {
                        "no word from a leader for a while (held back by it, or cut off from it)"
                    } else {
                        "not a member of the cluster"
                    };
                    tracing::warn!(
                        "{why}: following its power state read-only from {from}, acting on this host's stage"
                    );
                    said = true;
                }
                cluster.set_followed(Some(f));
            }
            None if !peers.is_empty() && said => {
                tracing::debug!("no member answered for the power state");
            }
            None => {}
        }
    }
}

/// Asks `seed` to admit this node, following "not the leader" answers to the leader:
/// the leader admits a node only on its own certificate's word.
async fn ask_to_join(cluster: &Cluster, seed: &str) -> Result<(), String> {
    let req = pb::JoinNodeRequest {
        id: cluster.id,
        name: cluster.name.clone(),
        address: cluster.addr.clone(),
        incarnation: cluster.identity.get().incarnation,
    };
    upsilon_client::rpc::follow_leader(
        seed,
        |at| async move { cluster.net.channel(&at).await },
        |ch| {
            let req = req.clone();
            async move { AdminServiceClient::new(ch).join_node(req).await }
        },
    )
    .await
    .map(|_| ())
}

/// Liveness without a log entry per node: every `heartbeat_ms` the leader writes one
/// `Seen` entry with the time each member last answered its Raft replication
/// (openraft's heartbeat metrics, turned into the leader's wall clock), so replication
/// traffic proves liveness and the log grows by one entry per interval, not one per
/// node. A member that applies an entry moving its own "last seen" knows that writes
/// commit, that the leader hears it and that it keeps up: that is its write health
/// (`writable`). The peers file for `--report-halted` is kept up to date here too.
pub async fn liveness(cluster: Arc<Cluster>, mut stop: Stop) {
    let mut written_peers: Vec<String> = Vec::new();
    let mut own_seen = 0i64;
    let period = Duration::from_millis(cluster.cfg.heartbeat_ms);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = crate::ticks::tick(period) => {}
        }
        if !cluster.is_member() {
            continue;
        }
        let m = cluster.metrics();
        if m.state == openraft::ServerState::Leader {
            let now = now_ms();
            let mut seen = vec![(cluster.id, now)];
            for (id, at) in m.heartbeat.iter().flatten() {
                if let Some(at) = at {
                    let age = openraft::Instant::elapsed(&**at);
                    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                    seen.push((*id, now.saturating_sub(age)));
                }
            }
            // Only what moves someone's "last seen": a member that stopped answering
            // is not written again.
            cluster.read(|s| {
                seen.retain(|(id, at)| s.nodes.get(id).is_some_and(|n| *at > n.last_seen_ms))
            });
            if !seen.is_empty()
                && let Err(e) = cluster
                    .submit(
                        LeaderOp::Write(Command::Seen { seen, at_ms: now }),
                        Duration::from_secs(3),
                    )
                    .await
            {
                tracing::debug!("liveness not committed: {e}");
            }
        } else {
            // Read after the metrics: the state is at least as new as `last_applied`.
            let seen = cluster.read(|s| s.nodes.get(&cluster.id).map_or(0, |n| n.last_seen_ms));
            if seen > own_seen {
                own_seen = seen;
                cluster.note_write(Ok(m.last_applied.map_or(0, |l| l.index())));
            }
        }
        let peers: Vec<String> = cluster.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != cluster.id)
                .map(|n| n.addr.clone())
                .collect()
        });
        if peers != written_peers {
            match write_peers(&cluster.cfg.data_dir, &peers) {
                Ok(()) => written_peers = peers,
                Err(e) => tracing::debug!("cannot write the peers file: {e}"),
            }
        }
    }
}

/// The file that tells `upsilond --report-halted` (run by the shutdown hook after the
/// daemon stopped) where the other members are.
pub const PEERS_FILE: &str = "peers";

fn write_peers(dir: &std::path::Path, peers: &[String]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{PEERS_FILE}.tmp"));
    std::fs::write(&tmp, peers.join("\n") + "\n")?;
    std::fs::rename(&tmp, dir.join(PEERS_FILE))
}

/// On the leader: a UPS whose owner has been silent for `stale_after_ms` is marked.
pub async fn mark_stale_upses(cluster: Arc<Cluster>, mut stop: Stop) {
    // Silence is measured on this node's monotonic clock from the last change of each
    // UPS's report sequence, so clock skew between hosts cannot fake or hide it.
    let mut seen: HashMap<String, (u64, Instant)> = HashMap::new();
    let limit = Duration::from_millis(cluster.cfg.stale_after_ms);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = crate::ticks::tick(Duration::from_millis(500)) => {}
        }
        if !cluster.is_leader() {
            // A new leader gives every owner a full `stale_after_ms` from its first look.
            seen.clear();
            continue;
        }
        let now = Instant::now();
        let upses: Vec<(String, u64, u64, bool)> = cluster.read(|s| {
            s.upses
                .values()
                .map(|u| (u.name.clone(), u.owner, u.seq, u.stale))
                .collect()
        });
        let mut stale = Vec::new();
        for (name, owner, seq, is_stale) in upses {
            let entry = seen.entry(name.clone()).or_insert((seq, now));
            if entry.0 != seq {
                *entry = (seq, now);
            } else if !is_stale && now.duration_since(entry.1) > limit {
                stale.push((name, owner, seq));
            }
        }
        for (ups, owner, seq) in stale {
            tracing::warn!(%ups, owner, "no report from the UPS owner for {limit:?}: marking it comm-lost");
            let cmd = Command::UpsStale {
                ups,
                owner,
                seq,
                at_ms: now_ms(),
            };
            let _ = cluster
                .submit(LeaderOp::Write(cmd), Duration::from_secs(3))
                .await;
        }
    }
}

/// On the leader: members the Raft client holds back (a store that was wiped or lost
/// entries) are recorded in the replicated state, so every node's `status` and `nodes`
/// show the problem and how to fix it, with one event when it starts.
static REWOUND_LOG: upsilon_core::ratelimit::LogLimiter =
    upsilon_core::ratelimit::LogLimiter::new();

pub async fn publish_member_problems(cluster: Arc<Cluster>, mut stop: Stop) {
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = crate::ticks::tick(Duration::from_secs(1)) => {}
        }
        if !cluster.is_leader() {
            continue;
        }
        let m = cluster.metrics();
        let members: Vec<u64> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let seen = cluster.net.health.problems();
        let held = cluster.read(|s| s.member_problems.clone());
        let mut changes = Vec::new();
        for id in &members {
            let now = seen.get(id);
            if now != held.get(id) {
                changes.push((*id, now.cloned()));
            }
        }
        for id in held.keys().filter(|id| !members.contains(id)) {
            changes.push((*id, None));
        }
        // A member whose store was rewound (an old copy, a truncation) is re-admitted as
        // a wiped one would be; until that is possible (a voter during an outage, or
        // without a quorum of the others) it stays held back, with the reason.
        for (id, p) in &seen {
            if members.contains(id)
                && p.contains("lost log entries it had stored")
                && let Err(e) = cluster.readmit_rewound(*id).await
                && let Some(n) = REWOUND_LOG.note(&e)
            {
                tracing::warn!(
                    "cannot re-admit node {id} yet: {e}{}",
                    upsilon_core::ratelimit::repeats(n)
                );
            }
        }
        for (id, problem) in changes {
            let cmd = Command::MemberProblem {
                id,
                problem,
                at_ms: now_ms(),
            };
            let _ = cluster
                .submit(LeaderOp::Write(cmd), Duration::from_secs(3))
                .await;
        }
    }
}

/// Keeps this process's TLS deny list equal to the replicated one, after every apply.
pub async fn follow_revocations(cluster: Arc<Cluster>, mut stop: Stop) {
    let mut changed = cluster.sm.subscribe();
    loop {
        let serials: Vec<String> = cluster.read(|s| s.revoked.keys().cloned().collect());
        upsilon_client::tls::set_revoked(serials);
        tokio::select! {
            _ = stop.recv() => return,
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

/// A report's sequence number: microseconds of wall time, but always above the last
/// one sent and above what the cluster already holds from this owner, so a clock that
/// steps back (even across a restart) cannot make fresh reports look old.
fn next_seq(now_us: u64, last_sent: u64, replicated: Option<u64>) -> u64 {
    now_us
        .max(last_sent.saturating_add(1))
        .max(replicated.map_or(0, |r| r.saturating_add(1)))
}

/// Queues one UPS's reports for the cluster. The latest view wins; events are never
/// dropped: they wait until a report carrying them is committed.
pub struct UpsReporter {
    pending: Mutex<Pending>,
    notify: Notify,
}

#[derive(Default)]
struct Pending {
    latest: Option<UpsReport>,
    events: Vec<ReportedEvent>,
    last_seq: u64,
}

impl UpsReporter {
    pub fn new() -> Arc<Self> {
        Arc::new(UpsReporter {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        })
    }

    /// Queues a report (its `events` are appended to those still waiting).
    pub fn push(&self, mut report: UpsReport) {
        let mut p = self.pending.lock().expect("reporter lock");
        p.events.append(&mut report.events);
        p.latest = Some(report);
        drop(p);
        self.notify.notify_one();
    }

    /// The next queued report; `replicated_seq` is the seq the cluster already holds
    /// for this UPS from this owner, if any.
    fn take(&self, replicated_seq: impl FnOnce(&UpsReport) -> Option<u64>) -> Option<UpsReport> {
        let mut p = self.pending.lock().expect("reporter lock");
        let mut r = p.latest.take()?;
        r.events = std::mem::take(&mut p.events);
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        p.last_seq = next_seq(now_us, p.last_seq, replicated_seq(&r));
        r.seq = p.last_seq;
        Some(r)
    }

    fn put_back(&self, r: UpsReport) {
        let mut p = self.pending.lock().expect("reporter lock");
        let mut events = r.events.clone();
        events.append(&mut p.events);
        p.events = events;
        if p.latest.is_none() {
            p.latest = Some(r);
        }
    }

    /// Sends queued reports until the node stops.
    pub async fn run(self: Arc<Self>, cluster: Arc<Cluster>, mut stop: Stop) {
        // The owner that refuses this node's reports, once the refusal was logged.
        let mut refused_by: Option<String> = None;
        loop {
            tokio::select! {
                _ = stop.recv() => return,
                _ = self.notify.notified() => {}
            }
            // Only a member the cluster knows (its announcement applied) reports: an
            // unknown owner's UPS name is not protected, so a rival reporting the same
            // name a moment later would take it.
            while !cluster.read(|s| s.nodes.contains_key(&cluster.id)) {
                tokio::select! {
                    _ = stop.recv() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            let held = |r: &UpsReport| {
                cluster.read(|s| {
                    s.upses
                        .get(&r.ups)
                        .filter(|u| u.owner == r.owner)
                        .map(|u| u.seq)
                })
            };
            while let Some(r) = self.take(held) {
                let ups = r.ups.clone();
                tracing::debug!(
                    target: crate::trace::LATENCY,
                    %ups,
                    t_us = upsilon_core::time::now_us(),
                    "latency report sent"
                );
                match cluster
                    .submit(
                        LeaderOp::Write(Command::UpsReport(Box::new(r.clone()))),
                        Duration::from_secs(3),
                    )
                    .await
                {
                    Ok(reply) => {
                        tracing::debug!(
                            target: crate::trace::LATENCY,
                            %ups,
                            index = reply.index(),
                            t_us = upsilon_core::time::now_us(),
                            "latency report written"
                        );
                        let refused = matches!(
                            reply,
                            super::handle::LeaderReply::Written(ref w) if !w.applied
                        );
                        let owner = cluster.read(|s| {
                            s.upses.get(&ups).filter(|u| u.owner != r.owner).map(|u| {
                                s.nodes
                                    .get(&u.owner)
                                    .map_or_else(|| format!("node-{}", u.owner), |n| n.name.clone())
                            })
                        });
                        match (refused, owner) {
                            (true, Some(owner))
                                if refused_by.as_deref().is_none_or(|o| o != owner) =>
                            {
                                tracing::error!(%ups, "the cluster refuses this node's reports: node {owner} already owns a UPS named {ups}; rename one of them, or `upsilon ups release {ups}` to move it here");
                                refused_by = Some(owner);
                            }
                            (false, _) if refused_by.is_some() => {
                                tracing::info!(%ups, "the cluster accepts this node's reports again");
                                refused_by = None;
                            }
                            _ => {}
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%ups, "report not committed, will retry: {e}");
                        self.put_back(r);
                        tokio::select! {
                            _ = stop.recv() => return,
                            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod seq_tests {
    use super::next_seq;

    #[test]
    fn seq_follows_the_clock_but_never_goes_back() {
        assert_eq!(next_seq(1_000, 0, None), 1_000);
        // The clock stepped back within this process.
        assert_eq!(next_seq(500, 1_000, None), 1_001);
        // ... or before a restart: the cluster remembers the last seq.
        assert_eq!(next_seq(500, 0, Some(9_000)), 9_001);
        assert_eq!(next_seq(10_000, 0, Some(9_000)), 10_000);
        assert_eq!(next_seq(0, u64::MAX, None), u64::MAX);
    }
}
