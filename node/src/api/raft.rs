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
use crate::cluster::network::decode;
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

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<C> = payload(&req)?;
        reply(&self.cluster.raft.vote(rpc).await.map_err(|e| e.to_string()))
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
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
