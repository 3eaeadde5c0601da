//! `upsilon drill`: a fire drill on the live cluster, and its report.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use super::fetch_checked_plan;
use crate::conn::ConnArgs;

/// What `upsilon drill` was asked.
#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// A UPS whose mains failure the drill simulates (repeat for several).
    #[arg(long = "ups", value_name = "NAME", required_unless_present = "stop")]
    pub ups: Vec<String>,
    /// Stop the running drill instead.
    #[arg(long, conflicts_with = "ups")]
    pub stop: bool,
    /// Stop waiting for the report after this many seconds (the drill goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Starts a drill, follows it to its end, prints the report; exit 1 when a host did
/// not answer or the plan does not fit the batteries.
pub async fn run(conn: &ConnArgs, a: DrillArgs) -> anyhow::Result<std::process::ExitCode> {
    let opts = conn.resolve()?;
    let req = pb::DrillRequest {
        upses: a.ups.clone(),
        stop: a.stop,
    };
    let started = Instant::now();
    let (reply, _) = rpc::on_leader(&opts, |ch| {
        let req = req.clone();
        async move { AdminServiceClient::new(ch).drill(req).await }
    })
    .await
    .map_err(|e| anyhow!(e))?;
    if a.stop {
        println!("fire drill {} stopped", reply.id);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if !a.json {
        println!(
            "fire drill {} started on {}: nothing is shut down or cut; following it...",
            reply.id,
            a.ups.join(", ")
        );
    }
    let until = started + Duration::from_secs(a.timeout);
    let p = loop {
        let p = fetch_checked_plan(&opts).await?;
        // A node that has not applied the drill yet still shows the one before: wait.
        let over = p.drill_id > reply.id || (p.drill_id == reply.id && !p.drill_running);
        if over || Instant::now() >= until {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = started.elapsed();
    let check = p.check.clone().unwrap_or_default();
    let ok = !p.drill_running && p.drill_unanswered.is_empty() && check.fits;
    if a.json {
        let v = serde_json::json!({
            "id": reply.id, "running": p.drill_running, "seconds": took.as_secs_f64(),
            "report": p.drill_report, "unanswered": p.drill_unanswered,
            "fits": check.fits, "check": check.lines, "problems": check.problems,
            "warnings": check.warnings, "ok": ok,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for l in &p.drill_report {
            println!("{l}");
        }
        if p.drill_running {
            println!(
                "still running after {} s: `upsilon drill --stop` ends it",
                a.timeout
            );
        }
        println!("does the plan fit the batteries (plan check)?");
        print!("{}", crate::output::plan_check_text(&check));
        println!("report after {:.1} s", took.as_secs_f64());
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
