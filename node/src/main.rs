//! `upsilond`: the Upsilon node daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use upsilon_node::config::NodeConfig;
use upsilon_node::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(
    name = "upsilond",
    version,
    about = "Upsilon node daemon: watches UPSes, decides and carries out shutdowns, serves the mTLS API"
)]
struct Args {
    /// The node's configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate a configuration file (and the files it names) and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPSILON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr (journald and service managers capture it), colours only on a TTY.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Parses the config and every file it points at, without starting anything.
fn check(path: &std::path::Path) -> Result<NodeConfig, String> {
    let cfg = NodeConfig::load(path).map_err(|e| e.to_string())?;
    let files = upsilon_node::tls::TlsFiles {
        ca: cfg.tls.ca.clone(),
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
    };
    upsilon_node::tls::server_config(&files)
        .map_err(|e| format!("{}: [tls]: {e}", path.display()))?;
    for u in &cfg.ups {
        upsilon_node::driver::open(u)
            .map_err(|e| format!("{}: UPS {:?}: {e}", path.display(), u.name))?;
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match check(&path) {
            Ok(cfg) => {
                println!(
                    "{}: OK (node {}, {} UPS, executor {} mode)",
                    path.display(),
                    cfg.node.name,
                    cfg.ups.len(),
                    cfg.executor.mode.as_str()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("upsilond: {e}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing();
    let path = args.config.expect("clap requires --config");
    let cfg = match NodeConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upsilond: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upsilond: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::broadcast::channel(1);
        let node = match upsilon_node::node::start(cfg, Shutdown::new(rx)).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("upsilond: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("stopping");
        node.shared.log_event(
            upsilon_node::events::EventKind::Notice,
            "",
            "upsilond shutdown succeeded",
        );
        let _ = tx.send(());
        node.join().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
