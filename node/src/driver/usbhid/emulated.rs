//! A USB HID device reached over a Unix socket instead of libusb: how the tests (and a
//! developer without the UPS) put an emulated device under the real driver. Set
//! `UPSILON_USB_EMULATOR=/path/to/socket` in the daemon's environment (test-only, like
//! `UPSILON_FAULT_FILE`): the `usbhid` and `modbus` (USB) drivers then open the device
//! the socket serves. One JSON line per request and per reply; the server side is
//! `upsilon-tests`' `support::fakeusb`, which serves `FakeHid`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upsilon_core::ups::hid::descriptor::ReportType;
use upsilon_core::ups::hid::session::{HidError, HidTransport};

use super::{DeviceMatch, Found, Opener};

/// The environment variable naming the socket.
pub const ENV: &str = "UPSILON_USB_EMULATOR";

/// A request to the emulated device (the transport's operations, plus `Open`, the
/// enumeration: it answers the device's identity, or "gone" while it is unplugged).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Open,
    Descriptor,
    GetReport { kind: u8, id: u8, len: usize },
    SetReport { kind: u8, data: Vec<u8> },
    ReadInterrupt { timeout_ms: u64 },
    WriteInterrupt { data: Vec<u8> },
    String { index: u8 },
}

/// The device's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Device {
        vendor: u16,
        product: u16,
        serial: String,
    },
    Bytes {
        data: Vec<u8>,
    },
    Text {
        text: String,
    },
    Done,
    Nothing,
    Gone {
        why: String,
    },
    Failed {
        why: String,
    },
}

/// The report type as a number on this wire (HID's: 1 input, 2 output, 3 feature).
pub fn kind_code(kind: ReportType) -> u8 {
    match kind {
        ReportType::Input => 1,
        ReportType::Output => 2,
        ReportType::Feature => 3,
    }
}

pub fn kind_of(code: u8) -> Option<ReportType> {
    match code {
        1 => Some(ReportType::Input),
        2 => Some(ReportType::Output),
        3 => Some(ReportType::Feature),
        _ => None,
    }
}

/// Opens the device the socket serves.
pub struct EmulatedOpener {
    pub socket: PathBuf,
}

impl Opener for EmulatedOpener {
    fn open(
        &mut self,
        want: &DeviceMatch,
    ) -> Result<(Box<dyn HidTransport + Send>, Found), HidError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            HidError::Gone(format!("emulated USB at {}: {e}", self.socket.display()))
        })?;
        let mut t = EmulatedTransport {
            reader: BufReader::new(
                stream
                    .try_clone()
                    .map_err(|e| HidError::Gone(e.to_string()))?,
            ),
            stream,
        };
        match t.call(&Request::Open, Duration::from_secs(2))? {
            Reply::Device {
                vendor,
                product,
                serial,
            } => {
                let matches = want.accepts(vendor, product)
                    && want.serial.as_ref().is_none_or(|s| *s == serial);
                if !matches {
                    return Err(HidError::Gone(format!(
                        "no USB UPS matching {want} (seen: {vendor:04x}:{product:04x} serial {serial:?})"
                    )));
                }
                let found = Found {
                    vendor,
                    product,
                    serial,
                    place: format!("the emulator socket {}", self.socket.display()),
                };
                Ok((Box::new(t), found))
            }
            other => Err(HidError::Gone(format!("emulated USB: {other:?}"))),
        }
    }

    fn describe(&self) -> String {
        format!("emulated USB ({ENV}={})", self.socket.display())
    }
}

struct EmulatedTransport {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl EmulatedTransport {
    fn call(&mut self, req: &Request, timeout: Duration) -> Result<Reply, HidError> {
        let gone = |e: std::io::Error| HidError::Gone(format!("emulated USB: {e}"));
        let mut line = serde_json::to_string(req).map_err(|e| HidError::Request(e.to_string()))?;
        line.push('\n');
        self.stream.write_all(line.as_bytes()).map_err(gone)?;
        self.stream
            .set_read_timeout(Some(timeout + Duration::from_secs(2)))
            .map_err(gone)?;
        let mut answer = String::new();
        let n = self.reader.read_line(&mut answer).map_err(gone)?;
        if n == 0 {
            return Err(HidError::Gone("emulated USB: the device closed".into()));
        }
        let reply: Reply = serde_json::from_str(&answer)
            .map_err(|e| HidError::Request(format!("emulated USB: bad reply: {e}")))?;
        match reply {
            Reply::Gone { why } => Err(HidError::Gone(why)),
            Reply::Failed { why } => Err(HidError::Request(why)),
            other => Ok(other),
        }
    }

    fn bytes(&mut self, req: &Request) -> Result<Vec<u8>, HidError> {
        match self.call(req, Duration::from_secs(1))? {
            Reply::Bytes { data } => Ok(data),
            other => Err(HidError::Request(format!("emulated USB: {other:?}"))),
        }
    }
}

impl HidTransport for EmulatedTransport {
    fn report_descriptor(&mut self) -> Result<Vec<u8>, HidError> {
        self.bytes(&Request::Descriptor)
    }
    fn get_report(&mut self, kind: ReportType, id: u8, len: usize) -> Result<Vec<u8>, HidError> {
        self.bytes(&Request::GetReport {
            kind: kind_code(kind),
            id,
            len,
        })
    }
    fn set_report(&mut self, kind: ReportType, data: &[u8]) -> Result<(), HidError> {
        self.call(
            &Request::SetReport {
                kind: kind_code(kind),
                data: data.to_vec(),
            },
            Duration::from_secs(1),
        )
        .map(|_| ())
    }
    fn read_interrupt(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, HidError> {
        let req = Request::ReadInterrupt {
            timeout_ms: timeout.as_millis() as u64,
        };
        match self.call(&req, timeout)? {
            Reply::Bytes { data } => Ok(Some(data)),
            _ => Ok(None),
        }
    }
    fn write_interrupt(&mut self, data: &[u8]) -> Result<(), HidError> {
        self.call(
            &Request::WriteInterrupt {
                data: data.to_vec(),
            },
            Duration::from_secs(1),
        )
        .map(|_| ())
    }
    fn string(&mut self, index: u8) -> Result<String, HidError> {
        match self.call(&Request::String { index }, Duration::from_secs(1))? {
            Reply::Text { text } => Ok(text),
            other => Err(HidError::Request(format!("emulated USB: {other:?}"))),
        }
    }
}
