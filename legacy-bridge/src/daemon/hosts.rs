//! What the bridge knows of its legacy hosts between polls, and the pure rule that
//! turns it into the state the cluster should record for each ([`desired`]).
//!
//! The bridge never keeps a decision of its own: each state it reports follows from
//! the replicated record (told? halted? its stage started?) and what this process saw
//! (when the host last polled, whether it fetched the shutdown bits). A restarted or
//! second bridge therefore resumes where the record stands: a host already told is not
//! told again, and a told host that never polls again is still declared halted once
//! it has been silent for `halt_silence` since this bridge started.

use std::time::Duration;

use upsilon_core::replicated::legacy::LegacyState;

/// What one bridge process saw of a host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Time since its last status request (since this bridge started, if none).
    pub silence: Duration,
    /// It fetched a status carrying the shutdown bits from this process.
    pub fetched_bits: bool,
}

/// The bridge's timing (`[bridge]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub halt_silence: Duration,
    pub silent_after: Duration,
}

/// The state the cluster should record for a host whose record says `recorded`, while
/// its stage has (`shutting_down`) or has not started.
pub fn desired(recorded: LegacyState, shutting_down: bool, seen: Seen, t: Timing) -> LegacyState {
    use LegacyState::*;
    if shutting_down {
        let told = seen.fetched_bits || matches!(recorded, Told | Halted);
        if told {
            if recorded == Halted || seen.silence >= t.halt_silence {
                Halted
            } else {
                Told
            }
        } else if seen.silence >= t.silent_after {
            // Its stage started but it never came to fetch the bits: the stage's ack
            // timeout moves the plan on; the record says why.
            Silent
        } else {
            Polling
        }
    } else if seen.silence >= t.silent_after {
        // A halted host stays halted until it polls again.
        if recorded == Halted { Halted } else { Silent }
    } else {
        Polling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LegacyState::*;

    const T: Timing = Timing {
        halt_silence: Duration::from_secs(30),
        silent_after: Duration::from_secs(300),
    };

    fn seen(silence_s: u64, fetched_bits: bool) -> Seen {
        Seen {
            silence: Duration::from_secs(silence_s),
            fetched_bits,
        }
    }

    #[test]
    fn a_host_outside_a_shutdown_is_polling_or_silent() {
        assert_eq!(desired(Polling, false, seen(5, false), T), Polling);
        assert_eq!(desired(Polling, false, seen(300, false), T), Silent);
        assert_eq!(desired(Silent, false, seen(1, false), T), Polling);
        // Halted stays halted until it polls again, then it is back.
        assert_eq!(desired(Halted, false, seen(900, false), T), Halted);
        assert_eq!(desired(Halted, false, seen(1, false), T), Polling);
    }

    #[test]
    fn told_once_it_fetched_the_bits_then_halted_after_the_silence() {
        assert_eq!(desired(Polling, true, seen(1, false), T), Polling);
        assert_eq!(desired(Polling, true, seen(0, true), T), Told);
        assert_eq!(desired(Told, true, seen(29, true), T), Told);
        assert_eq!(desired(Told, true, seen(30, true), T), Halted);
        // Halted is final for the stage even if it polls once more.
        assert_eq!(desired(Halted, true, seen(1, true), T), Halted);
    }

    #[test]
    fn a_restarted_bridge_resumes_from_the_record() {
        // Told before the restart: not told again, halted after the silence counted
        // from this bridge's start.
        assert_eq!(desired(Told, true, seen(10, false), T), Told);
        assert_eq!(desired(Told, true, seen(31, false), T), Halted);
    }

    #[test]
    fn a_host_that_never_fetches_its_bits_is_silent_not_halted() {
        assert_eq!(desired(Polling, true, seen(299, false), T), Polling);
        assert_eq!(desired(Polling, true, seen(300, false), T), Silent);
    }
}
