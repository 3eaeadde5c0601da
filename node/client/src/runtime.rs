//! What every binary's `main` shares: the tokio runtime, built the one way, with an
//! error that names the program instead of a panic, and the `--check-config` verdict.

use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;

/// How many threads run the tasks.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    /// The calling thread only (short-lived commands).
    One,
    /// A pool of this many workers.
    Pool(usize),
    /// A pool of one worker per core (tokio's default).
    PerCore,
}

/// A runtime with every driver on. On failure, says so on stderr as `program` and
/// hands back the exit code to return.
pub fn start(program: &str, threads: Threads) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Pool(_) | Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Threads::Pool(n) = threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("{program}: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The verdict of `--check-config FILE`: `FILE: OK (summary)` on stdout and success, or
/// the error on stderr as `program` and exit status 2 (a configuration error).
pub fn config_checked(
    program: &str,
    path: &Path,
    outcome: Result<String, impl Display>,
) -> ExitCode {
    match outcome {
        Ok(summary) => {
            println!("{}: OK ({summary})", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(2)
        }
    }
}
