//! What every test stands on: the built binaries, free loopback ports, one real-process
//! test at a time per binary, and polling with a deadline.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `target/debug` (or whichever profile the tests were built with).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary; the README's test command builds them before the tests.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the integration tests (tests/run-all.sh does)",
        p.display()
    );
    p
}

/// A free loopback port (bound, then released), never one this process handed out
/// before: two ports asked for in a row must differ even though the first is not bound
/// yet.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the real-process tests of one test binary one at a time (they share the
/// machine's two cores and their timing matters); a test that panicked does not block
/// the rest.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks that something that must *not* happen does not, for the whole of `window`
/// (a second shutdown, a stage after a cancellation, comm lost before apcupsd's 20 s):
/// `ok` is polled every 100 ms and the first `Err` panics, saying `what` broke and when.
/// Where a later event proves the window over, wait for that event instead.
pub fn holds_for(window: Duration, what: &str, mut ok: impl FnMut() -> Result<(), String>) {
    let t0 = Instant::now();
    loop {
        if let Err(e) = ok() {
            panic!(
                "{what} broke {:?} into the {window:?} window: {e}",
                t0.elapsed()
            );
        }
        if t0.elapsed() >= window {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
