//! The `upsilon-bridge` daemon: a gRPC client of the cluster (role `bridge`) that
//! serves apcupsd's NIS to unmodified apcupsd machines and makes them part of the
//! staged shutdown.
//!
//! - [`config`]: the `bridge.toml` schema.
//! - [`link`]: follows the cluster's `Watch` (failing over between the listed nodes)
//!   and writes the bridge's declarations and reports on the leader.
//! - [`hosts`]: the pure rule from what the bridge saw to each host's state.
//!
//! This module holds what they share ([`BridgeState`]), serves each host its own view
//! ([`BridgeNis`], through the library's `NisServer`), and reconciles: every half
//! second it compares each host's desired state with the replicated record and reports
//! the difference.

pub mod config;
pub mod hosts;
pub mod link;
pub mod slaves;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use upsilon_client::stop::Stop;
use upsilon_core::policy::Policy;
use upsilon_core::replicated::legacy::LegacyState;
use upsilon_core::snapshot::LegacyHostSummary;
use upsilon_core::view::{UpsStatus, UpsView};

use crate::apcaccess::render;
use crate::host::{HostStatus, status_input};
use crate::nis_server::{self, NisPolicy, NisServer, NisView};
use config::BridgeConfig;
use hosts::{Seen, Timing};

/// The cluster as the bridge last heard it.
#[derive(Debug, Clone, Default)]
pub struct ClusterPicture {
    pub ups: Vec<UpsView>,
    pub legacy: Vec<LegacyHostSummary>,
    pub policy: Policy,
    /// The answering node's writes commit (a leader with a quorum).
    pub writable: bool,
    pub node_name: String,
}

#[derive(Default)]
struct Inner {
    picture: Option<ClusterPicture>,
    /// When the last picture arrived.
    updated: Option<Instant>,
    /// The node the bridge follows now (`host:port`).
    endpoint: Option<String>,
    /// Per declared host: its last status request, and whether it fetched the bits.
    polls: BTreeMap<String, Instant>,
    fetched_bits: BTreeMap<String, bool>,
    /// The cluster's latest events, as the events file's lines.
    events: VecDeque<String>,
    /// Master-slave hosts the bridge cannot reach now (apcupsd's SLAVEDOWN).
    slaves_down: std::collections::BTreeSet<String>,
}

/// What the link, the NIS servers and the reconciler share.
pub struct BridgeState {
    cfg: Arc<BridgeConfig>,
    inner: Mutex<Inner>,
    /// Wakes the reconciler (a host just fetched the shutdown bits).
    wake: Notify,
    started: Instant,
    /// This bridge's name (its certificate's).
    pub name: String,
}

impl BridgeState {
    pub fn new(cfg: Arc<BridgeConfig>, name: String) -> Arc<Self> {
        Arc::new(BridgeState {
            cfg,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            started: Instant::now(),
            name,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take NIS down with it: the data stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new picture from the node at `endpoint`.
    pub fn update(&self, endpoint: &str, p: ClusterPicture) {
        let mut g = self.lock();
        g.picture = Some(p);
        g.updated = Some(Instant::now());
        g.endpoint = Some(endpoint.to_string());
    }

    /// An event line from the cluster (kept for NIS `events`).
    pub fn push_event(&self, line: String) {
        let mut g = self.lock();
        if g.events.len() >= nis_server::MAX_EVENT_LINES {
            g.events.pop_front();
        }
        g.events.push_back(line);
    }

    /// The node followed now, if the picture is fresh.
    pub fn endpoint(&self) -> Option<String> {
        self.lock().endpoint.clone()
    }

    /// The latest picture and whether the bridge can vouch for it (fresh, from a node
    /// whose writes commit).
    pub fn picture(&self) -> (Option<ClusterPicture>, bool) {
        let g = self.lock();
        let fresh = g
            .updated
            .is_some_and(|t| t.elapsed() < self.cfg.bridge.cluster_timeout());
        let vouched = fresh && g.picture.as_ref().is_some_and(|p| p.writable);
        (g.picture.clone(), vouched)
    }

    /// The declared host a request from `peer` comes from.
    fn host_of(&self, peer: IpAddr) -> Option<&str> {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.cfg
            .hosts
            .iter()
            .find(|h| h.protocol == "nis" && h.addresses.contains(&peer))
            .map(|h| h.name.as_str())
    }

    /// A host fetched its status (or a slave took a packet); `bits`: with the
    /// shutdown bits.
    fn polled(&self, host: &str, bits: bool) {
        let mut g = self.lock();
        g.polls.insert(host.to_string(), Instant::now());
        if bits && !g.fetched_bits.get(host).copied().unwrap_or(false) {
            g.fetched_bits.insert(host.to_string(), true);
            drop(g);
            self.wake.notify_one();
        }
    }

    /// Whether the bridge reaches master-slave host `host` now.
    pub fn slave_reached(&self, host: &str, reached: bool) {
        let mut g = self.lock();
        if reached {
            g.slaves_down.remove(host);
        } else {
            g.slaves_down.insert(host.to_string());
        }
    }

    /// Some master-slave host is down: a 3.12 master showed SLAVEDOWN.
    pub fn any_slave_down(&self) -> bool {
        !self.lock().slaves_down.is_empty()
    }

    /// The state each declared host should have in the cluster, where it differs from
    /// the record (with the record's state).
    pub fn reports(&self) -> Vec<(String, LegacyState)> {
        let (picture, _) = self.picture();
        let Some(p) = picture else {
            return vec![];
        };
        let t = Timing {
            halt_silence: self.cfg.bridge.halt_silence(),
            silent_after: self.cfg.bridge.silent_after(),
        };
        let mut g = self.lock();
        let mut out = Vec::new();
        for h in &self.cfg.hosts {
            let Some(rec) = p.legacy.iter().find(|l| l.name == h.name) else {
                continue;
            };
            let Some(recorded) = LegacyState::parse(&rec.state) else {
                continue;
            };
            if !rec.shutting_down {
                // The bits are for this stage only: a later outage tells it anew.
                g.fetched_bits.remove(&h.name);
            }
            let seen = Seen {
                silence: g
                    .polls
                    .get(&h.name)
                    .copied()
                    .unwrap_or(self.started)
                    .elapsed(),
                fetched_bits: g.fetched_bits.get(&h.name).copied().unwrap_or(false),
            };
            let mut want = hosts::desired(recorded, rec.shutting_down, seen, t);
            // A slave the bridge cannot reach is down now (apcupsd's SLAVEDOWN), not
            // after `silent_after`: it refuses connections, unlike a quiet NIS client.
            if h.protocol == "master-slave"
                && !rec.shutting_down
                && want == LegacyState::Polling
                && g.slaves_down.contains(&h.name)
            {
                want = LegacyState::Silent;
            }
            // A first poll from a host the cluster has never seen connected: say so,
            // although its state stays "polling".
            let first_poll = want == LegacyState::Polling
                && recorded == LegacyState::Polling
                && rec.never_polled
                && g.polls.contains_key(&h.name);
            if want != recorded || first_poll {
                out.push((h.name.clone(), want));
            }
        }
        out
    }

    /// The declarations the cluster lacks or holds differently (empty: nothing to do).
    pub fn undeclared(&self) -> bool {
        let (picture, _) = self.picture();
        let Some(p) = picture else {
            return false;
        };
        let listed: Vec<_> = p.legacy.iter().filter(|l| l.bridge == self.name).collect();
        let mine = self.cfg.hosts.iter().all(|h| {
            let d = h.decl();
            p.legacy.iter().any(|l| {
                l.name == d.name
                    && l.addresses == d.addresses
                    && l.labels == d.labels
                    && l.feeds == d.feeds
                    && l.min_supplies == d.min_supplies
                    && l.protocol == d.protocol
            })
        });
        let stale = listed
            .iter()
            .any(|l| !self.cfg.hosts.iter().any(|h| h.name == l.name));
        !mine || stale
    }
}

/// NIS as the bridge serves it: a declared host reads its own supply (with the
/// shutdown bits once its stage started); any other peer reads the `[nis] ups` UPS.
pub struct BridgeNis {
    state: Arc<BridgeState>,
    /// A listener of one host's own: every peer there is that host.
    bound: Option<String>,
    hostname: String,
    started_ms: i64,
}

impl BridgeNis {
    pub fn new(state: Arc<BridgeState>, bound: Option<String>) -> Self {
        let hostname = crate::host::hostname(&state.name);
        BridgeNis {
            state,
            bound,
            hostname,
            started_ms: upsilon_core::time::now_ms(),
        }
    }

    /// The UPS name and status `peer` reads, whether its stage started, and the host
    /// it is (if declared).
    fn view_for(
        &self,
        peer: IpAddr,
        p: Option<&ClusterPicture>,
    ) -> (UpsView, bool, Option<String>) {
        let host = self
            .bound
            .clone()
            .or_else(|| self.state.host_of(peer).map(str::to_string));
        if let Some(h) = &host {
            let rec = p.and_then(|p| p.legacy.iter().find(|l| &l.name == h));
            return match rec {
                Some(r) => (r.served.clone(), r.shutting_down, host),
                None => {
                    // Declared here but not (yet) in the cluster: nothing to vouch for.
                    let feed = self
                        .state
                        .cfg
                        .hosts
                        .iter()
                        .find(|x| &x.name == h)
                        .and_then(|x| x.feeds.first().cloned())
                        .unwrap_or_default();
                    (
                        UpsView {
                            name: feed,
                            status: UpsStatus::default(),
                        },
                        false,
                        host,
                    )
                }
            };
        }
        let wanted = self.state.cfg.nis.ups.as_deref();
        let ups = p.and_then(|p| {
            p.ups
                .iter()
                .find(|u| wanted.is_none_or(|w| u.name == w))
                .cloned()
        });
        let ups = ups.unwrap_or_else(|| UpsView {
            name: wanted.unwrap_or("UPS").to_string(),
            status: UpsStatus::default(),
        });
        (ups, false, None)
    }
}

impl NisView for BridgeNis {
    fn status(&self, peer: SocketAddr) -> Vec<String> {
        let (picture, vouched) = self.state.picture();
        let (mut ups, shutting_down, host) = self.view_for(peer.ip(), picture.as_ref());
        if let Some(h) = &host {
            self.state.polled(h, shutting_down);
        } else if self.state.any_slave_down() {
            // As a 3.12 master's own status showed it.
            ups.status.statflag |= upsilon_core::reading::statflag::SLAVEDOWN;
        }
        let policy = picture
            .as_ref()
            .map(|p| p.policy.clone())
            .unwrap_or_default();
        let h = HostStatus {
            ups_name: &ups.name,
            status: &ups.status,
            policy: &policy,
            hostname: &self.hostname,
            started_ms: self.started_ms,
            shutting_down,
            comm_lost: !vouched,
        };
        render(&status_input(&h, SystemTime::now()))
    }

    fn events(&self, _peer: SocketAddr) -> Option<Vec<String>> {
        Some(self.state.lock().events.iter().cloned().collect())
    }
}

/// How often the reconciler looks (it also wakes when a host fetches the bits).
const RECONCILE: Duration = Duration::from_millis(500);

/// Runs the bridge until `stop`: NIS listeners first (a port that cannot be bound is
/// an error: serving nothing is not a bridge), then the cluster link and the
/// reconciler.
pub async fn run(cfg: BridgeConfig, name: String, stop: Stop) -> Result<(), String> {
    let cfg = Arc::new(cfg);
    let state = BridgeState::new(cfg.clone(), name);
    let policy = NisPolicy {
        allow: cfg.nis.allow.clone(),
        max_connections: cfg.nis.max_connections,
        ..Default::default()
    };
    let mut servers = Vec::new();
    let shared = NisServer::new(
        Arc::new(BridgeNis::new(state.clone(), None)),
        policy.clone(),
        "upsilon-bridge",
    );
    for l in nis_server::bind(&cfg.nis.listen)
        .await
        .map_err(|e| e.to_string())?
    {
        servers.push((shared.clone(), l));
    }
    for h in &cfg.hosts {
        if let Some(addr) = h.listen {
            let own = NisServer::new(
                Arc::new(BridgeNis::new(state.clone(), Some(h.name.clone()))),
                policy.clone(),
                "upsilon-bridge",
            );
            let l = nis_server::bind(&[addr])
                .await
                .map_err(|e| format!("legacy host {:?}: {e}", h.name))?;
            servers.extend(l.into_iter().map(|l| (own.clone(), l)));
        }
    }
    let nis = nis_server::serve_on_own_thread(
        "nis",
        servers
            .into_iter()
            .map(|(server, l)| {
                let mut stop = stop.resubscribe();
                (server, l, async move { stop.recv().await })
            })
            .collect(),
    )
    .map_err(|e| format!("cannot start the NIS thread: {e}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(link::follow(state.clone(), stop.resubscribe()));
    tasks.spawn(reconcile(state.clone(), stop.resubscribe()));
    for h in cfg.hosts.iter().filter(|h| h.protocol == "master-slave") {
        tasks.spawn(slaves::push(state.clone(), h.clone(), stop.resubscribe()));
    }
    tracing::info!(
        "bridge {} serving {} legacy host(s) for the cluster at {}",
        state.name,
        cfg.hosts.len(),
        cfg.bridge.nodes.join(", ")
    );
    while tasks.join_next().await.is_some() {}
    let _ = tokio::task::spawn_blocking(move || nis.join()).await;
    Ok(())
}

/// Declares the hosts while the cluster lacks them, and reports each host's state
/// where it differs from the record.
async fn reconcile(state: Arc<BridgeState>, mut stop: Stop) {
    let mut last_declare: Option<Instant> = None;
    // After a declaration the cluster took but still does not show (a name it refused),
    // ask again only every minute: each try writes an event.
    let mut declare_every = Duration::from_secs(5);
    let mut last_report: BTreeMap<(String, LegacyState), Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(RECONCILE) => {}
        }
        let Some(endpoint) = state.endpoint() else {
            continue;
        };
        if !state.undeclared() {
            last_declare = None;
            declare_every = Duration::from_secs(5);
        } else if state.picture().1 && last_declare.is_none_or(|t| t.elapsed() >= declare_every) {
            let retry = last_declare.is_some();
            last_declare = Some(Instant::now());
            match link::declare(&state, &endpoint).await {
                Ok(()) if retry => {
                    declare_every = Duration::from_secs(60);
                    tracing::warn!(
                        "the cluster does not show every declared legacy host (a name a node already has?): see `upsilon events`; asking again in a minute"
                    );
                }
                Ok(()) => tracing::info!(
                    "declared {} legacy host(s) to the cluster",
                    state.cfg.hosts.len()
                ),
                Err(e) => tracing::warn!("cannot declare the legacy hosts: {e}"),
            }
        }
        for (host, want) in state.reports() {
            // One try per state every 2 s: the record shows when it lands.
            let key = (host.clone(), want);
            if last_report
                .get(&key)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
            {
                continue;
            }
            last_report.insert(key, Instant::now());
            match link::report(&state, &endpoint, &host, want).await {
                Ok(applied) => tracing::info!(
                    "legacy host {host}: reported {}{}",
                    want.as_str(),
                    if applied { "" } else { " (already known)" }
                ),
                Err(e) => {
                    tracing::warn!("legacy host {host}: cannot report {}: {e}", want.as_str())
                }
            }
        }
    }
}
