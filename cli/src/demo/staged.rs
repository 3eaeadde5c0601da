//! The default `upsilon demo`: the staged cluster shutdown. Five nodes on loopback
//! (3 voters, 2 learners), two simulated UPSes, one host fed by both:
//!
//! ```text
//!   n1 core  (voter, owns ups1)  feeds ups1        n4 batch (learner) feeds ups1
//!   n2 core  (voter, owns ups2)  feeds ups2        n5 batch (learner) feeds ups2
//!   n3 apps  (voter)             feeds ups1 + ups2, min_supplies 1
//! ```
//!
//! First `plan check` and a fire drill on both UPSes (nothing shut down), with its report.
//! Outage 1: both UPSes fail; batch, apps and core stop in order, then each UPS is
//! told to cut power. Mains return; halted hosts come back by power cycle. Outage 2:
//! ups1 fails, batch stops, mains return before apps: the rest is cancelled. Executors
//! record; nothing is executed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_stream::StreamExt;
use upsilon_client::rpc::{self, ClientOptions};
use upsilon_client::stop::Stop;
use upsilon_core::config::NodeConfig;
use upsilon_node::node::RunningNode;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

use super::{Clock, DemoArgs, api_err, demo_certificates};
use crate::output;

const PLAN: &str = r#"# Written by `upsilon demo`.
runtime_floor_s = 0
kill_power_delay_s = 30

[[stage]]
name = "batch"
hosts = ["label:batch"]
trigger = { on_battery_s = 5 }
ack_timeout_s = 15

[[stage]]
name = "apps"
hosts = ["label:apps"]
trigger = { on_battery_s = 10 }
ack_timeout_s = 15

[[stage]]
name = "core"
hosts = ["label:core"]
trigger = { charge_below = 55 }
ack_timeout_s = 20
"#;

/// (name, labels, feeds, min_supplies, owns a UPS)
const LAYOUT: [(&str, &str, &str, u32, Option<&str>); 5] = [
    ("n1", "core", "\"ups1\"", 1, Some("ups1")),
    ("n2", "core", "\"ups2\"", 1, Some("ups2")),
    ("n3", "apps", "\"ups1\", \"ups2\"", 1, None),
    ("n4", "batch", "\"ups1\"", 1, None),
    ("n5", "batch", "\"ups2\"", 1, None),
];

fn config(i: usize, seed: Option<&str>) -> String {
    let (name, label, feeds, min, ups) = LAYOUT[i - 1];
    let mut c = format!(
        "# Written by `upsilon demo`.\n[node]\nname = \"{name}\"\nlisten = \"127.0.0.{i}:0\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n\n# The plan decides; apcupsd's own thresholds are set out of the way.\n[policy]\nbattery_level = 0\nminutes = 0\n\n[executor]\nmode = \"record\"\nrecord_file = \"executor-record-{name}.jsonl\"\n\n# Several demo nodes share this machine: no apcupsd NIS port for them.\n[nis]\nenabled = false\n"
    );
    if let Some(u) = ups {
        c.push_str(&format!(
            "\n[[ups]]\nname = \"{u}\"\ndriver = \"sim\"\npoll_interval_ms = 300\n"
        ));
    }
    c.push_str(&format!(
        "\n[cluster]\nid = {i}\ndata_dir = \"data-{name}\"\nbootstrap = {}\nseeds = [{}]\nvoter = {}\nlabels = [\"{label}\"]\nfeeds = [{feeds}]\nmin_supplies = {min}\nheartbeat_ms = 1000\nelection_timeout_ms = 500\n{}",
        i == 1,
        seed.map(|s| format!("\"{s}\"")).unwrap_or_default(),
        i <= 3,
        if i == 1 { "plan = \"plan.toml\"\n" } else { "" }
    ));
    c
}

struct Demo {
    clock: Clock,
    nodes: Vec<RunningNode>,
    opts: Vec<ClientOptions>,
}

impl Demo {
    async fn admin(
        &self,
        i: usize,
    ) -> anyhow::Result<AdminServiceClient<tonic::transport::Channel>> {
        Ok(AdminServiceClient::new(
            rpc::connect(&self.opts[i - 1]).await?,
        ))
    }

    async fn power(
        &self,
        i: usize,
    ) -> anyhow::Result<PowerServiceClient<tonic::transport::Channel>> {
        Ok(PowerServiceClient::new(
            rpc::connect(&self.opts[i - 1]).await?,
        ))
    }

    async fn sim(&self, owner: usize, on_battery: bool, drain: Option<f64>) -> anyhow::Result<()> {
        let o = &self.opts[owner - 1];
        self.admin(owner)
            .await?
            .sim_set(pb::SimSetRequest {
                on_battery: Some(on_battery),
                drain_percent_per_second: drain,
                charge_percent: on_battery.then_some(100.0),
                ..Default::default()
            })
            .await
            .map_err(api_err(o))?;
        Ok(())
    }

    /// `upsilon plan check`, then a fire drill on both UPSes and its report.
    async fn check_and_drill(&self) -> anyhow::Result<()> {
        let p = self
            .power(3)
            .await?
            .get_plan(pb::GetPlanRequest {
                check: true,
                ..Default::default()
            })
            .await
            .map_err(api_err(&self.opts[2]))?
            .into_inner();
        println!("\n`upsilon plan check` (from n3): does the plan fit the batteries?");
        for l in output::plan_check_text(&p.check.unwrap_or_default()).lines() {
            println!("    {l}");
        }
        println!(
            "\n`upsilon drill --ups ups1 --ups ups2` at {}: the plan plays on the live cluster,",
            self.clock.stamp()
        );
        println!("hooks run with UPSILON_DRILL=1, nothing is shut down or cut.");
        let started = Instant::now();
        let req = pb::DrillRequest {
            upses: vec!["ups1".into(), "ups2".into()],
            stop: false,
        };
        let (reply, _) = rpc::on_leader(&self.opts[0], |ch| {
            let req = req.clone();
            async move { AdminServiceClient::new(ch).drill(req).await }
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        let report = loop {
            let p = self
                .power(3)
                .await?
                .get_plan(pb::GetPlanRequest::default())
                .await
                .map_err(api_err(&self.opts[2]))?
                .into_inner();
            if p.drill_id == reply.id && !p.drill_running {
                break p.drill_report;
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!("the drill did not finish within 90 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for l in report {
            println!("    {l}");
        }
        println!("    report after {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn status(&self, i: usize) -> anyhow::Result<pb::StatusReply> {
        let o = &self.opts[i - 1];
        Ok(self
            .power(i)
            .await?
            .get_status(pb::GetStatusRequest {})
            .await
            .map_err(api_err(o))?
            .into_inner())
    }

    /// A watch stream on n5 (a learner): the replicated events as they apply.
    async fn watch(&self) -> anyhow::Result<tonic::Streaming<pb::WatchUpdate>> {
        let o = &self.opts[4];
        Ok(self
            .power(5)
            .await?
            .watch(pb::WatchRequest {})
            .await
            .map_err(api_err(o))?
            .into_inner())
    }

    /// Prints events from `stream` until `done` says so or `limit` passes.
    async fn follow(
        &self,
        stream: &mut tonic::Streaming<pb::WatchUpdate>,
        limit: Duration,
        mut done: impl FnMut(&pb::Event) -> bool,
    ) -> anyhow::Result<bool> {
        let o = &self.opts[4];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let item = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                item = stream.next() => item,
            };
            let Some(item) = item else { return Ok(false) };
            if let Some(pb::watch_update::Update::Event(e)) = item.map_err(api_err(o))?.update {
                if e.name == "nodeack" && e.message.contains("shutting down") {
                    continue; // "halting" follows at once in record mode
                }
                let ups = if e.ups_name.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", e.ups_name)
                };
                println!(
                    "  {}  {:<11} {}{}",
                    self.clock.stamp(),
                    e.name,
                    ups,
                    e.message
                );
                if done(&e) {
                    return Ok(true);
                }
            }
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new().prefix("upsilon-demo-").tempdir()?;
    let dir = work.path().to_path_buf();
    println!(
        "Upsilon demo: a staged cluster shutdown. Five nodes on loopback (3 voters, 2 learners),"
    );
    println!("two simulated UPSes, one host fed by both; executors record, nothing is executed.");
    println!("  work dir : {}", dir.display());
    for (name, label, feeds, min, ups) in LAYOUT {
        println!(
            "  {name}: {label:<5} feeds {:<16} min_supplies {min}{}",
            feeds.replace('"', ""),
            ups.map(|u| format!(", drives {u}")).unwrap_or_default()
        );
    }

    let certs = dir.join("certs");
    demo_certificates(&certs, 5)?;
    std::fs::write(dir.join("plan.toml"), PLAN)?;

    let (stop_tx, _) = tokio::sync::broadcast::channel(1);
    let mut nodes = Vec::new();
    let mut seed: Option<String> = None;
    for i in 1..=5 {
        let path = dir.join(format!("n{i}.toml"));
        std::fs::write(&path, config(i, seed.as_deref()))?;
        let node =
            upsilon_node::node::start(NodeConfig::load(&path)?, Stop::new(stop_tx.subscribe()))
                .await
                .with_context(|| format!("cannot start node n{i}"))?;
        if i == 1 {
            seed = Some(node.local_addr.to_string());
        }
        nodes.push(node);
    }
    let opts = nodes
        .iter()
        .map(|n| ClientOptions {
            endpoint: n.local_addr.to_string(),
            ca: certs.join("ca.pem"),
            identity: Some((certs.join("operator.pem"), certs.join("operator.key"))),
        })
        .collect();
    let demo = Demo {
        clock: Clock(Instant::now()),
        nodes,
        opts,
    };

    // Formation and the plan.
    let formed = async {
        loop {
            let s = demo.status(1).await?;
            let plan = demo
                .power(1)
                .await?
                .get_plan(pb::GetPlanRequest::default())
                .await
                .ok();
            let has_plan = plan.is_some_and(|p| p.get_ref().has_plan);
            let ok = s
                .cluster
                .as_ref()
                .is_some_and(|c| c.writable && c.voters == 3 && c.learners == 2);
            let reported = s.ups.len() == 2;
            if ok && has_plan && reported {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(40), formed)
        .await
        .context("the cluster did not form within 40 s")??;
    let p = demo
        .power(3)
        .await?
        .get_plan(pb::GetPlanRequest::default())
        .await
        .map_err(api_err(&demo.opts[2]))?
        .into_inner();
    println!(
        "\n`upsilon plan` (from n3), cluster formed at {}:",
        demo.clock.stamp()
    );
    for l in output::plan_text(&p).lines() {
        println!("    {l}");
    }

    demo.check_and_drill().await?;

    // Outage 1: both UPSes fail and drain; the whole plan runs.
    let mut stream = demo.watch().await?;
    println!("\nA real outage (drills and outages share numbers): mains fail on ups1 and ups2.");
    demo.sim(1, true, Some(2.5)).await?;
    demo.sim(2, true, Some(2.5)).await?;
    let mut killed = 0;
    let finished = demo
        .follow(&mut stream, Duration::from_secs(120), |e| {
            if e.name == "notice" && e.message.contains("kill power done") {
                killed += 1;
            }
            killed == 2
        })
        .await?;
    if !finished {
        bail!("outage 1 did not reach kill power on both UPSes within 120 s");
    }
    // Let the owners (who halt last, after carrying out their kill-power order) ack.
    let mut halting = 0;
    demo.follow(&mut stream, Duration::from_secs(20), |e| {
        if e.name == "nodeack" && e.message.contains("halting (stage core)") {
            halting += 1;
        }
        halting == 2
    })
    .await?;
    let s = demo.status(4).await?;
    println!("\n  `upsilon status` on n4 says:\n");
    for l in output::status_table(&s, false).lines() {
        println!("    {l}");
    }
    println!("\n  what each host's executor did (record mode):");
    for (i, n) in demo.nodes.iter().enumerate() {
        for r in n.shared.executor.records() {
            if r.action == "shutdown" || r.action == "killpower" {
                println!("    n{}: {}", i + 1, r.summary());
            }
        }
    }

    // Mains return: the outage ends; halted hosts come back by power cycle.
    println!("\nMains return on both UPSes.");
    demo.sim(1, false, None).await?;
    demo.sim(2, false, None).await?;
    let mut cycles = 0;
    demo.follow(&mut stream, Duration::from_secs(30), |e| {
        if e.name == "notice" && e.message.contains("power cycle done") {
            cycles += 1;
        }
        cycles == 2
    })
    .await?;

    // Outage 2: ups1 fails, batch stops, mains return before apps.
    println!(
        "\nAnother outage: mains fail on ups1 only; they return before the apps stage is due."
    );
    demo.sim(1, true, Some(0.5)).await?;
    demo.follow(&mut stream, Duration::from_secs(30), |e| {
        e.name == "nodeack" && e.message.contains("halting")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.sim(1, false, None).await?;
    let cancelled = demo
        .follow(&mut stream, Duration::from_secs(30), |e| e.name == "cancel")
        .await?;
    if !cancelled {
        bail!("outage 2 was not cancelled when mains returned");
    }

    let final_status = demo.status(3).await?;
    drop(stream);
    let _ = stop_tx.send(());
    let Demo { nodes, .. } = demo;
    for n in nodes {
        n.join().await;
    }
    println!("\n`upsilon status` on n3 at the end:\n");
    for l in output::status_table(&final_status, false).lines() {
        println!("    {l}");
    }
    if args.keep {
        println!("\nwork dir kept: {}", work.keep().display());
    }
    println!(
        "\nDemo finished: stages ran in order, kill power came last, the second outage was cancelled; nothing was executed."
    );
    Ok(ExitCode::SUCCESS)
}
