//! An APC Smart-UPS (SMT) speaking Modbus RTU on a pty, for the `modbus` driver of a
//! real `upsilond`: `FakeModbus` (upsilon-core) behind a serial line paced as 9600 baud
//! (each frame takes its 10 bits per byte on the wire, both ways), with a small power
//! model: mains lost and back, low battery (SimpleSignalingStatus "shutdown imminent"),
//! and kill power (SimpleSignalingCommand) turning the output off after the outlet
//! group's turn-off delay and, for "shutdown with return", on again with mains.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use upsilon_core::ups::modbus::{FakeModbus, reg};

/// The line's speed: one byte is 10 bits.
const BYTE_TIME: Duration = Duration::from_micros(10_000_000 / 9600);

/// An SMT1500's registers: on line, 100 %, 1830 s, 230 V, strings.
pub fn smt1500() -> FakeModbus {
    let mut f = FakeModbus {
        crc: true,
        ..Default::default()
    };
    for a in (0..200u16).chain(1024..1040).chain(1536..1544) {
        f.regs.insert(a, 0);
    }
    f.regs.insert(reg::UPS_STATUS + 1, 1 << 1);
    f.regs.insert(reg::RUNTIME + 1, 1830);
    f.regs.insert(reg::STATE_OF_CHARGE, 100 * 512);
    f.regs.insert(reg::BATTERY_VOLTAGE, 27 * 32);
    f.regs.insert(reg::OUTPUT_POWER, 20 * 256);
    f.regs.insert(reg::OUTPUT_VOLTAGE, 230 * 64);
    f.regs.insert(reg::OUTPUT_FREQUENCY, 50 * 128);
    f.regs.insert(reg::INPUT_VOLTAGE, 230 * 64);
    f.regs.insert(reg::MOG_OFF_DELAY, 90);
    for (at, len, text) in [
        (reg::FIRMWARE, 8, "UPS 09.8 (ID18)"),
        (reg::MODEL, 16, "Smart-UPS 1500"),
        (reg::SERIAL, 8, "AS1234567890"),
    ] {
        let padded = format!("{text:<width$}", width = 2 * len);
        for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
            f.regs
                .insert(at + i as u16, u16::from_be_bytes([pair[0], pair[1]]));
        }
    }
    f
}

struct Shared {
    slave: FakeModbus,
    /// Output goes off at this instant (a kill order's delay), with return on mains?
    off_at: Option<(Instant, bool)>,
    output_off: bool,
    return_on_mains: bool,
    on_battery: bool,
    events: Vec<(Instant, String)>,
    requests: Vec<Instant>,
    started: Instant,
}

/// The slave, served until dropped.
pub struct ModbusSlave {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl ModbusSlave {
    /// Serves `slave` on a new pty linked at `link`.
    pub fn start(link: &Path, slave: FakeModbus) -> std::io::Result<ModbusSlave> {
        let (master, keep, pts) = super::smartups::open_pty()?;
        super::smartups::make_link(link, &pts)?;
        let shared = Arc::new(Mutex::new(Shared {
            slave,
            off_at: None,
            output_off: false,
            return_on_mains: false,
            on_battery: false,
            events: vec![],
            requests: vec![],
            started: Instant::now(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, sp) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let _keep = keep;
            run(master, sh, sp)
        });
        Ok(ModbusSlave { shared, stop })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        f(&mut self.shared.lock().unwrap())
    }

    /// Mains lost (`true`) or back.
    pub fn on_battery(&self, on: bool) {
        self.with(|s| {
            s.on_battery = on;
            let status = if on { 1 << 2 } else { 1 << 1 };
            s.slave.regs.insert(reg::UPS_STATUS + 1, status);
            s.slave
                .regs
                .insert(reg::INPUT_VOLTAGE, if on { 0 } else { 230 * 64 });
            s.events.push((
                Instant::now(),
                if on { "mains lost" } else { "mains back" }.into(),
            ));
            if !on && s.output_off && s.return_on_mains {
                s.output_off = false;
                s.events.push((Instant::now(), "output on".into()));
            }
        });
    }

    /// The battery is low: SimpleSignalingStatus "shutdown imminent", 2 % and 60 s.
    pub fn low_battery(&self) {
        self.with(|s| {
            s.slave.regs.insert(reg::SIMPLE_SIGNALING_STATUS, 1 << 1);
            s.slave.regs.insert(reg::STATE_OF_CHARGE, 2 * 512);
            s.slave.regs.insert(reg::RUNTIME + 1, 60);
        });
    }

    /// The UPS stops answering (`true`) or answers again.
    pub fn silent(&self, on: bool) {
        self.with(|s| s.slave.silent = on);
    }

    /// The next answer carries a bad CRC.
    pub fn corrupt_next(&self) {
        self.with(|s| s.slave.corrupt_next = true);
    }

    /// Whether the bad CRC asked for by [`Self::corrupt_next`] is still to be sent.
    pub fn corruption_pending(&self) -> bool {
        self.with(|s| s.slave.corrupt_next)
    }

    /// The UPS no longer has register `addr` (reads including it get an exception).
    pub fn forget(&self, addr: u16) {
        self.with(|s| {
            s.slave.regs.remove(&addr);
        });
    }

    /// Every write the UPS got: (register, values).
    pub fn writes(&self) -> Vec<(u16, Vec<u16>)> {
        self.with(|s| s.slave.writes.clone())
    }

    /// What happened to the UPS, with seconds since start.
    pub fn events(&self) -> Vec<(f64, String)> {
        self.with(|s| {
            s.events
                .iter()
                .map(|(t, e)| (t.duration_since(s.started).as_secs_f64(), e.clone()))
                .collect()
        })
    }

    pub fn output_off(&self) -> bool {
        self.with(|s| s.output_off)
    }

    /// When each request arrived (complete), for timing.
    pub fn requests(&self) -> Vec<Instant> {
        self.with(|s| s.requests.clone())
    }

    /// Instant of the first event named `what`.
    pub fn event_at(&self, what: &str) -> Option<Instant> {
        self.with(|s| s.events.iter().find(|(_, e)| e == what).map(|(t, _)| *t))
    }
}

impl Drop for ModbusSlave {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How long a request frame is, once its head is known.
fn request_len(head: &[u8]) -> Option<usize> {
    match head.get(1)? {
        0x03 | 0x06 => Some(8),
        0x10 => Some(9 + usize::from(*head.get(6)?)),
        _ => None,
    }
}

fn run(mut master: std::fs::File, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let mut frame: Vec<u8> = Vec::new();
    let mut last_byte = Instant::now();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::SeqCst) {
        tick(&shared);
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on a file this thread owns.
        let n = unsafe { libc::poll(&mut pfd, 1, 5) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            match master.read(&mut buf) {
                Ok(k) if k > 0 => {
                    frame.extend_from_slice(&buf[..k]);
                    last_byte = Instant::now();
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        } else if n > 0 {
            // The driver's side is closed (POLLHUP): wait for it to open again.
            std::thread::sleep(Duration::from_millis(10));
        }
        let complete = request_len(&frame).is_some_and(|l| frame.len() >= l);
        // A frame ends by its length, or (garbage) by 3.5 characters of silence.
        if frame.is_empty() || !(complete || last_byte.elapsed() > BYTE_TIME * 4) {
            continue;
        }
        let len = request_len(&frame).unwrap_or(frame.len()).min(frame.len());
        let request: Vec<u8> = frame.drain(..len).collect();
        frame.clear();
        // The request took its time on the wire.
        std::thread::sleep(BYTE_TIME * request.len() as u32);
        let answer = {
            let mut s = shared.lock().unwrap();
            s.requests.push(Instant::now());
            let writes_before = s.slave.writes.len();
            let a = s.slave.answer(&request);
            let new: Vec<(u16, Vec<u16>)> = s.slave.writes[writes_before..].to_vec();
            for (addr, values) in new {
                on_write(&mut s, addr, &values);
            }
            a
        };
        if let Some(a) = answer {
            // Paced as on the line: one byte every 1.04 ms.
            for b in a {
                let _ = master.write_all(&[b]);
                std::thread::sleep(BYTE_TIME);
            }
        }
    }
}

fn on_write(s: &mut Shared, addr: u16, values: &[u16]) {
    if addr == reg::SIMPLE_SIGNALING_COMMAND {
        let v = values.first().copied().unwrap_or(0);
        let delay = s.slave.regs.get(&reg::MOG_OFF_DELAY).copied().unwrap_or(0);
        let what = match v {
            1 => "shutdown with return",
            2 => "remote off",
            _ => "other signalling command",
        };
        s.events
            .push((Instant::now(), format!("{what} accepted (delay {delay} s)")));
        if v == 1 || v == 2 {
            s.off_at = Some((
                Instant::now() + Duration::from_secs(u64::from(delay)),
                v == 1,
            ));
            // Pending output off.
            update_status(s, |st| st | 1 << 9);
        }
    }
}

/// Changes the low word of UPSStatus (the bits this model uses).
fn update_status(s: &mut Shared, f: impl FnOnce(u16) -> u16) {
    let at = reg::UPS_STATUS + 1;
    let st = s.slave.regs.get(&at).copied().unwrap_or(0);
    s.slave.regs.insert(at, f(st));
}

fn tick(shared: &Arc<Mutex<Shared>>) {
    let mut s = shared.lock().unwrap();
    if let Some((at, ret)) = s.off_at
        && Instant::now() >= at
    {
        s.off_at = None;
        s.output_off = true;
        s.return_on_mains = ret;
        s.events.push((Instant::now(), "output off".into()));
        update_status(&mut s, |st| (st & !(1 << 9)) | 1 << 4);
        if ret && !s.on_battery {
            // Mains already back: the output returns after the UPS's own restart.
            s.output_off = false;
            s.events.push((Instant::now(), "output on".into()));
        }
    }
}
