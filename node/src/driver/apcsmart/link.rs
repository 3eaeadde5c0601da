//! The serial link under the apcsmart driver, behind a small trait.
//!
//! [`PortOpener`] opens the device and hands back a [`SerialIo`] byte stream; the driver
//! never sees tokio-serial. The real opener sets 2400 8N1 raw with an exclusive lock and
//! clears RTS (docs/hardware/apc-smart.md §1); modem-line ioctls fail on ptys (ENOTTY), so that is
//! best effort. Open errors are turned into sentences that name the device and say
//! what to check.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::{SerialPort, SerialPortBuilderExt};

/// A byte stream to the UPS.
pub trait SerialIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// Drops input not yet read (apcupsd's `tcflush` before a link check); best effort.
    fn discard_input(&mut self) {}
}

/// Opens the link to one UPS; called again after every loss.
pub trait PortOpener: Send + Sync {
    fn open(&self) -> Result<Box<dyn SerialIo>, String>;
    /// The device as the operator wrote it, for messages.
    fn device(&self) -> &Path;
}

/// A serial device (`/dev/ttyS0`, `/dev/ttyUSB0`, a pty) through tokio-serial.
pub struct TtyOpener {
    device: PathBuf,
}

impl TtyOpener {
    pub fn new(device: impl Into<PathBuf>) -> Self {
        TtyOpener {
            device: device.into(),
        }
    }
}

impl SerialIo for tokio_serial::SerialStream {
    fn discard_input(&mut self) {
        let _ = self.clear(tokio_serial::ClearBuffer::Input);
    }
}

impl PortOpener for TtyOpener {
    fn open(&self) -> Result<Box<dyn SerialIo>, String> {
        let path = self.device.to_string_lossy();
        let mut port = tokio_serial::new(path.as_ref(), 2400)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(|e| explain_open_error(&self.device, &e))?;
        // Needed for the BackUPS Pro PnP cable; a pty has no modem lines.
        let _ = port.write_request_to_send(false);
        Ok(Box::new(port))
    }

    fn device(&self) -> &Path {
        &self.device
    }
}

/// An open error in words: what happened to which device and what to check.
pub fn explain_open_error(device: &Path, e: &tokio_serial::Error) -> String {
    use std::io::ErrorKind as Io;
    use tokio_serial::ErrorKind as K;
    let d = device.display();
    match e.kind {
        K::Io(Io::NotFound) => format!(
            "cannot open {d}: no such device; check `device` in [[ups]] and that the \
             cable or USB-serial adapter is plugged in"
        ),
        K::Io(Io::PermissionDenied) => format!(
            "cannot open {d}: permission denied; run upsilond as a user in the device's \
             group (usually `dialout`)"
        ),
        K::NoDevice => format!(
            "cannot open {d}: the port is busy ({}); stop the other program using it \
             (apcupsd, NUT, another upsilond)",
            e.description
        ),
        _ => format!("cannot open {d}: {}", e.description),
    }
}
