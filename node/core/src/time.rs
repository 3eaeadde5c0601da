//! Wall-clock helpers, once: Unix milliseconds (what every replicated timestamp is) and
//! apcupsd's local date format. The CLI uses them too.

use std::time::{Duration, SystemTime};

/// `t` as Unix milliseconds (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix milliseconds as a time (the epoch for negative values).
pub fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// Microseconds since the Unix epoch (the latency trace points' clock).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// apcupsd 3.14.8+'s date format: `%Y-%m-%d %H:%M:%S %z` in local time.
pub fn format_date(at: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Local> = at.into();
    dt.format("%Y-%m-%d %H:%M:%S %z").to_string()
}

/// Unix milliseconds as apcupsd's local date, or `-` for none (0 or less).
pub fn local_date_ms(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    format_date(from_unix_ms(unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_round_trips_and_clamps() {
        let t = from_unix_ms(1_780_000_000_123);
        assert_eq!(unix_ms(t), 1_780_000_000_123);
        assert_eq!(from_unix_ms(-5), SystemTime::UNIX_EPOCH);
        assert_eq!(local_date_ms(0), "-");
        assert!(now_ms() > 1_700_000_000_000);
    }
}
