//! `RaftService`: openraft's RPCs from other nodes, and writes forwarded to the leader.
//! Only certificates with role `node` of this cluster's CA may call it.

use std::sync::Arc;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};
use upsilon_proto::v1::RaftPayload;
use upsilon_proto::v1::raft_service_server::RaftService;

use crate::cluster::TypeConfig;
use crate::cluster::handle::{Cluster, LeaderOp, LeaderReply, Local};
use crate::cluster::network::{HDR_CLUSTER, HDR_INCARNATION, HDR_TARGET, decode};
use crate::pki::Role;
use crate::tls::authorize;

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

fn payload<T: serde::de::DeserializeOwned>(req: &Request<RaftPayload>) -> Result<T, Status> {
    authorize(req, &[Role::Node])?;
    decode(req.get_ref()).map_err(Status::invalid_argument)
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
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let rpc: VoteRequest<C> = payload(&req)?;
        reply(&self.cluster.raft.vote(rpc).await.map_err(|e| e.to_string()))
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let rpc: AppendEntriesRequest<C> = payload(&req)?;
        reply(
            &self
                .cluster
                .raft
                .append_entries(rpc)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    async fn full_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_addressed_to_me(&req)?;
        let (vote, meta, data): (VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>) = payload(&req)?;
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

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let op: LeaderOp = payload(&req)?;
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
