//! apcupsd's single-node shutdown rules as one pure function.
//!
//! [`shutdown_rule`] reads the thresholds ([`Policy`]) and the facts the monitor keeps
//! ([`RuleInputs`]) and says whether a shutdown must start and why. It does no I/O and
//! reads no clock: `now` is an argument, so every rule is tested directly. The order of
//! the checks is apcupsd 3.14's `do_action` (docs/compat.md, "apcupsd.conf and the shutdown rules").

use std::time::{Duration, Instant};

use crate::reading::UpsReading;

/// How long a condition must hold before apcupsd acts on it (LOWBATT, BATTERYLEVEL,
/// MINUTES): a short glitch in one reading never shuts a host down.
pub const DEBOUNCE: Duration = Duration::from_secs(5);

/// How long a UPS self test may keep the UPS on battery before it counts as an outage.
pub const SELF_TEST_WINDOW: Duration = Duration::from_secs(40);

/// Thresholds, with apcupsd's names and its code defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// BATTERYLEVEL: shut down when the charge is at or below this percentage.
    pub battery_level: u32,
    /// MINUTES: shut down when the estimated runtime is at or below this many minutes.
    pub minutes: u32,
    /// TIMEOUT: shut down after this many seconds on battery; 0 disables the rule.
    pub timeout: u32,
    /// ONBATTERYDELAY: seconds on battery before the `onbattery` event (and before any
    /// shutdown rule is evaluated).
    pub on_battery_delay: u32,
    /// Seconds of lost communication, while the UPS was last known on battery, after
    /// which the battery is presumed exhausted (NUT's DEADTIME idea). 0 disables the rule.
    pub dead_time: u32,
    /// ANNOY: seconds between `annoyme` reminders while on battery; 0 disables them.
    pub annoy: u32,
    /// ANNOYDELAY: seconds on battery before the first `annoyme`.
    pub annoy_delay: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            battery_level: 10,
            minutes: 5,
            timeout: 0,
            on_battery_delay: 6,
            dead_time: 15,
            annoy: 300,
            annoy_delay: 60,
        }
    }
}

/// Why a shutdown starts; each maps to the apcupsd event that announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ShutdownRule {
    /// TIMEOUT seconds on battery passed (`timeout`).
    Timeout,
    /// The UPS signalled low battery for 5 s while on battery (`failing`).
    LowBattery,
    /// Charge at or below BATTERYLEVEL for 5 s (`loadlimit`).
    BatteryLevel,
    /// Runtime at or below MINUTES for 5 s (`runlimit`).
    Runtime,
    /// On battery, low battery and on line at once: the battery has failed (`emergency`).
    Emergency,
    /// Communication lost for `dead_time` while the UPS was last known on battery.
    CommLostOnBattery,
}

/// What the monitor knows when it asks the rules; all instants come from the caller.
#[derive(Debug, Clone)]
pub struct RuleInputs<'a> {
    /// The last reading that arrived (it may be old if communication is lost).
    pub reading: &'a UpsReading,
    /// When the current outage started (apcupsd's last_time_on_line); `None` on mains.
    pub on_battery_since: Option<Instant>,
    /// Whether the `onbattery` event has been issued (ONBATTERYDELAY passed).
    pub onbattery_announced: bool,
    /// Whether the outage is a self test that has not yet run out its window.
    pub in_self_test: bool,
    /// When the UPS raised its low-battery signal (rising edge), if it is raised.
    pub low_battery_since: Option<Instant>,
    /// When the charge first fell to BATTERYLEVEL or below, if it still is.
    pub battery_level_since: Option<Instant>,
    /// When the runtime first fell to MINUTES or below, if it still is.
    pub runtime_since: Option<Instant>,
    /// When communication with the UPS was lost, if it is lost now.
    pub comm_lost_since: Option<Instant>,
}

/// Is the charge at or below BATTERYLEVEL (only if the UPS reports a charge)?
pub fn below_battery_level(policy: &Policy, reading: &UpsReading) -> bool {
    reading
        .charge_percent
        .is_some_and(|c| c <= f64::from(policy.battery_level))
}

/// Is the runtime at or below MINUTES (only if the UPS reports a runtime)?
pub fn below_runtime(policy: &Policy, reading: &UpsReading) -> bool {
    reading
        .runtime_s
        .is_some_and(|r| r <= f64::from(policy.minutes) * 60.0)
}

fn held(since: Option<Instant>, now: Instant, d: Duration) -> bool {
    since.is_some_and(|s| now.saturating_duration_since(s) >= d)
}

/// The first shutdown rule that fires now, in apcupsd's order, or `None`.
pub fn shutdown_rule(policy: &Policy, inp: &RuleInputs<'_>, now: Instant) -> Option<ShutdownRule> {
    // Comm lost while on battery: nothing else can be known, so decide on age alone.
    if let Some(lost) = inp.comm_lost_since {
        if policy.dead_time > 0
            && inp.reading.flags.on_battery
            && held(
                Some(lost),
                now,
                Duration::from_secs(policy.dead_time.into()),
            )
        {
            return Some(ShutdownRule::CommLostOnBattery);
        }
        return None;
    }
    let since = inp.on_battery_since?;
    if !inp.reading.flags.on_battery || inp.reading.flags.calibration {
        return None;
    }
    // A self test is allowed its window unless the battery runs low during it.
    if inp.in_self_test && !inp.reading.flags.low_battery {
        return None;
    }
    // apcupsd evaluates nothing until the outage is confirmed by `onbattery`.
    if !inp.onbattery_announced {
        return None;
    }
    if policy.timeout > 0
        && now.saturating_duration_since(since) > Duration::from_secs(policy.timeout.into())
    {
        return Some(ShutdownRule::Timeout);
    }
    if inp.reading.flags.low_battery && held(inp.low_battery_since, now, DEBOUNCE) {
        return Some(ShutdownRule::LowBattery);
    }
    if below_battery_level(policy, inp.reading) && held(inp.battery_level_since, now, DEBOUNCE) {
        return Some(ShutdownRule::BatteryLevel);
    }
    if below_runtime(policy, inp.reading) && held(inp.runtime_since, now, DEBOUNCE) {
        return Some(ShutdownRule::Runtime);
    }
    if inp.reading.flags.low_battery && inp.reading.flags.online {
        return Some(ShutdownRule::Emergency);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{UpsFlags, UpsReading};
    use std::time::SystemTime;

    fn on_battery(charge: f64, runtime_s: f64) -> UpsReading {
        let mut r = UpsReading::empty(
            UpsFlags {
                on_battery: true,
                battery_present: true,
                ..Default::default()
            },
            SystemTime::now(),
        );
        r.charge_percent = Some(charge);
        r.runtime_s = Some(runtime_s);
        r
    }

    fn inputs<'a>(r: &'a UpsReading, t0: Instant) -> RuleInputs<'a> {
        RuleInputs {
            reading: r,
            on_battery_since: Some(t0),
            onbattery_announced: true,
            in_self_test: false,
            low_battery_since: None,
            battery_level_since: None,
            runtime_since: None,
            comm_lost_since: None,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn healthy_battery_does_not_shut_down() {
        let p = Policy::default();
        let r = on_battery(90.0, 1800.0);
        let t0 = Instant::now();
        assert_eq!(shutdown_rule(&p, &inputs(&r, t0), secs(t0, 600)), None);
    }

    #[test]
    fn battery_level_fires_after_debounce_only() {
        let p = Policy::default();
        let r = on_battery(10.0, 1800.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.battery_level_since = Some(secs(t0, 100));
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 104)), None);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 105)),
            Some(ShutdownRule::BatteryLevel)
        );
        // Above the level: no rule even if a stale timer is passed.
        let r2 = on_battery(10.5, 1800.0);
        let mut i2 = inputs(&r2, t0);
        i2.battery_level_since = Some(t0);
        assert_eq!(shutdown_rule(&p, &i2, secs(t0, 200)), None);
    }

    #[test]
    fn minutes_fires_after_debounce() {
        let p = Policy::default();
        let r = on_battery(50.0, 300.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.runtime_since = Some(secs(t0, 10));
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 14)), None);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 15)),
            Some(ShutdownRule::Runtime)
        );
    }

    #[test]
    fn timeout_fires_strictly_after_limit_and_zero_disables() {
        let mut p = Policy {
            timeout: 60,
            ..Default::default()
        };
        let r = on_battery(90.0, 1800.0);
        let t0 = Instant::now();
        let i = inputs(&r, t0);
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 60)), None);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 61)),
            Some(ShutdownRule::Timeout)
        );
        p.timeout = 0;
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 100_000)), None);
    }

    #[test]
    fn ups_low_battery_signal_fires_after_debounce() {
        let p = Policy::default();
        let mut r = on_battery(90.0, 1800.0);
        r.flags.low_battery = true;
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.low_battery_since = Some(secs(t0, 20));
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 24)), None);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 25)),
            Some(ShutdownRule::LowBattery)
        );
    }

    #[test]
    fn low_battery_and_online_is_an_emergency_at_once() {
        let p = Policy::default();
        let mut r = on_battery(90.0, 1800.0);
        r.flags.low_battery = true;
        r.flags.online = true;
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.low_battery_since = Some(secs(t0, 20));
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 20)),
            Some(ShutdownRule::Emergency)
        );
    }

    #[test]
    fn timeout_is_checked_before_the_other_rules() {
        let p = Policy {
            timeout: 30,
            ..Default::default()
        };
        let r = on_battery(5.0, 60.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.battery_level_since = Some(t0);
        i.runtime_since = Some(t0);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 31)),
            Some(ShutdownRule::Timeout)
        );
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 30)),
            Some(ShutdownRule::BatteryLevel)
        );
    }

    #[test]
    fn nothing_fires_before_onbattery_is_announced() {
        let p = Policy::default();
        let r = on_battery(1.0, 10.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.battery_level_since = Some(t0);
        i.onbattery_announced = false;
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 30)), None);
    }

    #[test]
    fn self_test_window_is_respected_unless_battery_is_low() {
        let p = Policy::default();
        let mut r = on_battery(1.0, 10.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.battery_level_since = Some(t0);
        i.in_self_test = true;
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 30)), None);
        r.flags.low_battery = true;
        let mut i = inputs(&r, t0);
        i.in_self_test = true;
        i.low_battery_since = Some(t0);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 30)),
            Some(ShutdownRule::LowBattery)
        );
    }

    #[test]
    fn calibration_on_battery_is_ignored() {
        let p = Policy::default();
        let mut r = on_battery(1.0, 10.0);
        r.flags.calibration = true;
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.battery_level_since = Some(t0);
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 30)), None);
    }

    #[test]
    fn comm_lost_on_battery_fires_after_dead_time() {
        let p = Policy::default();
        let r = on_battery(80.0, 1800.0);
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.comm_lost_since = Some(secs(t0, 100));
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 114)), None);
        assert_eq!(
            shutdown_rule(&p, &i, secs(t0, 115)),
            Some(ShutdownRule::CommLostOnBattery)
        );
    }

    #[test]
    fn comm_lost_on_mains_never_shuts_down() {
        let p = Policy::default();
        let mut r = on_battery(80.0, 1800.0);
        r.flags.on_battery = false;
        r.flags.online = true;
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.on_battery_since = None;
        i.comm_lost_since = Some(t0);
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 100_000)), None);
    }

    #[test]
    fn on_mains_nothing_fires_even_with_low_charge() {
        let p = Policy::default();
        let mut r = on_battery(1.0, 10.0);
        r.flags.on_battery = false;
        r.flags.online = true;
        let t0 = Instant::now();
        let mut i = inputs(&r, t0);
        i.on_battery_since = None;
        i.battery_level_since = Some(t0);
        assert_eq!(shutdown_rule(&p, &i, secs(t0, 100)), None);
    }
}
