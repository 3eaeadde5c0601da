//! `sim`: the driver that plays a simulated UPS (the model and scenario file are
//! `upsilon_core::ups::sim`) in real time and obeys run-time changes
//! (`upsilon sim set`) sent to it as [`UpsCommand::Simulate`] orders like any other.

use std::time::{Duration, Instant, SystemTime};

use super::{DriverError, UpsCommand, UpsDriver};
use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::reading::UpsReading;
pub use upsilon_core::ups::sim::*;

/// The `[[ups]]` keys of a simulated UPS.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The scenario to play; without one the UPS stays on line until told otherwise.
    pub scenario: Option<std::path::PathBuf>,
}

/// Checks a sim section's keys, loads its scenario and builds the driver.
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(
        section,
        &[("scenario", "scenario = \"power-failure.toml\"")],
    )?;
    let scenario = match &cfg.scenario {
        Some(p) => Scenario::load(&section.origin.resolve(p))?,
        None => Scenario::steady(),
    };
    Ok(Box::new(SimDriver::new(scenario)))
}

/// The driver: plays the scenario's steps as their time comes, then reads the state.
pub struct SimDriver {
    state: SimState,
    steps: Vec<ScenarioStep>,
    next_step: usize,
    started: Instant,
}

impl SimDriver {
    pub fn new(scenario: Scenario) -> Self {
        let now = Instant::now();
        SimDriver {
            state: SimState::new(scenario.ups, now),
            steps: scenario.steps,
            next_step: 0,
            started: now,
        }
    }

    /// Brings the model to `now`: the battery drains, due scenario steps play.
    fn advance(&mut self, now: Instant) {
        self.state.advance(now);
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        while let Some(step) = self.steps.get(self.next_step) {
            if step.at_s > elapsed {
                break;
            }
            if let Some(note) = &step.note {
                tracing::info!(at_s = step.at_s, "scenario: {note}");
            }
            self.state.apply(&step.change(), now);
            self.next_step += 1;
        }
    }
}

#[async_trait::async_trait]
impl UpsDriver for SimDriver {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        self.advance(Instant::now());
        if self.state.comm_lost {
            return Err(DriverError::CommLost(
                "simulated UPS is not answering".into(),
            ));
        }
        Ok(self.state.reading(SystemTime::now()))
    }

    /// A scenario step is read when its time comes, not at the next poll.
    async fn wait_for_change(&mut self, max: Duration) -> bool {
        let now = Instant::now();
        let due = self
            .steps
            .get(self.next_step)
            .and_then(|s| Duration::try_from_secs_f64(s.at_s.max(0.0)).ok())
            .and_then(|d| self.started.checked_add(d));
        match due {
            Some(at) if at.saturating_duration_since(now) < max => {
                tokio::time::sleep(at.saturating_duration_since(now)).await;
                true
            }
            _ => {
                tokio::time::sleep(max).await;
                false
            }
        }
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        let now = Instant::now();
        let st = &mut self.state;
        if let UpsCommand::Simulate(change) = &cmd {
            // The operator's hand on the simulator reaches it even while it plays dead.
            st.advance(now);
            st.apply(change, now);
            return Ok(st.describe());
        }
        if st.comm_lost {
            return Err(DriverError::CommLost(
                "simulated UPS is not answering".into(),
            ));
        }
        match cmd {
            UpsCommand::SelfTest => {
                st.apply(
                    &SimChange {
                        start_self_test: true,
                        ..Default::default()
                    },
                    now,
                );
            }
            UpsCommand::KillPower { .. } => {
                st.output_off = st.on_battery;
            }
            UpsCommand::Simulate(_) => {}
        }
        st.commands.push(cmd);
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_play_in_time_and_comm_loss_is_an_error() {
        let sc = Scenario {
            steps: vec![
                ScenarioStep {
                    at_s: 0.0,
                    mains: Some(Mains::Fail),
                    ..Default::default()
                },
                ScenarioStep {
                    at_s: 0.0,
                    comm: Some(Comm::Lost),
                    ..Default::default()
                },
            ],
            ..Scenario::steady()
        };
        let mut d = SimDriver::new(sc);
        assert!(matches!(d.poll().await, Err(DriverError::CommLost(_))));
        let said = d
            .command(UpsCommand::Simulate(SimChange {
                comm_lost: Some(false),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert!(!said.is_empty());
        let r = d.poll().await.unwrap();
        assert!(r.flags.on_battery);
    }
}
