//! The Raft RPC client: openraft's network traits over mutual-TLS gRPC.
//!
//! Each target gets one lazily opened channel, authenticated with this node's own
//! certificate (role `node`); a failed call drops the channel so the next one
//! reconnects. openraft's messages travel as JSON in `RaftPayload`. The same client
//! forwards writes and membership changes to the leader ([`forward`]).

use std::future::Future;
use std::sync::Arc;

use openraft::RaftNetworkV2;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Serialize, de::DeserializeOwned};
use tonic::transport::Channel;
use upsilon_proto::v1::RaftPayload;
use upsilon_proto::v1::raft_service_client::RaftServiceClient;

use super::{ClusterNode, NodeId, TypeConfig};

type C = TypeConfig;

/// Makes Raft connections; holds this node's client TLS settings.
#[derive(Clone)]
pub struct Network {
    tls: Arc<rustls::ClientConfig>,
}

impl Network {
    pub fn new(tls: rustls::ClientConfig) -> Self {
        Network { tls: Arc::new(tls) }
    }

    /// Opens an mTLS channel to a node's API address.
    pub async fn channel(&self, addr: &str) -> Result<Channel, String> {
        crate::tls::connect(addr, (*self.tls).clone())
            .await
            .map_err(|e| e.0)
    }
}

/// One connection to one target node.
pub struct Conn {
    net: Network,
    target: NodeId,
    addr: String,
    client: Option<RaftServiceClient<Channel>>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> Conn {
        Conn {
            net: self.clone(),
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<RaftPayload, String> {
    serde_json::to_vec(v)
        .map(|json| RaftPayload { json })
        .map_err(|e| format!("cannot encode raft message: {e}"))
}

pub fn decode<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, String> {
    serde_json::from_slice(&p.json).map_err(|e| format!("malformed raft message: {e}"))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

enum CallError {
    /// Could not reach the node: back off.
    Unreachable(String),
    /// Reached it but the call failed: retry.
    Failed(String),
}

impl Conn {
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        req: &Req,
        ttl: std::time::Duration,
        f: F,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, RaftPayload) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        if crate::fault::blocked(&self.addr) {
            self.client = None;
            return Err(CallError::Unreachable(format!(
                "{} blocked by fault injection",
                self.addr
            )));
        }
        let client = match self.client.clone() {
            Some(c) => c,
            None => {
                let ch = tokio::time::timeout(ttl, self.net.channel(&self.addr))
                    .await
                    .map_err(|_| {
                        CallError::Unreachable(format!("connect to {} timed out", self.addr))
                    })?
                    .map_err(CallError::Unreachable)?;
                let c = RaftServiceClient::new(ch);
                self.client = Some(c.clone());
                c
            }
        };
        let payload = encode(req).map_err(CallError::Failed)?;
        match tokio::time::timeout(ttl, f(client, payload)).await {
            Err(_) => {
                self.client = None;
                Err(CallError::Unreachable(format!(
                    "node {} did not answer in {ttl:?}",
                    self.target
                )))
            }
            Ok(Err(status)) => {
                self.client = None;
                Err(CallError::Unreachable(crate::client::explain_status(
                    &status, &self.addr,
                )))
            }
            Ok(Ok(resp)) => decode(resp.get_ref()).map_err(CallError::Failed),
        }
    }
}

fn rpc_err(e: CallError) -> RPCError<C> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
        CallError::Failed(m) => RPCError::Network(NetworkError::new(&Msg(m))),
    }
}

/// The server's answer: the openraft result, or its error as text.
pub type Wire<T> = Result<T, String>;

fn unwrap_remote<T>(w: Wire<T>) -> Result<T, CallError> {
    w.map_err(CallError::Failed)
}

impl RaftNetworkV2<C> for Conn {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let w: Wire<AppendEntriesResponse<C>> = self
            .call(&rpc, option.hard_ttl(), |mut c, p| async move {
                c.append_entries(p).await
            })
            .await
            .map_err(rpc_err)?;
        unwrap_remote(w).map_err(rpc_err)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let w: Wire<VoteResponse<C>> = self
            .call(&rpc, option.hard_ttl(), |mut c, p| async move {
                c.vote(p).await
            })
            .await
            .map_err(rpc_err)?;
        unwrap_remote(w).map_err(rpc_err)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let req = (vote, snapshot.meta, snapshot.snapshot);
        let ttl = option.hard_ttl().max(std::time::Duration::from_secs(10));
        let to_stream = |e: CallError| match e {
            CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::new(&Msg(m))),
            CallError::Failed(m) => StreamingError::Network(NetworkError::new(&Msg(m))),
        };
        let w: Wire<SnapshotResponse<C>> = self
            .call(
                &req,
                ttl,
                |mut c, p| async move { c.full_snapshot(p).await },
            )
            .await
            .map_err(to_stream)?;
        unwrap_remote(w).map_err(to_stream)
    }
}

/// Sends `req` to the node at `addr` over its `Forward` RPC and decodes the answer.
pub async fn forward<Req: Serialize, Resp: DeserializeOwned>(
    net: &Network,
    addr: &str,
    req: &Req,
) -> Result<Resp, String> {
    let ch = net.channel(addr).await?;
    let mut c = RaftServiceClient::new(ch);
    let resp = c
        .forward(encode(req)?)
        .await
        .map_err(|s| crate::client::explain_status(&s, addr))?;
    decode(resp.get_ref())
}
