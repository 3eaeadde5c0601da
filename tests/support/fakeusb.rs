//! An emulated USB HID UPS for the `usbhid` (and USB `modbus`) driver of a real
//! `upsilond`: `FakeHid` (upsilon-core) served on a Unix socket in the driver's
//! `UPSILON_USB_EMULATOR` protocol. The test changes reports (with or without an
//! interrupt report, as the UPS would send on a change), unplugs and replugs the device
//! (a new "enumeration": old handles stay gone), reads every SET_REPORT, and can put a
//! Modbus slave behind the interrupt OUT endpoint (APC's Modbus over USB). Fixtures: a
//! Back-UPS and a Smart-UPS laid out as HARDWARE.md §1.7 records them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use upsilon_core::ups::hid::descriptor::ReportType;
use upsilon_core::ups::hid::session::FakeHid;
use upsilon_core::ups::modbus::FakeModbus;
use upsilon_node::driver::usbhid::emulated::{Reply, Request, kind_code, kind_of};

pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A Back-UPS (report IDs as the ES 850G2 and Back-UPS 350 captures): strings 1 and 2,
/// Charging/Discharging 6, RemainingCapacity + RunTimeToEmpty 12, ACPresent 19,
/// BelowRemainingCapacityLimit + ShutdownImminent 20, and APC's kill usages:
/// APCBattCapBeforeStartup 0x21, APCDelayBeforeStartup 0x22, APCDelayBeforeShutdown
/// 0x23 (16-bit signed); on charge, on mains, 100 %, 1380 s.
pub fn back_ups() -> FakeHid {
    let mut f = FakeHid {
        descriptor: hex("05 84 09 04 a1 01 09 24 a1 00 \
             85 01 09 fe 75 08 95 01 15 00 26 ff 00 b1 22 \
             85 02 09 ff b1 22 \
             85 06 05 85 09 44 81 a2 09 44 b1 a2 09 45 81 a2 09 45 b1 a2 \
             85 0c 09 66 25 64 81 a2 09 66 b1 a2 09 68 75 10 27 ff ff 00 00 66 01 10 81 a2 09 68 b1 a2 \
             85 13 09 d0 75 08 25 01 65 00 81 a2 09 d0 b1 a2 \
             85 14 09 42 81 a2 09 42 b1 a2 05 84 09 69 81 a2 09 69 b1 a2 \
             06 86 ff 85 21 09 19 26 ff 00 b1 a2 \
             75 10 16 ff ff 26 ff 7f 85 22 09 7e b1 a2 85 23 09 7d b1 a2 \
             c0 c0"),
        ..Default::default()
    };
    for bytes in [
        vec![0x01, 2],
        vec![0x02, 3],
        vec![0x06, 1, 0],
        vec![0x0c, 100, 0x64, 0x05],
        vec![0x13, 1],
        vec![0x14, 0, 0],
    ] {
        f.reports.insert((ReportType::Feature, bytes[0]), bytes);
    }
    f.strings.insert(2, "Back-UPS ES 850G2".into());
    f.strings.insert(3, "4B1234P56789".into());
    f
}

/// A Smart-UPS (as the Smart-UPS 1000 capture): PresentStatus bits in report 7
/// (Charging, Discharging, ACPresent, BelowRemainingCapacityLimit, ShutdownImminent),
/// RemainingCapacity 12, RunTimeToEmpty 13, DelayBeforeShutdown 18, DelayBeforeReboot
/// 19, DelayBeforeStartup 40 (16-bit signed), iProduct 1 and the Modbus usages
/// ModbusRTURx (Output 0x90) and ModbusRTUTx (Input 0x91), 63 bytes each.
pub fn smart_ups() -> FakeHid {
    let mut f = FakeHid {
        descriptor: hex("05 84 09 04 a1 01 09 24 a1 00 \
             85 01 09 fe 75 08 95 01 15 00 26 ff 00 b1 22 \
             85 07 05 85 75 01 25 01 09 44 b1 a2 09 45 b1 a2 09 d0 b1 a2 09 42 b1 a2 \
             05 84 09 69 b1 a2 95 03 b1 01 95 01 \
             85 0c 05 85 75 08 25 64 09 66 b1 a2 \
             85 0d 09 68 75 10 27 ff ff 00 00 66 01 10 b1 a2 \
             05 84 65 00 16 00 80 26 ff 7f \
             85 12 09 57 b1 a2 85 13 09 55 b1 a2 85 28 09 56 b1 a2 \
             c0 \
             06 86 ff 15 00 26 ff 00 75 08 95 3f \
             85 90 09 fc 91 02 85 91 09 fd 81 02 \
             c0"),
        ..Default::default()
    };
    for bytes in [
        vec![0x01, 1],
        vec![0x07, 0b0000_0101],
        vec![0x0c, 100],
        vec![0x0d, 0x08, 0x52],
        vec![0x12, 0xff, 0xff],
        vec![0x13, 0xff, 0xff],
        vec![0x28, 0xff, 0xff],
    ] {
        f.reports.insert((ReportType::Feature, bytes[0]), bytes);
    }
    f.strings.insert(1, "Smart-UPS 1000 FW:600.1.I".into());
    f
}

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
            let _ = kind_code(ReportType::Output);
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
