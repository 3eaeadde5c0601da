//! apcupsd's NIS for this host (`[nis]`): `apcaccess`, monitoring tools and apcupsd
//! `net` clients read an Upsilon host as they read apcupsd.
//!
//! The host's UPS is the one this node drives or, on a member that drives none, its
//! supply (its feeds combined by `min_supplies`) under its main feed's name. The
//! host's truth is laid over it (`upsilon_legacy_bridge::host`): SHUTTING DOWN once
//! this host's shutdown started, COMMLOST while the node has lost the cluster. The
//! protocol itself is the bridge library's `NisServer`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use upsilon_client::stop::Stop;
use upsilon_core::config::NisSection;
use upsilon_core::events::format_line;
use upsilon_core::replicated::plan::{self, Plan};
use upsilon_core::snapshot::ActionKind;
use upsilon_core::view::UpsStatus;
use upsilon_legacy_bridge::apcaccess::render;
use upsilon_legacy_bridge::host::{HostStatus, status_input};
use upsilon_legacy_bridge::nis_server::{self, NisPolicy, NisServer, NisView};

use crate::shared::NodeShared;

/// This host, as NIS serves it.
pub struct HostNis {
    shared: Arc<NodeShared>,
    hostname: String,
    started_ms: i64,
}

impl HostNis {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        let hostname = upsilon_legacy_bridge::host::hostname(&shared.name);
        HostNis {
            shared,
            hostname,
            started_ms: upsilon_core::time::now_ms(),
        }
    }

    /// The UPS this host reads (name and status) and whether the node can vouch for
    /// it and whether this host's shutdown started.
    fn host_ups(&self) -> (String, UpsStatus, bool, bool) {
        let snap = crate::status::snapshot(&self.shared);
        let shutting_down = snap.pending.kind == ActionKind::ShuttingDown;
        let lost_cluster = snap.cluster.as_ref().is_some_and(|c| !c.writable);
        // The UPS this node drives, as its own driver last read it.
        if let Some(v) = self.shared.ups_views().into_iter().next() {
            return (v.name, v.status, shutting_down, lost_cluster);
        }
        let Some(cluster) = &self.shared.cluster else {
            // Standalone and driving nothing: nothing to vouch for.
            return (
                self.shared.name.clone(),
                UpsStatus::default(),
                shutting_down,
                true,
            );
        };
        let me = cluster.cfg.id;
        let now = upsilon_core::time::now_ms();
        let (name, status) = cluster.read(|s| {
            let Some(node) = s.nodes.get(&me) else {
                return (self.shared.name.clone(), UpsStatus::default());
            };
            let name = node
                .feeds
                .first()
                .cloned()
                .unwrap_or_else(|| self.shared.name.clone());
            let no_plan = Plan::default();
            let plan = s.plan.as_ref().unwrap_or(&no_plan);
            let status = match plan::supply(node, s, plan, now) {
                Some(sup) => plan::supply_status(&sup, s, now),
                None => UpsStatus::default(),
            };
            (name, status)
        });
        (name, status, shutting_down, lost_cluster)
    }
}

impl NisView for HostNis {
    fn status(&self, _peer: SocketAddr) -> Vec<String> {
        let (name, status, shutting_down, comm_lost) = self.host_ups();
        let h = HostStatus {
            ups_name: &name,
            status: &status,
            policy: &self.shared.policy,
            hostname: &self.hostname,
            started_ms: self.started_ms,
            shutting_down,
            comm_lost,
        };
        render(&status_input(&h, SystemTime::now()))
    }

    fn events(&self, _peer: SocketAddr) -> Option<Vec<String>> {
        let mut events = self.shared.recent_events(nis_server::MAX_EVENT_LINES);
        events.sort_by_key(|e| e.seq);
        Some(
            events
                .iter()
                .map(|e| format!("{}\n", format_line(e.at, &e.message)))
                .collect(),
        )
    }
}

/// Starts NIS for this host as `[nis]` asks. A port that is taken (apcupsd still
/// running during a migration) or cannot be bound is a warning: the node runs on
/// without NIS rather than not at all.
pub async fn start(cfg: &NisSection, shared: Arc<NodeShared>, stop: &Stop) {
    if !cfg.enabled {
        return;
    }
    let listeners = match nis_server::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("{e}; running without NIS (`apcaccess` will not reach this host)");
            return;
        }
    };
    let policy = NisPolicy {
        allow: cfg.allow.clone(),
        max_connections: cfg.max_connections,
        ..Default::default()
    };
    let server = NisServer::new(Arc::new(HostNis::new(shared)), policy, "upsilond");
    let pairs = listeners
        .into_iter()
        .map(|l| {
            let mut stop = stop.resubscribe();
            (server.clone(), l, async move { stop.recv().await })
        })
        .collect();
    if let Err(e) = nis_server::serve_on_own_thread("nis", pairs) {
        tracing::warn!("cannot start the NIS thread: {e}; running without NIS");
    }
}
