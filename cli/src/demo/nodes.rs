//! `upsilon demo --nodes N`: one standalone node (N = 1), or a cluster of N nodes on
//! loopback (up to 3 voters, the rest learners), one node driving a simulated UPS,
//! played through a power failure to the (recorded, never executed) shutdown decision.
//! An operator watches over mutual TLS from a learner, and at the end every node shows
//! the same replicated history.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_stream::StreamExt;
use upsilon_client::rpc::{self, ClientOptions};
use upsilon_client::stop::Stop;
use upsilon_core::config::NodeConfig;
use upsilon_node::node::RunningNode;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

use super::{Clock, DemoArgs, api_err, demo_certificates, hook};
use crate::output;

const DEFAULT_SCENARIO: &str = include_str!("../../../deploy/scenarios/power-failure.toml");

/// Node `i`'s config: node 1 owns the UPS (and bootstraps the cluster).
fn node_config(i: usize, n: usize, seed: Option<&str>) -> String {
    let name = format!("n{i}");
    let mut c = format!(
        "# Written by `upsilon demo`.\n[node]\nname = \"{name}\"\nlisten = \"127.0.0.{i}:0\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n\n[policy]\nbattery_level = 10\nminutes = 5\non_battery_delay = 6\n\n[events]\nfile = \"events-{name}\"\n\n[executor]\nmode = \"record\"\nrecord_file = \"executor-record-{name}.jsonl\"\n\n# Several demo nodes share this machine: no apcupsd NIS port for them.\n[nis]\nenabled = false\n"
    );
    if i == 1 {
        c.push_str("\n[hooks]\nscript_dir = \"hooks\"\n\n[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\nscenario = \"scenario.toml\"\npoll_interval_ms = 500\n");
    }
    if n > 1 {
        c.push_str(&format!(
            "\n[cluster]\nid = {i}\ndata_dir = \"data-{name}\"\nbootstrap = {}\nseeds = [{}]\nvoter = {}\nheartbeat_ms = 1000\nelection_timeout_ms = 500\n",
            i == 1,
            seed.map(|s| format!("\"{s}\"")).unwrap_or_default(),
            i <= 3
        ));
    }
    c
}

/// Runs the `--nodes n` demo: a scenario, certificates, the nodes, the cluster formed,
/// an operator watching to the shutdown decision, then every node's history compared.
pub async fn run(args: DemoArgs, n: usize) -> anyhow::Result<ExitCode> {
    if n == 2 {
        bail!("--nodes 2 cannot keep a quorum when one fails: use 1, or 3 to 7");
    }
    let work = tempfile::Builder::new().prefix("upsilon-demo-").tempdir()?;
    let dir = work.path().to_path_buf();
    let scenario = load_scenario(&args, &dir)?;
    if n == 1 {
        println!("Upsilon demo: one node on a simulated UPS, through a power failure.");
    } else {
        println!(
            "Upsilon demo: a {n}-node cluster ({} voters, {} learners) on loopback, one simulated UPS, a power failure.",
            3.min(n),
            n - 3.min(n)
        );
    }
    println!("  scenario : {} - {}", scenario.name, scenario.description);
    println!("  work dir : {}", dir.display());

    // 1. Certificates: one CA, one node certificate per node, one for the operator.
    let certs = dir.join("certs");
    demo_certificates(&certs, n)?;
    println!("  [1] created a cluster CA, {n} node certificates and an operator certificate");

    let hook_log = dir.join("hooks.log");
    let (stop_tx, _) = tokio::sync::broadcast::channel(1);
    let nodes = start_nodes(&dir, n, &hook_log, &stop_tx).await?;
    let clock = Clock(Instant::now());
    let opts_for = |i: usize| ClientOptions {
        endpoint: nodes[i - 1].local_addr.to_string(),
        ca: certs.join("ca.pem"),
        identity: Some((certs.join("operator.pem"), certs.join("operator.key"))),
    };
    println!(
        "  [2] started {n} upsilond node(s) on {} (mutual TLS; executors in record mode: nothing is executed)",
        nodes
            .iter()
            .map(|x| x.local_addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 3. Wait for the cluster to form, as the operator sees it.
    let owner_opts = opts_for(1);
    let mut owner = PowerServiceClient::new(rpc::connect(&owner_opts).await?);
    if n > 1 {
        wait_formed(&mut owner, &owner_opts, n, &clock).await?;
    }

    // 4. Watch from the last node (a learner in a cluster) as an operator would.
    let watch_opts = opts_for(n);
    let mut watcher = PowerServiceClient::new(rpc::connect(&watch_opts).await?);
    let mut stream = watcher
        .watch(pb::WatchRequest {})
        .await
        .map_err(api_err(&watch_opts))?
        .into_inner();
    println!("  [4] operator connected to n{n} over mutual TLS; watching\n");
    let limit = Duration::from_secs(args.duration.unwrap_or(120));
    let shutdown_reason = watch_to_the_decision(
        &mut owner,
        &owner_opts,
        &mut stream,
        &watch_opts,
        limit,
        &clock,
    )
    .await?;

    let final_status = owner
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(api_err(&owner_opts))?
        .into_inner();
    let seen = histories(n, &final_status, opts_for).await?;
    // Close our connections first: a server's graceful stop waits for open streams.
    drop(stream);
    drop(watcher);
    drop(owner);
    let _ = stop_tx.send(());
    for node in nodes {
        node.join().await;
    }

    summary(
        &dir,
        &hook_log,
        limit,
        &shutdown_reason,
        &final_status,
        &seen,
    );
    if args.keep {
        let kept = work.keep();
        println!("\nwork dir kept: {}", kept.display());
    }
    if shutdown_reason.is_none() && args.duration.is_none() {
        bail!(
            "the demo did not reach a shutdown decision within {} s",
            limit.as_secs()
        );
    }
    let all_same = seen.windows(2).all(|w| w[0].2 == w[1].2);
    if !all_same {
        bail!("the nodes' event histories differ: replication did not converge");
    }
    println!(
        "\nDemo finished: the power failure was handled to the recorded shutdown on every node's view; nothing was executed."
    );
    Ok(ExitCode::SUCCESS)
}

/// The scenario the simulated UPS plays (the user's file, or the built-in one), copied
/// into the work directory; its errors name the user's file.
fn load_scenario(
    args: &DemoArgs,
    dir: &std::path::Path,
) -> anyhow::Result<upsilon_node::driver::sim::Scenario> {
    let scenario_path = dir.join("scenario.toml");
    match &args.scenario {
        Some(p) => {
            std::fs::copy(p, &scenario_path)
                .with_context(|| format!("cannot read scenario {}", p.display()))?;
        }
        None => std::fs::write(&scenario_path, DEFAULT_SCENARIO)?,
    }
    upsilon_node::driver::sim::Scenario::load(&scenario_path).map_err(|e| {
        // Name the file the user gave, not our copy.
        let shown = args
            .scenario
            .clone()
            .unwrap_or_else(|| "built-in scenario".into());
        anyhow::anyhow!(
            "{}",
            e.to_string().replace(
                &scenario_path.display().to_string(),
                &shown.display().to_string()
            )
        )
    })
}

/// Starts the nodes in-process, each with its own config, storage and API: node 1 with
/// the UPS and the demo's hooks, and the others' seed.
async fn start_nodes(
    dir: &std::path::Path,
    n: usize,
    hook_log: &std::path::Path,
    stop_tx: &tokio::sync::broadcast::Sender<()>,
) -> anyhow::Result<Vec<RunningNode>> {
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    for ev in ["powerout", "onbattery", "doshutdown", "mainsback"] {
        hook(&hooks, ev, hook_log)?;
    }
    let mut nodes: Vec<RunningNode> = Vec::new();
    let mut seed: Option<String> = None;
    for i in 1..=n {
        let path = dir.join(format!("n{i}.toml"));
        std::fs::write(&path, node_config(i, n, seed.as_deref()))?;
        let cfg = NodeConfig::load(&path)?;
        let node = upsilon_node::node::start(cfg, Stop::new(stop_tx.subscribe()))
            .await
            .with_context(|| format!("cannot start node n{i}"))?;
        if i == 1 {
            seed = Some(node.local_addr.to_string());
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// Waits (30 s) for the cluster to be writable with every node in it, and prints it.
async fn wait_formed(
    owner: &mut PowerServiceClient<tonic::transport::Channel>,
    owner_opts: &ClientOptions,
    n: usize,
    clock: &Clock,
) -> anyhow::Result<()> {
    let formed = async {
        loop {
            let s = owner
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(api_err(owner_opts))?
                .into_inner();
            let formed = s.cluster.as_ref().is_some_and(|c| {
                c.writable && (c.voters + c.learners) as usize == n && c.voters as usize == 3.min(n)
            });
            if formed {
                return anyhow::Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let s = tokio::time::timeout(Duration::from_secs(30), formed)
        .await
        .context("the cluster did not form within 30 s")??;
    println!("  [3] cluster formed at {}:", clock.stamp());
    for l in output::nodes_table(&s.nodes, s.generated_at_unix_ms, false).lines() {
        println!("        {l}");
    }
    if let Some(c) = &s.cluster {
        print!("        {}", output::cluster_line(c));
    }

    Ok(())
}

/// Prints the events and the status as they come, until the UPS owner has handled its
/// shutdown (and two more seconds for the last events), or `limit` passes. Returns the
/// rule that fired and its detail, if one did.
async fn watch_to_the_decision(
    owner: &mut PowerServiceClient<tonic::transport::Channel>,
    owner_opts: &ClientOptions,
    stream: &mut tonic::Streaming<pb::WatchUpdate>,
    watch_opts: &ClientOptions,
    limit: Duration,
    clock: &Clock,
) -> anyhow::Result<Option<(String, String)>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_status_print = Instant::now() - Duration::from_secs(60);
    let mut last_kind = String::new();
    let mut shutdown_reason: Option<(String, String)> = None;
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let mut linger: Option<tokio::time::Instant> = None;
    loop {
        let linger_done = async {
            match linger {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = linger_done => break,
            _ = poll.tick() => {
                // The UPS owner's executor knows when the shutdown command was handled.
                let s = owner.get_status(pb::GetStatusRequest {}).await.map_err(api_err(owner_opts))?.into_inner();
                let p = s.pending.unwrap_or_default();
                if output::action_kind(p.kind) == "shutting-down" && p.shutdown_handled && shutdown_reason.is_none() {
                    shutdown_reason = Some((p.reason.clone(), p.detail.clone()));
                    // Let the last events replicate and hooks land, then stop.
                    linger = Some(tokio::time::Instant::now() + Duration::from_millis(2000));
                }
            }
            item = stream.next() => {
                let Some(item) = item else { break };
                let upd = item.map_err(api_err(watch_opts))?;
                match upd.update {
                    Some(pb::watch_update::Update::Event(e)) => {
                        let ups = if e.ups_name.is_empty() { String::new() } else { format!("[{}] ", e.ups_name) };
                        println!("  {}  event   {:<12} {}{} (from {})", clock.stamp(), e.name, ups, e.message, e.node_name);
                    }
                    Some(pb::watch_update::Update::Status(s)) => {
                        let p = s.pending.clone().unwrap_or_default();
                        let kind = output::action_kind(p.kind).to_string();
                        let changed = kind != last_kind;
                        if changed || last_status_print.elapsed() >= Duration::from_secs(4) {
                            for u in &s.ups {
                                println!(
                                    "  {}  status  {:<18} charge {:>5}  runtime {:>8}  line {:>5}  action: {}",
                                    clock.stamp(),
                                    format!("{} {}", u.ups_name, u.status_text),
                                    u.charge_percent.map_or("-".into(), |c| format!("{c:.0} %")),
                                    u.runtime_seconds.map_or("-".into(), |r| format!("{:.1} min", r / 60.0)),
                                    u.line_voltage.map_or("-".into(), |v| format!("{v:.0} V")),
                                    kind
                                );
                            }
                            if changed && kind != "none" {
                                println!("  {}  action  {}", clock.stamp(), p.detail);
                            }
                            last_status_print = Instant::now();
                            last_kind = kind;
                        }
                    }
                    None => {}
                }
            }
        }
    }
    Ok(shutdown_reason)
}

/// Each node's replicated event names (notices left out) and role.
async fn histories(
    n: usize,
    final_status: &pb::StatusReply,
    opts_for: impl Fn(usize) -> ClientOptions,
) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    let mut seen = Vec::new();
    for i in 1..=n {
        let o = opts_for(i);
        let mut c = PowerServiceClient::new(rpc::connect(&o).await?);
        let evs = c
            .list_events(pb::ListEventsRequest { limit: 1000 })
            .await
            .map_err(api_err(&o))?
            .into_inner()
            .events;
        let role = final_status
            .nodes
            .iter()
            .find(|x| x.name == format!("n{i}"))
            .map_or("standalone".to_string(), |x| x.role.clone());
        let names: Vec<String> = evs
            .into_iter()
            .filter(|e| e.name != "notice")
            .map(|e| e.name)
            .collect();
        seen.push((format!("n{i}"), role, names));
    }
    Ok(seen)
}

/// What happened: the rule that fired, the executor's records, the hooks that ran,
/// every node's history, the owner's events file and `upsilon status`.
fn summary(
    dir: &std::path::Path,
    hook_log: &std::path::Path,
    limit: Duration,
    shutdown_reason: &Option<(String, String)>,
    final_status: &pb::StatusReply,
    seen: &[(String, String, Vec<String>)],
) {
    println!("\nSummary");
    match shutdown_reason {
        Some((reason, detail)) => println!("  outcome  : `{reason}` fired; {detail}"),
        None => println!(
            "  outcome  : no shutdown was needed within {} s",
            limit.as_secs()
        ),
    }
    if let Some(p) = &final_status.pending {
        for c in &p.commands {
            println!("  executor : {c}");
        }
    }
    if let Ok(h) = std::fs::read_to_string(hook_log) {
        for l in h.lines() {
            println!("  hook ran : {l}");
        }
    }
    println!("  what every node saw (replicated event history):");
    for (name, role, names) in seen {
        println!("    {name:<3} {role:<10} {}", names.join(", "));
    }
    let events_file = dir.join("events-n1");
    println!(
        "  events file of the UPS owner ({}), apcupsd format:",
        events_file.display()
    );
    for l in std::fs::read_to_string(&events_file)
        .unwrap_or_default()
        .lines()
    {
        println!("    {l}");
    }
    println!("\n`upsilon status` at the end:\n");
    for l in output::status_table(final_status, false).lines() {
        println!("    {l}");
    }
}
