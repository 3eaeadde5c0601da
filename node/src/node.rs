//! The running node: wires drivers to monitors, monitors to the event log and the
//! executor, and exposes the result to the API.
//!
//! One task per UPS polls its driver and feeds the monitor; the events it returns are
//! logged (memory and events file), broadcast to `Watch` streams, and queued, in
//! order, for the executor task. The state the API reads is `shared::NodeShared`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};

use crate::driver::{self, DriverError, UpsCommand, UpsDriver};
use crate::executor::Executor;
use crate::shared::{NodeShared, UpsOrder};
use upsilon_client::stop::Stop;
use upsilon_core::config::NodeConfig;
use upsilon_core::events::{Event, EventKind, EventLog};
use upsilon_core::monitor::{Observation, UpsMonitor};
use upsilon_core::view::{UpsStatus, UpsView};

/// Raises the node's fatal signal when the Raft core stops (a storage error such as a
/// full disk, or an internal error): without it the node cannot commit or apply, and
/// a process that runs on would only pretend.
async fn watch_raft_core(
    shared: Arc<NodeShared>,
    cluster: Arc<crate::cluster::handle::Cluster>,
    mut stop: Stop,
) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let mut rx = cluster.raft.metrics();
    // openraft's own logs are kept to errors by default (their structures run to
    // kilobytes): the leadership is said here, in one line, when it changes.
    let mut leadership: Option<(Option<u64>, u64)> = None;
    loop {
        let (stopped, now, leader_name) = {
            let m = rx.borrow_watched();
            let stopped = match &m.running_state {
                Ok(()) => None,
                Err(f) => Some(format!("the Raft core stopped: {f}")),
            };
            let name = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.name.clone())
            });
            (stopped, (m.current_leader, m.current_term), name)
        };
        if leadership != Some(now) && cluster.is_member() {
            let first = leadership.is_none();
            leadership = Some(now);
            match now {
                (Some(id), term) => {
                    let name = leader_name.clone().unwrap_or_else(|| format!("node {id}"));
                    tracing::info!("leader: {name} (id {id}), term {term}");
                }
                (None, term) if !first => {
                    tracing::info!("no leader in term {term}: an election is under way")
                }
                (None, _) => {}
            }
        }
        if let Some(why) = stopped {
            if !stop.is_stopped() {
                shared.log_event(EventKind::Notice, "", &format!("upsilond stopping: {why}"));
                shared.fatal.raise(&why);
            }
            return;
        }
        tokio::select! {
            _ = stop.recv() => return,
            r = rx.changed() => {
                if r.is_err() {
                    if !stop.is_stopped() {
                        shared.fatal.raise("the Raft core stopped");
                    }
                    return;
                }
            }
        }
    }
}

/// A started node: its shared state and the address it actually listens on.
pub struct RunningNode {
    pub shared: Arc<NodeShared>,
    pub local_addr: SocketAddr,
    tasks: Tasks,
}

impl RunningNode {
    /// Waits for every task to end (after the stop was signalled), then stops Raft.
    pub async fn join(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        for (name, t) in self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!("task {name} did not stop in time");
            }
        }
        if let Some(cl) = &self.shared.cluster {
            let _ = cl.raft.shutdown().await;
        }
    }
}

/// Errors starting a node, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TLS: {0}")]
    Tls(#[from] upsilon_client::pki::PkiError),
    #[error("{0}")]
    DriverConfig(#[from] upsilon_core::config::ConfigError),
    #[error("{0}")]
    Listen(std::io::Error),
    #[error("cluster: {0}")]
    Cluster(String),
    /// The store is damaged and was not set aside (`damaged_store = "refuse"`, or a
    /// node that would found a new cluster with a new one): exit status 70.
    #[error("cluster: {0}")]
    DamagedStore(String),
    #[error("{0}")]
    Config(String),
}

/// A node's name must be its certificate's: the cluster binds what a node may say to
/// the name in its certificate.
pub fn check_name(cfg: &NodeConfig, cert: &upsilon_client::pki::Identity) -> Result<(), String> {
    if cert.name != cfg.node.name {
        return Err(format!(
            "node.name is {:?} but its certificate ({}) names {:?}: use the certificate's name, or issue one for {:?} with `upsilon cert issue --name {} --role node`",
            cfg.node.name,
            cfg.tls.cert.display(),
            cert.name,
            cfg.node.name,
            cfg.node.name
        ));
    }
    Ok(())
}

/// Starts the node: drivers, monitors, executor and the mTLS gRPC API.
pub async fn start(cfg: NodeConfig, stop: Stop) -> Result<RunningNode, StartError> {
    start_with(cfg, stop, crate::fatal::Fatal::new()).await
}

/// The node's background tasks, each named for the log when one ends.
type Tasks = Vec<(&'static str, tokio::task::JoinHandle<()>)>;

/// [`start`], raising `fatal` when the node can no longer run (the daemon exits on it):
/// certificates and config checked, drivers opened, the API's socket bound, the cluster
/// joined, the node's shared state made, then its tasks started.
pub async fn start_with(
    cfg: NodeConfig,
    stop: Stop,
    fatal: crate::fatal::Fatal,
) -> Result<RunningNode, StartError> {
    let files = upsilon_client::tls::TlsFiles {
        ca: cfg.tls.ca.clone(),
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
    };
    let (server_cfg, ident) = upsilon_client::tls::server_config(&files)?;
    check_name(&cfg, &ident).map_err(StartError::Config)?;
    cfg.check_writable().map_err(StartError::Config)?;

    let mut drivers: Vec<(upsilon_core::config::UpsSection, Box<dyn UpsDriver>)> = Vec::new();
    for u in &cfg.ups {
        drivers.push((u.clone(), driver::open(u)?));
    }

    let (local_addr, incoming) =
        upsilon_client::tls::serve_tls(cfg.node.listen, server_cfg, stop.resubscribe())
            .await
            .map_err(StartError::Listen)?;
    let cluster = start_cluster(&cfg, local_addr).await?;
    let (shared, mut order_rxs) = node_shared(&cfg, &drivers, cluster.clone(), local_addr, fatal);

    crate::nis::start(&cfg.nis, shared.clone(), &stop).await;

    let mut tasks = Vec::new();
    let (exec_tx, exec_rx) = mpsc::unbounded_channel::<Event>();
    tasks.push((
        "run_executor",
        tokio::spawn(run_executor(
            shared.executor.clone(),
            cluster.clone(),
            exec_rx,
        )),
    ));
    if let Some(cl) = &cluster {
        cluster_duties(cl, &shared, &stop, &mut tasks);
    }
    for (u, d) in drivers {
        let reporter = cluster.as_ref().map(|cl| {
            let r = crate::cluster::duties::UpsReporter::new();
            tasks.push((
                "ups reporter",
                tokio::spawn(r.clone().run(cl.clone(), stop.resubscribe())),
            ));
            (cl.clone(), r)
        });
        let orders = order_rxs
            .remove(&u.name)
            .expect("one order channel per UPS");
        tasks.push((
            "run_ups",
            tokio::spawn(run_ups(
                shared.clone(),
                u.name.clone(),
                Duration::from_millis(u.poll_interval_ms),
                d,
                UpsLinks {
                    exec_tx: exec_tx.clone(),
                    reporter,
                    orders,
                },
                stop.resubscribe(),
            )),
        ));
    }
    if let Some(cl) = &cluster {
        staging_tasks(cl, &shared, &stop, &mut tasks);
    }
    drop(exec_tx);
    tasks.push((
        "serve",
        tokio::spawn(crate::api::serve(shared.clone(), incoming, stop)),
    ));
    tracing::info!(node = %shared.name, %local_addr, "serving the Upsilon API over mutual TLS");
    Ok(RunningNode {
        shared,
        local_addr,
        tasks,
    })
}

/// The cluster, when the config has one: its store opened (or set aside), and joined.
async fn start_cluster(
    cfg: &NodeConfig,
    local_addr: SocketAddr,
) -> Result<Option<Arc<crate::cluster::handle::Cluster>>, StartError> {
    Ok(match &cfg.cluster {
        Some(c) => {
            let client_tls = upsilon_client::tls::client_config(
                &cfg.tls.ca,
                Some((cfg.tls.cert.as_path(), cfg.tls.key.as_path())),
            )?;
            let advertise = c
                .advertise
                .clone()
                .unwrap_or_else(|| local_addr.to_string());
            let cl = crate::cluster::handle::Cluster::start(
                c.clone(),
                &cfg.node.name,
                advertise,
                client_tls,
            )
            .await
            .map_err(|e| match &e {
                crate::cluster::handle::ClusterError::Storage(s) if s.is_damage() => {
                    StartError::DamagedStore(e.to_string())
                }
                _ => StartError::Cluster(e.to_string()),
            })?;
            Some(cl)
        }
        None => None,
    })
}

/// The node's shared state: the executor, each UPS's view and order channel (the
/// receiving ends returned, by UPS name), the event log; and its start-up notices.
fn node_shared(
    cfg: &NodeConfig,
    drivers: &[(upsilon_core::config::UpsSection, Box<dyn UpsDriver>)],
    cluster: Option<Arc<crate::cluster::handle::Cluster>>,
    local_addr: SocketAddr,
    fatal: crate::fatal::Fatal,
) -> (Arc<NodeShared>, HashMap<String, mpsc::Receiver<UpsOrder>>) {
    let executor = Arc::new(
        Executor::new(&cfg.executor, &cfg.hooks)
            .with_driven(drivers.iter().map(|(u, _)| u.name.clone()).collect()),
    );
    let mut ups_orders = HashMap::new();
    let mut order_rxs = HashMap::new();
    for (u, _) in drivers {
        let (tx, rx) = mpsc::channel::<UpsOrder>(4);
        ups_orders.insert(u.name.clone(), tx);
        order_rxs.insert(u.name.clone(), rx);
    }
    let (event_tx, _) = broadcast::channel(1024);
    let (status_tx, _) = watch::channel(0u64);
    let mut ups_views = BTreeMap::new();
    for (u, d) in drivers {
        ups_views.insert(
            u.name.clone(),
            UpsView {
                name: u.name.clone(),
                status: UpsStatus {
                    driver: d.kind().to_string(),
                    ..Default::default()
                },
            },
        );
    }
    let shared = Arc::new(NodeShared {
        name: cfg.node.name.clone(),
        cluster: cluster.clone(),
        address: local_addr,
        policy: cfg.policy.clone(),
        started_at: SystemTime::now(),
        executor: executor.clone(),
        ups_orders,
        powerfail_dir: cfg.executor.powerfail_dir.clone(),
        fatal,
        ups: Mutex::new(ups_views),
        events: Mutex::new(EventLog::new(
            cfg.events.file.clone(),
            cfg.events.max_kib,
            cfg.events.keep,
        )),
        event_tx,
        status_tx,
    });
    if let Some(note) = cluster.as_ref().and_then(|c| c.set_aside.as_ref()) {
        shared.log_event(EventKind::Notice, "", note);
    }
    // A failed hook becomes a notice in this node's events.
    let weak = Arc::downgrade(&shared);
    executor.set_notice_sink(Box::new(move |ups, message| {
        if let Some(shared) = weak.upgrade() {
            shared.log_event(EventKind::Notice, ups, message);
        }
    }));
    shared.log_event(
        EventKind::Notice,
        "",
        &format!(
            "upsilond {} startup succeeded (node {}, executor {} mode)",
            env!("CARGO_PKG_VERSION"),
            cfg.node.name,
            cfg.executor.mode.as_str()
        ),
    );
    (shared, order_rxs)
}

/// The tasks every member runs for the cluster: joining, liveness, following while out,
/// stale UPSes, revocations, member problems, and watching the Raft core.
fn cluster_duties(
    cl: &Arc<crate::cluster::handle::Cluster>,
    shared: &Arc<NodeShared>,
    stop: &Stop,
    tasks: &mut Tasks,
) {
    use crate::cluster::duties;
    tasks.push((
        "join_and_announce",
        tokio::spawn(duties::join_and_announce(
            cl.clone(),
            env!("CARGO_PKG_VERSION").to_string(),
            stop.resubscribe(),
        )),
    ));
    tasks.push((
        "liveness",
        tokio::spawn(duties::liveness(cl.clone(), stop.resubscribe())),
    ));
    tasks.push((
        "follow_while_out",
        tokio::spawn(duties::follow_while_out(cl.clone(), stop.resubscribe())),
    ));
    tasks.push((
        "mark_stale_upses",
        tokio::spawn(duties::mark_stale_upses(cl.clone(), stop.resubscribe())),
    ));
    tasks.push((
        "follow_revocations",
        tokio::spawn(duties::follow_revocations(cl.clone(), stop.resubscribe())),
    ));
    tasks.push((
        "publish_member_problems",
        tokio::spawn(duties::publish_member_problems(
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
    tasks.push((
        "watch_raft_core",
        tokio::spawn(watch_raft_core(
            shared.clone(),
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
}

/// The staged shutdown's tasks: the coordinator (on the leader), this host's stages,
/// the local fallback, UPS orders, and an owner finishing alone.
fn staging_tasks(
    cl: &Arc<crate::cluster::handle::Cluster>,
    shared: &Arc<NodeShared>,
    stop: &Stop,
    tasks: &mut Tasks,
) {
    use crate::staging;
    tasks.push((
        "coordinate",
        tokio::spawn(staging::coordinate(cl.clone(), stop.resubscribe())),
    ));
    tasks.push((
        "run_my_stages",
        tokio::spawn(staging::run_my_stages(
            shared.clone(),
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
    tasks.push((
        "local_fallback",
        tokio::spawn(staging::local_fallback(
            shared.clone(),
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
    tasks.push((
        "carry_out_ups_orders",
        tokio::spawn(staging::carry_out_ups_orders(
            shared.clone(),
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
    tasks.push((
        "finish_alone",
        tokio::spawn(crate::endgame::finish_alone(
            shared.clone(),
            cl.clone(),
            stop.resubscribe(),
        )),
    ));
}

async fn run_executor(
    executor: Arc<Executor>,
    cluster: Option<Arc<crate::cluster::handle::Cluster>>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(ev) = rx.recv().await {
        // In a cluster, the monitor's doshutdown is one more way for this host to shut
        // down in an outage: it may happen only once per outage.
        if ev.kind == EventKind::DoShutdown
            && let Some(c) = &cluster
        {
            match crate::markers::claim(c) {
                None => {
                    tracing::warn!(
                        "doshutdown: this host already shut down in this power event; not again"
                    );
                }
                Some(claim) => {
                    executor.handle_launching(&ev, &|| claim.launching()).await;
                    claim.done();
                }
            }
            continue;
        }
        executor.handle(&ev).await;
    }
}

/// Where one UPS task sends what it learns, and where its orders come from.
struct UpsLinks {
    /// Events, in order, for the executor.
    exec_tx: mpsc::UnboundedSender<Event>,
    /// Reports for the cluster, when a member.
    reporter: Option<(
        Arc<crate::cluster::handle::Cluster>,
        Arc<crate::cluster::duties::UpsReporter>,
    )>,
    /// Orders for the driver (kill power, power cycle).
    orders: mpsc::Receiver<UpsOrder>,
}

/// Polls one UPS until the node stops; every poll goes through the monitor.
async fn run_ups(
    shared: Arc<NodeShared>,
    name: String,
    interval: Duration,
    mut driver: Box<dyn UpsDriver>,
    links: UpsLinks,
    mut stop: Stop,
) {
    let UpsLinks {
        exec_tx,
        reporter,
        mut orders,
    } = links;
    let mut last_sent: Option<(ReportKey, Instant)> = None;
    let mut monitor = UpsMonitor::new(shared.policy.clone(), Instant::now());
    // A driver call may not stall the loop for longer than this.
    let poll_timeout = interval.max(driver.poll_timeout());
    let mut next_poll = tokio::time::Instant::now();
    loop {
        let wait = next_poll.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            // Stop and orders first: a driver whose polls take the whole interval (a
            // UPS timing out) leaves no wait, and must still take its kill order.
            biased;
            _ = stop.recv() => break,
            Some((cmd, reply)) = orders.recv() => {
                // A simulator's change is read back at once, as a real UPS's alert is.
                let simulated = matches!(cmd, UpsCommand::Simulate(_));
                if simulated {
                    tracing::info!(ups = %name, "simulating {cmd:?}");
                } else {
                    tracing::warn!(ups = %name, "sending {cmd:?} to the UPS");
                }
                let limit = driver.command_timeout();
                let r = tokio::time::timeout(limit, driver.command(cmd))
                    .await
                    .map_err(|_| {
                        format!("the UPS did not finish the command within {} s", limit.as_secs())
                    })
                    .and_then(|r| r.map_err(|e| e.to_string()));
                if simulated && r.is_ok() {
                    next_poll = tokio::time::Instant::now();
                }
                let _ = reply.send(r);
                continue;
            }
            // Ends early when the UPS announces a change itself (apcsmart alerts). A
            // poll that is due goes ahead at once: even a zero-length sleep waits for
            // the timer's next millisecond tick, on the way of every alert and
            // simulated change.
            _ = async {
                if !wait.is_zero() {
                    driver.wait_for_change(wait).await;
                }
            } => {}
        }
        next_poll = tokio::time::Instant::now() + interval;
        let (obs, err) = match tokio::time::timeout(poll_timeout, driver.poll()).await {
            Ok(Ok(r)) => (Some(Observation::Reading(r)), None),
            Ok(Err(DriverError::Retrying(msg))) => {
                // Inside the driver's grace period: the monitor keeps the last reading;
                // the reason is shown (and reported) at once.
                let first = shared
                    .ups
                    .lock()
                    .expect("ups lock")
                    .get(&name)
                    .is_some_and(|v| v.status.comm_error.is_none());
                if first {
                    tracing::warn!(ups = %name, "the UPS missed a poll: {msg}");
                }
                (None, Some(msg))
            }
            Ok(Err(e)) => (
                Some(Observation::CommFailure(e.to_string())),
                Some(e.to_string()),
            ),
            Err(_) => {
                let msg = format!("driver did not answer within {} s", poll_timeout.as_secs());
                (Some(Observation::CommFailure(msg.clone())), Some(msg))
            }
        };
        let now = Instant::now();
        let events = match obs {
            Some(obs) => monitor.observe(obs, now, SystemTime::now()),
            None => Vec::new(),
        };
        {
            let mut ups = shared.ups.lock().expect("ups lock");
            if let Some(v) = ups.get_mut(&name) {
                v.status = UpsStatus {
                    driver: std::mem::take(&mut v.status.driver),
                    reading: monitor.last_reading().cloned(),
                    statflag: monitor.statflag(),
                    comm_lost: monitor.comm_lost(),
                    comm_error: err,
                    on_battery: monitor.on_battery(),
                    time_on_battery_s: monitor.time_on_battery(now).as_secs() as u32,
                    transfers: monitor.transfers(),
                    shutdown: monitor
                        .shutdown()
                        .map(|d| (d.rule, upsilon_core::time::unix_ms(d.at_wall))),
                };
            }
        }
        let mut reported = Vec::new();
        let own = driver.take_events().into_iter().map(|(kind, message)| {
            tracing::warn!(ups = %name, "{message}");
            (kind, message)
        });
        let events = own.chain(events.into_iter().map(|me| (me.kind, me.message)));
        for (kind, message) in events {
            let ev = shared.log_event(kind, &name, &message);
            reported.push(upsilon_core::replicated::state::ReportedEvent {
                at_ms: upsilon_core::time::unix_ms(ev.at),
                name: ev.kind.name().to_string(),
                message: ev.message.clone(),
            });
            let _ = exec_tx.send(ev);
        }
        if let Some((cluster, reporter)) = &reporter {
            let view = shared.ups.lock().expect("ups lock").get(&name).cloned();
            if let Some(v) = view {
                let key = ReportKey::of(&v);
                let heartbeat = Duration::from_millis(cluster.cfg.heartbeat_ms);
                let due = match &last_sent {
                    None => true,
                    Some((k, at)) => *k != key || at.elapsed() >= heartbeat,
                };
                if due || !reported.is_empty() {
                    tracing::debug!(
                        target: crate::trace::LATENCY,
                        ups = %name,
                        t_us = upsilon_core::time::now_us(),
                        "latency report queued"
                    );
                    reporter.push(report_of(&v, cluster.id, reported));
                    last_sent = Some((key, now));
                }
            }
        }
        shared.bump_status();
    }
}

/// What counts as a change worth reporting at once (the rest waits for the heartbeat).
#[derive(Debug, Clone, PartialEq)]
struct ReportKey {
    statflag: u32,
    comm_lost: bool,
    charge_tenths: Option<i64>,
    runtime_s: Option<i64>,
    load_tenths: Option<i64>,
    comm_error: Option<String>,
}

impl ReportKey {
    fn of(v: &UpsView) -> Self {
        let r = v.status.reading.as_ref();
        ReportKey {
            statflag: v.status.statflag,
            comm_lost: v.status.comm_lost,
            charge_tenths: r
                .and_then(|r| r.charge_percent)
                .map(|c| (c * 10.0).round() as i64),
            runtime_s: r.and_then(|r| r.runtime_s).map(|s| s.round() as i64),
            load_tenths: r
                .and_then(|r| r.load_percent)
                .map(|c| (c * 10.0).round() as i64),
            comm_error: v.status.comm_error.clone(),
        }
    }
}

fn report_of(
    v: &UpsView,
    owner: u64,
    events: Vec<upsilon_core::replicated::state::ReportedEvent>,
) -> upsilon_core::replicated::state::UpsReport {
    upsilon_core::replicated::state::UpsReport {
        ups: v.name.clone(),
        owner,
        seq: 0,
        at_ms: upsilon_core::time::unix_ms(SystemTime::now()),
        status: v.status.clone(),
        events,
    }
}
