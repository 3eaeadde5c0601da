//! Modbus RTU on a serial line (APC cable 940-0625A): 9600 baud 8N1, blocking on the
//! driver's own thread, with apcupsd's timers (docs/hardware/modbus.md): at least 45 ms of
//! silence before a request (inter-frame), 500 ms for the first byte of the answer,
//! and the answer ends when its length (from its head) is reached or the line is
//! silent for 25 ms (inter-character).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio_serial::SerialPort;
use upsilon_core::ups::modbus::{MAX_FRAME, ModbusError, ModbusTransport, response_len_for};

pub const BAUD: u32 = 9600;
const INTER_FRAME: Duration = Duration::from_millis(45);
const INTER_CHAR: Duration = Duration::from_millis(25);
const RESPONSE: Duration = Duration::from_millis(500);

/// An open serial line to the UPS.
pub struct RtuSerial {
    port: Box<dyn SerialPort>,
    device: String,
    /// When the line last carried a byte.
    quiet_since: Instant,
}

impl RtuSerial {
    /// Opens `device` at 9600 8N1, exclusively.
    pub fn open(device: &str) -> Result<Self, ModbusError> {
        let port = tokio_serial::new(device, BAUD)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .timeout(RESPONSE)
            .open()
            .map_err(|e| {
                let hint = match e.kind() {
                    tokio_serial::ErrorKind::NoDevice => {
                        " (is the UPS's serial cable plugged in, and the device name right?)"
                    }
                    tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
                        " (permission denied: add the daemon's user to the dialout group)"
                    }
                    _ => "",
                };
                ModbusError::Link(format!("cannot open {device}: {e}{hint}"))
            })?;
        Ok(RtuSerial {
            port,
            device: device.to_string(),
            quiet_since: Instant::now(),
        })
    }

    fn link(&self, what: &str, e: std::io::Error) -> ModbusError {
        ModbusError::Link(format!("{}: {what}: {e}", self.device))
    }
}

impl ModbusTransport for RtuSerial {
    fn with_crc(&self) -> bool {
        true
    }

    fn exchange(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, ModbusError> {
        let quiet = self.quiet_since.elapsed();
        if quiet < INTER_FRAME {
            std::thread::sleep(INTER_FRAME - quiet);
        }
        // A late answer to an earlier request must not pass for this one's.
        let _ = self.port.clear(tokio_serial::ClearBuffer::Input);
        self.port
            .write_all(frame)
            .map_err(|e| self.link("write", e))?;
        let mut got: Vec<u8> = Vec::new();
        let mut buf = [0u8; MAX_FRAME];
        let started = Instant::now();
        loop {
            let wait = if got.is_empty() {
                // The request's own transmission time counts too.
                RESPONSE.saturating_sub(started.elapsed()) + Duration::from_millis(1)
            } else {
                INTER_CHAR
            };
            let _ = self.port.set_timeout(wait);
            match self.port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    self.quiet_since = Instant::now();
                    if let Some(len) = response_len_for(frame, &got, true)
                        && got.len() >= len
                    {
                        got.truncate(len);
                        break;
                    }
                    if got.len() >= MAX_FRAME {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.link("read", e)),
            }
        }
        self.quiet_since = Instant::now();
        Ok((!got.is_empty()).then_some(got))
    }
}
