//! Stopping the node's tasks (mini-redis style): one broadcast sender owned by the node,
//! one [`Stop`] listener per task. Named so that it is never confused with shutting a
//! host down, which is what the rest of this program is about.

use tokio::sync::broadcast;

/// Listens for the node's stop signal. Cheap to clone via [`Stop::resubscribe`].
#[derive(Debug)]
pub struct Stop {
    stopped: bool,
    notify: broadcast::Receiver<()>,
}

impl Stop {
    pub fn new(notify: broadcast::Receiver<()>) -> Self {
        Stop {
            stopped: false,
            notify,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Waits until the stop is signalled (returns at once if it already was).
    pub async fn recv(&mut self) {
        if self.stopped {
            return;
        }
        let _ = self.notify.recv().await;
        self.stopped = true;
    }

    pub fn resubscribe(&self) -> Self {
        Stop {
            stopped: self.stopped,
            notify: self.notify.resubscribe(),
        }
    }
}
