//! Rate-limited logging of repeated refusals: one line per reason per minute, with the
//! count since the last line, so that a client retrying in a loop (or a scan) cannot
//! fill the log, while the first refusal is always logged at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one reason is logged at most.
pub const EVERY: Duration = Duration::from_secs(60);

/// Reasons tracked at most (beyond, the table starts over).
const MAX_REASONS: usize = 1000;

/// Per-reason counters.
pub struct LogLimiter {
    by_reason: Mutex<Option<HashMap<String, (Instant, u64)>>>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogLimiter {
    pub const fn new() -> Self {
        LogLimiter {
            by_reason: Mutex::new(None),
        }
    }

    /// Counts one occurrence of `reason`; returns how many to report now (this one
    /// included), or None to stay quiet.
    pub fn note(&self, reason: &str) -> Option<u64> {
        self.note_at(reason, Instant::now())
    }

    fn note_at(&self, reason: &str, now: Instant) -> Option<u64> {
        let mut guard = self.by_reason.lock().expect("log limiter lock");
        let m = guard.get_or_insert_with(HashMap::new);
        if m.len() >= MAX_REASONS && !m.contains_key(reason) {
            m.clear();
        }
        match m.get_mut(reason) {
            None => {
                m.insert(reason.to_string(), (now, 0));
                Some(1)
            }
            Some((last, quiet)) if now.duration_since(*last) >= EVERY => {
                let n = *quiet + 1;
                *last = now;
                *quiet = 0;
                Some(n)
            }
            Some((_, quiet)) => {
                *quiet += 1;
                None
            }
        }
    }
}

/// " (N times in the last minute)" for a count above one, else nothing.
pub fn repeats(n: u64) -> String {
    if n > 1 {
        format!(
            " ({n} times since the last report, {}s ago at most)",
            EVERY.as_secs()
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_one_line_a_minute_with_the_count() {
        let l = LogLimiter::new();
        let t0 = Instant::now();
        assert_eq!(l.note_at("no certificate", t0), Some(1));
        for i in 1..=500 {
            assert_eq!(
                l.note_at("no certificate", t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another reason is not held back by the first.
        assert_eq!(l.note_at("expired", t0), Some(1));
        assert_eq!(l.note_at("no certificate", t0 + EVERY), Some(501));
        assert_eq!(
            l.note_at("no certificate", t0 + EVERY + Duration::from_secs(1)),
            None
        );
    }
}
