//! The driver interface: one module per UPS family behind one trait.
//!
//! A driver owns its transport (serial port, USB, socket, or nothing for `sim`), turns
//! the UPS's bytes into a normalised [`UpsReading`], and carries out [`UpsCommand`]s.
//! Adding a UPS family means adding a module here and a [`DriverKind`] variant; the
//! monitor, policy and API never change.

pub mod sim;

use crate::config::{DriverKind, UpsSection};
use crate::reading::UpsReading;

/// What a driver can be asked to do to its UPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsCommand {
    /// Cut the output after `delay_s` seconds; restore it when mains return if
    /// `return_on_mains` (apcupsd's hibernate / `--killpower`), else stay off.
    KillPower { delay_s: u32, return_on_mains: bool },
    /// Start a battery self test.
    SelfTest,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The UPS did not answer, or answered nonsense; the monitor counts it as comm loss.
    #[error("no communication with the UPS: {0}")]
    CommLost(String),
    /// The driver cannot be set up at all (bad device path, bad scenario file, ...).
    #[error("{0}")]
    Setup(String),
    #[error("the UPS does not support {0}")]
    Unsupported(&'static str),
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
    }
}
