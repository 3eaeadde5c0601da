//! [`Cluster`]: what the rest of the node uses of Raft. Start it, submit writes and
//! membership changes (forwarded to the leader when this node is not the leader), read
//! the replicated state, and describe the cluster for `upsilon status`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use openraft::ChangeMembers;
use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};

use super::network::{self, Followed, Network};
use super::store::{self, IdentityHandle, StateMachineStore};
use super::{ClusterNode, NodeId, Raft};
use upsilon_core::config::ClusterSection;
use upsilon_core::replicated::state::{Command, CommandResult, PowerState};

/// Something only the leader can do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    Write(Command),
    AddLearner { id: NodeId, node: ClusterNode },
    SetVoter { id: NodeId, voter: bool },
    Remove { id: NodeId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    Written(CommandResult),
    Membership {
        voters: Vec<String>,
        learners: Vec<String>,
    },
}

impl LeaderReply {
    /// The log index a write was committed at (0 for a membership change).
    pub fn index(&self) -> u64 {
        written_index(self)
    }
}

/// A node's role in Raft, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    Leader,
    Voter,
    Learner,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Leader => "leader",
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }
}

/// One member as this node sees it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub id: NodeId,
    pub node: ClusterNode,
    pub role: MemberRole,
    /// Entries behind the leader; known only on the leader.
    pub lag: Option<u64>,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub leader: Option<(NodeId, String)>,
    pub term: u64,
    pub writable: bool,
    pub detail: String,
    pub last_applied: u64,
    /// The log index this node's latest snapshot covers (0: none yet).
    pub snapshot_index: u64,
    pub members: Vec<MemberView>,
    /// Problems this node sees that an operator must fix, in words.
    pub warnings: Vec<String>,
}

/// This node's part in the cluster.
pub struct Cluster {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub net: Network,
    pub cfg: ClusterSection,
    /// Who this node's store is (incarnation, cluster id).
    pub identity: IdentityHandle,
    /// What was done at start with a damaged store (moved aside), if anything.
    pub set_aside: Option<String>,
    /// While this node is not a member: the power state a member last gave it.
    followed: Mutex<Option<(Followed, Instant)>>,
    last_write: Mutex<WriteHealth>,
    /// See [`Cluster::caught_up`].
    initial_committed: Option<u64>,
    caught_up: std::sync::atomic::AtomicBool,
    /// Why this node could not join or is refusing the leader, in words.
    refusals: Mutex<BTreeMap<&'static str, String>>,
    /// Until when this voter grants no vote and calls no election (see
    /// [`fence_forgotten_votes`]).
    vote_fence: Arc<VoteFence>,
    /// When the leader of this node's term last reached it (start time at first).
    leader_contact: Mutex<Instant>,
    /// Held across each membership change on the leader: two joins or promotions at
    /// once would overlap in openraft ("already undergoing a configuration change").
    membership_changes: tokio::sync::Mutex<()>,
}

/// Until when a restarted voter grants no vote (`None` once lifted), and the signal
/// that a leader has reached it.
#[derive(Debug, Default)]
struct VoteFence {
    until: Mutex<Option<Instant>>,
    reached: tokio::sync::Notify,
}

/// A voter that restarts on a store it had before may be running on an older copy of
/// it (a VM restored from an image, a disk from a backup): the votes it gave since are
/// forgotten, and a forgotten vote that counted could make two leaders in one term.
/// So it neither grants a vote nor stands for election until a leader has reached it
/// (the leader then sees whether it lost entries it had acknowledged, and re-admits it
/// without its seat if so: `readmit_rewound`; and it now holds the leader's term, so
/// it votes only in later ones), or until twice the longest election timeout has
/// passed with no leader (a whole cluster starting at once, after power returns: the
/// cost is about one election timeout more). A new store, or a cluster of one voter,
/// has no vote to forget.
fn fence_forgotten_votes(raft: &Raft, me: NodeId, fresh: bool, election_ms: u64) -> Arc<VoteFence> {
    let fence = Arc::new(VoteFence::default());
    let m = raft.metrics().borrow_watched().clone();
    let voters: Vec<NodeId> = m.membership_config.voter_ids().collect();
    if fresh || !voters.contains(&me) || voters.len() < 2 {
        return fence;
    }
    let wait = Duration::from_millis(election_ms * 4);
    *fence.until.lock().expect("vote fence lock") = Some(Instant::now() + wait);
    raft.runtime_config().elect(false);
    tracing::info!(
        "this voter grants no vote and calls no election until a leader reaches it or {} s pass (its store may be an older copy that forgot votes it gave)",
        wait.as_secs_f32()
    );
    let (raft, lift) = (raft.clone(), fence.clone());
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = lift.reached.notified() => "a leader reached it",
            _ = tokio::time::sleep(wait) => "no leader reached it in time",
        };
        *lift.until.lock().expect("vote fence lock") = None;
        raft.runtime_config().elect(true);
        tracing::info!("this voter votes and may stand for election again: {why}");
    });
    fence
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

#[derive(Debug, Default)]
struct WriteHealth {
    /// This node's latest committed writes: when, and at which log index.
    ok: std::collections::VecDeque<(Instant, u64)>,
    failed_since: Option<SystemTime>,
    last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Storage(#[from] store::OpenError),
    #[error("cannot start raft: {0}")]
    Raft(String),
}

impl Cluster {
    /// Opens storage and starts Raft; bootstraps if asked and not yet initialized.
    pub async fn start(
        cfg: ClusterSection,
        name: &str,
        addr: String,
        tls: rustls::ClientConfig,
    ) -> Result<Arc<Cluster>, ClusterError> {
        // A damaged store is set aside only where a new one rejoins an existing cluster.
        let set_aside = cfg.damaged_store == upsilon_core::config::DamagedStore::SetAside
            && !cfg.bootstrap
            && !cfg.seeds.is_empty();
        let (log, sm, identity, set_aside_note) =
            store::open_or_set_aside(&cfg.data_dir, cfg.id, set_aside)?;
        if let Some(note) = &set_aside_note {
            tracing::error!("{note}");
        }
        // What this node had committed before this start: once its state machine has
        // applied that far again, its state is its own present, not history. The mark
        // is not flushed on every commit (`LogStore::save_committed`): after a crash it
        // can lag the last commits by up to sled's flush interval.
        let initial_committed = {
            use openraft::storage::RaftLogStorage;
            log.clone()
                .read_committed()
                .await
                .ok()
                .flatten()
                .map(|l| l.index())
        };
        let raft_cfg = openraft::Config {
            cluster_name: "upsilon".into(),
            // openraft's own ratio (its defaults: 50 ms against 150-300 ms): a
            // follower misses three heartbeats before it may call an election. A
            // fifth (five heartbeats) cost an idle leader of 25 a quarter more CPU
            // (BENCHMARKS.md, "Idle CPU").
            heartbeat_interval: (cfg.election_timeout_ms / 3).max(50),
            election_timeout_min: cfg.election_timeout_ms,
            election_timeout_max: cfg.election_timeout_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs.max(10)),
            max_in_snapshot_log_to_keep: (cfg.snapshot_logs / 4).min(500),
            // A leader that restarts goes through an election like any node. Restoring
            // its leadership from the stored vote (openraft's default) trusts its log:
            // on an older copy of the store it would lead the same term with a shorter
            // log, and its new entries would take log ids the followers already hold
            // for other entries, which they would keep: the cluster would diverge.
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let net = Network::new(tls, identity.clone());
        let raft = Raft::new(cfg.id, Arc::new(raft_cfg), net.clone(), log, sm.clone())
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let me = ClusterNode {
            name: name.to_string(),
            addr: addr.clone(),
            incarnation: identity.get().incarnation,
        };
        let fresh = !raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let existing = if cfg.bootstrap && fresh {
            existing_cluster(&net, &cfg.seeds).await
        } else {
            None
        };
        if let Some(seed) = &existing {
            tracing::warn!(
                "bootstrap = true, but a cluster already answers at {seed}: joining it instead of creating a new one (set bootstrap = false once the cluster exists)"
            );
        }
        if cfg.bootstrap && fresh && existing.is_none() {
            tracing::info!(
                "bootstrapping a NEW cluster with this node as its first voter (if this host was a member whose disk was replaced, stop it now, set bootstrap = false and list seeds)"
            );
            // A new cluster gets its id now; members learn it from the leader.
            if identity.get().cluster_id.is_none() {
                let cid = format!("{:016x}", store::random_u64());
                identity.set_cluster_id(&cid).map_err(|e| {
                    ClusterError::Raft(format!("cannot record the cluster id: {e}"))
                })?;
            }
            let mut members = BTreeMap::new();
            members.insert(cfg.id, me);
            raft.initialize(members)
                .await
                .map_err(|e| ClusterError::Raft(format!("bootstrap failed: {e}")))?;
            tracing::info!(id = cfg.id, "bootstrapped a new cluster");
        }
        let vote_fence = fence_forgotten_votes(&raft, cfg.id, fresh, cfg.election_timeout_ms);
        Ok(Arc::new(Cluster {
            vote_fence,
            leader_contact: Mutex::new(Instant::now()),
            membership_changes: tokio::sync::Mutex::new(()),
            id: cfg.id,
            name: name.to_string(),
            addr,
            raft,
            sm,
            net,
            cfg,
            identity,
            last_write: Mutex::new(WriteHealth::default()),
            initial_committed,
            caught_up: std::sync::atomic::AtomicBool::new(false),
            refusals: Mutex::new(BTreeMap::new()),
            set_aside: set_aside_note,
            followed: Mutex::new(None),
        }))
    }

    /// Whether this node's applied state is the cluster's present rather than history
    /// it is still replaying: it has applied again everything it had committed before
    /// this start, or (a new or wiped store, which has no such past) one of its own
    /// writes has been committed and applied here. Sticky once true.
    ///
    /// Nothing acts on the replicated state before this: a store that joins as new
    /// replays the cluster's whole history, with stages, kill-power orders and low
    /// supplies that are long over, and must not shut its host down for them.
    pub fn caught_up(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.following() {
            // A member's present, not history.
            return true;
        }
        if self.caught_up.load(Ordering::Relaxed) {
            return true;
        }
        let applied = self.metrics().last_applied.map(|l| l.index());
        let replayed = matches!((self.initial_committed, applied), (Some(c), Some(a)) if a >= c);
        let own = applied.is_some_and(|a| {
            self.last_write
                .lock()
                .expect("write health lock")
                .ok
                .iter()
                .any(|(_, i)| *i <= a)
        });
        if replayed || own {
            self.caught_up.store(true, Ordering::Relaxed);
            tracing::info!(
                applied = applied.unwrap_or(0),
                "caught up with the cluster: acting on the replicated state from now on"
            );
            return true;
        }
        false
    }

    /// Why this voter grants no vote now, if it does not (see [`fence_forgotten_votes`]).
    pub fn vote_fenced(&self) -> Option<String> {
        let until = (*self.vote_fence.until.lock().expect("vote fence lock"))?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "{} restarted on its old store and grants no vote until a leader reaches it (at most {:.1} s more): the store may be an older copy that forgot votes it gave",
            self.name,
            left.as_secs_f32()
        ))
    }

    /// A leader's AppendEntries reached this node: `current` when this node could take
    /// its entries (not a stale leader, not a gap in its log). See
    /// [`fence_forgotten_votes`] and [`Cluster::cut_off`].
    pub fn leader_reached(&self, current: bool) {
        self.vote_fence.reached.notify_one();
        if current {
            *self.leader_contact.lock().expect("leader contact lock") = Instant::now();
        }
    }

    /// A member that has not heard from a leader for a while (held back by the leader,
    /// partitioned from it) while not leading itself: it follows the power state from
    /// any member that still has a leader, as a non-member does, so its host is never
    /// left unprotected (see `duties::follow_while_out`).
    pub fn cut_off(&self) -> bool {
        let quiet = Duration::from_millis((self.cfg.election_timeout_ms * 6).max(3_000));
        self.is_member()
            && !self.is_leader()
            && self
                .leader_contact
                .lock()
                .expect("leader contact lock")
                .elapsed()
                > quiet
    }

    /// The log index this node's state machine has applied, and a digest of the state
    /// it holds there (its stored form): equal on every node at the same index.
    pub fn state_digest(&self) -> (u64, u64) {
        self.sm.read(|a| {
            let json = serde_json::to_vec(&a.power).unwrap_or_default();
            (
                a.last_applied.as_ref().map_or(0, |l| l.index()),
                store::fnv64(&json),
            )
        })
    }

    /// A copy of the current Raft metrics.
    pub fn metrics(&self) -> openraft::RaftMetrics<super::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Reads the replicated power state (while this node is not a member, the state a
    /// member last gave it: see [`Cluster::following`]).
    pub fn read<T>(&self, f: impl FnOnce(&PowerState) -> T) -> T {
        {
            let g = self.followed.lock().expect("followed lock");
            // A member reads its own state at once, not after the follower's next tick.
            if let Some((fw, at)) = g.as_ref()
                && at.elapsed() < FOLLOW_FRESH
                && self.out_of_membership()
            {
                return f(&fw.state);
            }
        }
        self.sm.read(|a| f(&a.power))
    }

    /// Not a member, kept out, or cut off from the leader: what a member that has a
    /// leader gives this node is its present.
    pub fn out_of_membership(&self) -> bool {
        !self.is_member() || self.refused() || self.cut_off()
    }

    /// Whether this node, not a member, follows the power state from a member (read-only:
    /// it acts on its own stage and acknowledges it through the leader).
    pub fn following(&self) -> bool {
        self.followed
            .lock()
            .expect("followed lock")
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < FOLLOW_FRESH)
            && self.out_of_membership()
    }

    /// Records what a member gave (or, with `None`, stops following: a member again).
    pub fn set_followed(&self, f: Option<Followed>) {
        *self.followed.lock().expect("followed lock") = f.map(|f| (f, Instant::now()));
    }

    /// The leader's address, as the followed state said.
    fn followed_leader(&self) -> Option<String> {
        self.followed
            .lock()
            .expect("followed lock")
            .as_ref()
            .filter(|(_, at)| at.elapsed() < FOLLOW_FRESH)
            .and_then(|(f, _)| f.leader.clone())
    }

    /// Whether this node is in the current membership.
    pub fn is_member(&self) -> bool {
        // Borrowed, not cloned: the idle loops ask this every tick.
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    /// What [`Self::view`] says of `writable`, without building the whole view.
    pub fn writable(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index());
        let h = self.last_write.lock().expect("write health lock");
        m.current_leader.is_some() && self.recent_writes(&h, applied).1 && m.running_state.is_ok()
    }

    /// (one of this node's writes committed recently, and one of them is applied here).
    fn recent_writes(&self, h: &WriteHealth, applied: u64) -> (bool, bool) {
        let window = Duration::from_millis((self.cfg.heartbeat_ms * 3).max(3000));
        let recent = |t: &Instant| t.elapsed() < window;
        let committed = h.ok.iter().any(|(t, _)| recent(t));
        let fresh = h.ok.iter().any(|(t, i)| recent(t) && *i <= applied);
        (committed, fresh)
    }

    /// Runs `op` here if this node leads, else on the leader; retries while an election
    /// is in progress, up to `deadline`.
    pub async fn submit(
        &self,
        op: LeaderOp,
        deadline: Duration,
    ) -> Result<LeaderReply, WriteError> {
        let until = Instant::now() + deadline;
        let mut last = WriteError::Unavailable("no leader is known yet".into());
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.run_local(&op)).await {
                Err(_) => {
                    last = WriteError::Unavailable(
                        "the leader could not commit in time (no quorum?)".into(),
                    );
                    break;
                }
                Ok(Ok(r)) => {
                    self.note_write(Ok(written_index(&r)));
                    return Ok(r);
                }
                Ok(Err(Local::Forward(Some(addr)))) => {
                    let fwd = network::forward::<LeaderOp, Result<LeaderReply, String>>(
                        &self.net, &addr, &op,
                    );
                    match tokio::time::timeout(left, fwd).await {
                        Ok(Ok(Ok(r))) => {
                            self.note_write(Ok(written_index(&r)));
                            return Ok(r);
                        }
                        Ok(Ok(Err(e))) => {
                            last = WriteError::Refused(format!("leader at {addr}: {e}"))
                        }
                        Ok(Err(e)) => {
                            last = WriteError::Unavailable(format!(
                                "cannot reach the leader at {addr}: {e}"
                            ))
                        }
                        Err(_) => {
                            last = WriteError::Unavailable(format!(
                                "the leader at {addr} did not answer in time (no quorum?)"
                            ));
                            break;
                        }
                    }
                }
                Ok(Err(Local::Forward(None))) => {}
                Ok(Err(Local::Failed(e))) => {
                    // A Raft error naming the leader (it changed meanwhile) is worth
                    // another try; anything else is the leader's answer.
                    let retry = e.contains("leader");
                    last = if retry {
                        WriteError::Unavailable(e)
                    } else {
                        WriteError::Refused(e)
                    };
                    if !retry {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.note_write(Err(last.to_string()));
        Err(last)
    }

    /// Runs `op` only if this node is the leader (waiting out an election up to
    /// `deadline`); otherwise says where the leader is, so that the caller goes there
    /// with its own certificate. Operator actions take this path: the leader checks the
    /// operator's certificate itself, never a node's word for it.
    pub async fn submit_here(&self, op: LeaderOp, deadline: Duration) -> Result<LeaderReply, Here> {
        let until = Instant::now() + deadline;
        let mut last = String::from("no leader is known yet (no quorum?)");
        let unavailable = WriteError::Unavailable;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.run_local(&op)).await {
                Err(_) => {
                    return Err(Here::Failed(unavailable(
                        "the leader could not commit in time (no quorum?)".into(),
                    )));
                }
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(Local::Forward(Some(addr)))) => return Err(Here::Redirect(addr)),
                Ok(Err(Local::Forward(None))) => {}
                Ok(Err(Local::Failed(e))) => {
                    if !e.contains("leader") {
                        return Err(Here::Failed(WriteError::Refused(e)));
                    }
                    last = e;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Here::Failed(unavailable(last)))
    }

    /// Records a write of this node's committed at `index` (or why one failed); a
    /// member also counts an applied `Seen` entry that names it (`duties::liveness`).
    pub(super) fn note_write(&self, r: Result<u64, String>) {
        let mut h = self.last_write.lock().expect("write health lock");
        match r {
            Ok(index) => {
                // A membership change (index 0) proves nothing about this node's log.
                if index > 0 {
                    if h.ok.len() >= 16 {
                        h.ok.pop_front();
                    }
                    h.ok.push_back((Instant::now(), index));
                }
                h.failed_since = None;
                h.last_error = None;
            }
            Err(e) => {
                h.failed_since.get_or_insert_with(SystemTime::now);
                h.last_error = Some(e);
            }
        }
    }

    /// Carries out a leader-only operation on this node, or says where the leader is.
    pub async fn run_local(&self, op: &LeaderOp) -> Result<LeaderReply, Local> {
        // Not the leader: say where it is without asking Raft (which logs an error).
        let m = self.metrics();
        if m.current_leader.is_none()
            && let Some(addr) = self.followed_leader()
        {
            return Err(Local::Forward(Some(addr)));
        }
        if m.current_leader != Some(self.id) {
            let addr = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            return Err(Local::Forward(addr));
        }
        match op {
            LeaderOp::Write(cmd) => {
                let t_us = upsilon_core::time::now_us();
                match self.raft.client_write(check_size(cmd)?).await {
                    Ok(resp) => {
                        tracing::debug!(
                            target: crate::trace::LATENCY,
                            index = resp.data.index,
                            proposed_us = t_us,
                            t_us = upsilon_core::time::now_us(),
                            "latency committed"
                        );
                        Ok(LeaderReply::Written(resp.data))
                    }
                    Err(e) => Err(fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string()))),
                }
            }
            LeaderOp::AddLearner { id, node } => {
                let _one_at_a_time = self.membership_changes.lock().await;
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if let Some(cur) = membership.get_node(id) {
                    if cur.name != node.name {
                        return Err(Local::Failed(format!(
                            "node id {id} is already the member {}, not {}: give the new node an unused [cluster] id",
                            cur.name, node.name
                        )));
                    }
                    if cur.incarnation != 0
                        && node.incarnation != 0
                        && cur.incarnation != node.incarnation
                    {
                        let cur = cur.clone();
                        return self.readmit(*id, &cur, node).await;
                    }
                }
                if let Some((other, _)) = membership
                    .nodes()
                    .find(|(other, n)| n.name == node.name && *other != id)
                {
                    return Err(Local::Failed(format!(
                        "the name {} already belongs to member id {other}: one certificate, one member",
                        node.name
                    )));
                }
                if membership.get_node(id).is_none() {
                    self.raft
                        .add_learner(*id, node.clone(), true)
                        .await
                        .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
                }
                Ok(self.membership_reply())
            }
            LeaderOp::SetVoter { id, voter } => {
                let _one_at_a_time = self.membership_changes.lock().await;
                let set: BTreeSet<NodeId> = [*id].into();
                let change = if *voter {
                    ChangeMembers::AddVoterIds(set)
                } else {
                    ChangeMembers::RemoveVoters(set)
                };
                self.raft
                    .change_membership(change, true)
                    .await
                    .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
                if *voter && self.read(|s| s.seats_owed.contains(id)) {
                    let _ = self
                        .raft
                        .client_write(Command::VoterSeat {
                            id: *id,
                            owed: false,
                            at_ms: upsilon_core::time::now_ms(),
                        })
                        .await;
                }
                Ok(self.membership_reply())
            }
            LeaderOp::Remove { id } => {
                let _one_at_a_time = self.membership_changes.lock().await;
                let set: BTreeSet<NodeId> = [*id].into();
                let is_voter = self
                    .metrics()
                    .membership_config
                    .voter_ids()
                    .any(|v| v == *id);
                if is_voter {
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters(set.clone()), false)
                        .await
                        .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
                } else {
                    self.raft
                        .change_membership(ChangeMembers::RemoveNodes(set), false)
                        .await
                        .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
                }
                let _ = self
                    .raft
                    .client_write(Command::NodeRemoved {
                        id: *id,
                        at_ms: upsilon_core::time::now_ms(),
                    })
                    .await;
                Ok(self.membership_reply())
            }
        }
    }

    /// A member came back with a new store (its data directory wiped or replaced): its
    /// old incarnation is retired and the new one admitted as a learner, which catches
    /// up from the leader (a snapshot). A learner holds no vote, so this is always safe.
    /// A voter's log and vote did matter: its seat is given up first (so its forgotten
    /// vote never counts), only while the other voters that make a quorum answer and
    /// no outage is on; it asks to be a voter again once it is a caught-up learner.
    async fn readmit(
        &self,
        id: NodeId,
        cur: &ClusterNode,
        node: &ClusterNode,
    ) -> Result<LeaderReply, Local> {
        let why = format!(
            "came back with a new data directory (store {:016x}, was {:016x})",
            node.incarnation, cur.incarnation
        );
        self.readmit_because(id, cur, node, &why).await
    }

    /// On the leader: a member whose store lost entries it had acknowledged (restored
    /// from an old copy, or truncated) is handled as a wiped one: re-admitted as a
    /// learner (a voter's seat given up first), the leader's record of what it had
    /// acknowledged forgotten, so it catches up from the leader.
    pub async fn readmit_rewound(&self, id: NodeId) -> Result<(), String> {
        let _one_at_a_time = self.membership_changes.lock().await;
        let m = self.metrics();
        let Some(node) = m.membership_config.membership().get_node(&id).cloned() else {
            return Ok(());
        };
        self.readmit_because(
            id,
            &node,
            &node,
            "came back with an older copy of its data directory (it lost log entries it had acknowledged)",
        )
        .await
        .map(|_| ())
        .map_err(|e| match e {
            Local::Failed(e) => e,
            Local::Forward(_) => "not the leader any more".into(),
        })
    }

    async fn readmit_because(
        &self,
        id: NodeId,
        cur: &ClusterNode,
        node: &ClusterNode,
        why: &str,
    ) -> Result<LeaderReply, Local> {
        let m = self.metrics();
        let voters: Vec<NodeId> = m.membership_config.voter_ids().collect();
        let was_voter = voters.contains(&id);
        if was_voter {
            if let Some(o) = self.read(|s| {
                s.outage
                    .as_ref()
                    .filter(|o| o.ended_ms.is_none())
                    .map(|o| o.id)
            }) {
                return Err(Local::Failed(format!(
                    "{}; outage {o} is on, and a voter's seat is not given back during one: it is, by itself, once the outage is over",
                    identity_changed(id, cur, node)
                )));
            }
            let fresh = Duration::from_millis((self.cfg.heartbeat_ms * 4).max(2_000));
            let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let answering = others
                .iter()
                .filter(|v| {
                    **v == self.id
                        || m.heartbeat
                            .as_ref()
                            .and_then(|h| h.get(v))
                            .is_some_and(|at| {
                                at.as_ref()
                                    .is_some_and(|at| openraft::Instant::elapsed(&**at) < fresh)
                            })
                })
                .count();
            let quorum = others.len() / 2 + 1;
            if others.is_empty() || answering < quorum {
                return Err(Local::Failed(format!(
                    "{}; its seat can be given back only while a quorum of the other voters answers ({answering} of {} do, {quorum} needed)",
                    identity_changed(id, cur, node),
                    others.len()
                )));
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
                .await
                .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                .await
                .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
        }
        tracing::warn!(
            "{} (id {id}) {why}: its old store is retired and it rejoins as a learner",
            node.name
        );
        self.net.health.restart_with(id);
        self.raft
            .add_learner(id, node.clone(), true)
            .await
            .map_err(|e| fwd(&e).unwrap_or_else(|| Local::Failed(e.to_string())))?;
        if was_voter {
            let _ = self
                .raft
                .client_write(Command::VoterSeat {
                    id,
                    owed: true,
                    at_ms: upsilon_core::time::now_ms(),
                })
                .await;
        }
        let message = format!(
            "{} (id {id}) {why}: its old store is retired, and it caught up from the leader as a learner{}.",
            node.name,
            if was_voter {
                "; it becomes a voter again by itself"
            } else {
                ""
            }
        );
        let _ = self
            .raft
            .client_write(Command::Notice {
                at_ms: upsilon_core::time::now_ms(),
                node: node.name.clone(),
                message,
            })
            .await;
        Ok(self.membership_reply())
    }

    fn membership_reply(&self) -> LeaderReply {
        let m = self.metrics().membership_config.clone();
        let name = |id: NodeId| {
            m.membership().get_node(&id).map_or_else(
                || format!("node-{id}({id})"),
                |n| format!("{}({id})", n.name),
            )
        };
        let voters: Vec<NodeId> = m.voter_ids().collect();
        let learners: Vec<NodeId> = m.membership().learner_ids().collect();
        LeaderReply::Membership {
            voters: voters.into_iter().map(name).collect(),
            learners: learners.into_iter().map(name).collect(),
        }
    }

    /// Records (or with `None` clears) why this node is kept out: `what` is `join` or
    /// `leader`.
    pub fn note_refusal(&self, what: &'static str, why: Option<String>) {
        let mut r = self.refusals.lock().expect("refusals lock");
        match why {
            Some(w) => {
                r.insert(what, w);
            }
            None => {
                r.remove(what);
            }
        }
    }

    /// Whether this node knows it is kept out (refused to join, or refusing the leader's
    /// traffic meant for its old store).
    pub fn refused(&self) -> bool {
        !self.refusals.lock().expect("refusals lock").is_empty()
    }

    /// Like [`Self::note_refusal`] with a reason; true when the reason is new (log it).
    pub fn note_refusal_changed(&self, what: &'static str, why: &str) -> bool {
        let mut r = self.refusals.lock().expect("refusals lock");
        if r.get(what).map(String::as_str) == Some(why) {
            return false;
        }
        r.insert(what, why.to_string());
        true
    }

    /// This node's own problems and, on the leader, the members it holds back.
    fn warnings(&self, m: &openraft::RaftMetrics<super::TypeConfig>) -> Vec<String> {
        let mut out: Vec<String> = self
            .refusals
            .lock()
            .expect("refusals lock")
            .values()
            .map(|w| format!("this node is kept out of the cluster: {w}"))
            .collect();
        if m.state == ServerState::Leader {
            let replicated = self.read(|s| s.member_problems.clone());
            for (id, p) in self.net.health.problems() {
                if replicated.get(&id) != Some(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The cluster as this node sees it, for `upsilon status`.
    pub fn view(&self) -> ClusterView {
        let m = self.metrics();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let last_index = m.last_log_index.unwrap_or(0);
        let members = mem
            .nodes()
            .map(|(id, node)| {
                let role = if m.current_leader == Some(*id) {
                    MemberRole::Leader
                } else if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                };
                let lag = if m.state == ServerState::Leader {
                    m.replication.as_ref().and_then(|r| {
                        r.get(id).map(|matched| {
                            last_index.saturating_sub(matched.as_ref().map_or(0, |l| l.index()))
                        })
                    })
                } else {
                    None
                };
                MemberView {
                    id: *id,
                    node: node.clone(),
                    role,
                    lag: if *id == self.id && m.state == ServerState::Leader {
                        Some(0)
                    } else {
                        lag
                    },
                }
            })
            .collect();
        let leader = m.current_leader.map(|id| {
            (
                id,
                mem.get_node(&id)
                    .map_or_else(|| format!("node-{id}"), |n| n.name.clone()),
            )
        });
        let h = self.last_write.lock().expect("write health lock");
        // Writable means one of this node's own writes, or a `Seen` entry naming it
        // (`duties::liveness`), was committed recently *and* has been applied here: a
        // node whose storage is stuck, or that the leader holds back, commits through
        // the leader but no longer keeps up.
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index());
        let (committed, fresh) = self.recent_writes(&h, applied);
        let core = m.running_state.as_ref().err().map(|f| f.to_string());
        let writable = leader.is_some() && fresh && core.is_none();
        let detail = if writable {
            String::new()
        } else if let Some(f) = core {
            format!("the Raft core stopped ({f}): this node is exiting to be restarted")
        } else if leader.is_some() && committed {
            let latest = h.ok.back().map_or(0, |(_, i)| *i);
            format!(
                "this node is not keeping up: its writes commit on the leader (index {latest}) but it has applied only up to {applied} (storage stuck, or held back by the leader: see the warnings)"
            )
        } else if !self.is_member() {
            "this node is not a member of the cluster yet".to_string()
        } else if leader.is_none() {
            format!(
                "no leader: fewer than a majority of the {} voters are reachable",
                voters.len()
            )
        } else {
            let since = h
                .failed_since
                .map(|t| format!(" since {}", upsilon_core::time::format_date(t)))
                .unwrap_or_default();
            let or_cut_off = if leader.as_ref().is_some_and(|(id, _)| *id != self.id) {
                ", or the leader does not hear this node"
            } else {
                ""
            };
            format!(
                "no quorum: writes are not being committed{since} (fewer than {} of {} voters reachable?{or_cut_off}){}",
                voters.len() / 2 + 1,
                voters.len(),
                h.last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            )
        };
        ClusterView {
            leader,
            term: m.current_term,
            writable,
            detail,
            last_applied: m.last_applied.as_ref().map_or(0, |l| l.index()),
            snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index()),
            members,
            warnings: self.warnings(&m),
        }
    }
}

/// The first seed that answers as a member of a cluster with a leader, if any: a node
/// told to bootstrap must not found a second cluster beside a running one.
async fn existing_cluster(net: &Network, seeds: &[String]) -> Option<String> {
    use upsilon_proto::v1::power_service_client::PowerServiceClient;
    for seed in seeds {
        let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(3), net.channel(seed)).await
        else {
            continue;
        };
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            PowerServiceClient::new(ch).get_status(upsilon_proto::v1::GetStatusRequest {}),
        )
        .await;
        if let Ok(Ok(r)) = reply
            && r.get_ref()
                .cluster
                .as_ref()
                .is_some_and(|c| c.enabled && c.leader_id != 0)
        {
            return Some(seed.clone());
        }
    }
    None
}

/// The largest command the log accepts, as JSON. Every replicated record is bounded
/// (plans by `plan::MAX_PLAN_BYTES`, events and readings by their producers); this is
/// the backstop that keeps one entry far below the Raft message limit.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

fn check_size(cmd: &Command) -> Result<Command, Local> {
    let n = serde_json::to_vec(cmd).map_or(usize::MAX, |v| v.len());
    if n > MAX_COMMAND_BYTES {
        return Err(Local::Failed(format!(
            "{cmd} is {n} bytes; a replicated command may be at most {MAX_COMMAND_BYTES}"
        )));
    }
    Ok(cmd.clone())
}

/// The log index of a committed write (0 for a membership change).
fn written_index(r: &LeaderReply) -> u64 {
    match r {
        LeaderReply::Written(w) => w.index,
        LeaderReply::Membership { .. } => 0,
    }
}

/// How long a followed state counts as the present.
pub const FOLLOW_FRESH: Duration = Duration::from_secs(10);

/// The refusal of a member whose store was recreated, in words for both sides.
pub fn identity_changed(id: NodeId, known: &ClusterNode, now: &ClusterNode) -> String {
    format!(
        "node {} (id {id}) is a member with another data directory (store incarnation {:016x}; this one is {:016x}): its storage was wiped or replaced, and it cannot rejoin under its old identity. Run `upsilon nodes remove {id}` on any member; it then joins as a new member by itself",
        known.name, known.incarnation, now.incarnation
    )
}

/// A Raft error that says "ask the leader", as a forward to its address.
fn fwd<E>(e: &openraft::error::RaftError<super::TypeConfig, E>) -> Option<Local>
where
    E: openraft::TryAsRef<openraft::error::ForwardToLeader<super::TypeConfig>> + std::error::Error,
{
    e.forward_to_leader()
        .map(|f| Local::Forward(f.leader_node.as_ref().map(|n| n.addr.clone())))
}

/// Why [`Cluster::submit_here`] did not run an operation.
#[derive(Debug)]
pub enum Here {
    /// This node is not the leader; the leader's API address.
    Redirect(String),
    Failed(WriteError),
}

/// Why a cluster write (or membership change) did not happen, in words that say what
/// to do. The two kinds need different handling: wait and retry, or change the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No leader is known, it cannot be reached, or it could not commit in time (no
    /// quorum?): the same write may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The leader refused the operation (a rule of the cluster, a conflicting member,
    /// a write too large, ...): retrying the same will not help.
    #[error("{0}")]
    Refused(String),
}

impl WriteError {
    /// The leader's (or this node's, leading) words.
    pub fn reason(&self) -> &str {
        match self {
            WriteError::Unavailable(s) | WriteError::Refused(s) => s,
        }
    }
}

/// Why an operation did not run here.
#[derive(Debug)]
pub enum Local {
    /// Not the leader; the leader's address if known.
    Forward(Option<String>),
    Failed(String),
}
