//! `RaftService`: openraft's RPCs from other nodes, and writes forwarded to the leader.
//! Only certificates with role `node` of this cluster's CA may call it, and each speaks
//! only for the member whose name it carries: Raft messages must come from that
//! member's id, and a forwarded write may only concern the caller itself (its
//! heartbeats, reports, acknowledgements, its own promotion while the cluster has fewer
//! than [`SELF_PROMOTION_VOTERS`] voters); the coordinator's commands only from voters.
//! Membership changes, plans, UPS names and revocations are operator actions and never
//! arrive here (see `admin.rs`).

use std::sync::Arc;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use serde::Serialize;
use tonic::{Request, Response, Status};
use upsilon_proto::v1::RaftPayload;
use upsilon_proto::v1::raft_service_server::RaftService;

use crate::cluster::TypeConfig;
use crate::cluster::handle::{Cluster, LeaderOp, LeaderReply, Local};
use crate::cluster::network::{HDR_CLUSTER, HDR_INCARNATION, HDR_TARGET, Wire, decode};
use crate::cluster::{Command, NodeId};
use upsilon_client::pki::{Identity, Role};
use upsilon_client::tls::authorize;

type C = TypeConfig;

pub struct RaftApi {
    cluster: Arc<Cluster>,
}

impl RaftApi {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        RaftApi { cluster }
    }
}

fn reply<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
}

/// A node may make itself a voter (`[cluster] voter = true`) only while the cluster has
/// fewer voters than this; beyond, an operator promotes (`upsilon nodes promote`).
pub const SELF_PROMOTION_VOTERS: usize = 3;

static REFUSALS: upsilon_core::ratelimit::LogLimiter = upsilon_core::ratelimit::LogLimiter::new();

fn payload<T: serde::de::DeserializeOwned>(
    req: &Request<RaftPayload>,
) -> Result<(T, Identity), Status> {
    let who = authorize(req, &[Role::Node])?;
    let v = decode(req.get_ref()).map_err(Status::invalid_argument)?;
    Ok((v, who))
}

fn header(req: &Request<RaftPayload>, key: &str) -> Option<String> {
    req.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl RaftApi {
    /// Refuses Raft traffic the leader meant for another store: a different node id,
    /// a store incarnation this node no longer has (its data directory was wiped), or
    /// another cluster. A store that knows no cluster yet learns it here.
    fn check_addressed_to_me(&self, req: &Request<RaftPayload>) -> Result<(), Status> {
        let me = self.cluster.identity.get();
        let refuse = |why: String| {
            if self.cluster.note_refusal_changed("leader", &why) {
                tracing::error!("refusing Raft traffic from the leader: {why}");
            }
            Err(Status::failed_precondition(why))
        };
        if let Some(t) = header(req, HDR_TARGET)
            && t != self.cluster.id.to_string()
        {
            return refuse(format!(
                "the leader sent traffic for node {t} to node {} at {}: two members share an address?",
                self.cluster.id, self.cluster.addr
            ));
        }
        if let Some(inc) = header(req, HDR_INCARNATION).and_then(|v| v.parse::<u64>().ok())
            && inc != 0
            && inc != me.incarnation
        {
            return refuse(format!(
                "node {} (id {}) is a member with another data directory (store incarnation {inc:016x}; this one is {:016x}): its storage was wiped or replaced, and it cannot rejoin under its old identity. Run `upsilon nodes remove {}` on any member; it then joins as a new member by itself",
                self.cluster.name, self.cluster.id, me.incarnation, self.cluster.id
            ));
        }
        if let Some(cid) = header(req, HDR_CLUSTER) {
            match &me.cluster_id {
                Some(mine) if *mine != cid => {
                    return refuse(format!(
                        "node {} belongs to cluster {mine}, not to the leader's cluster {cid}: its data_dir is from another cluster",
                        self.cluster.name
                    ));
                }
                Some(_) => {}
                None => {
                    if let Err(e) = self.cluster.identity.set_cluster_id(&cid) {
                        return Err(Status::unavailable(format!(
                            "cannot record the cluster id: {e}"
                        )));
                    }
                    tracing::info!("this node's store now belongs to cluster {cid}");
                }
            }
        }
        self.cluster.note_refusal("leader", None);
        Ok(())
    }

    /// The caller's certificate may not speak for another member: when this node knows
    /// `sender`, the certificate must carry its name, and a certificate that is a known
    /// member may only speak as that member's id.
    ///
    /// A sender this node does not know at all is accepted: a node that caught up from a
    /// snapshot can hold a membership older than the current leader (one that rejoined
    /// after it was taken), and refusing would leave it stuck. The remaining risk is a
    /// valid node certificate of a host that is no member at all: revoke the
    /// certificates of retired hosts (`upsilon cert revoke`).
    fn check_sender(&self, who: &Identity, sender: NodeId) -> Result<(), Status> {
        let m = self.cluster.metrics();
        let mem = m.membership_config.membership();
        let refuse = |why: String| {
            if let Some(n) = REFUSALS.note(&why) {
                tracing::warn!(
                    "refused Raft message: {why}{}",
                    upsilon_core::ratelimit::repeats(n)
                );
            }
            Err(Status::permission_denied(why))
        };
        match mem.get_node(&sender) {
            Some(n) if n.name == who.name => Ok(()),
            Some(n) => refuse(format!(
                "certificate {:?} may not speak for node {sender} ({})",
                who.name, n.name
            )),
            None => match mem.nodes().find(|(_, n)| n.name == who.name) {
                Some((id, _)) => refuse(format!(
                    "certificate {:?} belongs to member {id}, not to node {sender}",
                    who.name
                )),
                None => Ok(()),
            },
        }
    }

    /// What a node certificate may ask the leader to do (see the module doc).
    fn check_forward(&self, who: &Identity, op: &LeaderOp) -> Result<(), String> {
        let m = self.cluster.metrics();
        let mem = m.membership_config.membership();
        // A host that is not a member (refused, rejoining) still acknowledges its own
        // stage: it follows the power state read-only and shuts its host down.
        if let LeaderOp::Write(Command::NodeAck { node, .. } | Command::HostHalted { node, .. }) =
            op
            && self
                .cluster
                .read(|s| s.nodes.get(node).is_some_and(|n| n.name == who.name))
            && mem
                .nodes()
                .find(|(_, n)| n.name == who.name)
                .is_none_or(|(id, _)| id == node)
        {
            return Ok(());
        }
        let Some(me) = mem
            .nodes()
            .find(|(_, n)| n.name == who.name)
            .map(|(id, _)| *id)
        else {
            return Err(format!(
                "certificate {:?} is not a member of this cluster: a node joins as itself (JoinNode) first",
                who.name
            ));
        };
        // Only the leader's view of who is held back counts (another node's may be
        // stale: it stops replicating when it stops leading).
        if m.current_leader == Some(self.cluster.id)
            && let Some(p) = self.cluster.net.health.problems().get(&me)
        {
            return Err(format!("node {} is held back: {p}", who.name));
        }
        let voters = m.membership_config.voter_ids().count();
        let voter = m.membership_config.voter_ids().any(|v| v == me);
        let own = |id: NodeId, what: &str| {
            if id == me {
                Ok(())
            } else {
                Err(format!(
                    "certificate {:?} (node {me}) may not send {what} for node {id}",
                    who.name
                ))
            }
        };
        let need_voter = |what: &str| {
            if voter {
                Ok(())
            } else {
                Err(format!(
                    "only a voter may propose {what}; {} is not one",
                    who.name
                ))
            }
        };
        let operator_only = |what: &str| {
            Err(format!(
                "{what} is an operator action: use an operator certificate (`upsilon` asks the leader directly)"
            ))
        };
        match op {
            LeaderOp::Write(cmd) => match cmd {
                Command::NodeUp { id, name, .. } => {
                    own(*id, "an announcement")?;
                    if *name != who.name {
                        return Err(format!(
                            "certificate {:?} may not announce itself as {name:?}",
                            who.name
                        ));
                    }
                    Ok(())
                }
                Command::Heartbeat { id, .. } => own(*id, "a heartbeat"),
                Command::Seen { .. } => {
                    Err("liveness (`Seen`) is written by the leader itself, never forwarded".into())
                }
                Command::UpsReport(r) => own(r.owner, "a UPS report"),
                Command::NodeAck { node, .. } => own(*node, "a stage acknowledgement"),
                Command::HostHalted { node, .. } => own(*node, "a \"halted\""),
                Command::UpsActionDone { ups, .. } => {
                    let owner = self.cluster.read(|s| s.upses.get(ups).map(|u| u.owner));
                    match owner {
                        Some(o) => own(o, "a UPS order's result"),
                        None => Err(format!("no UPS named {ups}")),
                    }
                }
                Command::KillPowerAlone { ups, .. } => {
                    let owner = self.cluster.read(|s| s.upses.get(ups).map(|u| u.owner));
                    match owner {
                        Some(o) => own(o, "a UPS order's result"),
                        None => Err(format!("no UPS named {ups}")),
                    }
                }
                Command::Notice { node, .. } if *node == who.name => Ok(()),
                Command::Notice { .. } => Err("a notice in another node's name".into()),
                Command::OutageStart { .. }
                | Command::StageStart { .. }
                | Command::KillPower { .. }
                | Command::HostDown { .. }
                | Command::ArmKillPower { .. }
                | Command::PowerCycle { .. }
                | Command::OutageEnd { .. }
                | Command::UpsStale { .. }
                | Command::MemberProblem { .. }
                | Command::VoterSeat { .. } => need_voter("the coordinator's commands"),
                Command::SetPlan { .. } => {
                    // A voter's `[cluster] plan` file, only while the cluster has none.
                    need_voter("a plan")?;
                    if self.cluster.read(|s| s.plan.is_some()) {
                        return operator_only("replacing the plan");
                    }
                    Ok(())
                }
                Command::NodeRemoved { .. } => operator_only("removing a node"),
                Command::DrillStart { .. } => operator_only("a fire drill"),
                Command::UpsRelease { .. } => operator_only("releasing a UPS name"),
                Command::RevokeCert { .. } => operator_only("revoking a certificate"),
                Command::LegacyHostsDeclare { .. } | Command::LegacyHostSeen { .. } => Err(
                    "legacy hosts are the bridge's to report: a bridge asks the leader with its own certificate".into(),
                ),
            },
            LeaderOp::AddLearner { .. } => {
                Err("a node joins through JoinNode, as itself, on the leader".into())
            }
            LeaderOp::SetVoter { id, voter: true } => {
                own(*id, "a promotion")?;
                // A voter re-admitted after its store was wiped takes its seat back.
                let owed = self.cluster.read(|s| s.seats_owed.contains(id));
                if voters >= SELF_PROMOTION_VOTERS && !owed {
                    return Err(format!(
                        "the cluster already has {voters} voters: a node may promote itself only while it has fewer than {SELF_PROMOTION_VOTERS}; an operator promotes more (`upsilon nodes promote {id}`)"
                    ));
                }
                Ok(())
            }
            LeaderOp::SetVoter { voter: false, .. } => operator_only("demoting a voter"),
            LeaderOp::Remove { .. } => operator_only("removing a node"),
        }
    }
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let (rpc, who): (VoteRequest<C>, _) = payload(&req)?;
        self.check_sender(&who, rpc.vote.leader_id.node_id)?;
        if let Some(why) = self.cluster.vote_fenced() {
            // No vote: the candidate counts this as one not granted.
            return reply(&Wire::<VoteResponse<C>>::Err(why));
        }
        reply(&self.cluster.raft.vote(rpc).await.map_err(|e| e.to_string()))
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let (rpc, who): (AppendEntriesRequest<C>, _) = payload(&req)?;
        self.check_sender(&who, rpc.vote.leader_id.node_id)?;
        let r = self.cluster.raft.append_entries(rpc).await;
        // After it: this node now holds the leader's term, and the leader its answer.
        // Only entries it could take keep it in touch: a leader that keeps finding a
        // gap (it is held back, a rewound store) leaves it cut off.
        self.cluster.leader_reached(matches!(
            &r,
            Ok(openraft::raft::AppendEntriesResponse::Success
                | openraft::raft::AppendEntriesResponse::PartialSuccess(_))
        ));
        reply(&r.map_err(|e| e.to_string()))
    }

    async fn full_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let ((vote, meta, data), who): ((VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>), _) =
            payload(&req)?;
        self.check_sender(&who, vote.leader_id.node_id)?;
        let snap = SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: data,
        };
        reply(
            &self
                .cluster
                .raft
                .install_full_snapshot(vote, snap)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    async fn read_state(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let ((), _who): ((), _) = payload(&req)?;
        if !self.cluster.is_member()
            || !self.cluster.caught_up()
            || self.cluster.out_of_membership()
        {
            return Err(Status::unavailable(
                "this node is not a caught-up member in touch with a leader: ask another",
            ));
        }
        let m = self.cluster.metrics();
        let leader = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        let state = self.cluster.read(|s| s.clone());
        reply(&crate::cluster::network::Followed { leader, state })
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let (op, who): (LeaderOp, _) = payload(&req)?;
        if let Err(why) = self.check_forward(&who, &op) {
            if let Some(n) = REFUSALS.note(&why) {
                tracing::warn!(
                    "refused a forwarded write from {:?}: {why}{}",
                    who.name,
                    upsilon_core::ratelimit::repeats(n)
                );
            }
            return Err(Status::permission_denied(why));
        }
        let r: Result<LeaderReply, String> = match self.cluster.run_local(&op).await {
            Ok(r) => Ok(r),
            Err(Local::Forward(to)) => Err(format!(
                "this node is not the leader{}",
                to.map(|a| format!(" (the leader is at {a})"))
                    .unwrap_or_default()
            )),
            Err(Local::Failed(e)) => Err(e),
        };
        reply(&r)
    }
}
