//! An emulated USB HID UPS for the `usbhid` (and USB `modbus`) driver of a real
//! `upsilond`: `FakeHid` (upsilon-core) served on a Unix socket in the driver's
//! `UPSILON_USB_EMULATOR` protocol. The test changes reports (with or without an
//! interrupt report, as the UPS would send on a change), unplugs and replugs the device
//! (a new "enumeration": old handles stay gone), reads every SET_REPORT, and can put a
//! Modbus slave behind the interrupt OUT endpoint (APC's Modbus over USB). Fixtures (from
//! upsilon-core): a Back-UPS and a Smart-UPS laid out as docs/hardware/usb-hid.md §6 records them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use upsilon_core::ups::hid::descriptor::ReportType;
pub use upsilon_core::ups::hid::fixtures::{back_ups, smart_ups};
use upsilon_core::ups::hid::session::FakeHid;
use upsilon_core::ups::modbus::FakeModbus;
use upsilon_node::driver::usbhid::emulated::{Reply, Request, kind_of};

struct State {
    hid: FakeHid,
    vendor: u16,
    product: u16,
    serial: String,
    /// Bumped on every replug: handles from an earlier plug are gone.
    plug: u64,
    /// A Modbus slave behind interrupt OUT (answers come back as Input report `tx`).
    modbus: Option<(FakeModbus, u8)>,
    requests: u64,
}

/// The emulated device, served until dropped.
pub struct FakeUsb {
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeUsb {
    /// Serves `hid` as `vendor:product` with `serial` on the socket `path`.
    pub fn start(path: &Path, hid: FakeHid, vendor: u16, product: u16, serial: &str) -> FakeUsb {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new((
            Mutex::new(State {
                hid,
                vendor,
                product,
                serial: serial.to_string(),
                plug: 0,
                modbus: None,
                requests: 0,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(conn, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeUsb { state, stop }
    }

    /// The Back-UPS fixture as APC 051d:0002, serial 4B1234P56789, on `path`.
    pub fn back_ups(path: &Path) -> FakeUsb {
        FakeUsb::start(path, back_ups(), 0x051d, 0x0002, "4B1234P56789")
    }

    /// The Smart-UPS fixture as APC 051d:0003, serial AS1234567890, on `path`.
    pub fn smart_ups(path: &Path) -> FakeUsb {
        FakeUsb::start(path, smart_ups(), 0x051d, 0x0003, "AS1234567890")
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (m, cv) = &*self.state;
        let r = f(&mut m.lock().unwrap());
        cv.notify_all();
        r
    }

    /// The UPS changes report `bytes` (ID first) and announces it on the interrupt
    /// endpoint, as an Input report.
    pub fn change(&self, bytes: &[u8]) {
        self.with(|s| {
            s.hid
                .reports
                .insert((ReportType::Feature, bytes[0]), bytes.to_vec());
            s.hid
                .reports
                .insert((ReportType::Input, bytes[0]), bytes.to_vec());
            s.hid.interrupts.push_back(bytes.to_vec());
        });
    }

    /// The interrupt endpoint delivers `bytes` as they are (a wrong report ID, a short
    /// or an oversized report), the report table unchanged.
    pub fn raw_interrupt(&self, bytes: &[u8]) {
        self.with(|s| s.hid.interrupts.push_back(bytes.to_vec()));
    }

    /// The device's report descriptor becomes `bytes` (seen at the next enumeration).
    pub fn set_descriptor(&self, bytes: &[u8]) {
        self.with(|s| s.hid.descriptor = bytes.to_vec());
    }

    /// The UPS changes report `bytes` without telling (seen at the next poll only).
    pub fn change_quietly(&self, bytes: &[u8]) {
        self.with(|s| {
            s.hid
                .reports
                .insert((ReportType::Feature, bytes[0]), bytes.to_vec());
            s.hid.reports.remove(&(ReportType::Input, bytes[0]));
        });
    }

    pub fn unplug(&self) {
        self.with(|s| s.hid.unplugged = true);
    }

    pub fn replug(&self) {
        self.with(|s| {
            s.hid.unplugged = false;
            s.plug += 1;
        });
    }

    /// Every SET_REPORT so far.
    pub fn writes(&self) -> Vec<(ReportType, Vec<u8>)> {
        self.with(|s| s.hid.writes.clone())
    }

    /// How many requests the device has answered (polls are GET_REPORTs).
    pub fn requests(&self) -> u64 {
        self.with(|s| s.requests)
    }

    /// Puts a Modbus slave behind the interrupt endpoints; answers come back as Input
    /// report `tx`.
    pub fn attach_modbus(&self, slave: FakeModbus, tx: u8) {
        self.with(|s| s.modbus = Some((slave, tx)));
    }

    /// The Modbus slave, to change registers or read its writes.
    pub fn modbus<R>(&self, f: impl FnOnce(&mut FakeModbus) -> R) -> R {
        self.with(|s| f(&mut s.modbus.as_mut().expect("a Modbus slave attached").0))
    }
}

impl Drop for FakeUsb {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.with(|s| s.hid.unplugged = true);
    }
}

fn serve(conn: UnixStream, state: Arc<(Mutex<State>, Condvar)>) {
    let mut out = conn.try_clone().unwrap();
    let mut lines = BufReader::new(conn);
    let mut plug: Option<u64> = None;
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => answer(&state, &mut plug, req),
            Err(e) => Reply::Failed {
                why: format!("bad request: {e}"),
            },
        };
        let mut text = serde_json::to_string(&reply).unwrap();
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(state: &Arc<(Mutex<State>, Condvar)>, plug: &mut Option<u64>, req: Request) -> Reply {
    let (m, cv) = &**state;
    let mut s = m.lock().unwrap();
    s.requests += 1;
    let gone = Reply::Gone {
        why: "no such device (it may have been disconnected)".into(),
    };
    if s.hid.unplugged {
        return gone;
    }
    if let Request::Open = req {
        *plug = Some(s.plug);
        return Reply::Device {
            vendor: s.vendor,
            product: s.product,
            serial: s.serial.clone(),
        };
    }
    if *plug != Some(s.plug) {
        return gone;
    }
    let failed =
        |e: upsilon_core::ups::hid::session::HidError| Reply::Failed { why: e.to_string() };
    use upsilon_core::ups::hid::session::HidTransport;
    match req {
        Request::Open => unreachable!(),
        Request::Descriptor => Reply::Bytes {
            data: s.hid.descriptor.clone(),
        },
        Request::GetReport { kind, id, len } => {
            let Some(kind) = kind_of(kind) else {
                return Reply::Failed {
                    why: "bad report type".into(),
                };
            };
            match (&mut s.hid).get_report(kind, id, len) {
                Ok(data) => Reply::Bytes { data },
                Err(e) => failed(e),
            }
        }
        Request::SetReport { kind, data } => {
            let Some(kind) = kind_of(kind) else {
                return Reply::Failed {
                    why: "bad report type".into(),
                };
            };
            match (&mut s.hid).set_report(kind, &data) {
                Ok(()) => Reply::Done,
                Err(e) => failed(e),
            }
        }
        Request::ReadInterrupt { timeout_ms } => {
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                if s.hid.unplugged || *plug != Some(s.plug) {
                    return gone;
                }
                if let Some(data) = s.hid.interrupts.pop_front() {
                    return Reply::Bytes { data };
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Reply::Nothing;
                }
                s = cv.wait_timeout(s, left).unwrap().0;
            }
        }
        Request::WriteInterrupt { data } => {
            let Some((slave, tx)) = s.modbus.as_mut() else {
                return Reply::Failed {
                    why: "no interrupt OUT endpoint".into(),
                };
            };
            let tx = *tx;
            // Report ID, then the RTU frame without its CRC, padded to 64 bytes.
            let pdu = data.get(1..).unwrap_or_default();
            let len = modbus_request_len(pdu);
            if let Some(mut reply) = slave.answer(&pdu[..len.min(pdu.len())]) {
                reply.insert(0, tx);
                reply.resize(64, 0);
                s.hid.interrupts.push_back(reply);
                cv.notify_all();
            }
            Reply::Done
        }
        Request::String { index } => match (&mut s.hid).string(index) {
            Ok(text) => Reply::Text { text },
            Err(e) => failed(e),
        },
    }
}

/// A request PDU's length (unit, function, body) without the padding.
fn modbus_request_len(pdu: &[u8]) -> usize {
    match pdu.get(1) {
        Some(0x03) | Some(0x06) => 6,
        Some(0x10) => 7 + usize::from(pdu.get(6).copied().unwrap_or(0)),
        _ => pdu.len(),
    }
}
