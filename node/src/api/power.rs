//! `PowerService`: status snapshot, live watch, and event history. Any certificate of
//! the cluster CA may call it.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_server::PowerService;

use crate::shared::NodeShared;
use upsilon_client::pb_impl;
use upsilon_client::pki::Role;
use upsilon_client::tls::authorize;

const ANY_ROLE: &[Role] = &Role::ALL;

pub struct PowerApi {
    shared: Arc<NodeShared>,
}

impl PowerApi {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        PowerApi { shared }
    }
}

/// The full status as this node sees it, in the API's words.
pub fn status_reply(shared: &NodeShared) -> pb::StatusReply {
    let mut reply = pb_impl::status_to_pb(&crate::status::snapshot(shared));
    // Only here, not in every NIS answer: it serializes the whole state.
    if let (Some(c), Some(info)) = (&shared.cluster, reply.cluster.as_mut()) {
        let (index, digest) = c.state_digest();
        info.state_index = index;
        info.state_digest = format!("{digest:016x}");
    }
    reply
}

/// The most recent events: the cluster's history when a member, else this node's.
pub fn recent_events(shared: &NodeShared, limit: usize) -> Vec<pb::Event> {
    match &shared.cluster {
        Some(c) => c.read(|s| {
            s.recent_events(limit)
                .iter()
                .map(pb_impl::cluster_event_to_pb)
                .collect()
        }),
        None => shared
            .recent_events(limit)
            .iter()
            .map(|e| pb_impl::event_to_pb(e, &shared.name))
            .collect(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl PowerService for PowerApi {
    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        authorize(&req, ANY_ROLE)?;
        Ok(Response::new(status_reply(&self.shared)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        authorize(&req, ANY_ROLE)?;
        let shared = self.shared.clone();
        let stream = match shared.cluster.clone() {
            None => watch_local(shared),
            Some(c) => watch_cluster(shared, c),
        };
        Ok(Response::new(stream))
    }

    async fn get_plan(
        &self,
        req: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::PlanReply>, Status> {
        authorize(&req, ANY_ROLE)?;
        let r = req.into_inner();
        let cluster = self.shared.cluster.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node is standalone: staged shutdown needs a [cluster]",
            )
        })?;
        let now = upsilon_core::time::now_ms();
        let voters: Vec<u64> = cluster.metrics().membership_config.voter_ids().collect();
        let ask = pb_impl::PlanAsk {
            replay: r.replay,
            assume_outage: r.assume_outage,
            check: r.check.then(|| voters.clone()),
            voters,
        };
        Ok(Response::new(
            cluster.read(|s| pb_impl::plan_reply(s, now, &ask)),
        ))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsReply>, Status> {
        authorize(&req, ANY_ROLE)?;
        let limit = match req.get_ref().limit {
            0 => 50,
            n => n as usize,
        };
        Ok(Response::new(pb::ListEventsReply {
            events: recent_events(&self.shared, limit),
        }))
    }
}

type Tx = tokio::sync::mpsc::Sender<Result<pb::WatchUpdate, Status>>;

async fn send(tx: &Tx, update: pb::watch_update::Update) -> bool {
    tx.send(Ok(pb::WatchUpdate {
        update: Some(update),
    }))
    .await
    .is_ok()
}

/// Standalone: this node's events as they are logged, and its status on every poll.
fn watch_local(shared: Arc<NodeShared>) -> WatchStream {
    let mut events = shared.subscribe_events();
    let mut status = shared.subscribe_status();
    async_stream(move |tx| async move {
        if !send(&tx, pb::watch_update::Update::Status(status_reply(&shared))).await {
            return;
        }
        loop {
            let update = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) => pb::watch_update::Update::Event(pb_impl::event_to_pb(&e, &shared.name)),
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx.send(Err(Status::data_loss(format!("watcher fell behind; {n} events skipped: reconnect and use ListEvents")))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                ch = status.changed() => match ch {
                    Ok(()) => pb::watch_update::Update::Status(status_reply(&shared)),
                    Err(_) => return,
                },
            };
            if !send(&tx, update).await {
                return;
            }
        }
    })
}

/// Cluster member: the replicated events (in log order) and status on every apply.
fn watch_cluster(
    shared: Arc<NodeShared>,
    cluster: Arc<crate::cluster::handle::Cluster>,
) -> WatchStream {
    let mut applied = cluster.sm.subscribe();
    async_stream(move |tx| async move {
        let mut last_seq = cluster.read(|s| s.next_event_seq);
        if !send(&tx, pb::watch_update::Update::Status(status_reply(&shared))).await {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                ch = applied.changed() => if ch.is_err() { return },
                _ = tick.tick() => {}
            }
            let new: Vec<pb::Event> = cluster.read(|s| {
                s.events
                    .iter()
                    .filter(|e| e.seq > last_seq)
                    .map(pb_impl::cluster_event_to_pb)
                    .collect()
            });
            for e in new {
                last_seq = last_seq.max(e.seq);
                if !send(&tx, pb::watch_update::Update::Event(e)).await {
                    return;
                }
            }
            if !send(&tx, pb::watch_update::Update::Status(status_reply(&shared))).await {
                return;
            }
        }
    })
}

/// A stream fed by a spawned task through a small channel (closes when the client goes).
fn async_stream<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchUpdate, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
