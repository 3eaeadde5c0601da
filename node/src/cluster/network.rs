//! The Raft RPC client: openraft's network traits over mutual-TLS gRPC.
//!
//! Each target gets one lazily opened channel, authenticated with this node's own
//! certificate (role `node`); a failed call drops the channel so the next one
//! reconnects. openraft's messages travel as JSON in `RaftPayload`. The same client
//! forwards writes and membership changes to the leader ([`forward`]).
//!
//! It also protects the leader from what a follower says: every RPC names the target's
//! store incarnation (a wiped store refuses it), and a follower that lost entries it had
//! acknowledged is held back here instead of being handed to openraft, which cannot
//! rewind a follower and would stop its core ([`PeerHealth`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

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

use openraft::entry::RaftEntry;

use super::store::IdentityHandle;
use super::{ClusterNode, NodeId, TypeConfig};

type C = TypeConfig;

/// The largest Raft message either side sends or accepts. Every replicated record is
/// bounded (see `limits`), so a snapshot of the whole state fits far below it; an
/// AppendEntries batch that would not fit is cut short and reported as a partial
/// success, so openraft sends the rest next.
pub const MAX_RAFT_MESSAGE: usize = 64 * 1024 * 1024;

/// gRPC metadata keys a leader sends with each Raft RPC so that a follower can refuse
/// traffic meant for someone else: the cluster, the target's id, and the incarnation of
/// the target's store the leader knows (see `store::StoreIdentity`).
pub const HDR_CLUSTER: &str = "x-upsilon-cluster";
pub const HDR_TARGET: &str = "x-upsilon-target-id";
pub const HDR_INCARNATION: &str = "x-upsilon-target-incarnation";

/// Problems with peers seen by this node's Raft client, shared with the cluster view.
#[derive(Debug, Default)]
pub struct PeerHealth {
    /// Target -> why replication to it is held back, in words.
    problems: Mutex<BTreeMap<NodeId, String>>,
    /// (target, its incarnation) -> (leader term, highest log index it acknowledged in
    /// that term). Within one term the leader never truncates its own log, so a target
    /// that later lacks an index at or below this lost entries it had stored.
    matched: Mutex<HashMap<(NodeId, u64), (u64, u64)>>,
    /// Peers this node cannot reach now: reported once, then summarised.
    unreachable: Mutex<HashMap<NodeId, Outage>>,
}

/// How long a peer has been unreachable, and what was said about it.
#[derive(Debug)]
struct Outage {
    since: std::time::Instant,
    failed: u64,
    reported: std::time::Instant,
}

/// A peer still unreachable is summarised this often.
const UNREACHABLE_SUMMARY: std::time::Duration = std::time::Duration::from_secs(60);

impl PeerHealth {
    /// Why replication to `target` is held back, if it is (logged by `set_problem`).
    fn held_back(&self, target: NodeId) -> Option<String> {
        self.problems
            .lock()
            .expect("peer health lock")
            .get(&target)
            .cloned()
    }

    /// Every problem now held, by target.
    pub fn problems(&self) -> BTreeMap<NodeId, String> {
        self.problems.lock().expect("peer health lock").clone()
    }

    fn set_problem(&self, target: NodeId, problem: String) {
        let mut p = self.problems.lock().expect("peer health lock");
        if p.get(&target) != Some(&problem) {
            tracing::error!(target, "replication to node {target} held back: {problem}");
            p.insert(target, problem);
        }
    }

    fn clear_problem(&self, target: NodeId) {
        if self
            .problems
            .lock()
            .expect("peer health lock")
            .remove(&target)
            .is_some()
        {
            tracing::info!(target, "node {target} accepts replication again");
        }
    }

    /// A call to `target` failed for want of an answer: said once, then once a minute
    /// with a count (openraft retries many times a second).
    fn note_unreachable(&self, target: NodeId, why: &str) {
        let now = std::time::Instant::now();
        let mut u = self.unreachable.lock().expect("peer health lock");
        match u.get_mut(&target) {
            None => {
                tracing::warn!(
                    target,
                    "node {target} is unreachable: {why} (said again once a minute while it lasts)"
                );
                u.insert(
                    target,
                    Outage {
                        since: now,
                        failed: 1,
                        reported: now,
                    },
                );
            }
            Some(o) => {
                o.failed += 1;
                if now.duration_since(o.reported) >= UNREACHABLE_SUMMARY {
                    o.reported = now;
                    tracing::warn!(
                        target,
                        "node {target} still unreachable after {} s ({} failed calls): {why}",
                        now.duration_since(o.since).as_secs(),
                        o.failed
                    );
                }
            }
        }
    }

    /// A call to `target` was answered: if it was unreachable, say it is back.
    fn note_reached(&self, target: NodeId) {
        let back = self
            .unreachable
            .lock()
            .expect("peer health lock")
            .remove(&target);
        if let Some(o) = back {
            tracing::info!(
                target,
                "node {target} answers again after {} s unreachable",
                o.since.elapsed().as_secs()
            );
        }
    }

    /// A member re-admitted (a new or rewound store): what it acknowledged before and any
    /// problem with it are forgotten, so its fresh replication is judged afresh.
    pub fn restart_with(&self, target: NodeId) {
        self.matched
            .lock()
            .expect("peer health lock")
            .retain(|(t, _), _| *t != target);
        self.forget(target);
    }

    /// Drops what is known about `target` without logging (a fresh start with it).
    fn forget(&self, target: NodeId) {
        self.problems
            .lock()
            .expect("peer health lock")
            .remove(&target);
        self.unreachable
            .lock()
            .expect("peer health lock")
            .remove(&target);
    }

    fn note_match(&self, key: (NodeId, u64), term: u64, index: u64) {
        let mut m = self.matched.lock().expect("peer health lock");
        let e = m.entry(key).or_insert((term, index));
        if e.0 != term {
            *e = (term, index);
        } else {
            e.1 = e.1.max(index);
        }
    }

    fn matched_in(&self, key: (NodeId, u64), term: u64) -> Option<u64> {
        let m = self.matched.lock().expect("peer health lock");
        m.get(&key).filter(|(t, _)| *t == term).map(|(_, i)| *i)
    }
}

/// Makes Raft connections; holds this node's client TLS settings.
#[derive(Clone)]
pub struct Network {
    tls: Arc<rustls::ClientConfig>,
    identity: IdentityHandle,
    pub health: Arc<PeerHealth>,
    /// Open channels for forwarded writes, by leader address: a TLS handshake per
    /// forwarded write cost more than the write (requests are still authorised one
    /// by one, revocation included).
    forwards: Arc<std::sync::Mutex<HashMap<String, Channel>>>,
}

impl Network {
    pub fn new(tls: rustls::ClientConfig, identity: IdentityHandle) -> Self {
        Network {
            tls: Arc::new(tls),
            identity,
            health: Arc::new(PeerHealth::default()),
            forwards: Arc::default(),
        }
    }

    /// Opens an mTLS channel to a node's API address.
    pub async fn channel(&self, addr: &str) -> Result<Channel, String> {
        upsilon_client::tls::connect(addr, (*self.tls).clone())
            .await
            .map_err(|e| e.0)
    }
}

/// A Raft client with the message limit on both directions.
pub fn raft_client(ch: Channel) -> RaftServiceClient<Channel> {
    RaftServiceClient::new(ch)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
}

/// One connection to one target node.
pub struct Conn {
    net: Network,
    target: NodeId,
    /// The incarnation of the target's store recorded in membership (0: unknown).
    incarnation: u64,
    addr: String,
    client: Option<RaftServiceClient<Channel>>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> Conn {
        // A new replication stream (a new term, or the member re-added as new): what
        // held the target back before is judged afresh.
        self.health.forget(target);
        Conn {
            net: self.clone(),
            target,
            incarnation: node.incarnation,
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
    fn key(&self) -> (NodeId, u64) {
        (self.target, self.incarnation)
    }

    /// One Raft call; whether the target answered goes to [`PeerHealth`].
    async fn call_payload<Resp, F, Fut>(
        &mut self,
        payload: RaftPayload,
        ttl: std::time::Duration,
        f: F,
    ) -> Result<Resp, CallError>
    where
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let r = self.call_once(payload, ttl, f).await;
        match &r {
            Err(CallError::Unreachable(why))
                if self.net.health.held_back(self.target).is_none() =>
            {
                self.net.health.note_unreachable(self.target, why)
            }
            Err(CallError::Unreachable(_)) => {}
            _ => self.net.health.note_reached(self.target),
        }
        r
    }

    async fn call_once<Resp, F, Fut>(
        &mut self,
        payload: RaftPayload,
        ttl: std::time::Duration,
        f: F,
    ) -> Result<Resp, CallError>
    where
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        if upsilon_client::fault::blocked(&self.addr) {
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
                let c = raft_client(ch);
                self.client = Some(c.clone());
                c
            }
        };
        let mut req = tonic::Request::new(payload);
        let md = req.metadata_mut();
        if let Some(cluster) = self.net.identity.get().cluster_id
            && let Ok(v) = cluster.parse()
        {
            md.insert(HDR_CLUSTER, v);
        }
        if let Ok(v) = self.target.to_string().parse() {
            md.insert(HDR_TARGET, v);
        }
        if let Ok(v) = self.incarnation.to_string().parse() {
            md.insert(HDR_INCARNATION, v);
        }
        let pause = upsilon_client::fault::delay(&self.addr);
        let sent = async move {
            if let Some(d) = pause {
                tokio::time::sleep(d).await;
            }
            f(client, req).await
        };
        match tokio::time::timeout(ttl, sent).await {
            Err(_) => {
                self.client = None;
                Err(CallError::Unreachable(format!(
                    "node {} did not answer in {ttl:?}",
                    self.target
                )))
            }
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                // The target refuses this traffic (another store, another cluster):
                // back off, and tell the operator; never hand openraft its log.
                let why = status.message().to_string();
                self.net.health.set_problem(self.target, why.clone());
                Err(CallError::Unreachable(why))
            }
            Ok(Err(status)) => {
                self.client = None;
                Err(CallError::Unreachable(upsilon_client::rpc::explain_status(
                    &status, &self.addr,
                )))
            }
            Ok(Ok(resp)) => decode(resp.get_ref()).map_err(CallError::Failed),
        }
    }

    async fn call<Req, Resp, F, Fut>(
        &mut self,
        req: &Req,
        ttl: std::time::Duration,
        f: F,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let payload = encode(req).map_err(CallError::Failed)?;
        if payload.json.len() > MAX_RAFT_MESSAGE {
            return Err(CallError::Failed(format!(
                "raft message of {} bytes exceeds the {MAX_RAFT_MESSAGE}-byte limit",
                payload.json.len()
            )));
        }
        self.call_payload(payload, ttl, f).await
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

/// Cuts `rpc` to the longest prefix of its entries whose encoding fits the message
/// limit (at least one entry). Returns the encoding and whether entries were left out.
fn fit_append(rpc: &mut AppendEntriesRequest<C>) -> Result<(RaftPayload, bool), String> {
    let mut payload = encode(&*rpc)?;
    let mut cut = false;
    while payload.json.len() > MAX_RAFT_MESSAGE && rpc.entries.len() > 1 {
        let keep = rpc.entries.len() / 2;
        rpc.entries.truncate(keep);
        cut = true;
        payload = encode(&*rpc)?;
    }
    if payload.json.len() > MAX_RAFT_MESSAGE {
        return Err(format!(
            "one raft entry of {} bytes exceeds the {MAX_RAFT_MESSAGE}-byte message limit",
            payload.json.len()
        ));
    }
    Ok((payload, cut))
}

impl RaftNetworkV2<C> for Conn {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let (payload, cut) = fit_append(&mut rpc).map_err(|m| rpc_err(CallError::Failed(m)))?;
        let term = rpc.vote.leader_id.term;
        let prev = rpc.prev_log_id.as_ref().map(|l| l.index());
        let last = rpc.entries.last().map(|e| e.log_id());
        let last_index = last.as_ref().map(|l| l.index()).or(prev);
        let w: Wire<AppendEntriesResponse<C>> = self
            .call_payload(payload, option.hard_ttl(), |mut c, p| async move {
                c.append_entries(p).await
            })
            .await
            .map_err(rpc_err)?;
        let resp = unwrap_remote(w).map_err(rpc_err)?;
        match &resp {
            AppendEntriesResponse::Success => {
                if let Some(i) = last_index {
                    self.net.health.note_match(self.key(), term, i);
                }
                self.net.health.clear_problem(self.target);
                if cut {
                    return Ok(AppendEntriesResponse::PartialSuccess(last));
                }
            }
            AppendEntriesResponse::PartialSuccess(Some(l)) => {
                self.net.health.note_match(self.key(), term, l.index());
                self.net.health.clear_problem(self.target);
            }
            AppendEntriesResponse::Conflict => {
                if let (Some(p), Some(m)) = (prev, self.net.health.matched_in(self.key(), term))
                    && p <= m
                {
                    // The target stored entry `m` for this leader and now lacks `p`:
                    // its log was truncated or restored. openraft must never see this
                    // (it cannot rewind a follower); the leader re-admits the node
                    // (`duties::publish_member_problems`), as a wiped one.
                    let why = format!(
                        "node {} lost log entries it had stored (it acknowledged index {m} and now lacks index {p}): its data directory was truncated or restored from an old copy. Run `upsilon nodes remove {}`, empty its data_dir, and start it again to join as a new member",
                        self.target, self.target
                    );
                    self.net.health.set_problem(self.target, why.clone());
                    return Err(rpc_err(CallError::Unreachable(why)));
                }
            }
            _ => {}
        }
        Ok(resp)
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
        let resp = unwrap_remote(w).map_err(to_stream)?;
        self.net.health.clear_problem(self.target);
        Ok(resp)
    }
}

/// Sends `req` to the node at `addr` over its `Forward` RPC and decodes the answer.
/// Asks the node at `addr` for its applied power state (for a node that is not a
/// member: it follows it read-only).
/// What a member gives a node that is not one (the `ReadState` RPC): its applied power
/// state and the leader's address.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Followed {
    pub leader: Option<String>,
    pub state: super::PowerState,
}

pub async fn read_state(net: &Network, addr: &str) -> Result<Followed, String> {
    if upsilon_client::fault::blocked(addr) {
        return Err(format!(
            "cannot connect to {addr}: blocked by fault injection"
        ));
    }
    let ch = upsilon_client::tls::connect(addr, (*net.tls).clone())
        .await
        .map_err(|e| e.0)?;
    match raft_client(ch).read_state(encode(&())?).await {
        Ok(resp) => decode(resp.get_ref()),
        Err(s) => Err(upsilon_client::rpc::explain_status(&s, addr)),
    }
}

pub async fn forward<Req: Serialize, Resp: DeserializeOwned>(
    net: &Network,
    addr: &str,
    req: &Req,
) -> Result<Resp, String> {
    if let Some(d) = upsilon_client::fault::delay(addr) {
        tokio::time::sleep(d).await;
    }
    if upsilon_client::fault::blocked(addr) {
        net.forwards.lock().expect("forwards lock").remove(addr);
        return Err(format!(
            "cannot connect to {addr}: blocked by fault injection"
        ));
    }
    let cached = net
        .forwards
        .lock()
        .expect("forwards lock")
        .get(addr)
        .cloned();
    let ch = match cached {
        Some(ch) => ch,
        None => {
            let ch = upsilon_client::tls::connect(addr, (*net.tls).clone())
                .await
                .map_err(|e| e.0)?;
            net.forwards
                .lock()
                .expect("forwards lock")
                .insert(addr.to_string(), ch.clone());
            ch
        }
    };
    match raft_client(ch).forward(encode(req)?).await {
        Ok(resp) => decode(resp.get_ref()),
        Err(s) => {
            // The next write opens a fresh connection.
            net.forwards.lock().expect("forwards lock").remove(addr);
            Err(upsilon_client::rpc::explain_status(&s, addr))
        }
    }
}

/// [`forward`] with a client TLS config of its own (no running node needed).
pub async fn forward_with<Req: Serialize, Resp: DeserializeOwned>(
    tls: &rustls::ClientConfig,
    addr: &str,
    req: &Req,
) -> Result<Resp, String> {
    if let Some(d) = upsilon_client::fault::delay(addr) {
        tokio::time::sleep(d).await;
    }
    let ch = upsilon_client::tls::connect(addr, tls.clone())
        .await
        .map_err(|e| e.0)?;
    let mut c = raft_client(ch);
    let resp = c
        .forward(encode(req)?)
        .await
        .map_err(|s| upsilon_client::rpc::explain_status(&s, addr))?;
    decode(resp.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(json: &[u8]) -> RaftPayload {
        RaftPayload {
            json: json.to_vec(),
        }
    }

    /// What a member answers to `ReadState` (and every Raft message) is decoded or
    /// refused with a clear error: never a panic, never a half-read state.
    #[test]
    fn bad_payloads_are_refused_in_words() {
        let good = encode(&Followed {
            leader: Some("127.0.0.1:7000".into()),
            state: Default::default(),
        })
        .unwrap();
        let back: Followed = decode(&good).unwrap();
        assert_eq!(back.leader.as_deref(), Some("127.0.0.1:7000"));
        let cut = payload(&good.json[..good.json.len() / 2]);
        for bad in [
            payload(b""),
            payload(b"null"),
            payload(b"{\"leader\": 5}"),
            payload(&[0xff, 0xfe, 0x00]),
            cut,
        ] {
            let e = decode::<Followed>(&bad).unwrap_err();
            assert!(e.starts_with("malformed raft message"), "{e}");
            assert!(decode::<AppendEntriesRequest<C>>(&bad).is_err());
            assert!(decode::<VoteRequest<C>>(&bad).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let p = payload(&bytes);
            let _ = decode::<Followed>(&p);
            let _ = decode::<AppendEntriesRequest<C>>(&p);
            let _ = decode::<VoteRequest<C>>(&p);
        }
    }
}
