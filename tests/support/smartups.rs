//! A Smart-UPS on a pseudo-terminal, for the apcsmart driver's tests and demos.
//!
//! [`SmartUps`] opens a pty, points a symlink at its slave side (the "device" a node is
//! configured with) and answers the APC smart protocol on the master side from one
//! thread: every command in docs/hardware/apc-smart.md with realistic formats, alerts on its own
//! state changes, `S`/`@nnn`/`K K` with the UPS really turning its output off after the
//! grace delay. The power model is the node's own `sim` model (`SimState`), driven by
//! the same scenario steps. It can go silent, send garbage, truncate or lengthen its
//! replies, slip an alert inside a reply, and vanish like an unplugged adapter. Every
//! byte it receives is logged with its time.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use upsilon_core::ups::sim::{Comm, ScenarioStep, SimChange, SimState, SimUpsSpec};

/// How the UPS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Reads and logs, answers nothing (a dead UPS or a cut cable).
    Silent,
    /// Answers every command with bytes that are not a reply.
    Garbage,
    /// Answers without the CR LF, so no reply ever ends.
    Truncated,
    /// Answers with one character too many (`Q` -> `080`).
    WrongLength,
}

/// What the simulator is, at start.
#[derive(Debug, Clone)]
pub struct SmartUpsOptions {
    /// The symlink to create; it points at the pty's slave side.
    pub link: PathBuf,
    pub spec: SimUpsSpec,
    pub steps: Vec<ScenarioStep>,
    /// Old firmware: no `a`, no `^A` and no `b`; the model comes from `V`.
    pub old_firmware: bool,
    /// Grace delay before the output goes off after a shutdown command (EEPROM `p`).
    pub grace_s: u32,
    /// The values `-` cycles the grace delay through (a Smart-UPS: 20, 180, 300, 600).
    pub grace_values: Vec<u32>,
    /// Delay after mains return before the output comes back (EEPROM `r`).
    pub wake_s: u32,
    /// Shutdown commands this UPS answers `NA` to (`S`, `@`), like some old models.
    pub refuse: Vec<u8>,
    /// For this long after a transfer to battery, `G` (its cause) answers `NA`.
    pub transfer_cause_unknown_s: f64,
}

impl SmartUpsOptions {
    pub fn new(link: impl Into<PathBuf>) -> Self {
        SmartUpsOptions {
            link: link.into(),
            spec: SimUpsSpec {
                model: "Smart-UPS 1500".into(),
                serial_number: "AS1234567890".into(),
                firmware: "601.3.I".into(),
                ..Default::default()
            },
            steps: vec![],
            old_firmware: false,
            grace_s: 20,
            grace_values: vec![20, 180, 300, 600],
            wake_s: 0,
            refuse: vec![],
            transfer_cause_unknown_s: 0.0,
        }
    }
}

/// One byte received from the driver, with its time since the simulator started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub at: Duration,
    pub byte: u8,
}

/// A pending shutdown of the output.
#[derive(Debug, Clone, Copy)]
struct Kill {
    at: Instant,
    return_on_mains: bool,
}

struct Pty {
    master: std::fs::File,
    /// Held open so the pty survives the driver closing and reopening it.
    _slave: OwnedFd,
}

struct Shared {
    opts: SmartUpsOptions,
    sim: SimState,
    mode: Mode,
    started: Instant,
    next_step: usize,
    received: Vec<Received>,
    events: Vec<(Duration, String)>,
    pty: Option<Pty>,
    /// `@` seen, digits collected so far.
    at_digits: Option<String>,
    /// The last single-character query: what `-` cycles (EEPROM values).
    last_query: u8,
    /// First `K` of `K K`.
    first_k: Option<Instant>,
    kill: Option<Kill>,
    /// Output off after a shutdown command; the UPS sleeps and says nothing.
    asleep: Option<bool>,
    wake_at: Option<Instant>,
    /// Alerts to put inside the next reply.
    alert_inside_next: Vec<u8>,
    /// Hold the UPS's own alerts until a reply and send them inside it.
    alerts_inside_replies: bool,
    /// Fall silent when this command arrives (a UPS dying in the middle of a poll).
    silent_on: Option<u8>,
    last_flags: Option<(bool, bool, bool)>,
    last_line_fail_alert: Option<Instant>,
    /// When the UPS last went to battery (mains fail or self test).
    transferred_at: Option<Instant>,
    was_discharging: bool,
}

/// A running simulator; dropping it stops the thread and removes the symlink.
pub struct SmartUps {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub(crate) fn open_pty() -> std::io::Result<(std::fs::File, OwnedFd, PathBuf)> {
    // SAFETY: plain libc calls on fds we own; every return value is checked.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        if m < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let master = std::fs::File::from_raw_fd(m);
        // Not inherited by the upsilond processes the tests start: a child holding the
        // master would keep the pty alive after `vanish()`.
        libc::fcntl(m, libc::F_SETFD, libc::FD_CLOEXEC);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let cpath = std::ffi::CString::new(path.clone()).expect("pty name");
        let s = libc::open(
            cpath.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slave = OwnedFd::from_raw_fd(s);
        // Raw from the start, so nothing is echoed back before the driver sets it up.
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(s, libc::TCSANOW, &t);
        }
        Ok((master, slave, PathBuf::from(path)))
    }
}

pub(crate) fn make_link(link: &Path, target: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
}

impl SmartUps {
    pub fn start(opts: SmartUpsOptions) -> std::io::Result<SmartUps> {
        let now = Instant::now();
        let (master, slave, pts) = open_pty()?;
        make_link(&opts.link, &pts)?;
        let shared = Arc::new(Mutex::new(Shared {
            sim: SimState::new(opts.spec.clone(), now),
            opts,
            mode: Mode::Normal,
            started: now,
            next_step: 0,
            received: vec![],
            events: vec![],
            pty: Some(Pty {
                master,
                _slave: slave,
            }),
            at_digits: None,
            last_query: 0,
            first_k: None,
            kill: None,
            asleep: None,
            wake_at: None,
            alert_inside_next: vec![],
            alerts_inside_replies: false,
            silent_on: None,
            last_flags: None,
            last_line_fail_alert: None,
            transferred_at: None,
            was_discharging: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("smartups".into())
                .spawn(move || run(shared, stop))?
        };
        Ok(SmartUps {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn link(&self) -> PathBuf {
        self.lock().opts.link.clone()
    }

    /// Changes the power state (mains, charge, load, ...); alerts follow by themselves.
    pub fn set(&self, change: &SimChange) {
        let mut s = self.lock();
        let now = Instant::now();
        s.sim.advance(now);
        s.sim.apply(change, now);
        if let Some(c) = change.comm_lost {
            s.mode = if c { Mode::Silent } else { Mode::Normal };
        }
    }

    pub fn mains(&self, fail: bool) {
        self.set(&SimChange {
            on_battery: Some(fail),
            ..Default::default()
        });
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.lock();
        let at = s.started.elapsed();
        s.events.push((at, format!("mode {mode:?}")));
        s.mode = mode;
    }

    /// Sends one raw byte now (any alert character, or noise).
    pub fn send_raw(&self, bytes: &[u8]) {
        let mut s = self.lock();
        write_out(&mut s, bytes);
    }

    /// Puts `alert` in the middle of the next reply.
    pub fn alert_inside_next_reply(&self, alert: u8) {
        self.lock().alert_inside_next.push(alert);
    }

    /// The UPS falls silent (`Mode::Silent`) when it next receives `cmd`, mid-poll.
    pub fn go_silent_on(&self, cmd: u8) {
        self.lock().silent_on = Some(cmd);
    }

    /// From now on the UPS's own alerts arrive inside its next reply, not on their own.
    pub fn alerts_inside_replies(&self, on: bool) {
        self.lock().alerts_inside_replies = on;
    }

    /// Like an unplugged USB-serial adapter: the pty closes and the device path goes.
    pub fn vanish(&self) {
        let mut s = self.lock();
        s.pty = None;
        let _ = std::fs::remove_file(&s.opts.link);
        let at = s.started.elapsed();
        s.events.push((at, "vanished".into()));
    }

    /// Plugged back in: a new pty behind the same device path.
    pub fn reappear(&self) -> std::io::Result<()> {
        let (master, slave, pts) = open_pty()?;
        let mut s = self.lock();
        make_link(&s.opts.link, &pts)?;
        s.pty = Some(Pty {
            master,
            _slave: slave,
        });
        let at = s.started.elapsed();
        s.events.push((at, "reappeared".into()));
        Ok(())
    }

    /// Every byte received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// What happened to the UPS (output off/on, modes), with times since start.
    pub fn events(&self) -> Vec<(Duration, String)> {
        self.lock().events.clone()
    }

    /// The output is off after a shutdown command (and not yet back).
    pub fn output_off(&self) -> bool {
        self.lock().asleep.is_some()
    }

    pub fn since_start(&self) -> Duration {
        self.lock().started.elapsed()
    }

    pub fn state(&self) -> SimState {
        self.lock().sim.clone()
    }
}

impl Drop for SmartUps {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let link = self.lock().opts.link.clone();
        let _ = std::fs::remove_file(link);
    }
}

fn write_out(s: &mut Shared, bytes: &[u8]) {
    if let Some(p) = s.pty.as_mut() {
        let _ = p.master.write_all(bytes);
        let _ = p.master.flush();
    }
}

fn run(shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::SeqCst) {
        let fd = {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            tick(&mut s);
            s.pty.as_ref().map(|p| p.master.as_raw_fd())
        };
        let Some(fd) = fd else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the fd stays open (only this thread's lock holder
        // replaces it, and we re-check below under the lock).
        let n = unsafe { libc::poll(&mut pfd, 1, 20) };
        if n <= 0 || pfd.revents & libc::POLLIN == 0 {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = s.pty.as_mut() else { continue };
        if p.master.as_raw_fd() != fd {
            continue;
        }
        let got = match p.master.read(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                drop(s);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let at = s.started.elapsed();
        for &b in &buf[..got] {
            s.received.push(Received { at, byte: b });
            handle_byte(&mut s, b);
        }
    }
}

/// Time passes: scenario steps, the power model, shutdown timers and alerts.
fn tick(s: &mut Shared) {
    let now = Instant::now();
    s.sim.advance(now);
    let elapsed = s.started.elapsed().as_secs_f64();
    while let Some(step) = s.opts.steps.get(s.next_step).cloned() {
        if step.at_s > elapsed {
            break;
        }
        s.sim.apply(&step.change(), now);
        match step.comm {
            Some(Comm::Lost) => s.mode = Mode::Silent,
            Some(Comm::Ok) => s.mode = Mode::Normal,
            None => {}
        }
        s.next_step += 1;
    }
    if let Some(k) = s.kill
        && now >= k.at
    {
        s.kill = None;
        s.sim.output_off = true;
        s.asleep = Some(k.return_on_mains);
        let at = s.started.elapsed();
        s.events.push((at, "output off".into()));
    }
    // Asleep with return: wake once mains are back (and the wakeup delay passed).
    if s.asleep == Some(true) && !s.sim.on_battery {
        let wake = *s
            .wake_at
            .get_or_insert(now + Duration::from_secs(s.opts.wake_s as u64));
        if now >= wake {
            s.asleep = None;
            s.wake_at = None;
            s.sim.output_off = false;
            let at = s.started.elapsed();
            s.events.push((at, "output on".into()));
        }
    }
    let discharging = s.sim.reading(SystemTime::now()).flags.on_battery;
    if discharging && !s.was_discharging {
        s.transferred_at = Some(now);
    }
    s.was_discharging = discharging;
    if s.asleep.is_some() || s.mode == Mode::Silent {
        return;
    }
    let r = s.sim.reading(SystemTime::now());
    let flags = (
        s.sim.on_battery,
        r.flags.low_battery,
        r.flags.replace_battery,
    );
    let mut alerts = Vec::new();
    if let Some((on_batt, low, replace)) = s.last_flags {
        if flags.0 != on_batt {
            alerts.push(if flags.0 { b'!' } else { b'$' });
        }
        if flags.1 != low {
            alerts.push(if flags.1 { b'%' } else { b'+' });
        }
        if flags.2 && !replace {
            alerts.push(b'#');
        }
    }
    // `!` repeats every 30 s while on battery.
    if flags.0 {
        let due = s
            .last_line_fail_alert
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30));
        if due && !alerts.contains(&b'!') && s.last_flags.is_some_and(|f| f.0) {
            alerts.push(b'!');
        }
        if alerts.contains(&b'!') {
            s.last_line_fail_alert = Some(now);
        }
    } else {
        s.last_line_fail_alert = None;
    }
    s.last_flags = Some(flags);
    if s.alerts_inside_replies {
        s.alert_inside_next.extend(alerts);
    } else if !alerts.is_empty() {
        write_out(s, &alerts);
    }
}

fn handle_byte(s: &mut Shared, b: u8) {
    tick(s);
    if s.silent_on == Some(b) {
        s.silent_on = None;
        s.mode = Mode::Silent;
        let at = s.started.elapsed();
        s.events
            .push((at, format!("silent from {:?} on", b as char)));
    }
    if s.asleep.is_some() || s.mode == Mode::Silent {
        return;
    }
    // Multi-character commands first: `@nnn` and `K K`.
    if let Some(mut digits) = s.at_digits.take()
        && b.is_ascii_digit()
    {
        {
            digits.push(b as char);
            if digits.len() == 3 && s.opts.refuse.contains(&b'@') {
                reply(s, "NA");
            } else if digits.len() == 3 {
                let at = s.started.elapsed();
                s.events.push((at, format!("@{digits} accepted")));
                schedule_kill(s, true);
                reply(s, "OK");
            } else {
                s.at_digits = Some(digits);
            }
            return;
        }
    }
    if b == b'K' {
        let now = Instant::now();
        match s.first_k.take() {
            Some(first) if now.duration_since(first) <= Duration::from_secs(5) => {
                let at = s.started.elapsed();
                s.events.push((at, "K K accepted".into()));
                schedule_kill(s, false);
                reply(s, "OK");
            }
            _ => s.first_k = Some(now),
        }
        return;
    }
    s.first_k = None;
    // `-` cycles the EEPROM value last queried to the next permitted one; here the
    // shutdown grace delay `p` (`grace_values`).
    if b == b'-' {
        if s.last_query == b'p' && !s.opts.grace_values.is_empty() {
            let values = &s.opts.grace_values;
            let i = values.iter().position(|g| *g == s.opts.grace_s);
            s.opts.grace_s = values[i.map_or(0, |i| (i + 1) % values.len())];
            let at = s.started.elapsed();
            s.events
                .push((at, format!("grace set to {} s", s.opts.grace_s)));
            reply(s, "OK");
            write_out(s, b"|");
        } else {
            reply(s, "NO");
        }
        return;
    }
    s.last_query = b;
    let r = s.sim.reading(SystemTime::now());
    let st = &s.sim;
    let old = s.opts.old_firmware;
    let batt = st.on_battery;
    let text: String = match b {
        b'Y' => "SM".into(),
        b'a' if old => "NA".into(),
        b'a' => "3.!$%+#?=*&|.\x01\x1a~'789<>@ABCDEFGKLMNOPQRSUVWXYZabcefgjklmnopqrsuxyz".into(),
        0x01 if old => "NA".into(),
        0x01 => st.spec.model.clone(),
        b'b' if old => "NA".into(),
        b'b' => st.spec.firmware.clone(),
        b'V' => "GWD".into(),
        0x1A => "#uD43132135138129uM43229234239224lD43106103100097e4311000200000".into(),
        b'Q' => format!("{:02X}", r.flags.statflag_bits() & 0xFF),
        b'9' => if batt { "00" } else { "FF" }.into(),
        b'G' if s
            .transferred_at
            .is_some_and(|t| t.elapsed().as_secs_f64() < s.opts.transfer_cause_unknown_s) =>
        {
            "NA".into()
        }
        b'G' => transfer_code(&st.last_transfer).into(),
        b'X' => match st.self_test_result.as_str() {
            "OK" => "OK",
            "BT" => "BT",
            "NG" => "NG",
            _ => "NO",
        }
        .into(),
        b'L' => format!("{:05.1}", r.line_voltage.unwrap_or(0.0)),
        b'M' => format!("{:05.1}", r.max_line_voltage.unwrap_or(0.0)),
        b'N' => format!("{:05.1}", r.min_line_voltage.unwrap_or(0.0)),
        b'O' => format!("{:05.1}", r.output_voltage.unwrap_or(0.0)),
        b'f' => format!("{:05.1}", st.charge),
        b'B' => format!("{:05.2}", r.battery_voltage.unwrap_or(0.0)),
        b'P' => format!("{:05.1}", st.load),
        b'F' => format!("{:05.2}", st.spec.line_frequency_hz),
        b'j' => format!("{:04}:", (st.runtime_s() / 60.0).round() as i64),
        b'C' => "031.5".into(),
        b'7' => "00".into(),
        b'~' => "00".into(),
        b'\'' => if st.battery_present { "00" } else { "20" }.into(),
        b'8' => "00".into(),
        b's' => "H".into(),
        b'r' => format!("{:03}", s.opts.wake_s),
        b'p' => format!("{:03}", s.opts.grace_s),
        b'l' => "196".into(),
        b'u' => "253".into(),
        b'e' => "00".into(),
        b'k' => "0".into(),
        b'q' => "02".into(),
        b'c' => "UPS_IDEN".into(),
        b'E' => "336".into(),
        b'm' => "11/29/20".into(),
        b'n' => st.spec.serial_number.clone(),
        b'x' => "11/29/20".into(),
        b'o' => "230".into(),
        b'g' => "024".into(),
        b'>' => "000".into(),
        b'<' => "000".into(),
        b'W' if batt => "NA".into(),
        b'W' => {
            let now = Instant::now();
            s.sim.apply(
                &SimChange {
                    start_self_test: true,
                    ..Default::default()
                },
                now,
            );
            let at = s.started.elapsed();
            s.events.push((at, "self test started".into()));
            "OK".into()
        }
        b'S' if s.opts.refuse.contains(&b'S') => "NA".into(),
        b'S' if batt => {
            let at = s.started.elapsed();
            s.events.push((at, "S accepted".into()));
            schedule_kill(s, true);
            "OK".into()
        }
        b'S' => "NA".into(),
        b'@' => {
            s.at_digits = Some(String::new());
            return;
        }
        0x7F => {
            s.kill = None;
            "OK".into()
        }
        b'R' => "BYE".into(),
        _ => "NA".into(),
    };
    reply(s, &text);
}

fn schedule_kill(s: &mut Shared, return_on_mains: bool) {
    s.kill = Some(Kill {
        at: Instant::now() + Duration::from_secs(s.opts.grace_s as u64),
        return_on_mains,
    });
}

fn reply(s: &mut Shared, text: &str) {
    let mut out: Vec<u8> = match s.mode {
        Mode::Normal => format!("{text}\r\n").into_bytes(),
        Mode::Garbage => vec![0xFE, 0x80, b'x', 0x00, 0x9B, b'\r', b'\n'],
        Mode::Truncated => text.as_bytes().to_vec(),
        Mode::WrongLength => format!("{text}0\r\n").into_bytes(),
        Mode::Silent => return,
    };
    let held = std::mem::take(&mut s.alert_inside_next);
    if !held.is_empty() {
        let mid = out.len() / 2;
        out.splice(mid..mid, held);
    }
    write_out(s, &out);
}

fn transfer_code(phrase: &str) -> &'static str {
    match phrase {
        "Low line voltage" => "L",
        "High line voltage" => "H",
        "Automatic or explicit self test" => "S",
        "Forced by software" => "K",
        _ => "O",
    }
}
