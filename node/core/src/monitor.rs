//! Turns successive readings of one UPS into apcupsd's events and shutdown decision.
//!
//! [`UpsMonitor`] is apcupsd's `do_action` state machine without the I/O: each poll the
//! node hands it an [`Observation`] (a reading, or a failed poll) and the current
//! instant; it returns the events to log and run hooks for, in apcupsd's order
//! (docs/compat.md, "apcupsd's events"). The shutdown rule itself is the pure [`crate::policy`] function.
//! Once a shutdown has started it latches: a later reading never undoes it (apcupsd
//! 3.14 does not cancel a shutdown when mains return).

use std::time::{Duration, Instant, SystemTime};

use crate::events::EventKind;
use crate::policy::{self, Policy, RuleInputs, ShutdownRule};
use crate::reading::{UpsReading, statflag};

/// What one poll of the driver produced. Built once per poll and consumed at once, so
/// the size difference between the variants costs nothing worth a box.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Observation {
    Reading(UpsReading),
    /// The driver could not talk to the UPS; the text says why.
    CommFailure(String),
}

/// An event the monitor derived: the apcupsd name and the events-file text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorEvent {
    pub kind: EventKind,
    pub message: String,
}

impl MonitorEvent {
    fn standard(kind: EventKind) -> Self {
        MonitorEvent {
            kind,
            message: kind.message().to_string(),
        }
    }
}

/// How often `changeme` repeats, and how many times at most (apcupsd's constants).
const CHANGEME_FIRST: Duration = Duration::from_secs(10 * 60);
const CHANGEME_EVERY: Duration = Duration::from_secs(9 * 3600);
const CHANGEME_MAX: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    OnMains,
    /// On battery because of a UPS self test, since the given instant.
    SelfTest(Instant),
    /// In an outage since the given instant.
    OnBattery(Instant),
}

/// The shutdown the monitor has decided, latched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownDecision {
    pub rule: ShutdownRule,
    pub at: Instant,
    pub at_wall: SystemTime,
}

/// apcupsd's per-UPS state machine.
#[derive(Debug)]
pub struct UpsMonitor {
    policy: Policy,
    started: Instant,
    phase: Phase,
    onbattery_announced: bool,
    /// When `onbattery` was issued: apcupsd measures TIMEOUT and ANNOYDELAY from here.
    onbattery_at: Option<Instant>,
    last_reading: Option<UpsReading>,
    comm_lost_since: Option<Instant>,
    low_battery_since: Option<Instant>,
    battery_level_since: Option<Instant>,
    runtime_since: Option<Instant>,
    shutdown: Option<ShutdownDecision>,
    last_annoy: Option<Instant>,
    changeme_count: u32,
    last_changeme: Option<Instant>,
    transfers: u32,
    outage_started_wall: Option<SystemTime>,
}

impl UpsMonitor {
    pub fn new(policy: Policy, now: Instant) -> Self {
        UpsMonitor {
            policy,
            started: now,
            phase: Phase::OnMains,
            onbattery_announced: false,
            onbattery_at: None,
            last_reading: None,
            comm_lost_since: None,
            low_battery_since: None,
            battery_level_since: None,
            runtime_since: None,
            shutdown: None,
            last_annoy: None,
            changeme_count: 0,
            last_changeme: None,
            transfers: 0,
            outage_started_wall: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The last reading received, if any.
    pub fn last_reading(&self) -> Option<&UpsReading> {
        self.last_reading.as_ref()
    }

    pub fn comm_lost(&self) -> bool {
        self.comm_lost_since.is_some()
    }

    pub fn shutdown(&self) -> Option<ShutdownDecision> {
        self.shutdown
    }

    /// Whether an outage (real, not a self test) is in progress.
    pub fn on_battery(&self) -> bool {
        matches!(self.phase, Phase::OnBattery(_))
    }

    /// Transfers to battery seen since start (apcupsd NUMXFERS).
    pub fn transfers(&self) -> u32 {
        self.transfers
    }

    /// Seconds on battery in the current outage (apcupsd TONBATT).
    pub fn time_on_battery(&self, now: Instant) -> Duration {
        match self.phase {
            Phase::OnBattery(s) | Phase::SelfTest(s) => now.saturating_duration_since(s),
            Phase::OnMains => Duration::ZERO,
        }
    }

    pub fn outage_started(&self) -> Option<SystemTime> {
        self.outage_started_wall
    }

    /// The daemon-local STATFLAG bits apcupsd would add to the UPS's own.
    pub fn local_statflag_bits(&self) -> u32 {
        let mut v = statflag::PLUGGED;
        if self.comm_lost_since.is_some() {
            v |= statflag::COMMLOST;
        }
        if let Some(d) = self.shutdown {
            v |= statflag::SHUTDOWN;
            v |= match d.rule {
                ShutdownRule::BatteryLevel => statflag::SHUT_LOAD,
                ShutdownRule::Runtime => statflag::SHUT_LTIME,
                ShutdownRule::Timeout => statflag::SHUT_BTIME,
                ShutdownRule::Emergency => statflag::SHUT_EMERG,
                _ => 0,
            };
        }
        if self.onbattery_announced {
            v |= statflag::ONBATT_MSG;
        }
        if self.phase != Phase::OnMains {
            v |= statflag::FASTPOLL;
        }
        v
    }

    /// The full STATFLAG: the last reading's bits plus the local ones.
    pub fn statflag(&self) -> u32 {
        self.last_reading
            .as_ref()
            .map_or(0, |r| r.flags.statflag_bits())
            | self.local_statflag_bits()
    }

    /// Feed one poll result; returns the events it causes, in order.
    pub fn observe(
        &mut self,
        obs: Observation,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<MonitorEvent> {
        let mut out = Vec::new();
        match obs {
            Observation::CommFailure(_) => {
                if self.comm_lost_since.is_none() {
                    self.comm_lost_since = Some(now);
                    out.push(MonitorEvent::standard(EventKind::CommFailure));
                }
            }
            Observation::Reading(r) => {
                if self.comm_lost_since.take().is_some() {
                    out.push(MonitorEvent::standard(EventKind::CommOk));
                }
                self.take_reading(r, now, wall, &mut out);
            }
        }
        self.evaluate_shutdown(now, wall, &mut out);
        out
    }

    fn take_reading(
        &mut self,
        r: UpsReading,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<MonitorEvent>,
    ) {
        let prev = self.last_reading.replace(r);
        let r = self.last_reading.as_ref().expect("just stored");
        let prev_flags = prev.as_ref().map(|p| p.flags);

        // Battery presence changes (any state).
        if let Some(pf) = prev_flags {
            if pf.battery_present && !r.flags.battery_present {
                out.push(MonitorEvent::standard(EventKind::BattDetach));
            } else if !pf.battery_present && r.flags.battery_present {
                out.push(MonitorEvent::standard(EventKind::BattAttach));
            }
        }

        // LOWBATT rising edge starts its timer, even on mains (it may precede ONBATT).
        let was_low = prev_flags.is_some_and(|f| f.low_battery);
        if r.flags.low_battery && (!was_low || self.low_battery_since.is_none()) {
            self.low_battery_since = Some(now);
        } else if !r.flags.low_battery {
            self.low_battery_since = None;
        }

        let on_batt = r.flags.on_battery;
        let self_test = r.last_transfer == crate::reading::TRANSFER_SELF_TEST;
        match (self.phase, on_batt) {
            (Phase::OnMains, true) => {
                self.transfers += 1;
                self.outage_started_wall = Some(wall);
                self.last_annoy = Some(now);
                if self_test {
                    self.phase = Phase::SelfTest(now);
                    out.push(MonitorEvent::standard(EventKind::StartSelfTest));
                } else {
                    self.phase = Phase::OnBattery(now);
                    out.push(MonitorEvent::standard(EventKind::PowerOut));
                }
            }
            (Phase::SelfTest(since), true)
                if (now.saturating_duration_since(since) >= policy::SELF_TEST_WINDOW
                    || r.flags.low_battery) =>
            {
                // The self test ran too long or drained the battery: a real outage.
                self.phase = Phase::OnBattery(since);
            }
            (Phase::OnBattery(_) | Phase::SelfTest(_), false) => {
                let was_self_test = matches!(self.phase, Phase::SelfTest(_));
                if self.onbattery_announced {
                    out.push(MonitorEvent::standard(EventKind::OffBattery));
                }
                if was_self_test {
                    let result = self_test_result_text(&r.self_test);
                    out.push(MonitorEvent {
                        kind: EventKind::EndSelfTest,
                        message: format!("UPS Self Test completed: {result}"),
                    });
                } else {
                    out.push(MonitorEvent::standard(EventKind::MainsBack));
                }
                self.phase = Phase::OnMains;
                self.onbattery_announced = false;
                self.onbattery_at = None;
                self.battery_level_since = None;
                self.runtime_since = None;
                self.outage_started_wall = None;
            }
            _ => {}
        }

        // ONBATTERYDELAY confirms the outage. Like apcupsd, the pass that confirms it
        // does nothing else, so the threshold timers start on the next pass.
        let mut confirmed_now = false;
        if let Phase::OnBattery(since) = self.phase
            && !self.onbattery_announced
            && now.saturating_duration_since(since)
                >= Duration::from_secs(self.policy.on_battery_delay.into())
        {
            self.onbattery_announced = true;
            self.onbattery_at = Some(now);
            self.last_annoy = Some(now);
            confirmed_now = true;
            out.push(MonitorEvent::standard(EventKind::OnBattery));
        }

        // Threshold timers: start when first crossed, clear when no longer true.
        let r = self.last_reading.as_ref().expect("just stored");
        let counting = self.on_battery() && self.onbattery_announced && !confirmed_now;
        if counting && policy::below_battery_level(&self.policy, r) {
            self.battery_level_since.get_or_insert(now);
        } else if !confirmed_now {
            self.battery_level_since = None;
        }
        if counting && policy::below_runtime(&self.policy, r) {
            self.runtime_since.get_or_insert(now);
        } else if !confirmed_now {
            self.runtime_since = None;
        }

        // changeme: replace-battery, not in the first 10 minutes, every 9 h, 5 times.
        if r.flags.replace_battery && now.saturating_duration_since(self.started) >= CHANGEME_FIRST
        {
            let due = self
                .last_changeme
                .is_none_or(|t| now.saturating_duration_since(t) >= CHANGEME_EVERY);
            if due && self.changeme_count < CHANGEME_MAX {
                self.changeme_count += 1;
                self.last_changeme = Some(now);
                out.push(MonitorEvent::standard(EventKind::ChangeMe));
            }
        }
    }

    fn evaluate_shutdown(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<MonitorEvent>) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(reading) = self.last_reading.as_ref() else {
            return;
        };
        let on_battery_since = match self.phase {
            Phase::OnBattery(s) | Phase::SelfTest(s) => Some(self.onbattery_at.unwrap_or(s)),
            Phase::OnMains => None,
        };
        let inputs = RuleInputs {
            reading,
            on_battery_since,
            onbattery_announced: self.onbattery_announced,
            in_self_test: matches!(self.phase, Phase::SelfTest(_)),
            low_battery_since: self.low_battery_since,
            battery_level_since: self.battery_level_since,
            runtime_since: self.runtime_since,
            comm_lost_since: self.comm_lost_since,
        };
        if let Some(rule) = policy::shutdown_rule(&self.policy, &inputs, now) {
            self.shutdown = Some(ShutdownDecision {
                rule,
                at: now,
                at_wall: wall,
            });
            match rule {
                ShutdownRule::CommLostOnBattery => out.push(MonitorEvent {
                    kind: EventKind::Notice,
                    message: format!(
                        "Shutdown because loss of comm with UPS while on batteries ({} s).",
                        self.policy.dead_time
                    ),
                }),
                _ => out.push(MonitorEvent::standard(EventKind::from_rule(rule))),
            }
            out.push(MonitorEvent::standard(EventKind::DoShutdown));
            return;
        }
        // annoyme: reminders to log off while on battery.
        if let (Phase::OnBattery(_), Some(since)) = (self.phase, self.onbattery_at) {
            let p = &self.policy;
            if p.annoy > 0
                && now.saturating_duration_since(since) > Duration::from_secs(p.annoy_delay.into())
                && self.last_annoy.is_none_or(|t| {
                    now.saturating_duration_since(t) > Duration::from_secs(p.annoy.into())
                })
            {
                self.last_annoy = Some(now);
                out.push(MonitorEvent::standard(EventKind::AnnoyMe));
            }
        }
    }
}

/// apcupsd's words for a SELFTEST code.
pub fn self_test_result_text(code: &str) -> &'static str {
    match code {
        "OK" => "Battery OK",
        "BT" => "Test failed due to insufficient battery capacity",
        "NG" => "Test failed due to overload",
        "WN" => "Warning",
        "IP" => "In progress",
        "NO" => "No test results available",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(on_battery: bool, charge: f64, runtime_s: f64) -> UpsReading {
        UpsReading::basic(on_battery, charge, runtime_s, SystemTime::now())
    }

    struct Harness {
        m: UpsMonitor,
        t0: Instant,
        log: Vec<(u64, &'static str)>,
    }

    impl Harness {
        fn new(p: Policy) -> Self {
            let t0 = Instant::now();
            Harness {
                m: UpsMonitor::new(p, t0),
                t0,
                log: vec![],
            }
        }
        fn at(&mut self, s: u64, obs: Observation) {
            for e in self
                .m
                .observe(obs, self.t0 + Duration::from_secs(s), SystemTime::now())
            {
                self.log.push((s, e.kind.name()));
            }
        }
        fn names(&self) -> Vec<&'static str> {
            self.log.iter().map(|(_, n)| *n).collect()
        }
    }

    #[test]
    fn outage_drains_to_loadlimit_then_doshutdown_once() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(false, 100.0, 3000.0)));
        let mut charge = 100.0;
        for s in 1..=40 {
            charge -= 3.0;
            h.at(s, Observation::Reading(reading(true, charge, 3000.0)));
        }
        // Mains return does not cancel the latched shutdown.
        h.at(41, Observation::Reading(reading(false, charge, 3000.0)));
        assert_eq!(
            h.names(),
            vec![
                "powerout",
                "onbattery",
                "loadlimit",
                "doshutdown",
                "offbattery",
                "mainsback"
            ]
        );
        let onbatt = h.log.iter().find(|(_, n)| *n == "onbattery").unwrap().0;
        assert_eq!(onbatt, 7, "ONBATTERYDELAY 6 s after powerout at 1 s");
        // charge ≤ 10 first at s=30 (100-90); debounce 5 s.
        let load = h.log.iter().find(|(_, n)| *n == "loadlimit").unwrap().0;
        assert_eq!(load, 35);
        assert!(h.m.shutdown().is_some());
        assert!(h.m.statflag() & statflag::SHUTDOWN != 0);
    }

    #[test]
    fn short_blip_gives_powerout_and_mainsback_only() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(false, 100.0, 3000.0)));
        h.at(1, Observation::Reading(reading(true, 100.0, 3000.0)));
        h.at(3, Observation::Reading(reading(false, 100.0, 3000.0)));
        assert_eq!(h.names(), vec!["powerout", "mainsback"]);
        assert!(h.m.shutdown().is_none());
    }

    #[test]
    fn comm_failure_and_recovery() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(false, 100.0, 3000.0)));
        h.at(1, Observation::CommFailure("x".into()));
        h.at(2, Observation::CommFailure("x".into()));
        assert!(h.m.statflag() & statflag::COMMLOST != 0);
        h.at(3, Observation::Reading(reading(false, 100.0, 3000.0)));
        assert_eq!(h.names(), vec!["commfailure", "commok"]);
        // On mains, comm loss never shuts down however long it lasts.
        h.at(4, Observation::CommFailure("x".into()));
        h.at(10_000, Observation::CommFailure("x".into()));
        assert!(h.m.shutdown().is_none());
    }

    #[test]
    fn comm_lost_on_battery_shuts_down_after_dead_time() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(true, 90.0, 3000.0)));
        h.at(1, Observation::CommFailure("x".into()));
        h.at(15, Observation::CommFailure("x".into()));
        assert!(h.m.shutdown().is_none());
        h.at(16, Observation::CommFailure("x".into()));
        assert_eq!(
            h.names(),
            vec!["powerout", "commfailure", "notice", "doshutdown"]
        );
        assert_eq!(
            h.m.shutdown().unwrap().rule,
            ShutdownRule::CommLostOnBattery
        );
    }

    #[test]
    fn low_battery_signal_gives_failing() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(true, 90.0, 3000.0)));
        h.at(6, Observation::Reading(reading(true, 90.0, 3000.0)));
        let mut lb = reading(true, 90.0, 3000.0);
        lb.flags.low_battery = true;
        h.at(7, Observation::Reading(lb.clone()));
        h.at(11, Observation::Reading(lb.clone()));
        h.at(12, Observation::Reading(lb));
        assert_eq!(
            h.names(),
            vec!["powerout", "onbattery", "failing", "doshutdown"]
        );
        assert_eq!(h.log[2].0, 12);
    }

    #[test]
    fn runtime_gives_runlimit_and_timeout_gives_timeout() {
        let mut h = Harness::new(Policy::default());
        for s in 0..=12 {
            h.at(s, Observation::Reading(reading(true, 90.0, 200.0)));
        }
        assert_eq!(
            h.names(),
            vec!["powerout", "onbattery", "runlimit", "doshutdown"]
        );
        assert_eq!(
            h.log[2].0, 12,
            "timer starts the pass after onbattery (7), +5"
        );

        let mut h = Harness::new(Policy {
            timeout: 20,
            ..Default::default()
        });
        for s in 0..=30 {
            h.at(s, Observation::Reading(reading(true, 90.0, 3000.0)));
        }
        assert_eq!(
            h.names(),
            vec!["powerout", "onbattery", "timeout", "doshutdown"]
        );
        assert_eq!(
            h.log[2].0, 27,
            "TIMEOUT counts from onbattery (6), like apcupsd"
        );
    }

    #[test]
    fn self_test_gives_start_and_end_not_powerout() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(false, 100.0, 3000.0)));
        let mut st = reading(true, 100.0, 3000.0);
        st.last_transfer = crate::reading::TRANSFER_SELF_TEST.into();
        h.at(1, Observation::Reading(st.clone()));
        h.at(8, Observation::Reading(st));
        let mut back = reading(false, 100.0, 3000.0);
        back.self_test = "OK".into();
        h.at(10, Observation::Reading(back));
        assert_eq!(h.names(), vec!["startselftest", "endselftest"]);
    }

    #[test]
    fn battery_detach_attach_and_emergency() {
        let mut h = Harness::new(Policy::default());
        h.at(0, Observation::Reading(reading(false, 100.0, 3000.0)));
        let mut nob = reading(false, 100.0, 3000.0);
        nob.flags.battery_present = false;
        h.at(1, Observation::Reading(nob));
        h.at(2, Observation::Reading(reading(false, 100.0, 3000.0)));
        assert_eq!(h.names(), vec!["battdetach", "battattach"]);

        let mut h = Harness::new(Policy::default());
        for s in 0..=6 {
            h.at(s, Observation::Reading(reading(true, 90.0, 3000.0)));
        }
        let mut em = reading(true, 90.0, 3000.0);
        em.flags.online = true;
        em.flags.low_battery = true;
        h.at(7, Observation::Reading(em));
        assert_eq!(
            h.names(),
            vec!["powerout", "onbattery", "emergency", "doshutdown"]
        );
    }

    #[test]
    fn annoyme_after_delay_then_every_annoy_seconds() {
        let mut h = Harness::new(Policy {
            annoy: 30,
            annoy_delay: 10,
            ..Default::default()
        });
        for s in 0..=75 {
            h.at(s, Observation::Reading(reading(true, 90.0, 3000.0)));
        }
        let annoys: Vec<u64> = h
            .log
            .iter()
            .filter(|(_, n)| *n == "annoyme")
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(annoys, vec![37, 68]);
    }

    #[test]
    fn changeme_waits_ten_minutes_and_repeats_at_most_five_times() {
        let mut h = Harness::new(Policy::default());
        let mut r = reading(false, 100.0, 3000.0);
        r.flags.replace_battery = true;
        h.at(0, Observation::Reading(r.clone()));
        h.at(599, Observation::Reading(r.clone()));
        assert!(h.names().is_empty());
        for k in 0..10u64 {
            h.at(600 + k * 9 * 3600, Observation::Reading(r.clone()));
        }
        assert_eq!(h.names().iter().filter(|n| **n == "changeme").count(), 5);
    }
}
