//! `upsilon`: the Upsilon command line.
//!
//! Talks to a node over mutual TLS (`status`, `watch`, `events`, `sim`), manages the
//! cluster's certificates (`cert`), and runs a self-contained demo (`demo`).

mod cmd;
mod conn;
mod demo;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cmd::cert::CertCommand;
use cmd::nodes::NodesCommand;
use cmd::plan::PlanCommand;
use cmd::ups::{SimCommand, UpsCmd};

#[derive(Parser, Debug)]
#[command(
    name = "upsilon",
    version,
    about = "Upsilon: cluster-aware UPS power management"
)]
struct Cli {
    #[command(flatten)]
    conn: conn::ConnArgs,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Power status in one screen: each UPS, each node, the pending action.
    Status {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Everything: addresses, ids, lag, versions, drivers, the executor's records,
        /// the policy (the default fits 80 columns).
        #[arg(long)]
        long: bool,
    },
    /// Follow status changes and events live (Ctrl-C to stop).
    Watch {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The most recent events, oldest first.
    Events {
        /// How many events.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Cluster members: list them, or change membership.
    Nodes {
        #[command(subcommand)]
        cmd: Option<NodesCommand>,
        /// Print JSON (for the listing).
        #[arg(long)]
        json: bool,
    },
    /// The staged shutdown plan: stages, hosts, triggers, progress, what would start now.
    Plan {
        #[command(subcommand)]
        cmd: Option<PlanCommand>,
        /// Print JSON (also `plan check --json`).
        #[arg(long, global = true)]
        json: bool,
    },
    /// Shut the cluster down by the plan. Only `--dry-run` exists: it plays the plan
    /// against the current state and prints what would happen, changing nothing.
    Shutdown {
        /// Required: print what would happen, change nothing.
        #[arg(long, required = true)]
        dry_run: bool,
        /// Pretend every UPS is on battery now.
        #[arg(long)]
        assume_outage: bool,
    },
    /// Fire drill: run the plan on the live cluster as if mains failed on the UPSes
    /// named (hooks run with UPSILON_DRILL=1; shutdowns and UPS orders are only
    /// recorded), then report who went when, ack latencies, who did not answer, kill
    /// power per UPS and whether the plan fits. A real power failure ends it at once.
    Drill(cmd::drill::DrillArgs),
    /// Drive a simulated UPS.
    Sim {
        #[command(subcommand)]
        cmd: SimCommand,
    },
    /// Send a command to a UPS the node drives: self test, kill power, power off.
    Ups {
        #[command(subcommand)]
        cmd: UpsCmd,
    },
    /// Legacy apcupsd peers: walk the manual's "Master/Slave Connection Not Working"
    /// list for every one a bridge.toml or node config names.
    Legacy {
        #[command(subcommand)]
        cmd: LegacyCommand,
    },
    /// Create the cluster CA and issue certificates.
    Cert {
        #[command(subcommand)]
        cmd: CertCommand,
    },
    /// Run a node on a simulated UPS through a power failure, end to end, and exit.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand, Debug)]
enum LegacyCommand {
    /// Check every legacy peer FILE (a bridge.toml or a node config) names, item by
    /// item, saying what to change. Changes no peer's state.
    Check {
        file: std::path::PathBuf,
        /// Also send each slave a first contact carrying what the bridge would send
        /// (read from the cluster) to check the APC and user magics.
        #[arg(long)]
        handshake: bool,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPSILON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(match cli.cmd {
        Command::Demo(_) => "error",
        _ => "warn",
    });
    let rt = match upsilon_client::runtime::start(
        "upsilon",
        upsilon_client::runtime::Threads::PerCore,
    ) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("upsilon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = &cli.conn;
    match cli.cmd {
        Command::Status { json, long } => cmd::read::status(conn, json, long).await?,
        Command::Watch { json } => cmd::read::watch(conn, json).await?,
        Command::Events { limit, json } => cmd::read::events(conn, limit, json).await?,
        Command::Plan {
            cmd: Some(PlanCommand::Apply { file, force }),
            json,
        } => cmd::plan::apply(conn, file, force, json).await?,
        Command::Plan {
            cmd: Some(PlanCommand::Check),
            json,
        } => return cmd::plan::check(conn, json).await,
        Command::Plan { cmd: None, json } => cmd::plan::show(conn, json).await?,
        Command::Shutdown { assume_outage, .. } => {
            cmd::plan::shutdown_dry_run(conn, assume_outage).await?
        }
        Command::Nodes { cmd: None, json } => cmd::nodes::list(conn, json).await?,
        Command::Nodes { cmd: Some(c), .. } => cmd::nodes::change(conn, c).await?,
        Command::Sim {
            cmd: SimCommand::Set(a),
        } => cmd::ups::sim_set(conn, a).await?,
        Command::Ups {
            cmd: UpsCmd::Release { name },
        } => cmd::ups::release(conn, name).await?,
        Command::Ups { cmd } => cmd::ups::command(conn, cmd).await?,
        Command::Cert { cmd } => cmd::cert::run(conn, cmd).await?,
        Command::Legacy {
            cmd: LegacyCommand::Check { file, handshake },
        } => return cmd::legacy::check(conn, file, handshake).await,
        Command::Drill(a) => return cmd::drill::run(conn, a).await,
        Command::Demo(args) => return demo::run(args).await,
    }
    Ok(ExitCode::SUCCESS)
}
