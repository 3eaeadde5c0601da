//! Graceful shutdown, passed down to every task (mini-redis style): one broadcast
//! sender owned by the node, one [`Shutdown`] listener per task.

use tokio::sync::broadcast;

/// Listens for the shutdown signal. Cheap to clone via [`Shutdown::resubscribe`].
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>) -> Self {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Waits until shutdown is signalled (returns at once if it already was).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }

    pub fn resubscribe(&self) -> Self {
        Shutdown {
            is_shutdown: self.is_shutdown,
            notify: self.notify.resubscribe(),
        }
    }
}
