//! The bridge's link to the cluster: it follows one node's `Watch` stream and moves to
//! the next listed node when that one fails or falls silent; it writes (declarations,
//! reports) on the leader with its own certificate.

use std::sync::Arc;
use std::time::Duration;

use upsilon_client::pb_impl;
use upsilon_client::rpc::{self, ClientOptions};
use upsilon_client::stop::Stop;
use upsilon_core::events::format_line;
use upsilon_core::replicated::legacy::LegacyState;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::bridge_service_client::BridgeServiceClient;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

use super::{BridgeState, ClusterPicture};

/// How long to wait before trying the next node.
const RETRY: Duration = Duration::from_secs(1);

fn options(state: &BridgeState, endpoint: &str) -> ClientOptions {
    let tls = &state.cfg.tls;
    ClientOptions {
        endpoint: endpoint.to_string(),
        ca: tls.ca.clone(),
        identity: Some((tls.cert.clone(), tls.key.clone())),
    }
}

/// The picture in a status reply.
pub fn picture_of(s: &pb::StatusReply) -> ClusterPicture {
    ClusterPicture {
        ups: s.ups.iter().map(pb_impl::ups_view_from_pb).collect(),
        legacy: s
            .legacy_hosts
            .iter()
            .map(pb_impl::legacy_host_from_pb)
            .collect(),
        policy: s
            .policy
            .as_ref()
            .map(pb_impl::policy_from_pb)
            .unwrap_or_default(),
        writable: s.cluster.as_ref().is_some_and(|c| c.enabled && c.writable),
        node_name: s.node_name.clone(),
    }
}

/// Follows the cluster until `stop`, node after node.
pub async fn follow(state: Arc<BridgeState>, mut stop: Stop) {
    let nodes = state.cfg.bridge.nodes.clone();
    // A node that stays unreachable is logged once a minute, with a count.
    let quiet = upsilon_core::ratelimit::LogLimiter::new();
    let mut i = 0usize;
    loop {
        let endpoint = &nodes[i % nodes.len()];
        let (followed, why) = tokio::select! {
            _ = stop.recv() => return,
            r = watch(&state, endpoint) => r,
        };
        if followed {
            tracing::warn!("lost the cluster through {endpoint}: {why}; trying the next node");
        } else if let Some(n) = quiet.note(&format!("{endpoint}: {why}")) {
            let times = if n > 1 {
                format!(" ({n} times in the last minute)")
            } else {
                String::new()
            };
            tracing::warn!("cannot follow the cluster through {endpoint}: {why}{times}");
        }
        i += 1;
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Watches one node until its stream fails or stays silent; returns whether it was
/// followed (sent a status) and why it ended.
async fn watch(state: &BridgeState, endpoint: &str) -> (bool, String) {
    let mut followed = false;
    let why = watch_until_lost(state, endpoint, &mut followed).await;
    (followed, why)
}

async fn watch_until_lost(state: &BridgeState, endpoint: &str, followed: &mut bool) -> String {
    let timeout = state.cfg.bridge.cluster_timeout();
    let ch = match tokio::time::timeout(timeout, rpc::connect(&options(state, endpoint))).await {
        Ok(Ok(ch)) => ch,
        Ok(Err(e)) => return e.0,
        Err(_) => return format!("no connection within {} s", timeout.as_secs()),
    };
    let mut client = PowerServiceClient::new(ch);
    let mut stream = match tokio::time::timeout(timeout, client.watch(pb::WatchRequest {})).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return rpc::explain_status(&s, endpoint),
        Err(_) => return format!("Watch not answered within {} s", timeout.as_secs()),
    };
    let mut first = true;
    loop {
        // A node sends a status at least every 2 s: silence means it is gone.
        let msg = match tokio::time::timeout(timeout, stream.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return "the node closed the stream".into(),
            Ok(Err(s)) => return rpc::explain_status(&s, endpoint),
            Err(_) => return format!("no word for {} s", timeout.as_secs()),
        };
        match msg.update {
            Some(pb::watch_update::Update::Status(s)) => {
                let p = picture_of(&s);
                if s.cluster.as_ref().is_none_or(|c| !c.enabled) {
                    return format!(
                        "node {} is standalone: a bridge needs a cluster member",
                        s.node_name
                    );
                }
                *followed = true;
                if first {
                    tracing::info!(
                        "following the cluster through {endpoint} (node {}{})",
                        p.node_name,
                        if p.writable {
                            ""
                        } else {
                            ", which has no quorum now"
                        }
                    );
                    first = false;
                }
                state.update(endpoint, p);
            }
            Some(pb::watch_update::Update::Event(e)) => {
                let at = upsilon_core::time::from_unix_ms(e.at_unix_ms);
                state.push_event(format!("{}\n", format_line(at, &e.message)));
            }
            None => {}
        }
    }
}

/// Declares every configured host (on the leader). A `runs_on` the cluster refuses (no
/// node has that name) is logged as an error and the hosts are declared without it:
/// a typo must not leave them unprotected.
pub async fn declare(state: &BridgeState, endpoint: &str) -> Result<(), String> {
    let hosts: Vec<pb::LegacyHostDecl> = state
        .cfg
        .hosts
        .iter()
        .map(|h| pb_impl::legacy_decl_to_pb(&h.decl()))
        .collect();
    let send = |runs_on: String| {
        let hosts = hosts.clone();
        async move {
            rpc::on_leader(&options(state, endpoint), |ch| {
                let req = pb::DeclareHostsRequest {
                    hosts: hosts.clone(),
                    runs_on: runs_on.clone(),
                };
                async move { BridgeServiceClient::new(ch).declare_hosts(req).await }
            })
            .await
            .map(|_| ())
        }
    };
    let runs_on = state.cfg.bridge.runs_on.clone().unwrap_or_default();
    match send(runs_on.clone()).await {
        Err(e) if !runs_on.is_empty() && e.contains("runs_on") => {
            tracing::error!(
                "{e}. The legacy hosts are declared without it: no node's halt waits for them"
            );
            send(String::new()).await
        }
        r => r,
    }
}

/// Reports one host's state (on the leader); whether it changed the record.
pub async fn report(
    state: &BridgeState,
    endpoint: &str,
    host: &str,
    seen: LegacyState,
) -> Result<bool, String> {
    let req = pb::ReportHostRequest {
        name: host.to_string(),
        state: pb_impl::legacy_state_to_pb(seen) as i32,
        notice: String::new(),
    };
    rpc::on_leader(&options(state, endpoint), |ch| {
        let req = req.clone();
        async move { BridgeServiceClient::new(ch).report_host(req).await }
    })
    .await
    .map(|(r, _)| r.applied)
}

/// Writes a line about `host` into the cluster's event history (on the leader).
pub async fn notice(
    state: &BridgeState,
    endpoint: &str,
    host: &str,
    text: &str,
) -> Result<(), String> {
    let req = pb::ReportHostRequest {
        name: host.to_string(),
        state: pb::LegacyHostState::Unspecified as i32,
        notice: text.to_string(),
    };
    rpc::on_leader(&options(state, endpoint), |ch| {
        let req = req.clone();
        async move { BridgeServiceClient::new(ch).report_host(req).await }
    })
    .await
    .map(|_| ())
}
