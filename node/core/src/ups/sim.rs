//! The simulated UPS (the `sim` driver's model): a scenario file of timed steps and
//! the power model they drive.
//!
//! The model is small but honest: on battery the charge drains at a set rate, the
//! runtime follows charge and load, and the UPS raises its low-battery signal when the
//! runtime falls under its own threshold, as a Smart-UPS does. A [`Scenario`] is a TOML
//! file of timed steps (mains fail and return, load changes, comm loss, ...); a
//! [`SimChange`] changes the same state at run time (`upsilon sim set`). The driver
//! (`upsilon-node`'s `driver::sim`) plays it in time; the Smart-UPS simulator in the
//! tests speaks it over a pty.

use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::Deserialize;

use super::UpsCommand;
use crate::config::{ConfigError, parse_toml};
use crate::reading::{TRANSFER_SELF_TEST, UpsFlags, UpsReading};

/// The simulated UPS's fixed properties and starting state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimUpsSpec {
    pub model: String,
    pub serial_number: String,
    pub firmware: String,
    pub nominal_power_w: u32,
    /// Starting charge, percent.
    pub charge: f64,
    /// Starting load, percent of nominal power.
    pub load: f64,
    pub line_voltage: f64,
    pub line_frequency_hz: f64,
    /// Runtime at 100 % load and full charge, seconds; runtime scales with charge/load.
    pub full_load_runtime_s: f64,
    /// Charge lost per second on battery, percent.
    pub drain_percent_per_second: f64,
    /// Charge gained per second on line, percent.
    pub recharge_percent_per_second: f64,
    /// The UPS raises low battery when the runtime falls under this (DLOWBATT).
    pub low_battery_runtime_s: f64,
    /// How long a self test keeps the UPS on battery, seconds.
    pub self_test_duration_s: f64,
}

impl Default for SimUpsSpec {
    fn default() -> Self {
        SimUpsSpec {
            model: "Smart-UPS 1500 (simulated)".into(),
            serial_number: "SIM0000001".into(),
            firmware: "UPSILON-SIM 1.0".into(),
            nominal_power_w: 980,
            charge: 100.0,
            load: 35.0,
            line_voltage: 230.0,
            line_frequency_hz: 50.0,
            full_load_runtime_s: 900.0,
            drain_percent_per_second: 0.1,
            recharge_percent_per_second: 0.05,
            low_battery_runtime_s: 120.0,
            self_test_duration_s: 8.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mains {
    Fail,
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comm {
    Lost,
    Ok,
}

/// One timed change. Every field but `at_s` is optional; several may change at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    /// Seconds after the node starts.
    pub at_s: f64,
    pub mains: Option<Mains>,
    pub charge: Option<f64>,
    pub load: Option<f64>,
    pub drain_percent_per_second: Option<f64>,
    /// Force the low-battery signal on or off.
    pub low_battery: Option<bool>,
    pub comm: Option<Comm>,
    pub replace_battery: Option<bool>,
    pub battery_present: Option<bool>,
    #[serde(default)]
    pub self_test: bool,
    /// Said in the node's log (and by the demo) when the step plays.
    pub note: Option<String>,
}

impl ScenarioStep {
    /// The step as a change to the simulator's state.
    pub fn change(&self) -> SimChange {
        SimChange {
            on_battery: self.mains.map(|m| m == Mains::Fail),
            charge: self.charge,
            load: self.load,
            low_battery: self.low_battery.map(Some),
            comm_lost: self.comm.map(|c| c == Comm::Lost),
            replace_battery: self.replace_battery,
            battery_present: self.battery_present,
            drain_percent_per_second: self.drain_percent_per_second,
            start_self_test: self.self_test,
        }
    }
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub ups: SimUpsSpec,
    #[serde(default, rename = "step")]
    pub steps: Vec<ScenarioStep>,
}

impl Scenario {
    /// A UPS that stays on line until told otherwise.
    pub fn steady() -> Self {
        Scenario {
            name: "steady".into(),
            description: "On line; change it with `upsilon sim set`.".into(),
            ups: SimUpsSpec::default(),
            steps: vec![],
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates scenario text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let s: Scenario = parse_toml(path, text)?;
        let bad = |key: &str, idx: Option<usize>, message: String| {
            // Step keys sit under the idx-th [[step]] header.
            let line = match idx {
                Some(i) => step_line(text, i, key),
                None => crate::config::line_of_key(text, key),
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key: key.to_string(),
                message,
            }
        };
        let pct = |v: f64| (0.0..=100.0).contains(&v);
        if !pct(s.ups.charge) {
            return Err(bad(
                "ups.charge",
                None,
                format!("{} is not a percentage (0-100)", s.ups.charge),
            ));
        }
        if !(0.0..=200.0).contains(&s.ups.load) {
            return Err(bad(
                "ups.load",
                None,
                format!("{} is out of range (0-200 %)", s.ups.load),
            ));
        }
        if s.ups.full_load_runtime_s.is_nan() || s.ups.full_load_runtime_s <= 0.0 {
            return Err(bad(
                "ups.full_load_runtime_s",
                None,
                "must be above 0".into(),
            ));
        }
        let mut last = 0.0;
        for (i, st) in s.steps.iter().enumerate() {
            if !st.at_s.is_finite() || st.at_s < last {
                return Err(bad(
                    "step.at_s",
                    Some(i),
                    format!(
                        "step {} at {} s: steps must be in time order and not negative",
                        i + 1,
                        st.at_s
                    ),
                ));
            }
            last = st.at_s;
            if let Some(c) = st.charge
                && !pct(c)
            {
                return Err(bad(
                    "step.charge",
                    Some(i),
                    format!("{c} is not a percentage (0-100)"),
                ));
            }
            if let Some(l) = st.load
                && !(0.0..=200.0).contains(&l)
            {
                return Err(bad(
                    "step.load",
                    Some(i),
                    format!("{l} is out of range (0-200 %)"),
                ));
            }
            if let Some(d) = st.drain_percent_per_second
                && !(0.0..=100.0).contains(&d)
            {
                return Err(bad(
                    "step.drain_percent_per_second",
                    Some(i),
                    format!("{d} is out of range (0-100)"),
                ));
            }
        }
        Ok(s)
    }
}

/// The line of `key` (e.g. `step.charge`) inside the idx-th `[[step]]` table.
fn step_line(text: &str, idx: usize, key: &str) -> usize {
    let field = key.rsplit('.').next().unwrap_or(key);
    let mut n = None::<usize>;
    let mut header = 1;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t == "[[step]]" {
            n = Some(n.map_or(0, |v| v + 1));
            if n == Some(idx) {
                header = i + 1;
            }
        } else if t.starts_with('[') {
            n = n.map(|v| v + 1000);
        } else if n == Some(idx)
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == field
        {
            return i + 1;
        }
    }
    header
}

/// A run-time change (`upsilon sim set`); unset fields are left alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimChange {
    pub on_battery: Option<bool>,
    pub charge: Option<f64>,
    pub load: Option<f64>,
    /// `Some(None)` returns the signal to automatic.
    pub low_battery: Option<Option<bool>>,
    pub comm_lost: Option<bool>,
    pub replace_battery: Option<bool>,
    pub battery_present: Option<bool>,
    pub drain_percent_per_second: Option<f64>,
    pub start_self_test: bool,
}

/// The simulator's live state.
#[derive(Debug, Clone)]
pub struct SimState {
    pub spec: SimUpsSpec,
    pub on_battery: bool,
    pub charge: f64,
    pub load: f64,
    pub drain: f64,
    pub forced_low_battery: Option<bool>,
    pub comm_lost: bool,
    pub replace_battery: bool,
    pub battery_present: bool,
    pub last_transfer: String,
    pub self_test_result: String,
    /// When the running self test ends.
    pub self_test_until: Option<Instant>,
    /// Kill-power orders received, for tests and the demo.
    pub commands: Vec<UpsCommand>,
    pub output_off: bool,
    last_advance: Instant,
}

impl SimState {
    pub fn new(spec: SimUpsSpec, now: Instant) -> Self {
        SimState {
            on_battery: false,
            charge: spec.charge,
            load: spec.load,
            drain: spec.drain_percent_per_second,
            forced_low_battery: None,
            comm_lost: false,
            replace_battery: false,
            battery_present: true,
            last_transfer: "No transfers since turnon".into(),
            self_test_result: "NO".into(),
            self_test_until: None,
            commands: vec![],
            output_off: false,
            last_advance: now,
            spec,
        }
    }

    fn discharging(&self) -> bool {
        self.on_battery || self.self_test_until.is_some()
    }

    /// Runtime in seconds for the current charge and load.
    pub fn runtime_s(&self) -> f64 {
        let load = self.load.max(1.0);
        self.spec.full_load_runtime_s * (self.charge / 100.0) * (100.0 / load)
    }

    /// Moves the model to `now`: drains or recharges, ends a finished self test.
    pub fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_advance)
            .as_secs_f64();
        self.last_advance = now;
        if self.discharging() {
            self.charge = (self.charge - self.drain * dt).max(0.0);
        } else {
            self.charge = (self.charge + self.spec.recharge_percent_per_second * dt).min(100.0);
        }
        if let Some(until) = self.self_test_until
            && now >= until
        {
            self.self_test_until = None;
            self.self_test_result = if self.charge > 20.0 { "OK" } else { "BT" }.into();
        }
    }

    pub fn apply(&mut self, c: &SimChange, now: Instant) {
        if let Some(b) = c.on_battery {
            if b && !self.on_battery {
                self.last_transfer = "Low line voltage".into();
            }
            self.on_battery = b;
            if !b {
                self.output_off = false;
            }
        }
        if let Some(v) = c.charge {
            self.charge = v.clamp(0.0, 100.0);
        }
        if let Some(v) = c.load {
            self.load = v.clamp(0.0, 200.0);
        }
        if let Some(v) = c.low_battery {
            self.forced_low_battery = v;
        }
        if let Some(v) = c.comm_lost {
            self.comm_lost = v;
        }
        if let Some(v) = c.replace_battery {
            self.replace_battery = v;
        }
        if let Some(v) = c.battery_present {
            self.battery_present = v;
        }
        if let Some(v) = c.drain_percent_per_second {
            self.drain = v.max(0.0);
        }
        if c.start_self_test && !self.on_battery {
            self.last_transfer = TRANSFER_SELF_TEST.into();
            self.self_test_result = "IP".into();
            self.self_test_until =
                Some(now + std::time::Duration::from_secs_f64(self.spec.self_test_duration_s));
        }
    }

    pub fn reading(&self, wall: SystemTime) -> UpsReading {
        let discharging = self.discharging();
        let runtime = self.runtime_s();
        let low = self
            .forced_low_battery
            .unwrap_or(discharging && runtime < self.spec.low_battery_runtime_s);
        let flags = UpsFlags {
            online: !self.on_battery,
            on_battery: discharging,
            low_battery: low,
            replace_battery: self.replace_battery,
            battery_present: self.battery_present,
            ..Default::default()
        };
        let mut r = UpsReading::empty(flags, wall);
        let s = &self.spec;
        r.line_voltage = Some(if self.on_battery { 0.0 } else { s.line_voltage });
        r.output_voltage = Some(if self.output_off { 0.0 } else { s.line_voltage });
        r.battery_voltage = Some(21.0 + 6.3 * self.charge / 100.0);
        r.load_percent = Some(self.load);
        r.charge_percent = Some(self.charge);
        r.runtime_s = Some(runtime);
        r.internal_temp_c = Some(29.5);
        r.line_frequency_hz = Some(s.line_frequency_hz);
        r.min_line_voltage = Some(if self.on_battery {
            0.0
        } else {
            s.line_voltage - 2.0
        });
        r.max_line_voltage = Some(if self.on_battery {
            0.0
        } else {
            s.line_voltage + 2.0
        });
        r.nominal_power_w = Some(s.nominal_power_w);
        r.model = s.model.clone();
        r.serial_number = s.serial_number.clone();
        r.firmware = s.firmware.clone();
        r.battery_date = "2026-01-15".into();
        r.last_transfer = self.last_transfer.clone();
        r.self_test = self.self_test_result.clone();
        r
    }

    /// The state in words, for `upsilon sim set` replies.
    pub fn describe(&self) -> String {
        format!(
            "{}; charge {:.1} %, load {:.1} %, runtime {:.0} s{}{}{}",
            if self.on_battery {
                "on battery"
            } else {
                "on line"
            },
            self.charge,
            self.load,
            self.runtime_s(),
            match self.forced_low_battery {
                Some(true) => ", low battery forced on",
                Some(false) => ", low battery forced off",
                None => "",
            },
            if self.comm_lost {
                ", not answering (comm lost)"
            } else {
                ""
            },
            if self.self_test_until.is_some() {
                ", self test running"
            } else {
                ""
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn drains_on_battery_and_raises_low_battery() {
        let t0 = Instant::now();
        let mut st = SimState::new(
            SimUpsSpec {
                drain_percent_per_second: 10.0,
                ..Default::default()
            },
            t0,
        );
        st.apply(
            &SimChange {
                on_battery: Some(true),
                ..Default::default()
            },
            t0,
        );
        st.advance(t0 + Duration::from_secs(9));
        assert!((st.charge - 10.0).abs() < 1e-6);
        let r = st.reading(SystemTime::now());
        assert!(r.flags.on_battery && !r.flags.online);
        // runtime = 900 * 0.10 * 100/35 = 257 s: above the 120 s low-battery threshold.
        assert!(!r.flags.low_battery);
        st.advance(t0 + Duration::from_millis(9800));
        let r = st.reading(SystemTime::now());
        assert!(r.flags.low_battery, "runtime {}", st.runtime_s());
        assert_eq!(r.line_voltage, Some(0.0));
        assert_eq!(r.last_transfer, "Low line voltage");
    }

    #[test]
    fn scenario_errors_point_at_the_step() {
        let text = "name = \"x\"\n[[step]]\nat_s = 5\nmains = \"fail\"\n[[step]]\nat_s = 2\n";
        let e = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:6: step.at_s: step 2 at 2 s"), "{e}");
        let text = "name = \"x\"\n[[step]]\nat_s = 5\ncharge = 150\n";
        let e = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:4: step.charge: 150"), "{e}");
        let text = "name = \"x\"\n[[step]]\nat_s = 5\nmains = \"explode\"\n";
        let e = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.toml:4: step.mains: unknown variant `explode`"),
            "{e}"
        );
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3, "expected at least 3 scenarios in {}", dir.display());
    }
}
