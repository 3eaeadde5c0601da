//! `upsilon`: the Upsilon command line.
//!
//! Talks to a node over mutual TLS (`status`, `watch`, `events`, `sim`), manages the
//! cluster's certificates (`cert`), and runs a self-contained demo (`demo`).

mod conn;
mod demo;
mod demo_cluster;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use tokio_stream::StreamExt;
use upsilon_node::client::{self, ClientOptions};
use upsilon_node::pki::{self, IssueRequest, Role};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

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
        #[arg(long)]
        json: bool,
    },
    /// Shut the cluster down by the plan. Only `--dry-run` exists: it replays the plan
    /// against the current state and prints what would happen, changing nothing.
    Shutdown {
        /// Required: print the replay, change nothing.
        #[arg(long, required = true)]
        dry_run: bool,
        /// Pretend every UPS is on battery now.
        #[arg(long)]
        assume_outage: bool,
    },
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
    /// Create the cluster CA and issue certificates.
    Cert {
        #[command(subcommand)]
        cmd: CertCommand,
    },
    /// Run a node on a simulated UPS through a power failure, end to end, and exit.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    /// Replace the cluster's plan with a plan file (TOML `[[stage]]` tables).
    Apply {
        file: PathBuf,
        /// Accept what is refused by default: hosts the cluster does not know (yet),
        /// `ack_timeout_s = 0`, `kill_power_delay_s = 0`.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
enum NodesCommand {
    /// Admit a node as a learner (it receives the log but does not vote).
    Join {
        /// Its Raft id ([cluster] id in its config).
        #[arg(long)]
        id: u64,
        /// Its name (the CN of its certificate).
        #[arg(long)]
        name: String,
        /// host:port of its API.
        #[arg(long)]
        address: String,
    },
    /// Make a member a voter.
    Promote { id: u64 },
    /// Make a voter a learner.
    Demote { id: u64 },
    /// Remove a member from the cluster.
    Remove { id: u64 },
}

#[derive(Subcommand, Debug)]
enum UpsCmd {
    /// Start a battery self test (the result shows as SELFTEST in `status --json`).
    SelfTest {
        #[arg(long)]
        ups: Option<String>,
    },
    /// Cut the UPS output after its grace delay; it returns when mains return
    /// (apcupsd --killpower). Everything on the UPS loses power.
    KillPower {
        #[arg(long)]
        ups: Option<String>,
        /// Required: this cuts power to everything on the UPS.
        #[arg(long)]
        confirm: bool,
    },
    /// Free a UPS name in the cluster: the next node to report a UPS of that name owns
    /// it (moving a UPS to another host, or ending a clash of two UPSes with one name).
    Release { name: String },
    /// Turn the UPS off after its grace delay; it stays off (apcupsd --power-off).
    PowerOff {
        #[arg(long)]
        ups: Option<String>,
        /// Required: this cuts power to everything on the UPS until someone turns it on.
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Change the simulated UPS; unset options are left as they are.
    Set(SimSetArgs),
}

#[derive(clap::Args, Debug)]
struct SimSetArgs {
    /// Which simulated UPS (needed when the node has several).
    #[arg(long)]
    ups: Option<String>,
    /// Mains fail: the UPS runs on battery.
    #[arg(long, conflicts_with = "on_line")]
    on_battery: bool,
    /// Mains return.
    #[arg(long)]
    on_line: bool,
    /// Set the charge, percent.
    #[arg(long)]
    charge: Option<f64>,
    /// Set the load, percent.
    #[arg(long)]
    load: Option<f64>,
    /// Force the UPS's low-battery signal on or off.
    #[arg(long, value_name = "on|off")]
    low_battery: Option<OnOff>,
    /// The UPS stops answering.
    #[arg(long, conflicts_with = "comm_ok")]
    comm_lost: bool,
    /// The UPS answers again.
    #[arg(long)]
    comm_ok: bool,
    #[arg(long, value_name = "on|off")]
    replace_battery: Option<OnOff>,
    #[arg(long, value_name = "on|off")]
    battery_present: Option<OnOff>,
    /// Charge drain on battery, percent per second.
    #[arg(long)]
    drain: Option<f64>,
    /// Start a UPS self test.
    #[arg(long)]
    self_test: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn b(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Create a new cluster CA (ca.pem, ca.key) in DIR.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A name for the cluster, shown in the CA's subject.
        #[arg(long, default_value = "upsilon")]
        cluster: String,
    },
    /// Issue NAME.pem and NAME.key in DIR, signed by DIR's CA.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// node (an upsilond: Raft and its own reports), operator (membership, plan, UPS
        /// commands, revocation), viewer (read only) or bridge (the legacy bridge).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Extra DNS names or IP addresses the node answers on (repeatable).
        #[arg(long = "san", value_name = "NAME_OR_IP")]
        sans: Vec<String>,
        /// Validity in days (1 to 36500).
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Print a certificate's name, role, serial and validity.
    Show { file: PathBuf },
    /// Put a certificate on the cluster's deny list: every node refuses it from now on
    /// (a lost laptop, a retired host). Needs an operator certificate.
    Revoke {
        /// The certificate file (its serial is read from it).
        #[arg(conflicts_with = "serial", required_unless_present = "serial")]
        file: Option<PathBuf>,
        /// The serial in hex, as `upsilon cert show` prints it.
        #[arg(long)]
        serial: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn read_identity(file: &std::path::Path) -> anyhow::Result<pki::Identity> {
    let certs = pki::load_certs(file)?;
    pki::identity(&certs[0]).map_err(|e| anyhow!("{}: {e}", file.display()))
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upsilon: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("upsilon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn power(
    opts: &ClientOptions,
) -> anyhow::Result<PowerServiceClient<tonic::transport::Channel>> {
    let ch = client::connect(opts).await?;
    Ok(PowerServiceClient::new(ch))
}

async fn fetch_status(opts: &ClientOptions) -> anyhow::Result<pb::StatusReply> {
    Ok(power(opts)
        .await?
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(rpc_err(opts))?
        .into_inner())
}

fn rpc_err(opts: &ClientOptions) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow!(client::explain_status(&s, &opts.endpoint))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Command::Status { json } => {
            let opts = cli.conn.resolve()?;
            let reply = fetch_status(&opts).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::status_json(&reply))?
                );
            } else {
                print!("{}", output::status_table(&reply));
            }
        }
        Command::Watch { json } => {
            let opts = cli.conn.resolve()?;
            let mut stream = power(&opts)
                .await?
                .watch(pb::WatchRequest {})
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            let mut last_line = String::new();
            while let Some(item) = stream.next().await {
                let upd = item.map_err(rpc_err(&opts))?;
                match upd.update {
                    Some(pb::watch_update::Update::Event(e)) => {
                        if json {
                            println!("{}", serde_json::json!({"event": output::event_json(&e)}));
                        } else {
                            println!("{}", output::event_line(&e));
                        }
                    }
                    Some(pb::watch_update::Update::Status(s)) => {
                        if json {
                            println!("{}", serde_json::json!({"status": output::status_json(&s)}));
                        } else {
                            let line = s
                                .ups
                                .iter()
                                .map(|u| {
                                    format!(
                                        "{} {} charge {} runtime {}",
                                        u.ups_name,
                                        u.status_text,
                                        u.charge_percent
                                            .map_or("-".into(), |c| format!("{c:.0} %")),
                                        u.runtime_seconds
                                            .map_or("-".into(), |r| format!("{:.1} min", r / 60.0))
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; ");
                            let pending = s
                                .pending
                                .map(|p| output::action_kind(p.kind))
                                .unwrap_or("?");
                            let line = format!("status: {line}; action: {pending}");
                            // Only print when something other than the drain changed.
                            let key: String =
                                line.chars().filter(|c| !c.is_ascii_digit()).collect();
                            if key != last_line {
                                println!("{line}");
                                last_line = key;
                            }
                        }
                    }
                    None => {}
                }
            }
            eprintln!("upsilon: {} closed the watch stream", opts.endpoint);
        }
        Command::Events { limit, json } => {
            let opts = cli.conn.resolve()?;
            let reply = power(&opts)
                .await?
                .list_events(pb::ListEventsRequest { limit })
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            for e in &reply.events {
                if json {
                    println!("{}", output::event_json(e));
                } else {
                    println!("{}", output::event_line(e));
                }
            }
        }
        Command::Plan {
            cmd: Some(PlanCommand::Apply { file, force }),
            ..
        } => {
            let opts = cli.conn.resolve()?;
            let toml = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if toml.len() > upsilon_node::replicated::plan::MAX_PLAN_BYTES {
                anyhow::bail!(
                    "{} is {} bytes; a plan may be at most {} bytes",
                    file.display(),
                    toml.len(),
                    upsilon_node::replicated::plan::MAX_PLAN_BYTES
                );
            }
            let source = file.display().to_string();
            let (reply, _) = client::on_leader(&opts, |ch| {
                let req = pb::SetPlanRequest {
                    toml: toml.clone(),
                    source: source.clone(),
                    force,
                };
                async move { AdminServiceClient::new(ch).set_plan(req).await }
            })
            .await
            .map_err(|e| anyhow!(e))?;
            for w in &reply.warnings {
                eprintln!("warning: {w}");
            }
            println!("plan set: {}", reply.stages.join(" -> "));
        }
        Command::Plan { cmd: None, json } => {
            let opts = cli.conn.resolve()?;
            let p = power(&opts)
                .await?
                .get_plan(pb::GetPlanRequest::default())
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&output::plan_json(&p))?);
            } else {
                print!("{}", output::plan_text(&p));
            }
        }
        Command::Shutdown { assume_outage, .. } => {
            let opts = cli.conn.resolve()?;
            let p = power(&opts)
                .await?
                .get_plan(pb::GetPlanRequest {
                    replay: true,
                    assume_outage,
                })
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            if !p.has_plan {
                anyhow::bail!("the cluster has no plan: set one with `upsilon plan apply FILE`");
            }
            println!(
                "dry run (nothing is changed; acknowledgements assumed prompt, UPS readings frozen):"
            );
            for l in &p.replay {
                println!("  {l}");
            }
        }
        Command::Nodes { cmd: None, json } => {
            let opts = cli.conn.resolve()?;
            let s = fetch_status(&opts).await?;
            if json {
                let v = output::status_json(&s);
                let out = serde_json::json!({"nodes": v["nodes"], "cluster": v["cluster"]});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", output::nodes_table(&s.nodes, s.generated_at_unix_ms));
                match s.cluster.as_ref().filter(|c| c.enabled) {
                    Some(c) => print!("{}", output::cluster_line(c)),
                    None => println!("(node {} is standalone: no [cluster] section)", s.node_name),
                }
            }
        }
        Command::Nodes { cmd: Some(cmd), .. } => {
            let opts = cli.conn.resolve()?;
            let (reply, _) = client::on_leader(&opts, |ch| {
                let cmd = cmd.clone();
                async move {
                    let mut admin = AdminServiceClient::new(ch);
                    match cmd {
                        NodesCommand::Join { id, name, address } => {
                            admin
                                .join_node(pb::JoinNodeRequest {
                                    id,
                                    name,
                                    address,
                                    incarnation: 0,
                                })
                                .await
                        }
                        NodesCommand::Promote { id } => {
                            admin
                                .set_voter(pb::SetVoterRequest { id, voter: true })
                                .await
                        }
                        NodesCommand::Demote { id } => {
                            admin
                                .set_voter(pb::SetVoterRequest { id, voter: false })
                                .await
                        }
                        NodesCommand::Remove { id } => {
                            admin.remove_node(pb::RemoveNodeRequest { id }).await
                        }
                    }
                }
            })
            .await
            .map_err(|e| anyhow!(e))?;
            println!("voters:   {}", reply.voters.join(", "));
            let learners = if reply.learners.is_empty() {
                "-".to_string()
            } else {
                reply.learners.join(", ")
            };
            println!("learners: {learners}");
        }
        Command::Sim {
            cmd: SimCommand::Set(a),
        } => {
            let opts = cli.conn.resolve()?;
            let ch = client::connect(&opts).await?;
            let req = pb::SimSetRequest {
                ups_name: a.ups.unwrap_or_default(),
                on_battery: if a.on_battery {
                    Some(true)
                } else if a.on_line {
                    Some(false)
                } else {
                    None
                },
                charge_percent: a.charge,
                load_percent: a.load,
                low_battery: a.low_battery.map(OnOff::b),
                comm_lost: if a.comm_lost {
                    Some(true)
                } else if a.comm_ok {
                    Some(false)
                } else {
                    None
                },
                replace_battery: a.replace_battery.map(OnOff::b),
                battery_present: a.battery_present.map(OnOff::b),
                drain_percent_per_second: a.drain,
                start_self_test: a.self_test,
            };
            let reply = AdminServiceClient::new(ch)
                .sim_set(req)
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            println!("{}: {}", reply.ups_name, reply.state);
        }
        Command::Ups {
            cmd: UpsCmd::Release { name },
        } => {
            let opts = cli.conn.resolve()?;
            let (reply, _) = client::on_leader(&opts, |ch| {
                let req = pb::ReleaseUpsRequest {
                    ups_name: name.clone(),
                };
                async move { AdminServiceClient::new(ch).release_ups(req).await }
            })
            .await
            .map_err(|e| anyhow!(e))?;
            println!(
                "{name}: released (was owned by {}); the next node to report it owns it",
                reply.previous_owner
            );
        }
        Command::Ups { cmd } => {
            let (ups, kind, confirmed) = match cmd {
                UpsCmd::Release { .. } => unreachable!("handled above"),
                UpsCmd::SelfTest { ups } => (ups, pb::UpsCommandKind::SelfTest, true),
                UpsCmd::KillPower { ups, confirm } => (ups, pb::UpsCommandKind::KillPower, confirm),
                UpsCmd::PowerOff { ups, confirm } => (ups, pb::UpsCommandKind::PowerOff, confirm),
            };
            if !confirmed {
                anyhow::bail!(
                    "this cuts power to everything on the UPS; add --confirm if that is what you want"
                );
            }
            let opts = cli.conn.resolve()?;
            let ch = client::connect(&opts).await?;
            let reply = AdminServiceClient::new(ch)
                .ups_command(pb::UpsCommandRequest {
                    ups_name: ups.unwrap_or_default(),
                    kind: kind as i32,
                })
                .await
                .map_err(rpc_err(&opts))?
                .into_inner();
            println!("{}: {}", reply.ups_name, reply.result);
        }
        Command::Cert { cmd } => match cmd {
            CertCommand::Init { dir, cluster } => {
                let p = pki::init_ca(&dir, &cluster)?;
                println!("created CA {} (keep ca.key private)", p.display());
            }
            CertCommand::Issue {
                dir,
                name,
                role,
                sans,
                days,
            } => {
                if !(1..=pki::MAX_DAYS).contains(&days) {
                    return Err(anyhow!("--days must be between 1 and {}", pki::MAX_DAYS));
                }
                let (c, k) = pki::issue(&dir, &IssueRequest::new(&name, role, sans, days))
                    .with_context(|| format!("cannot issue a certificate for {name}"))?;
                println!(
                    "issued {} certificate {} and key {}",
                    role,
                    c.display(),
                    k.display()
                );
            }
            CertCommand::Show { file } => {
                let id = read_identity(&file)?;
                let date = |t: i64| {
                    upsilon_node::time::format_date(upsilon_node::time::from_unix_ms(
                        t.saturating_mul(1000),
                    ))
                };
                println!("name:       {}", id.name);
                println!("role:       {}", id.role);
                println!("serial:     {}", id.serial);
                println!("not before: {}", date(id.not_before_unix));
                println!("not after:  {}", date(id.not_after_unix));
            }
            CertCommand::Revoke {
                file,
                serial,
                reason,
            } => {
                let (serial, name) = match (file, serial) {
                    (Some(file), _) => {
                        let id = read_identity(&file)?;
                        (id.serial, id.name)
                    }
                    (None, Some(s)) => (
                        pki::normalize_serial(&s).map_err(|e| anyhow!(e))?,
                        String::new(),
                    ),
                    (None, None) => unreachable!("clap requires --cert or --serial"),
                };
                let opts = cli.conn.resolve()?;
                let (reply, _) = client::on_leader(&opts, |ch| {
                    let req = pb::RevokeCertRequest {
                        serial: serial.clone(),
                        name: name.clone(),
                        reason: reason.clone(),
                    };
                    async move { AdminServiceClient::new(ch).revoke_cert(req).await }
                })
                .await
                .map_err(|e| anyhow!(e))?;
                println!(
                    "revoked {serial}{}; the cluster's deny list holds {} certificate(s)",
                    if name.is_empty() {
                        String::new()
                    } else {
                        format!(" ({name})")
                    },
                    reply.revoked
                );
            }
        },
        Command::Demo(args) => return demo::run(args).await,
    }
    Ok(ExitCode::SUCCESS)
}
