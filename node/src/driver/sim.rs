//! `sim`: the driver that plays a simulated UPS (the model and scenario file are
//! `upsilon_core::ups::sim`) in real time and obeys run-time changes through a
//! [`SimHandle`] (`upsilon sim set`).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::{DriverError, UpsCommand, UpsDriver};
use upsilon_core::reading::UpsReading;
pub use upsilon_core::ups::sim::*;

/// A cloneable handle that reads and changes a running simulator.
#[derive(Debug, Clone)]
pub struct SimHandle {
    state: Arc<Mutex<SimState>>,
}

impl SimHandle {
    pub fn set(&self, change: &SimChange) -> String {
        let mut st = self.state.lock().expect("sim state lock");
        let now = Instant::now();
        st.advance(now);
        st.apply(change, now);
        st.describe()
    }

    pub fn snapshot(&self) -> SimState {
        self.state.lock().expect("sim state lock").clone()
    }
}

/// The driver: plays the scenario's steps as their time comes, then reads the state.
pub struct SimDriver {
    state: Arc<Mutex<SimState>>,
    steps: Vec<ScenarioStep>,
    next_step: usize,
    started: Instant,
}

impl SimDriver {
    pub fn new(scenario: Scenario) -> Self {
        let now = Instant::now();
        SimDriver {
            state: Arc::new(Mutex::new(SimState::new(scenario.ups, now))),
            steps: scenario.steps,
            next_step: 0,
            started: now,
        }
    }

    pub fn handle(&self) -> SimHandle {
        SimHandle {
            state: self.state.clone(),
        }
    }

    fn play_due_steps(&mut self, st: &mut SimState, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        while let Some(step) = self.steps.get(self.next_step) {
            if step.at_s > elapsed {
                break;
            }
            if let Some(note) = &step.note {
                tracing::info!(at_s = step.at_s, "scenario: {note}");
            }
            st.apply(&step.change(), now);
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
        let now = Instant::now();
        let state = self.state.clone();
        let mut st = state.lock().expect("sim state lock");
        st.advance(now);
        self.play_due_steps(&mut st, now);
        if st.comm_lost {
            return Err(DriverError::CommLost(
                "simulated UPS is not answering".into(),
            ));
        }
        Ok(st.reading(SystemTime::now()))
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<(), DriverError> {
        let mut st = self.state.lock().expect("sim state lock");
        if st.comm_lost {
            return Err(DriverError::CommLost(
                "simulated UPS is not answering".into(),
            ));
        }
        match cmd {
            UpsCommand::SelfTest => {
                let now = Instant::now();
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
        }
        st.commands.push(cmd);
        Ok(())
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
        d.handle().set(&SimChange {
            comm_lost: Some(false),
            ..Default::default()
        });
        let r = d.poll().await.unwrap();
        assert!(r.flags.on_battery);
    }
}
