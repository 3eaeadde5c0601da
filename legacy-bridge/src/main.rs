//! `upsilon-bridge`: serves the cluster to unmodified apcupsd machines over NIS and
//! makes them part of the staged shutdown (`--config bridge.toml`); `query` reads any
//! apcupsd NIS server the way `apcaccess` does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use upsilon_client::stop::Stop;
use upsilon_legacy_bridge::apcaccess::StatusText;
use upsilon_legacy_bridge::daemon::{self, config::BridgeConfig};
use upsilon_legacy_bridge::{net_client, nis};

#[derive(Parser, Debug)]
#[command(
    name = "upsilon-bridge",
    version,
    about = "Serves an Upsilon cluster to unmodified apcupsd machines (NIS) and brings them into its staged shutdown"
)]
struct Args {
    /// The bridge's configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate a configuration file (and the certificate it names) and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask an apcupsd NIS server (default port 3551) for its status or events and
    /// print the reply the way `apcaccess` does; a status reply is checked.
    Query {
        /// HOST[:PORT]
        target: String,
        #[arg(default_value = "status", value_parser = ["status", "events"])]
        what: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPSILON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Loads the config and checks the certificate (readable, role `bridge`) and that
/// every NIS address can be bound now. Returns the config and the bridge's name.
fn check(path: &Path) -> Result<(BridgeConfig, String), String> {
    let cfg = BridgeConfig::load(path).map_err(|e| e.to_string())?;
    let at = |e: String| format!("{}: [tls]: {e}", path.display());
    upsilon_client::pki::load_certs(&cfg.tls.ca).map_err(|e| at(e.to_string()))?;
    upsilon_client::tls::client_config(&cfg.tls.ca, Some((&cfg.tls.cert, &cfg.tls.key)))
        .map_err(|e| at(e.to_string()))?;
    let certs = upsilon_client::pki::load_certs(&cfg.tls.cert).map_err(|e| at(e.to_string()))?;
    let id = upsilon_client::pki::identity(&certs[0])
        .map_err(|e| at(format!("{}: {e}", cfg.tls.cert.display())))?;
    if id.role != upsilon_client::pki::Role::Bridge {
        return Err(at(format!(
            "{} has role {}; a bridge needs a certificate with role bridge (`upsilon cert issue --role bridge {}`)",
            cfg.tls.cert.display(),
            id.role,
            id.name
        )));
    }
    Ok((cfg, id.name))
}

fn check_bind(path: &Path, cfg: &BridgeConfig) -> Result<(), String> {
    let own = cfg.hosts.iter().filter_map(|h| h.listen);
    for addr in cfg.nis.listen.iter().copied().chain(own) {
        std::net::TcpListener::bind(addr).map_err(|e| {
            format!(
                "{}: cannot listen on {addr}: {e} (is a bridge, apcupsd or upsilond's own NIS using it?)",
                path.display()
            )
        })?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Query { target, what }) = args.command {
        return query_main(&target, &what);
    }
    if let Some(path) = args.check_config {
        let outcome = check(&path)
            .and_then(|(c, n)| check_bind(&path, &c).map(|_| (c, n)))
            .map(|(cfg, name)| {
                format!(
                    "bridge {name}, {} legacy host(s), {} node(s) listed",
                    cfg.hosts.len(),
                    cfg.bridge.nodes.len()
                )
            });
        return upsilon_client::runtime::config_checked("upsilon-bridge", &path, outcome);
    }
    let Some(path) = args.config else {
        eprintln!("upsilon-bridge: give --config FILE (or --check-config FILE, or `query HOST`)");
        return ExitCode::from(2);
    };
    init_tracing();
    let (cfg, name) = match check(&path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("upsilon-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match upsilon_client::runtime::start(
        "upsilon-bridge",
        upsilon_client::runtime::Threads::Pool(2),
    ) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = rt.block_on(async move {
        let (tx, rx) = tokio::sync::broadcast::channel(1);
        let run = tokio::spawn(daemon::run(cfg, name, Stop::new(rx)));
        let signals = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
                }
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => match r {
                Ok(Err(e)) => { eprintln!("upsilon-bridge: {e}"); 1 }
                _ => 0,
            },
            _ = signals => {
                tracing::info!("stopping");
                let _ = tx.send(());
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), run).await;
                0
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

fn query_main(target: &str, what: &str) -> ExitCode {
    let target = net_client::with_default_port(target);
    let rt = match upsilon_client::runtime::start(
        "upsilon-bridge",
        upsilon_client::runtime::Threads::One,
    ) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(query(&target, what)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upsilon-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn query(target: &str, what: &str) -> Result<String, String> {
    let msgs = net_client::request(target, what.as_bytes(), nis::READ_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let text: String = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    if what == "status" {
        StatusText::parse(text.as_bytes())
            .map_err(|e| format!("the reply from {target} is not apcupsd status text: {e}"))?;
    }
    Ok(text)
}
