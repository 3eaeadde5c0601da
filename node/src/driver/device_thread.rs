//! A blocking device on a thread of its own: the USB HID and Modbus drivers' protocol
//! code is synchronous (rusb and a serial line block), so it never runs on the async
//! runtime's workers. The driver sends closures to the thread and awaits their
//! results; between jobs the thread runs the device's `idle` step (the HID driver reads
//! the interrupt endpoint there), which wakes the poll loop when the UPS announced a
//! change by itself.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::DriverError;

type Job<D> = Box<dyn FnOnce(&mut D) + Send>;

/// What a device does between jobs: `Some(true)` when the UPS announced a change,
/// `Some(false)` when it waited and nothing came, `None` when it has nothing to wait
/// for (the thread then sleeps until the next job). It may block for about
/// `IDLE_SLICE` (a job waits that long at most).
pub trait Idle: Send + 'static {
    fn idle(&mut self) -> Option<bool>;
}

/// How long one idle step may block, so a job never waits longer than this.
pub const IDLE_SLICE: Duration = Duration::from_millis(100);

/// After a change, how long the thread waits for the poll it triggered before the next
/// idle step.
const AFTER_CHANGE: Duration = Duration::from_millis(50);

/// The handle the async driver keeps; dropping it ends the thread after its current step.
pub struct DeviceThread<D> {
    jobs: mpsc::Sender<Job<D>>,
    changed: Arc<Notify>,
}

impl<D: Idle> DeviceThread<D> {
    /// Starts the thread owning `device`.
    pub fn spawn(name: &str, mut device: D) -> Result<Self, DriverError> {
        let (jobs, rx) = mpsc::channel::<Job<D>>();
        let changed = Arc::new(Notify::new());
        let wake = changed.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // How long to wait for a job before the next idle step: none while the
                // device has something to wait for (the idle step blocks instead), a
                // little after a change (the poll it triggers is on its way: it must
                // not wait behind another blocking idle step), a slice when idle has
                // nothing to do.
                let mut wait = Duration::ZERO;
                loop {
                    let next = if wait.is_zero() {
                        rx.try_recv().map_err(|e| match e {
                            mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                            mpsc::TryRecvError::Disconnected => {
                                mpsc::RecvTimeoutError::Disconnected
                            }
                        })
                    } else {
                        rx.recv_timeout(wait)
                    };
                    match next {
                        Ok(job) => {
                            job(&mut device);
                            wait = Duration::ZERO;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => match device.idle() {
                            Some(true) => {
                                wake.notify_one();
                                wait = AFTER_CHANGE;
                            }
                            Some(false) => wait = Duration::ZERO,
                            None => wait = IDLE_SLICE,
                        },
                    }
                }
            })
            .map_err(|e| DriverError::Setup(format!("cannot start the {name} thread: {e}")))?;
        Ok(DeviceThread { jobs, changed })
    }

    /// Runs `f` on the device's thread and returns its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut D) -> R + Send + 'static,
    ) -> Result<R, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |d: &mut D| {
                let _ = tx.send(f(d));
            }))
            .map_err(|_| DriverError::CommLost("the device thread has stopped".into()))?;
        rx.await
            .map_err(|_| DriverError::CommLost("the device thread has stopped".into()))
    }

    /// Waits up to `max` for the device to announce a change; true means "poll now".
    pub async fn wait_for_change(&self, max: Duration) -> bool {
        tokio::time::timeout(max, self.changed.notified())
            .await
            .is_ok()
    }
}
