//! `BridgeService`: a legacy bridge declares its hosts and reports what it sees of
//! them. Only role `bridge` may call it, on the leader (any other node answers with
//! the leader's address); the bridge's name is its certificate's.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use upsilon_client::pb_impl;
use upsilon_client::pki::Role;
use upsilon_client::tls::authorize;
use upsilon_core::replicated::legacy::{LegacyHostDecl, MAX_LEGACY_HOSTS};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::bridge_service_server::BridgeService;

use crate::cluster::Command;
use crate::cluster::handle::{Cluster, LeaderOp, LeaderReply};
use crate::shared::NodeShared;

const BRIDGE: &[Role] = &[Role::Bridge];

pub struct BridgeApi {
    shared: Arc<NodeShared>,
}

impl BridgeApi {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        BridgeApi { shared }
    }

    fn cluster(&self) -> Result<&Arc<Cluster>, Status> {
        self.shared.cluster.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node is standalone: a bridge serves the hosts of a cluster",
            )
        })
    }

    async fn write(&self, cmd: Command) -> Result<bool, Status> {
        match super::on_leader(self.cluster()?, LeaderOp::Write(cmd)).await? {
            LeaderReply::Written(r) => Ok(r.applied),
            LeaderReply::Membership { .. } => Err(Status::internal("unexpected reply to a write")),
        }
    }
}

#[tonic::async_trait]
impl BridgeService for BridgeApi {
    async fn declare_hosts(
        &self,
        req: Request<pb::DeclareHostsRequest>,
    ) -> Result<Response<pb::DeclareHostsReply>, Status> {
        let who = authorize(&req, BRIDGE)?;
        let hosts: Vec<LegacyHostDecl> = req
            .get_ref()
            .hosts
            .iter()
            .map(pb_impl::legacy_decl_from_pb)
            .collect();
        if hosts.len() > MAX_LEGACY_HOSTS {
            return Err(Status::invalid_argument(format!(
                "{} legacy hosts declared; at most {MAX_LEGACY_HOSTS}",
                hosts.len()
            )));
        }
        for h in &hosts {
            h.validate().map_err(Status::invalid_argument)?;
        }
        let runs_on = Some(req.get_ref().runs_on.clone()).filter(|r| !r.is_empty());
        if let Some(r) = &runs_on {
            let nodes = self
                .cluster()?
                .read(|s| s.nodes.values().map(|n| n.name.clone()).collect::<Vec<_>>());
            if !nodes.contains(r) {
                return Err(Status::invalid_argument(format!(
                    "[bridge] runs_on = {r:?}: no node of the cluster has that name (its nodes: {}); name the node whose host runs this bridge, or leave runs_on out",
                    nodes.join(", ")
                )));
            }
        }
        let changed = self
            .write(Command::LegacyHostsDeclare {
                bridge: who.name.clone(),
                hosts,
                at_ms: upsilon_core::time::now_ms(),
                runs_on,
            })
            .await?;
        Ok(Response::new(pb::DeclareHostsReply { changed }))
    }

    async fn report_host(
        &self,
        req: Request<pb::ReportHostRequest>,
    ) -> Result<Response<pb::ReportHostReply>, Status> {
        let who = authorize(&req, BRIDGE)?;
        let r = req.into_inner();
        let state = pb::LegacyHostState::try_from(r.state)
            .ok()
            .and_then(pb_impl::legacy_state_from_pb);
        let known = self.cluster()?.read(|s| s.legacy_host(&r.name).is_some());
        if !known {
            return Err(Status::not_found(format!(
                "the cluster has no legacy host named {:?}: declare it first",
                r.name
            )));
        }
        if !r.notice.is_empty() {
            self.write(Command::Notice {
                at_ms: upsilon_core::time::now_ms(),
                node: who.name.clone(),
                message: format!("{}: {}", r.name, r.notice),
            })
            .await?;
        }
        let Some(state) = state else {
            if r.notice.is_empty() {
                return Err(Status::invalid_argument(
                    "a report needs a state or a notice",
                ));
            }
            return Ok(Response::new(pb::ReportHostReply { applied: true }));
        };
        let applied = self
            .write(Command::LegacyHostSeen {
                bridge: who.name.clone(),
                name: r.name,
                state,
                at_ms: upsilon_core::time::now_ms(),
            })
            .await?;
        Ok(Response::new(pb::ReportHostReply { applied }))
    }
}
