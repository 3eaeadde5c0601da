//! The real USB underneath the HID protocol: rusb (vendored libusb) with a context of
//! our own (the global one panics on a host without USB), enumeration by vendor,
//! product and serial number, the kernel driver detached and interface 0 claimed, and
//! the control and interrupt transfers of docs/hardware/usb-hid.md §2. The only code that touches
//! rusb. Errors say what to do: no USB stack, no device, or a device node the daemon may
//! not open (the udev rule the package ships).

use std::time::Duration;

use rusb::UsbContext;
use upsilon_core::ups::hid::descriptor::ReportType;
use upsilon_core::ups::hid::session::{HidError, HidTransport};

use super::{DeviceMatch, Found, Opener};

/// The udev rule named in permission errors (deploy/udev/ in the source).
pub const UDEV_RULE: &str = "deploy/udev/60-upsilon-ups.rules";

/// apcupsd's control-transfer timeout.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens USB HID UPSes through libusb.
#[derive(Default)]
pub struct UsbOpener {
    context: Option<rusb::Context>,
}

impl UsbOpener {
    fn context(&mut self) -> Result<rusb::Context, HidError> {
        if let Some(c) = &self.context {
            return Ok(c.clone());
        }
        // Never rusb's global context: it panics where libusb cannot start.
        let c = rusb::Context::new().map_err(|e| {
            HidError::Gone(format!(
                "no USB on this host (libusb could not start: {e}); a usbhid UPS needs a USB \
                 stack and /dev/bus/usb"
            ))
        })?;
        self.context = Some(c.clone());
        Ok(c)
    }
}

fn gone_or_request(what: &str, e: rusb::Error) -> HidError {
    match e {
        rusb::Error::NoDevice | rusb::Error::Io | rusb::Error::NotFound => {
            HidError::Gone(format!("{what}: {e} (the UPS may have been unplugged)"))
        }
        other => HidError::Request(format!("{what}: {other}")),
    }
}

impl Opener for UsbOpener {
    fn open(
        &mut self,
        want: &DeviceMatch,
    ) -> Result<(Box<dyn HidTransport + Send>, Found), HidError> {
        let ctx = self.context()?;
        let devices = ctx
            .devices()
            .map_err(|e| HidError::Gone(format!("cannot list USB devices: {e}")))?;
        let mut refused = Vec::new();
        let mut seen = Vec::new();
        for dev in devices.iter() {
            let Ok(dd) = dev.device_descriptor() else {
                continue;
            };
            let (vid, pid) = (dd.vendor_id(), dd.product_id());
            if !want.accepts(vid, pid) {
                continue;
            }
            let node = format!("/dev/bus/usb/{:03}/{:03}", dev.bus_number(), dev.address());
            let handle = match dev.open() {
                Ok(h) => h,
                Err(rusb::Error::Access) => {
                    refused.push(format!(
                        "{vid:04x}:{pid:04x} at {node}: permission denied; install the udev rule \
                         {UDEV_RULE} in /etc/udev/rules.d and put the daemon's user in group \
                         upsilon (then `udevadm trigger`), or run upsilond as root"
                    ));
                    continue;
                }
                Err(e) => {
                    refused.push(format!("{vid:04x}:{pid:04x} at {node}: {e}"));
                    continue;
                }
            };
            let serial = dd
                .serial_number_string_index()
                .and_then(|i| handle.read_string_descriptor_ascii(i).ok())
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            seen.push(format!("{vid:04x}:{pid:04x} serial {serial:?}"));
            if want.serial.as_ref().is_some_and(|s| *s != serial) {
                continue;
            }
            let Some(iface) = hid_interface(&dev) else {
                refused.push(format!("{vid:04x}:{pid:04x} at {node}: no HID interface"));
                continue;
            };
            // Linux's usbhid owns the interface; libusb must take it over.
            if handle.kernel_driver_active(iface.number).unwrap_or(false)
                && let Err(e) = handle.detach_kernel_driver(iface.number)
            {
                refused.push(format!(
                    "{vid:04x}:{pid:04x} at {node}: cannot detach the kernel's driver: {e}"
                ));
                continue;
            }
            if let Err(e) = handle.claim_interface(iface.number) {
                refused.push(format!(
                    "{vid:04x}:{pid:04x} at {node}: cannot claim interface {}: {e} (another \
                     program, such as apcupsd or NUT's usbhid-ups, may hold it)",
                    iface.number
                ));
                continue;
            }
            let found = Found {
                vendor: vid,
                product: pid,
                serial,
                place: node,
            };
            return Ok((
                Box::new(UsbTransport {
                    handle,
                    iface,
                    language: None,
                }),
                found,
            ));
        }
        let mut why = format!("no USB UPS matching {want}");
        if !seen.is_empty() {
            why.push_str(&format!(" (seen: {})", seen.join(", ")));
        }
        if !refused.is_empty() {
            why.push_str(&format!("; {}", refused.join("; ")));
        }
        Err(HidError::Gone(why))
    }

    fn describe(&self) -> String {
        "USB (libusb)".into()
    }
}

/// The HID interface's number, endpoints and report descriptor length (from the
/// configuration descriptor's copy of the HID class descriptor, which NUT found right
/// where GET_DESCRIPTOR was garbage).
#[derive(Debug, Clone, Copy)]
struct HidInterface {
    number: u8,
    interrupt_in: Option<u8>,
    interrupt_out: Option<u8>,
    report_len: Option<u16>,
}

fn hid_interface(dev: &rusb::Device<rusb::Context>) -> Option<HidInterface> {
    let config = dev.active_config_descriptor().ok()?;
    for iface in config.interfaces() {
        for d in iface.descriptors() {
            // HID, and not a boot keyboard or mouse (protocol 1, 2): a UPS's interface
            // has protocol 0, and a keyboard's kernel driver is never detached.
            if d.class_code() != 3 || matches!(d.protocol_code(), 1 | 2) {
                continue;
            }
            let mut hid = HidInterface {
                number: d.interface_number(),
                interrupt_in: None,
                interrupt_out: None,
                report_len: None,
            };
            for ep in d.endpoint_descriptors() {
                if ep.transfer_type() == rusb::TransferType::Interrupt {
                    match ep.direction() {
                        rusb::Direction::In => hid.interrupt_in = Some(ep.address()),
                        rusb::Direction::Out => hid.interrupt_out = Some(ep.address()),
                    }
                }
            }
            // HID class descriptor: 09 21 bcdHID(2) country n (type len(2))...
            let extra = d.extra();
            if extra.len() >= 9 && extra[1] == 0x21 && extra[6] == 0x22 {
                hid.report_len = Some(u16::from_le_bytes([extra[7], extra[8]]));
            }
            return Some(hid);
        }
    }
    None
}

/// A claimed USB HID UPS.
struct UsbTransport {
    handle: rusb::DeviceHandle<rusb::Context>,
    iface: HidInterface,
    language: Option<rusb::Language>,
}

fn value(kind: ReportType, id: u8) -> u16 {
    let t: u16 = match kind {
        ReportType::Input => 1,
        ReportType::Output => 2,
        ReportType::Feature => 3,
    };
    (t << 8) | u16::from(id)
}

impl HidTransport for UsbTransport {
    fn report_descriptor(&mut self) -> Result<Vec<u8>, HidError> {
        let len = match self.iface.report_len {
            Some(l) => usize::from(l),
            None => {
                let mut class = [0u8; 9];
                let n = self
                    .handle
                    .read_control(
                        0x81,
                        0x06,
                        0x2100,
                        u16::from(self.iface.number),
                        &mut class,
                        CONTROL_TIMEOUT,
                    )
                    .map_err(|e| gone_or_request("HID class descriptor", e))?;
                if n < 9 {
                    return Err(HidError::Request(format!(
                        "HID class descriptor: {n} bytes"
                    )));
                }
                usize::from(u16::from_le_bytes([class[7], class[8]]))
            }
        };
        let mut buf = vec![0u8; len.clamp(1, 8192)];
        let n = self
            .handle
            .read_control(
                0x81,
                0x06,
                0x2200,
                u16::from(self.iface.number),
                &mut buf,
                CONTROL_TIMEOUT,
            )
            .map_err(|e| gone_or_request("report descriptor", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn get_report(&mut self, kind: ReportType, id: u8, len: usize) -> Result<Vec<u8>, HidError> {
        // Some Back-UPS send more than they declare (docs/hardware/usb-hid.md §4): room for it.
        let mut buf = vec![0u8; len.max(1) + 64];
        let n = self
            .handle
            .read_control(
                0xA1,
                0x01,
                value(kind, id),
                u16::from(self.iface.number),
                &mut buf,
                CONTROL_TIMEOUT,
            )
            .map_err(|e| gone_or_request(&format!("GET_REPORT {id:#04x}"), e))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn set_report(&mut self, kind: ReportType, data: &[u8]) -> Result<(), HidError> {
        let id = data.first().copied().unwrap_or(0);
        self.handle
            .write_control(
                0x21,
                0x09,
                value(kind, id),
                u16::from(self.iface.number),
                data,
                CONTROL_TIMEOUT,
            )
            .map_err(|e| gone_or_request(&format!("SET_REPORT {id:#04x}"), e))?;
        Ok(())
    }

    fn read_interrupt(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, HidError> {
        let Some(ep) = self.iface.interrupt_in else {
            std::thread::sleep(timeout);
            return Ok(None);
        };
        let mut buf = [0u8; 64];
        match self.handle.read_interrupt(ep, &mut buf, timeout) {
            Ok(n) => Ok(Some(buf[..n].to_vec())),
            Err(rusb::Error::Timeout) => Ok(None),
            Err(e) => Err(gone_or_request("interrupt IN", e)),
        }
    }

    fn write_interrupt(&mut self, data: &[u8]) -> Result<(), HidError> {
        let ep = self.iface.interrupt_out.ok_or_else(|| {
            HidError::Request("this UPS has no interrupt OUT endpoint (no Modbus over USB)".into())
        })?;
        self.handle
            .write_interrupt(ep, data, CONTROL_TIMEOUT)
            .map_err(|e| gone_or_request("interrupt OUT", e))?;
        Ok(())
    }

    fn string(&mut self, index: u8) -> Result<String, HidError> {
        let lang = match self.language {
            Some(l) => l,
            None => {
                let l = self
                    .handle
                    .read_languages(CONTROL_TIMEOUT)
                    .map_err(|e| gone_or_request("string languages", e))?
                    .first()
                    .copied()
                    .ok_or_else(|| HidError::Request("the UPS lists no string language".into()))?;
                self.language = Some(l);
                l
            }
        };
        self.handle
            .read_string_descriptor(lang, index, CONTROL_TIMEOUT)
            .map(|s| s.trim().to_string())
            .map_err(|e| gone_or_request(&format!("string {index}"), e))
    }
}

impl Drop for UsbTransport {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.iface.number);
        // Give the interface back to the kernel (hidraw), as NUT and apcupsd do not; a
        // failure here only matters to other programs.
        let _ = self.handle.attach_kernel_driver(self.iface.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host without a USB stack (these machines, docs/hardware/usb-hid.md §7) libusb cannot
    /// start: a clear error, never rusb's global-context panic. Elsewhere, no UPS matches
    /// an unused vendor ID.
    #[test]
    fn no_usb_or_no_device_is_an_error_in_words() {
        let mut opener = UsbOpener::default();
        let want = DeviceMatch {
            vendor: Some(0xfffe),
            product: None,
            serial: None,
        };
        let Err(HidError::Gone(why)) = opener.open(&want) else {
            panic!("vendor fffe found");
        };
        assert!(
            why.contains("no USB on this host") || why.contains("no USB UPS matching vendor fffe"),
            "{why}"
        );
    }
}
