//! `upsilon demo`: Upsilon on simulated UPSes in a throw-away directory, nothing
//! touching this machine. Without `--nodes`, the staged cluster shutdown ([`staged`]);
//! with it, one standalone node or a replication demo ([`nodes`]). The parts both use
//! (arguments, certificates, hook scripts, the clock, API errors) live here.

mod nodes;
mod staged;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use upsilon_client::pki::{self, IssueRequest, Role};
use upsilon_client::rpc::{self, ClientOptions};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Scenario to play [default: the built-in power-failure scenario]
    #[arg(long, value_name = "FILE")]
    pub(crate) scenario: Option<PathBuf>,
    /// Stop after this many seconds even without a shutdown (then exit 0). Without it the
    /// demo runs until the shutdown decision and fails if none comes within 120 s.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<u64>,
    /// Without it: the staged-shutdown demo (5 nodes, two UPSes). With it: one
    /// standalone node (1), or a replication demo of 3-7 nodes playing `--scenario`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub(crate) nodes: Option<u8>,
    /// Keep the work directory (certificates, configs, events file) instead of deleting it.
    #[arg(long)]
    pub(crate) keep: bool,
}

pub(crate) fn hook(dir: &Path, event: &str, log: &Path) -> anyhow::Result<()> {
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

/// A throw-away cluster CA in `certs`, node certificates n1..n`count` (each naming
/// 127.0.0.i) and an operator certificate, valid for a day.
pub(crate) fn demo_certificates(certs: &Path, count: usize) -> anyhow::Result<()> {
    pki::init_ca(certs, "demo")?;
    for i in 1..=count {
        let req = IssueRequest::new(
            &format!("n{i}"),
            Role::Node,
            vec![format!("127.0.0.{i}")],
            1,
        );
        pki::issue(certs, &req)?;
    }
    pki::issue(
        certs,
        &IssueRequest::new("operator", Role::Operator, vec![], 1),
    )?;
    Ok(())
}

pub(crate) struct Clock(pub(crate) Instant);

impl Clock {
    pub(crate) fn stamp(&self) -> String {
        format!("+{:>5.1}s", self.0.elapsed().as_secs_f64())
    }
}

pub(crate) fn api_err(opts: &ClientOptions) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!(rpc::explain_status(&s, &opts.endpoint))
}

/// Runs the demo the arguments ask for.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let Some(n) = args.nodes.map(usize::from) else {
        if args.scenario.is_some() {
            bail!(
                "--scenario plays one simulated UPS: add --nodes 1 (standalone) or --nodes 3-7 (replication)"
            );
        }
        return staged::run(args).await;
    };
    nodes::run(args, n).await
}
