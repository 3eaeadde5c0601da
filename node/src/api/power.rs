//! `PowerService`: status snapshot, live watch, and event history. Any certificate of
//! the cluster CA may call it.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_server::PowerService;

use crate::node::NodeShared;
use crate::pb_impl;
use crate::pki::Role;
use crate::tls::authorize;

const ANY_ROLE: &[Role] = &[Role::Node, Role::Client, Role::Bridge];

pub struct PowerApi {
    shared: Arc<NodeShared>,
}

impl PowerApi {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        PowerApi { shared }
    }
}

/// The full status as this node sees it.
pub fn status_reply(shared: &NodeShared) -> pb::StatusReply {
    let views = shared.ups_views();
    let pending = crate::status::pending_action(
        &shared.policy,
        &views,
        &shared.executor.records(),
        shared.executor.mode(),
    );
    pb::StatusReply {
        ups: views.iter().map(pb_impl::ups_view_to_pb).collect(),
        nodes: vec![pb::NodeInfo {
            name: shared.name.clone(),
            address: shared.address.to_string(),
            role: "standalone".into(),
            last_seen_unix_ms: crate::status::now_ms(),
            ups_names: views.iter().map(|v| v.name.clone()).collect(),
            version: env!("CARGO_PKG_VERSION").into(),
        }],
        pending: Some(pending),
        policy: Some(pb_impl::policy_to_pb(&shared.policy)),
        node_name: shared.name.clone(),
        generated_at_unix_ms: crate::status::now_ms(),
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
        let mut events = shared.subscribe_events();
        let mut status = shared.subscribe_status();
        let stream = async_stream(move |tx| async move {
            let first = pb::WatchUpdate {
                update: Some(pb::watch_update::Update::Status(status_reply(&shared))),
            };
            if tx.send(Ok(first)).await.is_err() {
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
                if tx
                    .send(Ok(pb::WatchUpdate {
                        update: Some(update),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
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
        let events = self
            .shared
            .recent_events(limit)
            .iter()
            .map(|e| pb_impl::event_to_pb(e, &self.shared.name))
            .collect();
        Ok(Response::new(pb::ListEventsReply { events }))
    }
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
