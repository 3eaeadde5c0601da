//! The driver interface: one module per UPS family behind one trait.
//!
//! A driver owns its transport (serial port, USB, socket, or nothing for `sim`), its
//! `[[ups]]` keys (parsed and checked by its own `Config`, with located errors), turns
//! the UPS's bytes into a normalised [`UpsReading`], and carries out [`UpsCommand`]s
//! (kill power, self test, a simulator's run-time change). Adding a UPS family means
//! adding a module here and a line in [`DRIVERS`]; the config schema, monitor, policy
//! and API never change.

pub mod apcsmart;
pub mod device_thread;
pub mod legacy_master;
pub mod modbus;
pub mod net;
pub mod sim;
pub mod usbhid;

use std::time::Duration;

use serde::de::DeserializeOwned;
use upsilon_core::config::{ConfigError, NodeConfig, UpsSection};
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
    /// Carry out a command; the answer says what the UPS did, in words (empty when
    /// there is nothing to add).
    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError>;
    /// Waits up to `max` for the UPS to announce a change by itself (an alert);
    /// `true` means "poll now". Drivers without alerts just sleep.
    async fn wait_for_change(&mut self, max: Duration) -> bool {
        tokio::time::sleep(max).await;
        false
    }
    /// Lines the driver has for the event log since the last call, in apcupsd's words
    /// (a legacy master connecting, failing or going silent). Most drivers have none.
    fn take_events(&mut self) -> Vec<(upsilon_core::events::EventKind, String)> {
        Vec::new()
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

/// A UPS family: its config name, how to check its keys and how to open it.
pub struct DriverEntry {
    pub name: &'static str,
    pub open: fn(&UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError>,
}

/// Every driver this node has, by the name `[[ups]] driver` gives.
pub const DRIVERS: &[DriverEntry] = &[
    DriverEntry {
        name: "sim",
        open: sim::open,
    },
    DriverEntry {
        name: "apcsmart",
        open: apcsmart::open,
    },
    DriverEntry {
        name: "net",
        open: net::open,
    },
    DriverEntry {
        name: "legacy-master",
        open: legacy_master::open,
    },
    DriverEntry {
        name: "usbhid",
        open: usbhid::open,
    },
    DriverEntry {
        name: "modbus",
        open: modbus::open,
    },
];

fn entry(section: &UpsSection) -> Result<&'static DriverEntry, ConfigError> {
    DRIVERS
        .iter()
        .find(|d| d.name == section.driver)
        .ok_or_else(|| {
            let names: Vec<&str> = DRIVERS.iter().map(|d| d.name).collect();
            section.origin.error(
                "driver",
                format!(
                    "UPS {:?}: unknown driver {:?}: use one of {}",
                    section.name,
                    section.driver,
                    names.join(", ")
                ),
            )
        })
}

/// Builds the driver a `[[ups]]` section asks for; its keys are checked first.
/// Opening does no I/O (a serial port is opened at the first poll), so this is also
/// the `--check-config` check of a section.
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    (entry(section)?.open)(section)
}

/// Checks every `[[ups]]` section's driver keys, for `--check-config` and start-up.
pub fn check_all(cfg: &NodeConfig) -> Result<(), ConfigError> {
    for u in &cfg.ups {
        open(u)?;
    }
    Ok(())
}

/// A driver's own keys of `section`, parsed into its `Config` (which denies unknown
/// keys): an error names the key and what the driver takes, at the key's line. `keys`
/// are the driver's keys, each with an example setting for the "needs" message.
pub fn settings<T: DeserializeOwned>(
    section: &UpsSection,
    keys: &[(&str, &str)],
) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(section.settings.clone())).map_err(|e| {
        let msg = e.message().trim().to_string();
        let named = msg.split('`').nth(1).unwrap_or("").to_string();
        let driver = &section.driver;
        let ups = &section.name;
        if msg.starts_with("unknown field") {
            let takes = if keys.is_empty() {
                "it takes no keys of its own".to_string()
            } else {
                let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                format!("it takes {}", names.join(", "))
            };
            section.origin.error(
                &named,
                format!("UPS {ups:?}: the {driver} driver has no `{named}`; {takes}"),
            )
        } else if msg.starts_with("missing field") {
            let example = keys
                .iter()
                .find(|(k, _)| *k == named)
                .map_or(String::new(), |(_, e)| format!(", e.g. {e}"));
            section.origin.error(
                "driver",
                format!("UPS {ups:?}: the {driver} driver needs `{named}`{example}"),
            )
        } else {
            // A bad value: the key whose removal makes the rest parse (or only miss
            // a required key) is the one to blame.
            let key = section
                .settings
                .keys()
                .find(|k| {
                    let mut rest = section.settings.clone();
                    rest.remove(*k);
                    match T::deserialize(toml::Value::Table(rest)) {
                        Ok(_) => true,
                        Err(e) => e.message().starts_with("missing field"),
                    }
                })
                .map_or("driver", String::as_str);
            section
                .origin
                .error(key, format!("UPS {ups:?} ({driver} driver): {msg}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[node]\nname = \"node1\"\nlisten = \"127.0.0.1:7443\"\n\n[tls]\n\
        ca = \"ca.pem\"\ncert = \"node1.pem\"\nkey = \"node1.key\"\n\n[[ups]]\nname = \"ups1\"\n";

    /// Loads `BASE` plus `ups` (the rest of the `[[ups]]` section, from line 12) and
    /// checks its driver keys.
    fn check(ups: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, format!("{BASE}{ups}")).unwrap();
        std::fs::write(dir.path().join("s.toml"), "name = \"s\"\n").unwrap();
        let cfg = NodeConfig::load(&p).map_err(|e| e.to_string())?;
        check_all(&cfg).map_err(|e| e.to_string())
    }

    #[test]
    fn each_driver_checks_its_own_keys_at_their_line() {
        check("driver = \"sim\"\n").unwrap();
        check("driver = \"sim\"\nscenario = \"s.toml\"\n").unwrap();
        check("driver = \"apcsmart\"\ndevice = \"/dev/ttyS0\"\n").unwrap();
        check("driver = \"net\"\ndevice = \"ups-host\"\n").unwrap();
        let e = check("driver = \"net\"\n").unwrap_err();
        assert!(
            e.contains(":12: ups.driver: UPS \"ups1\": the net driver needs `device`, e.g. device = \"ups-host:3551\""),
            "{e}"
        );

        let e = check("driver = \"smoke\"\n").unwrap_err();
        assert!(
            e.contains(
                ":12: ups.driver: UPS \"ups1\": unknown driver \"smoke\": use one of sim, apcsmart, net"
            ),
            "{e}"
        );
        let e = check("driver = \"apcsmart\"\n").unwrap_err();
        assert!(
            e.contains(":12: ups.driver: UPS \"ups1\": the apcsmart driver needs `device`, e.g. device = \"/dev/ttyS0\""),
            "{e}"
        );
        let e = check("driver = \"apcsmart\"\nscenario = \"x.toml\"\ndevice = \"/dev/ttyS0\"\n")
            .unwrap_err();
        assert!(
            e.contains(":13: ups.scenario: UPS \"ups1\": the apcsmart driver has no `scenario`; it takes device"),
            "{e}"
        );
        let e = check("driver = \"sim\"\ndevice = \"/dev/ttyS0\"\n").unwrap_err();
        assert!(
            e.contains(
                ":13: ups.device: UPS \"ups1\": the sim driver has no `device`; it takes scenario"
            ),
            "{e}"
        );
        let e = check("driver = \"apcsmart\"\ndevice = 5\n").unwrap_err();
        assert!(
            e.contains(":13: ups.device: UPS \"ups1\" (apcsmart driver):"),
            "{e}"
        );
        check("driver = \"usbhid\"\n").unwrap();
        check("driver = \"usbhid\"\nvendor = 0x051d\nproduct = 0x0002\nserial = \"X\"\n").unwrap();
        let e = check("driver = \"usbhid\"\nproduct = 0x0002\n").unwrap_err();
        assert!(
            e.contains(":13: ups.product: UPS \"ups1\": `product` needs `vendor` too"),
            "{e}"
        );
        let e = check("driver = \"usbhid\"\nvendor = 70000\n").unwrap_err();
        assert!(
            e.contains(":13: ups.vendor: UPS \"ups1\" (usbhid driver):"),
            "{e}"
        );
        check("driver = \"modbus\"\ndevice = \"/dev/ttyS0\"\n").unwrap();
        check("driver = \"modbus\"\ndevice = \"usb\"\nserial = \"AS1\"\n").unwrap();
        let e = check("driver = \"modbus\"\n").unwrap_err();
        assert!(e.contains("the modbus driver needs `device`"), "{e}");
        let e =
            check("driver = \"modbus\"\ndevice = \"/dev/ttyS0\"\nserial = \"AS1\"\n").unwrap_err();
        assert!(
            e.contains(":14: ups.serial: UPS \"ups1\": `serial` picks a USB UPS"),
            "{e}"
        );
        let e = check("driver = \"sim\"\nscenario = \"missing.toml\"\n").unwrap_err();
        assert!(e.contains("missing.toml"), "{e}");
    }
}
