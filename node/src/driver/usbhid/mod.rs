//! The `usbhid` driver: a USB HID power device (APC Back-UPS and Smart-UPS, and the
//! class's other vendors). The protocol is `upsilon_core::ups::hid::session::HidUps`;
//! this module owns the config (`vendor`, `product`, `serial`, `interrupt`), finding the
//! device (`usb`: libusb; `emulated`: a socket, for tests), and the thread it runs on:
//! libusb calls block, so they never run on the runtime's workers. Between polls the
//! thread reads the interrupt endpoint, and a report that changes a value ("AC lost")
//! ends the poll wait at once. Unplugged, the UPS is a comm failure until it is found
//! again.

pub mod emulated;
pub mod usb;

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::reading::UpsReading;
use upsilon_core::ups::hid::session::{HidError, HidTransport, HidUps};

use super::device_thread::{DeviceThread, IDLE_SLICE, Idle};
use super::{DriverError, UpsCommand, UpsDriver};

/// The `[[ups]]` keys of a `usbhid` UPS; all optional: by default the first APC (or
/// other known power-device vendor's) UPS found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// USB vendor ID, e.g. `vendor = 0x051d`; any known UPS vendor when absent.
    pub vendor: Option<u16>,
    /// USB product ID (with `vendor`).
    pub product: Option<u16>,
    /// The UPS's serial number, to pick one of several.
    pub serial: Option<String>,
    /// Read the interrupt endpoint (default: yes, except APC 051d:0003/0004, whose pipe
    /// NUT found broken: those are polled only).
    pub interrupt: Option<bool>,
}

const KEYS: &[(&str, &str)] = &[
    ("vendor", "vendor = 0x051d"),
    ("product", "product = 0x0002"),
    ("serial", "serial = \"3B1234X56789\""),
    ("interrupt", "interrupt = false"),
];

/// Which USB devices a section accepts.
#[derive(Debug, Clone, Default)]
pub struct DeviceMatch {
    pub vendor: Option<u16>,
    pub product: Option<u16>,
    pub serial: Option<String>,
}

/// APC's UPS product IDs (docs/hardware/usb-hid.md §1), and the reserved Schneider ones.
const APC: u16 = 0x051d;
const APC_PRODUCTS: &[u16] = &[0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0xffff];
/// Other vendors whose HID interfaces are power devices (checked on the descriptor).
const POWER_VENDORS: &[u16] = &[
    0x0463, // Eaton / MGE
    0x0764, // CyberPower
    0x09ae, // Tripp Lite
    0x0d9f, // Powercom
    0x10af, // Liebert
    0x050d, // Belkin
];

impl DeviceMatch {
    pub fn accepts(&self, vendor: u16, product: u16) -> bool {
        match self.vendor {
            Some(v) => v == vendor && self.product.is_none_or(|p| p == product),
            None => {
                (vendor == APC && APC_PRODUCTS.contains(&product))
                    || ((vendor == APC || vendor == 0x16de) && (0xc801..=0xc805).contains(&product))
                    || (vendor, product) == (0x03f0, 0x1fe3)
                    || POWER_VENDORS.contains(&vendor)
            }
        }
    }
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.vendor, self.product) {
            (Some(v), Some(p)) => write!(f, "{v:04x}:{p:04x}")?,
            (Some(v), None) => write!(f, "vendor {v:04x}")?,
            _ => write!(f, "a known UPS vendor (APC 051d, ...)")?,
        }
        if let Some(s) = &self.serial {
            write!(f, " with serial {s:?}")?;
        }
        Ok(())
    }
}

/// The device found: its identity and where.
#[derive(Debug, Clone)]
pub struct Found {
    pub vendor: u16,
    pub product: u16,
    pub serial: String,
    pub place: String,
}

/// Finds and opens the device: libusb, or the emulator socket in tests.
pub trait Opener: Send {
    fn open(
        &mut self,
        want: &DeviceMatch,
    ) -> Result<(Box<dyn HidTransport + Send>, Found), HidError>;
    fn describe(&self) -> String;
}

/// The opener this process uses: the emulator when `UPSILON_USB_EMULATOR` is set.
pub fn opener() -> Box<dyn Opener> {
    match std::env::var_os(emulated::ENV) {
        Some(p) if !p.is_empty() => Box::new(emulated::EmulatedOpener { socket: p.into() }),
        _ => Box::new(usb::UsbOpener::default()),
    }
}

/// Checks a usbhid section's keys (no I/O).
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(section, KEYS)?;
    if cfg.product.is_some() && cfg.vendor.is_none() {
        return Err(section.origin.error(
            "product",
            format!(
                "UPS {:?}: `product` needs `vendor` too, e.g. vendor = 0x051d",
                section.name
            ),
        ));
    }
    Ok(Box::new(UsbHidDriver {
        name: section.name.clone(),
        cfg,
        thread: None,
    }))
}

/// The driver: a handle to the device's thread (started at the first poll).
pub struct UsbHidDriver {
    name: String,
    cfg: Config,
    thread: Option<DeviceThread<HidDevice>>,
}

/// What lives on the device's thread.
struct HidDevice {
    opener: Box<dyn Opener>,
    want: DeviceMatch,
    interrupt: Option<bool>,
    ups: Option<HidUps<Box<dyn HidTransport + Send>>>,
    use_interrupt: bool,
    found: Option<Found>,
    /// When the UPS was last looked for.
    last_look: Instant,
}

impl HidDevice {
    fn ensure_open(&mut self) -> Result<&mut HidUps<Box<dyn HidTransport + Send>>, DriverError> {
        if self.ups.is_none() {
            self.last_look = Instant::now();
            let (transport, found) = self
                .opener
                .open(&self.want)
                .map_err(|e| DriverError::CommLost(e.to_string()))?;
            let ups = HidUps::open(transport).map_err(|e| {
                DriverError::CommLost(format!(
                    "{:04x}:{:04x} at {}: {e}",
                    found.vendor, found.product, found.place
                ))
            })?;
            let power = ups
                .desc
                .fields
                .iter()
                .any(|f| matches!(f.usage >> 16, 0x84 | 0x85));
            if !power {
                return Err(DriverError::CommLost(format!(
                    "{:04x}:{:04x} at {} is no HID power device (no Power Device or Battery \
                     System usages): set vendor and product to the UPS's",
                    found.vendor, found.product, found.place
                )));
            }
            // NUT: APC 051d:0003 and 0004 have a broken interrupt pipe.
            let broken = found.vendor == APC && matches!(found.product, 0x0003 | 0x0004);
            self.use_interrupt = self.interrupt.unwrap_or(!broken);
            tracing::info!(
                "USB UPS {:04x}:{:04x} serial {:?} found at {} ({} interrupt reports)",
                found.vendor,
                found.product,
                found.serial,
                found.place,
                if self.use_interrupt {
                    "with"
                } else {
                    "without"
                }
            );
            self.found = Some(found);
            self.ups = Some(ups);
        }
        Ok(self.ups.as_mut().expect("opened above"))
    }

    /// A USB error: a gone device is forgotten (looked for again at the next poll).
    fn fail(&mut self, e: HidError) -> DriverError {
        if matches!(e, HidError::Gone(_)) {
            self.ups = None;
            self.found = None;
        }
        DriverError::CommLost(e.to_string())
    }

    fn poll(&mut self) -> Result<UpsReading, DriverError> {
        let ups = self.ensure_open()?;
        match ups.poll(SystemTime::now()) {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        let ups = self.ensure_open()?;
        let done = match cmd {
            UpsCommand::KillPower {
                delay_s,
                return_on_mains,
            } => ups.kill(delay_s, return_on_mains),
            UpsCommand::SelfTest => ups.self_test().map(|()| "self test started".to_string()),
            UpsCommand::Simulate(_) => {
                return Err(DriverError::Unsupported(
                    "simulated changes (it is a real UPS)",
                ));
            }
        };
        match done {
            Ok(words) => Ok(words),
            Err(HidError::Request(why)) => Err(DriverError::Refused(why)),
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// How often a missing UPS is looked for between polls (a replugged one is back
/// within this, whatever the poll interval).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

impl Idle for HidDevice {
    fn idle(&mut self) -> Option<bool> {
        if self.ups.is_none() {
            if self.last_look.elapsed() < LOOK_AGAIN {
                return None;
            }
            self.last_look = Instant::now();
            // Found again: poll now, so commok shows at once.
            return self.ensure_open().is_ok().then_some(true);
        }
        if !self.use_interrupt {
            return None;
        }
        let ups = self.ups.as_mut()?;
        match ups.interrupt(IDLE_SLICE) {
            Ok(changed) => Some(changed),
            Err(e @ HidError::Gone(_)) => {
                tracing::warn!("USB UPS: {e}");
                self.ups = None;
                self.found = None;
                // Poll now: the comm failure shows at once.
                Some(true)
            }
            Err(_) => Some(false),
        }
    }
}

impl UsbHidDriver {
    fn thread(&mut self) -> Result<&DeviceThread<HidDevice>, DriverError> {
        if self.thread.is_none() {
            let device = HidDevice {
                opener: opener(),
                want: DeviceMatch {
                    vendor: self.cfg.vendor,
                    product: self.cfg.product,
                    serial: self.cfg.serial.clone(),
                },
                interrupt: self.cfg.interrupt,
                ups: None,
                use_interrupt: false,
                found: None,
                last_look: Instant::now(),
            };
            tracing::info!(ups = %self.name, "usbhid: looking for the UPS through {}", device.opener.describe());
            self.thread = Some(DeviceThread::spawn(
                &format!("usbhid-{}", self.name),
                device,
            )?);
        }
        Ok(self.thread.as_ref().expect("started above"))
    }
}

#[async_trait::async_trait]
impl UpsDriver for UsbHidDriver {
    fn kind(&self) -> &'static str {
        "usbhid"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        self.thread()?.run(|d| d.poll()).await?
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        self.thread()?.run(move |d| d.command(cmd)).await?
    }

    async fn wait_for_change(&mut self, max: Duration) -> bool {
        match &self.thread {
            Some(t) => t.wait_for_change(max).await,
            None => {
                tokio::time::sleep(max).await;
                false
            }
        }
    }

    fn command_timeout(&self) -> Duration {
        // Up to a dozen control transfers of 1 s each.
        Duration::from_secs(15)
    }
}
