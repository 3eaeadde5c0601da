//! The tokio runtime every binary's `main` starts, built the one way, with an error
//! that names the program instead of a panic.

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
