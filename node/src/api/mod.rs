//! The gRPC services a node serves, one file per service, on the mTLS listener.

pub mod admin;
pub mod bridge;
pub mod power;
pub mod raft;

use std::sync::Arc;

use tonic::Status;
use upsilon_proto::v1::admin_service_server::AdminServiceServer;
use upsilon_proto::v1::bridge_service_server::BridgeServiceServer;
use upsilon_proto::v1::power_service_server::PowerServiceServer;
use upsilon_proto::v1::raft_service_server::RaftServiceServer;

use crate::shared::NodeShared;
use upsilon_client::stop::Stop;
use upsilon_client::tls::TlsIncoming;

/// Serves every service on the already-authenticated TLS connections until the node stops.
/// RaftService is served only when the node is a cluster member.
pub async fn serve(shared: Arc<NodeShared>, incoming: TlsIncoming, mut stop: Stop) {
    let raft = shared.cluster.clone().map(|c| {
        use crate::cluster::network::MAX_RAFT_MESSAGE;
        RaftServiceServer::new(raft::RaftApi::new(c))
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE)
    });
    let res = tonic::transport::Server::builder()
        .add_service(PowerServiceServer::new(power::PowerApi::new(
            shared.clone(),
        )))
        .add_service(AdminServiceServer::new(admin::AdminApi::new(
            shared.clone(),
        )))
        .add_service(BridgeServiceServer::new(bridge::BridgeApi::new(shared)))
        .add_optional_service(raft)
        .serve_with_incoming_shutdown(incoming, async move { stop.recv().await })
        .await;
    if let Err(e) = res {
        tracing::error!("API server stopped: {e}");
    }
}

/// Runs a cluster-wide write here if this node leads, else refuses with the leader's
/// address (metadata `x-upsilon-leader`), so the caller asks the leader itself with its
/// own certificate: the leader checks who asks, never a node's word for it.
pub async fn on_leader(
    cluster: &crate::cluster::handle::Cluster,
    op: crate::cluster::handle::LeaderOp,
) -> Result<crate::cluster::handle::LeaderReply, Status> {
    use crate::cluster::handle::{Here, WriteError};
    match cluster
        .submit_here(op, std::time::Duration::from_secs(15))
        .await
    {
        Ok(r) => Ok(r),
        Err(Here::Redirect(addr)) => {
            let mut st = Status::failed_precondition(format!(
                "this node is not the leader: send this to the leader at {addr}"
            ));
            if let Ok(v) = addr.parse() {
                st.metadata_mut()
                    .insert(upsilon_client::rpc::LEADER_HEADER, v);
            }
            Err(st)
        }
        Err(Here::Failed(WriteError::Unavailable(e))) => Err(Status::unavailable(e)),
        Err(Here::Failed(WriteError::Refused(e))) => Err(Status::failed_precondition(e)),
    }
}
