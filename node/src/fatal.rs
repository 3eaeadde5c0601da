//! Fail fast: when something the node cannot run without has stopped (the Raft core
//! after a storage error, a panic in any task), the process says why and exits non-zero
//! so that its service manager restarts it, instead of running on as a zombie that still
//! answers `status`.
//!
//! - [`Fatal`]: the one-shot "the node must stop" signal, raised by any task, awaited by
//!   the daemon's main loop.
//! - [`install_panic_hook`]: a panic anywhere is logged in one line and raised as fatal
//!   (a panicking tokio task would otherwise die silently while the process lives on).
//! - [`catch_panics`]: runs code whose panics are expected and handled by the caller
//!   (sled on some corrupt files), without the hook raising them.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

/// Exit status for "stopped because something it needs failed" (EX_SOFTWARE).
pub const EXIT_FATAL: u8 = 70;

/// Raised once; later reasons are ignored (the first one is the cause).
#[derive(Debug, Clone)]
pub struct Fatal {
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Default for Fatal {
    fn default() -> Self {
        Self::new()
    }
}

impl Fatal {
    pub fn new() -> Self {
        Fatal {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Raises the signal with `why` (logged as an error).
    pub fn raise(&self, why: &str) {
        let first = self.tx.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(why.to_string());
            true
        });
        if first {
            tracing::error!("fatal: {why}; exiting so that the service manager restarts upsilond");
        }
    }

    /// The reason, once raised.
    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Waits until the signal is raised and returns its reason.
    pub async fn raised(&self) -> String {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // Unreachable while `self` holds the sender; wait forever then.
                std::future::pending::<()>().await;
            }
        }
    }
}

static PROCESS_FATAL: OnceLock<Fatal> = OnceLock::new();

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Logs every panic in one line and raises `fatal` (the process-wide signal), except
/// inside [`catch_panics`].
pub fn install_panic_hook(fatal: Fatal) {
    let _ = PROCESS_FATAL.set(fatal);
    std::panic::set_hook(Box::new(|info| {
        if CATCHING.with(Cell::get) {
            return;
        }
        let what = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let why = format!("internal error (a bug, please report it): {what}{at}");
        match PROCESS_FATAL.get() {
            Some(f) => f.raise(&why),
            None => eprintln!("upsilond: {why}"),
        }
    }));
}

/// Runs `f`, returning its panic as an error message instead of unwinding, without the
/// panic hook logging or raising it.
pub fn catch_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_see_it() {
        let f = Fatal::new();
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.raised().await })
        };
        f.raise("storage full");
        f.raise("later");
        assert_eq!(waiter.await.unwrap(), "storage full");
        assert_eq!(f.reason().as_deref(), Some("storage full"));
    }

    #[test]
    fn caught_panics_are_errors() {
        let r: Result<(), String> = catch_panics(|| panic!("sled: bad page"));
        assert_eq!(r.unwrap_err(), "sled: bad page");
        assert_eq!(catch_panics(|| 5).unwrap(), 5);
    }
}
