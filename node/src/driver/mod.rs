//! The driver interface: one module per UPS family behind one trait.
//!
//! A driver owns its transport (serial port, USB, socket, or nothing for `sim`), turns
//! the UPS's bytes into a normalised [`UpsReading`], and carries out [`UpsCommand`]s.
//! Adding a UPS family means adding a module here and a [`DriverKind`] variant; the
//! monitor, policy and API never change.

pub mod apcsmart;
pub mod sim;

use std::time::Duration;

use upsilon_core::config::{DriverKind, UpsSection};
use upsilon_core::reading::UpsReading;

pub use upsilon_core::ups::UpsCommand;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The UPS did not answer, or answered nonsense; the monitor counts it as comm loss.
    #[error("no communication with the UPS: {0}")]
    CommLost(String),
    /// This poll failed but the driver is still inside its grace period (apcsmart: 20 s
    /// of failed link checks); the monitor keeps the last reading and waits.
    #[error("the UPS missed a poll: {0}")]
    Retrying(String),
    /// The driver cannot be set up at all (bad device path, bad scenario file, ...).
    #[error("{0}")]
    Setup(String),
    #[error("the UPS does not support {0}")]
    Unsupported(&'static str),
    /// The UPS understood the command and said no.
    #[error("the UPS refused: {0}")]
    Refused(String),
}

/// One UPS family.
#[async_trait::async_trait]
pub trait UpsDriver: Send {
    /// The driver's short name, as in the config (`sim`, `apcsmart`, ...).
    fn kind(&self) -> &'static str;
    /// Read the UPS once. Errors mean "no reading this time", never a panic.
    async fn poll(&mut self) -> Result<UpsReading, DriverError>;
    /// Carry out a command.
    async fn command(&mut self, cmd: UpsCommand) -> Result<(), DriverError>;
    /// Waits up to `max` for the UPS to announce a change by itself (an alert);
    /// `true` means "poll now". Drivers without alerts just sleep.
    async fn wait_for_change(&mut self, max: Duration) -> bool {
        tokio::time::sleep(max).await;
        false
    }
    /// How long one [`UpsDriver::poll`] may take before it counts as a comm failure.
    fn poll_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// How long [`UpsDriver::command`] may take before the node gives up on it.
    fn command_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// A driver built from config, plus the simulator handle when it is a `sim`.
pub struct OpenedDriver {
    pub driver: Box<dyn UpsDriver>,
    pub sim: Option<sim::SimHandle>,
}

/// Builds the driver a `[[ups]]` section asks for.
pub fn open(section: &UpsSection) -> Result<OpenedDriver, DriverError> {
    match section.driver {
        DriverKind::Sim => {
            let scenario = match &section.scenario {
                Some(p) => sim::Scenario::load(p).map_err(|e| DriverError::Setup(e.to_string()))?,
                None => sim::Scenario::steady(),
            };
            let d = sim::SimDriver::new(scenario);
            let handle = d.handle();
            Ok(OpenedDriver {
                driver: Box::new(d),
                sim: Some(handle),
            })
        }
        DriverKind::Apcsmart => {
            let device = section.device.clone().ok_or_else(|| {
                DriverError::Setup(format!("UPS {}: apcsmart needs `device`", section.name))
            })?;
            Ok(OpenedDriver {
                driver: Box::new(apcsmart::ApcSmartDriver::new(
                    Box::new(apcsmart::link::TtyOpener::new(device)),
                    apcsmart::Timing::default(),
                )),
                sim: None,
            })
        }
    }
}
