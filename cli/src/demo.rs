//! `upsilon demo`: a node on a simulated UPS, played through a power failure to the
//! (recorded, never executed) shutdown decision, watched over mutual TLS as an operator
//! would. Everything lives in a throw-away directory; nothing touches this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_stream::StreamExt;
use upsilon_node::client::{self, ClientOptions};
use upsilon_node::config::NodeConfig;
use upsilon_node::pki::{self, IssueRequest, Role};
use upsilon_node::shutdown::Shutdown;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

use crate::output;

const DEFAULT_SCENARIO: &str = include_str!("../../deploy/scenarios/power-failure.toml");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Scenario to play [default: the built-in power-failure scenario]
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Stop after this many seconds even without a shutdown (then exit 0). Without it the
    /// demo runs until the shutdown decision and fails if none comes within 120 s.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Keep the work directory (certificates, config, events file) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

fn hook(dir: &Path, event: &str, log: &Path) -> anyhow::Result<()> {
    let p = dir.join(event);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\n# apccontrol-style hook: called as <event-script> <upsname> <connected> <powered>\necho \"$(date +%T) {event} $*\" >> '{}'\nexit 0\n",
            log.display()
        ),
    )?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

struct Clock(Instant);

impl Clock {
    fn stamp(&self) -> String {
        format!("+{:>5.1}s", self.0.elapsed().as_secs_f64())
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new().prefix("upsilon-demo-").tempdir()?;
    let dir = work.path().to_path_buf();
    let scenario_path = dir.join("scenario.toml");
    match &args.scenario {
        Some(p) => {
            std::fs::copy(p, &scenario_path)
                .with_context(|| format!("cannot read scenario {}", p.display()))?;
        }
        None => std::fs::write(&scenario_path, DEFAULT_SCENARIO)?,
    }
    let scenario = upsilon_node::driver::sim::Scenario::load(&scenario_path).map_err(|e| {
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
    })?;

    println!("Upsilon demo: one node on a simulated UPS, through a power failure.");
    println!("  scenario : {} - {}", scenario.name, scenario.description);
    println!("  work dir : {}", dir.display());

    // 1. Certificates.
    let certs = dir.join("certs");
    pki::init_ca(&certs, "demo")?;
    pki::issue(
        &certs,
        &IssueRequest::new("demo-node", Role::Node, vec!["127.0.0.1".into()], 1),
    )?;
    pki::issue(
        &certs,
        &IssueRequest::new("demo-operator", Role::Client, vec![], 1),
    )?;
    println!(
        "  [1] created a cluster CA, a node certificate (demo-node) and an operator certificate (demo-operator)"
    );

    // 2. Config: hooks in an apcupsd-style script dir, events file, record mode.
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook_log = dir.join("hooks.log");
    for ev in ["powerout", "onbattery", "doshutdown", "mainsback"] {
        hook(&hooks, ev, &hook_log)?;
    }
    let config_path = dir.join("node.toml");
    std::fs::write(
        &config_path,
        r#"# Written by `upsilon demo`.
[node]
name = "demo-node"
listen = "127.0.0.1:0"

[tls]
ca = "certs/ca.pem"
cert = "certs/demo-node.pem"
key = "certs/demo-node.key"

[[ups]]
name = "ups1"
driver = "sim"
scenario = "scenario.toml"
poll_interval_ms = 500

[policy]
battery_level = 10
minutes = 5
on_battery_delay = 6

[events]
file = "events"

[hooks]
script_dir = "hooks"

[executor]
mode = "record"
record_file = "executor-record.jsonl"
"#,
    )?;
    let cfg = NodeConfig::load(&config_path)?;
    let (stop_tx, stop_rx) = tokio::sync::broadcast::channel(1);
    let node = upsilon_node::node::start(cfg, Shutdown::new(stop_rx)).await?;
    let clock = Clock(Instant::now());
    println!(
        "  [2] started upsilond demo-node on {} (mutual TLS; executor in record mode: nothing is executed)",
        node.local_addr
    );

    // 3. Watch as an operator.
    let opts = ClientOptions {
        endpoint: node.local_addr.to_string(),
        ca: certs.join("ca.pem"),
        identity: Some((
            certs.join("demo-operator.pem"),
            certs.join("demo-operator.key"),
        )),
    };
    let ch = client::connect(&opts).await?;
    let mut api = PowerServiceClient::new(ch);
    let mut stream = api
        .watch(pb::WatchRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(client::explain_status(&s, &opts.endpoint)))?
        .into_inner();
    println!("  [3] connected as demo-operator over mutual TLS; watching the node\n");

    let limit = Duration::from_secs(args.duration.unwrap_or(120));
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_status_print = Instant::now() - Duration::from_secs(60);
    let mut last_kind = String::new();
    let mut shutdown_reason: Option<(String, String)> = None;
    let mut extra_after_shutdown = None::<tokio::time::Instant>;
    loop {
        let next = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => None,
            _ = async { match extra_after_shutdown { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => None,
            n = stream.next() => n,
        };
        let Some(item) = next else { break };
        let upd = item.map_err(|s| anyhow::anyhow!(client::explain_status(&s, &opts.endpoint)))?;
        match upd.update {
            Some(pb::watch_update::Update::Event(e)) => {
                let ups = if e.ups_name.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", e.ups_name)
                };
                println!(
                    "  {}  event   {:<12} {}{}",
                    clock.stamp(),
                    e.name,
                    ups,
                    e.message
                );
            }
            Some(pb::watch_update::Update::Status(s)) => {
                let p = s.pending.clone().unwrap_or_default();
                let kind = output::action_kind(p.kind).to_string();
                let changed = kind != last_kind;
                if changed || last_status_print.elapsed() >= Duration::from_secs(4) {
                    for u in &s.ups {
                        println!(
                            "  {}  status  {:<18} charge {:>5}  runtime {:>8}  line {:>7}  action: {}",
                            clock.stamp(),
                            format!("{} {}", u.ups_name, u.status_text),
                            u.charge_percent.map_or("-".into(), |c| format!("{c:.0} %")),
                            u.runtime_seconds
                                .map_or("-".into(), |r| format!("{:.1} min", r / 60.0)),
                            u.line_voltage.map_or("-".into(), |v| format!("{v:.0} V")),
                            kind
                        );
                    }
                    if changed && kind != "none" {
                        println!("  {}  action  {}", clock.stamp(), p.detail);
                    }
                    last_status_print = Instant::now();
                    last_kind = kind.clone();
                }
                if kind == "shutting-down" && p.shutdown_handled && shutdown_reason.is_none() {
                    shutdown_reason = Some((p.reason.clone(), p.detail.clone()));
                    // Let the last events and hooks land, then stop.
                    extra_after_shutdown =
                        Some(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
            }
            None => {}
        }
    }

    let final_status = api
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(client::explain_status(&s, &opts.endpoint)))?
        .into_inner();
    // Close our connection first: the server's graceful stop waits for open streams.
    drop(stream);
    drop(api);
    let _ = stop_tx.send(());
    node.join().await;

    println!("\nSummary");
    match &shutdown_reason {
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
    if let Ok(h) = std::fs::read_to_string(&hook_log) {
        for l in h.lines() {
            println!("  hook ran : {l}");
        }
    }
    let events_file = dir.join("events");
    println!("  events file ({}), apcupsd format:", events_file.display());
    for l in std::fs::read_to_string(&events_file)
        .unwrap_or_default()
        .lines()
    {
        println!("    {l}");
    }
    println!("\n`upsilon status` at the end:\n");
    for l in output::status_table(&final_status).lines() {
        println!("    {l}");
    }
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
    println!(
        "\nDemo finished: the power failure was handled to the recorded shutdown; nothing was executed."
    );
    Ok(ExitCode::SUCCESS)
}
