//! The staged shutdown plan: `plan`, `plan apply`, `shutdown --dry-run`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use super::{fetch_checked_plan, fetch_plan};
use crate::conn::ConnArgs;
use crate::output;

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Replace the cluster's plan with a plan file (TOML `[[stage]]` tables).
    Apply {
        file: PathBuf,
        /// Accept what is refused by default: hosts the cluster does not know (yet),
        /// `ack_timeout_s = 0`, `kill_power_delay_s = 0`.
        #[arg(long)]
        force: bool,
    },
    /// Does the plan fit the batteries at the current load? Stage by stage: when it
    /// would start, how long its hosts take, the battery left; each UPS's margin at kill
    /// power; and the plan against the cluster. Exits 1 when it does not fit.
    Check,
}

pub async fn apply(conn: &ConnArgs, file: PathBuf, force: bool, json: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let toml = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if toml.len() > upsilon_core::replicated::plan::MAX_PLAN_BYTES {
        anyhow::bail!(
            "{} is {} bytes; a plan may be at most {} bytes",
            file.display(),
            toml.len(),
            upsilon_core::replicated::plan::MAX_PLAN_BYTES
        );
    }
    let source = file.display().to_string();
    let (reply, _) = rpc::on_leader(&opts, |ch| {
        let req = pb::SetPlanRequest {
            toml: toml.clone(),
            source: source.clone(),
            force,
        };
        async move { AdminServiceClient::new(ch).set_plan(req).await }
    })
    .await
    .map_err(|e| anyhow!(e))?;
    if json {
        let v = serde_json::json!({"stages": reply.stages, "warnings": reply.warnings});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for w in &reply.warnings {
        eprintln!("warning: {w}");
    }
    println!("plan set: {}", reply.stages.join(" -> "));
    Ok(())
}

pub async fn show(conn: &ConnArgs, json: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let p = fetch_plan(&opts, pb::GetPlanRequest::default()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&output::plan_json(&p))?);
    } else {
        print!("{}", output::plan_text(&p));
    }
    Ok(())
}

pub async fn check(conn: &ConnArgs, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let opts = conn.resolve()?;
    let p = fetch_checked_plan(&opts).await?;
    if !p.has_plan {
        anyhow::bail!("the cluster has no plan: set one with `upsilon plan apply FILE`");
    }
    let c = p.check.ok_or_else(|| {
        anyhow!("the node did not check the plan (is it older than this upsilon?)")
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::plan_check_json(&c))?
        );
    } else {
        print!("{}", output::plan_check_text(&c));
    }
    Ok(if c.fits {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

pub async fn shutdown_dry_run(conn: &ConnArgs, assume_outage: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let p = fetch_plan(
        &opts,
        pb::GetPlanRequest {
            replay: true,
            assume_outage,
            check: false,
        },
    )
    .await?;
    if !p.has_plan {
        anyhow::bail!("the cluster has no plan: set one with `upsilon plan apply FILE`");
    }
    println!(
        "dry run (nothing is changed; the model of `plan check`: each UPS drains from its runtime at the current load, acknowledgements are prompt, each host takes its shutdown time):"
    );
    for l in &p.replay {
        println!("  {l}");
    }
    Ok(())
}
