//! `upsilond`: the Upsilon node daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use upsilon_client::stop::Stop;
use upsilon_core::config::NodeConfig;

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
    /// Tell the cluster this host is about to halt, and exit (run by the shutdown hook
    /// `upsilon-halted.service` after upsilond stopped; needs --config).
    #[arg(long, requires = "config")]
    report_halted: bool,
    /// How long --report-halted tries, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        requires = "report_halted"
    )]
    report_timeout: u64,
}

/// The default log filter.
const DEFAULT_LOG: &str = "info,openraft=error";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPSILON_LOG")
        // openraft logs whole Raft structures (kilobytes a line) and a warning per
        // failed heartbeat: errors only; the node says what matters in its own words
        // (leadership, peers down). `UPSILON_LOG=info,openraft=info` brings them back.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
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
    let files = upsilon_client::tls::TlsFiles {
        ca: cfg.tls.ca.clone(),
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
    };
    let (_, ident) = upsilon_client::tls::server_config(&files)
        .map_err(|e| format!("{}: [tls]: {e}", path.display()))?;
    upsilon_node::node::check_name(&cfg, &ident).map_err(|e| format!("{}: {e}", path.display()))?;
    cfg.check_writable()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    upsilon_node::driver::check_all(&cfg).map_err(|e| e.to_string())?;
    // The address must be free now (an apcupsd or another upsilond may hold it).
    std::net::TcpListener::bind(cfg.node.listen).map_err(|e| {
        format!(
            "{}: node.listen: cannot listen on {}: {e} (is upsilond already running, or another program using the port?)",
            path.display(),
            cfg.node.listen
        )
    })?;
    Ok(cfg)
}

/// `--report-halted`: one try, bounded, on a small runtime of its own.
fn report_halted(path: &std::path::Path, deadline: Duration) -> ExitCode {
    let cfg = match NodeConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upsilond: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match upsilon_client::runtime::start("upsilond", upsilon_client::runtime::Threads::One)
    {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(upsilon_node::halted::report(&cfg, deadline)) {
        Ok(at) => {
            println!(
                "upsilond: told the cluster (leader {at}) that {} halts",
                cfg.node.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upsilond: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        let outcome = check(&path).map(|cfg| {
            format!(
                "node {}, {} UPS, executor {} mode",
                cfg.node.name,
                cfg.ups.len(),
                cfg.executor.mode.as_str()
            )
        });
        return upsilon_client::runtime::config_checked("upsilond", &path, outcome);
    }
    init_tracing();
    let path = args.config.expect("clap requires --config");
    // A fault file on a build that cannot read it would be a test silently not
    // testing: say so and stop, rather than run without the faults asked for.
    if std::env::var_os(upsilon_client::fault::FAULT_FILE_VAR).is_some()
        && !upsilon_client::fault::ENABLED
    {
        eprintln!(
            "upsilond: {} is set, but this build has no fault injection (a test-only feature): unset it, or build with `--features upsilon-node/fault-injection` (tests/run-all.sh does)",
            upsilon_client::fault::FAULT_FILE_VAR
        );
        return ExitCode::from(2);
    }
    if args.report_halted {
        return report_halted(&path, Duration::from_secs(args.report_timeout));
    }
    let cfg = match NodeConfig::load(&path).and_then(|c| {
        // Each driver checks its own keys, so a typo in one is a config error too.
        upsilon_node::driver::check_all(&c)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upsilond: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the blocked mask and only
    // the signal thread receives SIGTERM/SIGINT.
    let signals = StopSignals::start();
    let rt = match upsilon_client::runtime::start(
        "upsilond",
        upsilon_client::runtime::Threads::Pool(cfg.node.worker_threads),
    ) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let fatal = upsilon_node::fatal::Fatal::new();
    upsilon_node::fatal::install_panic_hook(fatal.clone());
    let code = rt.block_on(async move {
        let (tx, rx) = tokio::sync::broadcast::channel(1);
        let node =
            match upsilon_node::node::start_with(cfg, Stop::new(rx), fatal.clone()).await {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("upsilond: {e}");
                    // A damaged store is for an operator to look at: the supervisor's
                    // "do not restart in a loop" status, as for a stopped Raft core.
                    return match e {
                        upsilon_node::node::StartError::DamagedStore(_) => {
                            upsilon_node::fatal::EXIT_FATAL
                        }
                        _ => 1,
                    };
                }
            };
        let code = tokio::select! {
            _ = signals.received() => {
                tracing::info!("stopping");
                node.shared.log_event(
                    upsilon_core::events::EventKind::Notice,
                    "",
                    "upsilond shutdown succeeded",
                );
                0
            }
            why = fatal.raised() => {
                eprintln!("upsilond: {why}");
                upsilon_node::fatal::EXIT_FATAL
            }
        };
        // Whatever happens below, the process is gone in bounded time: a task stuck on a
        // full disk or a dead device (even one holding every runtime thread) must not
        // keep it, and its storage lock, alive.
        exit_after(STOP_GRACE + Duration::from_secs(2), code);
        // Never dropped: sled's Drop flushes again and, on a failing disk, waits forever.
        // Every write Raft relies on was flushed before it was acknowledged.
        std::mem::forget(node.shared.clone());
        let _ = tx.send(());
        if tokio::time::timeout(STOP_GRACE, node.join()).await.is_err() {
            tracing::error!(
                "tasks did not stop within {STOP_GRACE:?}; exiting anyway (nothing is lost: every Raft write is flushed before it is acknowledged)"
            );
        }
        code
    });
    // Never wait for blocking work that cannot finish (a tty close, a flush on a full
    // disk); exiting releases the storage lock.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(i32::from(code));
}

/// How long a stopping node waits for its tasks.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Exits the process with `code` after `after`, from a plain thread (no runtime needed).
fn exit_after(after: Duration, code: u8) {
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            eprintln!("upsilond: did not stop within {after:?}; exiting now");
            std::process::exit(i32::from(code));
        });
}

/// SIGTERM and SIGINT, received by a dedicated thread with `sigwait` rather than by the
/// runtime: a runtime whose threads are all stuck (a storage call on a full disk) would
/// never see them. A second signal exits at once.
struct StopSignals {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl StopSignals {
    fn start() -> StopSignals {
        let (tx, rx) = tokio::sync::watch::channel(false);
        // SAFETY: plain libc calls on a local sigset; the mask is set before any other
        // thread is spawned.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = false;
                loop {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: `set` is a valid, initialised sigset.
                    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                        continue;
                    }
                    if seen {
                        eprintln!("upsilond: second signal {sig}: exiting now");
                        std::process::exit(1);
                    }
                    seen = true;
                    let _ = tx.send(true);
                }
            });
        StopSignals { rx }
    }

    async fn received(mut self) {
        let _ = self.rx.wait_for(|s| *s).await;
    }
}
