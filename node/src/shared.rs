//! The node's shared state: what the API reads and the UPS tasks write (the UPS views,
//! the event log and its broadcast, the executor, orders to the drivers).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, watch};

use crate::executor::Executor;
use upsilon_core::events::{Event, EventKind, EventLog};
use upsilon_core::policy::Policy;
use upsilon_core::view::UpsView;

/// A command for a UPS driver and where to send its result (what the UPS did, in
/// words, or why it did not).
pub type UpsOrder = (
    crate::driver::UpsCommand,
    tokio::sync::oneshot::Sender<Result<String, String>>,
);

/// The node's shared state: read by the API, written by the UPS tasks.
#[derive(Debug)]
pub struct NodeShared {
    pub name: String,
    /// Set when the node is a cluster member (a `[cluster]` section is configured).
    pub cluster: Option<Arc<crate::cluster::handle::Cluster>>,
    pub address: SocketAddr,
    pub policy: Policy,
    pub started_at: SystemTime,
    pub executor: Arc<Executor>,
    /// Orders to this node's UPS drivers (kill power, power cycle, self test).
    pub ups_orders: HashMap<String, mpsc::Sender<UpsOrder>>,
    /// Where this node keeps its markers and writes the powerfail flag.
    pub powerfail_dir: Option<std::path::PathBuf>,
    /// Raised when the node must stop (the Raft core stopped, a task panicked).
    pub fatal: crate::fatal::Fatal,
    pub(crate) ups: Mutex<BTreeMap<String, UpsView>>,
    pub(crate) events: Mutex<EventLog>,
    pub(crate) event_tx: broadcast::Sender<Event>,
    pub(crate) status_tx: watch::Sender<u64>,
}

impl NodeShared {
    /// Sends `cmd` to this node's driver of `ups` and waits for its answer.
    pub async fn order(&self, ups: &str, cmd: crate::driver::UpsCommand) -> Result<String, String> {
        let tx = self
            .ups_orders
            .get(ups)
            .cloned()
            .ok_or_else(|| format!("no UPS named {ups:?} on this node"))?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        tx.send((cmd, reply))
            .await
            .map_err(|_| "the UPS task has stopped".to_string())?;
        rx.await
            .map_err(|_| "the UPS task has stopped".to_string())?
    }

    pub fn ups_views(&self) -> Vec<UpsView> {
        self.ups
            .lock()
            .expect("ups lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        self.events.lock().expect("events lock").recent(limit)
    }

    /// New events as they are logged.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.event_tx.subscribe()
    }

    /// Ticks whenever any UPS view changes.
    pub fn subscribe_status(&self) -> watch::Receiver<u64> {
        self.status_tx.subscribe()
    }

    /// Logs an event (memory, file, watchers) and returns it.
    pub fn log_event(&self, kind: EventKind, ups: &str, message: &str) -> Event {
        let (ev, res) =
            self.events
                .lock()
                .expect("events lock")
                .record(kind, ups, message, SystemTime::now());
        if let Err(e) = res {
            tracing::error!("{e}");
        }
        match kind {
            EventKind::Notice
            | EventKind::CommOk
            | EventKind::MainsBack
            | EventKind::OffBattery => {
                tracing::info!(ups, event = kind.name(), "{message}")
            }
            _ => tracing::warn!(ups, event = kind.name(), "{message}"),
        }
        let _ = self.event_tx.send(ev.clone());
        ev
    }

    pub(crate) fn bump_status(&self) {
        self.status_tx.send_modify(|v| *v += 1);
    }
}
