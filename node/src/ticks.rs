//! Shared wake-up times for the node's periodic loops. Every loop that waits "a period
//! or the next change" wakes at a multiple of its period counted from one process-wide
//! origin, so the loops of an idle node (staging, fallback, stale owners, liveness...)
//! wake the runtime once per instant together instead of once each at scattered times.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The next instant after now that is a whole number of `period`s from the origin.
pub fn next_tick(period: Duration) -> Instant {
    let origin = *ORIGIN.get_or_init(Instant::now);
    origin + after(Instant::now() - origin, period)
}

/// The first whole number of `period`s (at least 1 ms) after `elapsed`.
fn after(elapsed: Duration, period: Duration) -> Duration {
    let period_ns = period.as_nanos().max(1_000_000);
    let n = elapsed.as_nanos() / period_ns + 1;
    Duration::from_nanos(u64::try_from(n * period_ns).unwrap_or(u64::MAX))
}

/// Sleeps until [`next_tick`] of `period`.
pub async fn tick(period: Duration) {
    tokio::time::sleep_until(next_tick(period)).await
}

#[cfg(test)]
mod tests {
    use super::after;
    use std::time::Duration;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn loops_of_one_period_wake_together() {
        // Two loops that wait at different moments of one period wake at one instant.
        assert_eq!(after(MS(10), MS(500)), MS(500));
        assert_eq!(after(MS(499), MS(500)), MS(500));
        // Exactly on a tick: the next one, never now.
        assert_eq!(after(MS(500), MS(500)), MS(1000));
        // A longer period falls on the shorter one's instants.
        assert_eq!(after(MS(1200), MS(1000)), MS(2000));
        assert_eq!(after(MS(1200), MS(500)), MS(1500));
        // A zero period is taken as 1 ms, not a division by zero.
        assert_eq!(after(MS(7), Duration::ZERO), MS(8));
    }
}
