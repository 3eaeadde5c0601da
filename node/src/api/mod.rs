//! The gRPC services a node serves, one file per service, on the mTLS listener.

pub mod admin;
pub mod power;
pub mod raft;

use std::sync::Arc;

use upsilon_proto::v1::admin_service_server::AdminServiceServer;
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
        .add_service(AdminServiceServer::new(admin::AdminApi::new(shared)))
        .add_optional_service(raft)
        .serve_with_incoming_shutdown(incoming, async move { stop.recv().await })
        .await;
    if let Err(e) = res {
        tracing::error!("API server stopped: {e}");
    }
}
