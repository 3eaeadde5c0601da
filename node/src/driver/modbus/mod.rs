//! The `modbus` driver: APC Smart-UPS SMT/SMX/SRT/SMC over Modbus RTU, on a serial
//! line (`serial`) or through the UPS's USB HID interface (`usb`), as apcupsd 3.14's
//! `UPSTYPE modbus`. The protocol (registers, scaling, kill by SimpleSignalingCommand)
//! is `upsilon_core::ups::modbus::ModbusUps`; this module owns the config (`device` =
//! a serial device, or "usb" with an optional `serial` number) and runs the blocking
//! line on a thread of its own. Modbus must be enabled on the UPS's front panel.

pub mod serial;
pub mod usb;

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::reading::UpsReading;
use upsilon_core::ups::modbus::{ModbusError, ModbusTransport, ModbusUps};

use super::device_thread::{DeviceThread, Idle};
use super::usbhid::{DeviceMatch, Opener};
use super::{DriverError, UpsCommand, UpsDriver};

/// The `[[ups]]` keys of a `modbus` UPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The serial device (`/dev/ttyS0`, `/dev/ttyUSB0`), or `usb`.
    pub device: String,
    /// With `device = "usb"`: the UPS's USB serial number, to pick one of several.
    pub serial: Option<String>,
}

const KEYS: &[(&str, &str)] = &[
    ("device", "device = \"/dev/ttyS0\" (or \"usb\")"),
    ("serial", "serial = \"AS1234567890\""),
];

/// Checks a modbus section's keys (no I/O).
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(section, KEYS)?;
    let usb = cfg.device == "usb";
    if cfg.device.trim().is_empty() {
        return Err(section.origin.error(
            "device",
            format!(
                "UPS {:?}: the modbus driver needs a serial device (device = \"/dev/ttyS0\") or device = \"usb\"",
                section.name
            ),
        ));
    }
    if !usb && cfg.serial.is_some() {
        return Err(section.origin.error(
            "serial",
            format!(
                "UPS {:?}: `serial` picks a USB UPS; it needs device = \"usb\"",
                section.name
            ),
        ));
    }
    Ok(Box::new(ModbusDriver {
        name: section.name.clone(),
        cfg,
        thread: None,
    }))
}

/// The driver: a handle to the line's thread (started at the first poll).
pub struct ModbusDriver {
    name: String,
    cfg: Config,
    thread: Option<DeviceThread<ModbusDevice>>,
}

/// Where the line is.
enum Line {
    Serial(String),
    Usb(Box<dyn Opener>, DeviceMatch),
}

type Ups = ModbusUps<Box<dyn ModbusTransport + Send>>;

/// What lives on the line's thread.
struct ModbusDevice {
    line: Line,
    ups: Option<Ups>,
}

impl ModbusDevice {
    fn ensure_open(&mut self) -> Result<&mut Ups, DriverError> {
        if self.ups.is_none() {
            let transport: Box<dyn ModbusTransport + Send> = match &mut self.line {
                Line::Serial(device) => Box::new(
                    serial::RtuSerial::open(device)
                        .map_err(|e| DriverError::CommLost(e.to_string()))?,
                ),
                Line::Usb(opener, want) => {
                    let (hid, found) = opener
                        .open(want)
                        .map_err(|e| DriverError::CommLost(e.to_string()))?;
                    tracing::info!(
                        "Modbus over USB: {:04x}:{:04x} serial {:?} at {}",
                        found.vendor,
                        found.product,
                        found.serial,
                        found.place
                    );
                    Box::new(
                        usb::RtuUsb::new(hid).map_err(|e| DriverError::CommLost(e.to_string()))?,
                    )
                }
            };
            let mut ups = ModbusUps::new(transport);
            ups.read_strings();
            self.ups = Some(ups);
        }
        Ok(self.ups.as_mut().expect("opened above"))
    }

    /// A failed exchange: a failed line is closed (opened again at the next poll).
    fn fail(&mut self, e: ModbusError) -> DriverError {
        if matches!(e, ModbusError::Link(_)) {
            self.ups = None;
        }
        match e {
            ModbusError::Exception { .. } => DriverError::Refused(e.to_string()),
            e => DriverError::CommLost(e.to_string()),
        }
    }

    fn poll(&mut self) -> Result<UpsReading, DriverError> {
        let ups = self.ensure_open()?;
        let r = match ups.poll(SystemTime::now()) {
            // One more try after noise or a missed answer, as apcupsd retries.
            Err(e) if !matches!(e, ModbusError::Link(_)) => ups.poll(SystemTime::now()),
            r => r,
        };
        r.map_err(|e| match self.fail(e) {
            DriverError::Refused(why) => DriverError::CommLost(why),
            other => other,
        })
    }

    fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        let ups = self.ensure_open()?;
        let done = match cmd {
            UpsCommand::KillPower {
                delay_s,
                return_on_mains,
            } => {
                // The UPS waits its outlet group's turn-off delay: set to what the
                // cluster asks first (0 keeps the UPS's own).
                let mut words = String::new();
                if delay_s > 0 {
                    let d = u16::try_from(delay_s).unwrap_or(u16::MAX);
                    match ups.set_off_delay(d) {
                        Ok(()) => words = format!("turn-off delay set to {d} s; "),
                        Err(e) => words = format!("turn-off delay not set ({e}); "),
                    }
                }
                ups.kill(return_on_mains).map(|()| {
                    format!(
                        "{words}SimpleSignalingCommand = {}",
                        if return_on_mains {
                            "1 (shutdown, return with mains)"
                        } else {
                            "2 (remote off)"
                        }
                    )
                })
            }
            UpsCommand::SelfTest => ups.self_test().map(|()| "self test started".to_string()),
            UpsCommand::Simulate(_) => {
                return Err(DriverError::Unsupported(
                    "simulated changes (it is a real UPS)",
                ));
            }
        };
        done.map_err(|e| self.fail(e))
    }
}

impl Idle for ModbusDevice {
    fn idle(&mut self) -> Option<bool> {
        // Modbus has no unsolicited messages: polled only.
        None
    }
}

#[async_trait::async_trait]
impl UpsDriver for ModbusDriver {
    fn kind(&self) -> &'static str {
        "modbus"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        if self.thread.is_none() {
            let line = if self.cfg.device == "usb" {
                Line::Usb(
                    super::usbhid::opener(),
                    DeviceMatch {
                        vendor: Some(0x051d),
                        product: None,
                        serial: self.cfg.serial.clone(),
                    },
                )
            } else {
                Line::Serial(self.cfg.device.clone())
            };
            self.thread = Some(DeviceThread::spawn(
                &format!("modbus-{}", self.name),
                ModbusDevice { line, ups: None },
            )?);
        }
        let t = self.thread.as_ref().expect("started above");
        t.run(|d| d.poll()).await?
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        match &self.thread {
            Some(t) => t.run(move |d| d.command(cmd)).await?,
            None => Err(DriverError::CommLost(
                "the UPS has not been polled yet".into(),
            )),
        }
    }

    fn poll_timeout(&self) -> Duration {
        // Three blocks (and the strings once), each up to 500 ms and one retry.
        Duration::from_secs(8)
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}
