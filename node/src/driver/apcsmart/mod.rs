//! `apcsmart`: APC Smart-UPS units over a serial line (docs/hardware/apc-smart.md).
//!
//! The driver follows apcupsd's apcsmart driver: the `Y` -> `SM` handshake, capability
//! discovery with `a`, the static queries once per link and the volatile queries every
//! poll, a link check before each poll, and 20 s of failed link checks before the UPS
//! counts as comm lost (after which the port is reopened on every poll until it
//! answers again). Alerts (`!`, `$`, `%`, `+`, `#`) are read whenever they arrive,
//! between polls or inside replies, and end the wait for the next poll at once: a quick
//! poll (`Q` and `G` only) reports the change, and the full poll follows. Where this
//! differs from apcupsd (no exit when the port is missing at start, the quick poll), it
//! is so the node keeps running and the cluster hears at once.
//!
//! Framing and meaning live in [`frame`] (`upsilon_core::ups::apcsmart`: pure, fuzzed); the device is behind
//! [`link::PortOpener`].

pub use upsilon_core::ups::apcsmart as frame;

/// The `[[ups]]` keys of an apcsmart UPS.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The serial device, e.g. `/dev/ttyS0` or `/dev/ttyUSB0`.
    pub device: std::path::PathBuf,
}

/// Checks an apcsmart section's keys and builds its driver (the port opens at the
/// first poll, so a missing device is a comm failure then, not a start-up error).
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(section, &[("device", "device = \"/dev/ttyS0\"")])?;
    Ok(Box::new(ApcSmartDriver::new(
        Box::new(link::TtyOpener::new(section.origin.resolve(&cfg.device))),
        Timing::default(),
    )))
}
pub mod link;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::frame::{
    Alert, AlertOverlay, CMD_MODEL, Capabilities, Piece, Replies, ReplyDecoder, STATIC, VOLATILE,
};
use self::link::{PortOpener, SerialIo};
use super::{DriverError, UpsCommand, UpsDriver};
use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::reading::UpsReading;

/// apcupsd's timings (docs/hardware/apc-smart.md §1, §5).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long to wait for one reply.
    pub reply: Duration,
    /// Retries after a query times out (not for `Y`).
    pub retries: u32,
    /// Failed link checks for this long make the UPS comm lost.
    pub comm_lost_after: Duration,
    /// After `S`, before reading its acknowledgement.
    pub after_soft_shutdown: Duration,
    /// Between the characters of `@000` and of `K K`.
    pub between_chars: Duration,
    /// Pause between asking `G` again after a transfer whose cause is still `NA`.
    pub transfer_cause_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            reply: Duration::from_secs(1),
            retries: 2,
            comm_lost_after: Duration::from_secs(20),
            after_soft_shutdown: Duration::from_secs(5),
            between_chars: Duration::from_secs(2),
            transfer_cause_retry: Duration::from_secs(2),
        }
    }
}

/// Why one exchange with the UPS failed.
enum LinkError {
    /// Nothing came back in time.
    Timeout,
    /// The device went away (EOF, EIO, write error); the port is closed.
    Gone(String),
}

pub struct ApcSmartDriver {
    opener: Box<dyn PortOpener>,
    timing: Timing,
    port: Option<Box<dyn SerialIo>>,
    decoder: ReplyDecoder,
    pieces: VecDeque<Piece>,
    /// Commands found supported (after discovery on each new link).
    supported: Option<BTreeSet<u8>>,
    statics: Replies,
    overlay: AlertOverlay,
    /// A state-changing alert arrived that no poll has seen yet.
    alert_pending: bool,
    /// Volatile replies of the last full poll, reused by the quick poll after an alert.
    last_volatile: Replies,
    /// A quick poll ran; the full one follows at once.
    full_poll_due: bool,
    /// The last reading was on battery (to see a transfer happen).
    was_on_battery: bool,
    failing_since: Option<Instant>,
    comm_lost: bool,
    last_open_error: Option<String>,
}

impl ApcSmartDriver {
    pub fn new(opener: Box<dyn PortOpener>, timing: Timing) -> Self {
        ApcSmartDriver {
            opener,
            timing,
            port: None,
            decoder: ReplyDecoder::new(),
            pieces: VecDeque::new(),
            supported: None,
            statics: Replies::new(),
            overlay: AlertOverlay::default(),
            alert_pending: false,
            last_volatile: Replies::new(),
            full_poll_due: false,
            was_on_battery: false,
            failing_since: None,
            comm_lost: false,
            last_open_error: None,
        }
    }

    fn device(&self) -> String {
        self.opener.device().display().to_string()
    }

    fn close(&mut self, why: &str) {
        if let Some(port) = self.port.take() {
            tracing::warn!(device = %self.device(), "closing the serial port: {why}");
            // Closing a tty waits for unsent output to drain (up to 30 s when nobody is
            // at the other end), so it must not block the runtime.
            tokio::task::spawn_blocking(move || drop(port));
        }
        self.decoder.reset();
        self.pieces.clear();
        self.supported = None;
        self.last_volatile.clear();
    }

    fn on_alert(&mut self, a: Alert) {
        tracing::info!(device = %self.device(), "UPS alert: {}", a.describe());
        self.overlay.apply_alert(a);
        if a.changes_state() {
            self.alert_pending = true;
        }
        if a == Alert::EepromChanged {
            // Settings changed on the front panel or by another program: re-read them.
            self.supported = None;
        }
    }

    /// The next decoded piece, reading the port until `deadline`.
    async fn next_piece(&mut self, deadline: tokio::time::Instant) -> Result<Piece, LinkError> {
        loop {
            if let Some(p) = self.pieces.pop_front() {
                return Ok(p);
            }
            let Some(port) = self.port.as_mut() else {
                return Err(LinkError::Gone("the port is closed".into()));
            };
            let mut buf = [0u8; 256];
            match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
                Err(_) => return Err(LinkError::Timeout),
                Ok(Ok(0)) => return Err(self.gone("the device closed (end of file)")),
                Ok(Ok(n)) => {
                    let mut out = Vec::new();
                    self.decoder.feed(&buf[..n], &mut out);
                    self.pieces.extend(out);
                }
                Ok(Err(e)) => return Err(self.gone(&format!("read error: {e}"))),
            }
        }
    }

    fn gone(&mut self, why: &str) -> LinkError {
        let msg = format!("{}: {why}", self.device());
        self.close(why);
        LinkError::Gone(msg)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let Some(port) = self.port.as_mut() else {
            return Err(LinkError::Gone("the port is closed".into()));
        };
        // No flush: on a tty it is tcdrain(), which blocks the thread until the bytes
        // are on the wire, forever if nothing is at the other end.
        match tokio::time::timeout(self.timing.reply, port.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.gone(&format!("write error: {e}"))),
            Err(_) => Err(self.gone("write did not complete in time")),
        }
    }

    /// Handles queued alerts and forgets stale reply lines before a new command.
    fn settle(&mut self) {
        while let Some(p) = self.pieces.pop_front() {
            match p {
                Piece::Alert(a) => self.on_alert(a),
                Piece::Line(l) => tracing::debug!("dropping a late reply {l:?}"),
                Piece::Garbage { len } => tracing::debug!("dropping {len} bytes of noise"),
            }
        }
        self.decoder.reset();
        self.decoder.literal = false;
    }

    /// Reads one reply line until `deadline`, acting on alerts met on the way.
    async fn read_line(&mut self, deadline: tokio::time::Instant) -> Result<Piece, LinkError> {
        loop {
            match self.next_piece(deadline).await? {
                Piece::Alert(a) => self.on_alert(a),
                other => return Ok(other),
            }
        }
    }

    /// Sends one command byte and reads its reply: `Ok(None)` when the UPS stays
    /// silent through the retries, `Ok(Some(text))` otherwise (which may be `NA`).
    /// A garbled reply counts as no reply and is retried.
    async fn query(&mut self, cmd: u8, retries: u32) -> Result<Option<String>, LinkError> {
        // `a` lists the alert characters and `^Z` starts with `#`: read them as text.
        let literal = cmd == b'a' || cmd == frame::CMD_EEPROM;
        for attempt in 0..=retries {
            self.settle();
            self.decoder.literal = literal;
            self.send(&[cmd]).await?;
            let deadline = tokio::time::Instant::now() + self.timing.reply;
            let r = self.read_line(deadline).await;
            self.decoder.literal = false;
            match r {
                Ok(Piece::Line(l)) => return Ok(Some(l)),
                Ok(_) => tracing::debug!(
                    "garbled reply to {:?} (attempt {})",
                    cmd as char,
                    attempt + 1
                ),
                Err(LinkError::Timeout) => {
                    if self.decoder.pending() > 0 {
                        tracing::debug!(
                            "truncated reply to {:?}: {} bytes without an end of line",
                            cmd as char,
                            self.decoder.pending()
                        );
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `Y` -> `SM`, once (the link check before each poll).
    async fn link_check(&mut self) -> Result<bool, LinkError> {
        if let Some(p) = self.port.as_mut() {
            p.discard_input();
        }
        Ok(self.query(b'Y', 0).await?.as_deref() == Some("SM"))
    }

    /// Opens the port if needed and, on a new link, does the handshake, capability
    /// discovery and static queries.
    async fn ensure_link(&mut self) -> Result<(), String> {
        if self.port.is_none() {
            let port = self.opener.open().inspect_err(|e| {
                if self.last_open_error.as_ref() != Some(e) {
                    tracing::warn!("{e}");
                    self.last_open_error = Some(e.clone());
                }
            })?;
            self.last_open_error = None;
            tracing::info!(device = %self.device(), "serial port open (2400 8N1)");
            self.port = Some(port);
            self.supported = None;
            // apcupsd: `Y`, a pause, then flush whatever the UPS said.
            self.send(b"Y").await.map_err(|e| self.describe(e))?;
            tokio::time::sleep(self.timing.reply.min(Duration::from_millis(300))).await;
            self.settle();
            if let Some(p) = self.port.as_mut() {
                p.discard_input();
            }
        }
        if self.supported.is_none() {
            let mut ok = false;
            for _ in 0..5 {
                if self.link_check().await.map_err(|e| self.describe(e))? {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(format!(
                    "{}: the UPS does not answer `Y` with `SM` (is it an APC smart-signalling \
                     UPS on a smart cable, 940-0024?)",
                    self.device()
                ));
            }
            self.discover().await.map_err(|e| self.describe(e))?;
        }
        Ok(())
    }

    fn describe(&self, e: LinkError) -> String {
        match e {
            LinkError::Timeout => format!("{}: the UPS stopped answering", self.device()),
            LinkError::Gone(m) => m,
        }
    }

    /// Capability discovery (`a`) and the static queries.
    async fn discover(&mut self) -> Result<(), LinkError> {
        let caps = match self.query(b'a', self.timing.retries).await? {
            Some(r) if !frame::is_na(&r) => match Capabilities::parse(&r) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("capability string unusable ({e}); trying every command");
                    None
                }
            },
            _ => None,
        };
        let candidates: Vec<u8> = VOLATILE.iter().chain(STATIC).copied().collect();
        let mut supported = BTreeSet::new();
        let mut statics = Replies::new();
        for cmd in candidates {
            if let Some(c) = &caps
                && !c.lists(cmd)
            {
                continue;
            }
            // `V` only matters when `^A` is missing; `^Z` is long and unused.
            if cmd == b'V' && statics.contains_key(&CMD_MODEL) {
                continue;
            }
            match self.query(cmd, self.timing.retries).await? {
                Some(r) if !r.is_empty() && !frame::is_na(&r) => {
                    supported.insert(cmd);
                    if STATIC.contains(&cmd) {
                        statics.insert(cmd, r);
                    }
                }
                Some(_) => {}
                // Silence: an unsupported command, or the UPS went away (apcupsd's
                // UPSlinkCheck); only the link check tells, and a dead link ends discovery.
                None => {
                    if !self.link_check().await? {
                        return Err(LinkError::Timeout);
                    }
                }
            }
        }
        tracing::info!(
            device = %self.device(),
            protocol = caps.as_ref().map(|c| c.protocol.as_str()).unwrap_or("unknown"),
            "UPS {:?} answers {} of the commands apcupsd polls",
            statics
                .get(&CMD_MODEL)
                .cloned()
                .or_else(|| statics.get(&b'V').map(|v| frame::model_from_old_firmware(v)))
                .unwrap_or_default(),
            supported.len()
        );
        self.statics = statics;
        self.supported = Some(supported);
        Ok(())
    }

    /// One poll. `quick` (right after an alert) asks only for the status byte and the
    /// transfer cause and reuses the other values of the last full poll, so the news
    /// leaves at once even at 2400 baud (a full poll is about 25 exchanges, ~0.7 s); the
    /// full poll follows.
    async fn read_volatile(&mut self, quick: bool) -> Result<UpsReading, String> {
        if !quick && !self.link_check().await.map_err(|e| self.describe(e))? {
            return Err(format!(
                "{}: link check failed (no `SM` in answer to `Y`)",
                self.device()
            ));
        }
        let supported = self.supported.clone().unwrap_or_default();
        let mut volatile = if quick {
            self.last_volatile.clone()
        } else {
            Replies::new()
        };
        let mut status = None;
        // The quick poll reads the cause of a transfer too: a self test is no outage.
        let commands: &[u8] = if quick { b"QG" } else { VOLATILE };
        for &cmd in commands {
            if !supported.contains(&cmd) {
                continue;
            }
            if cmd == b'Q' {
                // Alerts before this point are superseded by the status byte.
                self.overlay = AlertOverlay::default();
                let mut tries = 0;
                loop {
                    let r = self
                        .query(b'Q', self.timing.retries)
                        .await
                        .map_err(|e| self.describe(e))?;
                    match r {
                        // Firmware not ready yet: apcupsd retries up to 5 times.
                        Some(s) if s == "SM" && tries < 5 => tries += 1,
                        Some(s) => match frame::parse_status_byte(&s) {
                            Ok(b) => {
                                status = Some(b);
                                break;
                            }
                            Err(e) => return Err(format!("{}: status byte: {e}", self.device())),
                        },
                        None => {
                            return Err(format!(
                                "{}: the UPS did not answer the status query `Q`",
                                self.device()
                            ));
                        }
                    }
                }
                continue;
            }
            match self
                .query(cmd, self.timing.retries)
                .await
                .map_err(|e| self.describe(e))?
            {
                Some(r) if !frame::is_na(&r) => {
                    volatile.insert(cmd, r);
                }
                Some(_) => {
                    volatile.remove(&cmd);
                }
                None => {
                    volatile.remove(&cmd);
                    // A UPS that falls silent mid-poll must not cost 3 s per remaining
                    // query: check the link, as apcupsd does, and end the poll if it is down.
                    if !self.link_check().await.map_err(|e| self.describe(e))? {
                        return Err(format!(
                            "{}: the UPS stopped answering (no reply to {:?})",
                            self.device(),
                            cmd as char
                        ));
                    }
                }
            }
        }
        // apcupsd ends each poll with two `Y`s (apc_enable); the answers do not matter.
        for _ in 0..if quick { 0 } else { 2 } {
            let _ = self.query(b'Y', 0).await.map_err(|e| self.describe(e))?;
        }
        let Some(status) = status else {
            return Err(format!(
                "{}: the UPS does not report its status byte (`Q`); is it a smart UPS?",
                self.device()
            ));
        };
        // apcupsd: at a transfer to battery whose cause is still `NA`, ask `G` again (5
        // times, 2 s apart) so that a self test is not taken for a power failure.
        let on_battery = frame::flags_of_status(status, true).on_battery;
        if on_battery
            && !self.was_on_battery
            && supported.contains(&b'G')
            && !volatile.contains_key(&b'G')
        {
            for _ in 0..5 {
                tokio::time::sleep(self.timing.transfer_cause_retry).await;
                if let Some(r) = self
                    .query(b'G', self.timing.retries)
                    .await
                    .map_err(|e| self.describe(e))?
                    && !frame::is_na(&r)
                {
                    volatile.insert(b'G', r);
                    break;
                }
            }
        }
        if !quick {
            self.last_volatile = volatile.clone();
        }
        let (reading, warnings) = frame::build_reading(
            &self.statics,
            &volatile,
            status,
            &self.overlay,
            SystemTime::now(),
        );
        for w in warnings {
            tracing::warn!(device = %self.device(), "ignoring a malformed value: {w}");
        }
        self.was_on_battery = reading.flags.on_battery;
        Ok(reading)
    }

    /// Turns a failed poll into a short retry or, after 20 s, comm lost.
    fn failure(&mut self, msg: String) -> DriverError {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        if self.comm_lost || now.duration_since(since) >= self.timing.comm_lost_after {
            if !self.comm_lost {
                tracing::error!("{msg}; no answer for {:?}: communication lost", now - since);
            }
            self.comm_lost = true;
            // Reopen on every poll until the UPS answers (a replugged adapter, a
            // power-cycled UPS).
            self.close("communication lost");
            DriverError::CommLost(msg)
        } else {
            DriverError::Retrying(msg)
        }
    }

    /// Reads everything that arrives during `wait`, acting on alerts; `true` if the
    /// UPS acknowledged (`OK` or `*`), `false` on silence or another answer.
    async fn acknowledged(&mut self, wait: Duration) -> Result<bool, DriverError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.next_piece(deadline).await {
                Ok(Piece::Alert(Alert::TurningOff)) => return Ok(true),
                Ok(Piece::Alert(a)) => self.on_alert(a),
                Ok(Piece::Line(l)) if l == "OK" => return Ok(true),
                Ok(Piece::Line(l)) => {
                    tracing::warn!("the UPS answered {l:?}");
                    return Ok(false);
                }
                Ok(Piece::Garbage { .. }) => return Ok(false),
                Err(LinkError::Timeout) => return Ok(false),
                Err(LinkError::Gone(m)) => return Err(DriverError::CommLost(m)),
            }
        }
    }

    async fn send_cmd(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        self.send(bytes)
            .await
            .map_err(|e| DriverError::CommLost(self.describe(e)))
    }

    /// The UPS's shutdown grace delay (EEPROM `p`), for the log; read first, as apcupsd.
    async fn grace_delay(&mut self) -> Option<f64> {
        let r = self.query(b'p', self.timing.retries).await.ok().flatten()?;
        frame::parse_number(&r).ok()
    }

    /// Makes the UPS's shutdown grace delay (EEPROM `p`) at least `want_s` seconds:
    /// `-` cycles it through the permitted values (020, 180, 300, 600 on a Smart-UPS),
    /// read back after each step, up to once around. Returns the delay now in effect.
    async fn program_grace(&mut self, want_s: u32) -> Option<f64> {
        let before = self.grace_delay().await?;
        if before >= f64::from(want_s) {
            return Some(before);
        }
        let mut now = before;
        for _ in 0..4 {
            self.settle();
            match self.query(b'-', 0).await {
                Ok(Some(r)) if r == "OK" => {}
                _ => break,
            }
            // The cycle acts on the value last read: read it again (and select it).
            match self.grace_delay().await {
                Some(g) => now = g,
                None => break,
            }
            if now >= f64::from(want_s) || now <= before {
                break;
            }
        }
        if now >= f64::from(want_s) {
            tracing::warn!(
                device = %self.device(),
                "EEPROM shutdown grace set to {now:.0} s (was {before:.0} s) to cover the {want_s} s the cluster asked"
            );
        } else {
            tracing::error!(
                device = %self.device(),
                "the UPS's shutdown grace is {now:.0} s, shorter than the {want_s} s the cluster asked, and could not be raised: hosts it powers may lose power before they finish halting"
            );
        }
        Some(now)
    }

    /// apcupsd's hibernate: `S` (on battery only), else `@000`, else power off; the grace
    /// delay is first raised to `delay_s` where it is shorter.
    async fn kill_power_and_return(&mut self, delay_s: u32) -> Result<(), DriverError> {
        let t = self.timing;
        let grace = self.program_grace(delay_s).await;
        self.settle();
        self.send_cmd(b"S").await?;
        tokio::time::sleep(t.after_soft_shutdown).await;
        if self.acknowledged(t.reply).await? {
            self.will_power_off(grace, "soft shutdown (S)");
            return Ok(());
        }
        self.settle();
        for b in [b"@", b"0", b"0"] {
            self.send_cmd(b).await?;
            tokio::time::sleep(t.between_chars).await;
        }
        if self.acknowledged(t.reply).await? {
            self.will_power_off(grace, "shutdown with return (@00)");
            return Ok(());
        }
        self.send_cmd(b"0").await?;
        tokio::time::sleep(t.between_chars).await;
        if self.acknowledged(t.reply).await? {
            self.will_power_off(grace, "shutdown with return (@000)");
            return Ok(());
        }
        tracing::warn!("the UPS refused S and @000; turning it off instead (K K)");
        self.power_off(grace).await
    }

    /// `K`, a pause, `K`: the UPS turns off after its grace delay and stays off.
    async fn power_off(&mut self, grace: Option<f64>) -> Result<(), DriverError> {
        let t = self.timing;
        self.settle();
        self.send_cmd(b"K").await?;
        tokio::time::sleep(t.between_chars).await;
        self.send_cmd(b"K").await?;
        if self.acknowledged(t.reply * 2).await? {
            self.will_power_off(grace, "power off (K K)");
            Ok(())
        } else {
            Err(DriverError::CommLost(format!(
                "{}: failed to issue the shutdown command: the UPS acknowledged none of \
                 S, @000 and K K; power the UPS off by hand before rebooting",
                self.device()
            )))
        }
    }

    fn will_power_off(&self, grace: Option<f64>, how: &str) {
        match grace {
            Some(g) if g > 0.0 => tracing::warn!(
                device = %self.device(),
                "{how} accepted: UPS will power off after {} seconds ...",
                g as i64
            ),
            _ => tracing::warn!(
                device = %self.device(),
                "{how} accepted: UPS will power off after the configured delay ..."
            ),
        }
    }
}

#[async_trait::async_trait]
impl UpsDriver for ApcSmartDriver {
    fn kind(&self) -> &'static str {
        "apcsmart"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        let quick =
            self.alert_pending && self.supported.is_some() && !self.last_volatile.is_empty();
        let r = match self.ensure_link().await {
            Ok(()) => self.read_volatile(quick).await,
            Err(e) => Err(e),
        };
        self.alert_pending = false;
        self.full_poll_due = quick && r.is_ok();
        match r {
            Ok(reading) => {
                if self.comm_lost {
                    tracing::info!(device = %self.device(), "the UPS answers again");
                }
                self.failing_since = None;
                self.comm_lost = false;
                Ok(reading)
            }
            Err(mut msg) => {
                // A pty or an unplugged adapter may just go quiet: look at the path too.
                if self.port.is_some() && !self.opener.device().exists() {
                    self.close("the device disappeared");
                    msg = format!("{} disappeared (unplugged?)", self.device());
                }
                Err(self.failure(msg))
            }
        }
    }

    async fn wait_for_change(&mut self, max: Duration) -> bool {
        if self.alert_pending || std::mem::take(&mut self.full_poll_due) {
            return true;
        }
        if self.port.is_none() {
            tokio::time::sleep(max).await;
            return false;
        }
        let deadline = tokio::time::Instant::now() + max;
        loop {
            match self.next_piece(deadline).await {
                Ok(Piece::Alert(a)) => {
                    self.on_alert(a);
                    if self.alert_pending {
                        return true;
                    }
                }
                Ok(Piece::Line(l)) => tracing::debug!("unsolicited line {l:?}"),
                Ok(Piece::Garbage { len }) => {
                    tracing::debug!("{len} bytes of noise between polls")
                }
                Err(LinkError::Timeout) => return false,
                Err(LinkError::Gone(m)) => {
                    tracing::warn!("{m}");
                    return false;
                }
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        // Discovery on a new link sends about 40 queries with up to 3 tries each.
        self.timing.reply * 120
    }

    fn command_timeout(&self) -> Duration {
        let t = self.timing;
        // p, S + 5 s, @ 0 0 + 6 s, 0 + 2 s, K K + 2 s, and the reads in between.
        t.after_soft_shutdown + t.between_chars * 6 + t.reply * 12
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        if let UpsCommand::Simulate(_) = cmd {
            return Err(DriverError::Unsupported(
                "simulated changes (it is a real UPS)",
            ));
        }
        self.ensure_link().await.map_err(DriverError::CommLost)?;
        let done = match cmd {
            UpsCommand::Simulate(_) => Ok(()),
            UpsCommand::SelfTest => match self.query(b'W', self.timing.retries).await {
                Ok(Some(r)) if r == "OK" => {
                    tracing::info!(device = %self.device(), "self test started");
                    Ok(())
                }
                Ok(Some(r)) if frame::is_na(&r) => Err(DriverError::Refused(
                    "self test (W) answered NA: a Smart-UPS refuses it on battery, with a low \
                     battery, or when it cannot test"
                        .into(),
                )),
                Ok(Some(r)) => Err(DriverError::CommLost(format!(
                    "{}: the UPS answered the self test command with {r:?}",
                    self.device()
                ))),
                Ok(None) => Err(DriverError::CommLost(format!(
                    "{}: no answer to the self test command",
                    self.device()
                ))),
                Err(e) => Err(DriverError::CommLost(self.describe(e))),
            },
            UpsCommand::KillPower {
                delay_s,
                return_on_mains,
            } => {
                // The UPS applies its own grace delay (EEPROM `p`): raised first to the
                // delay asked, where it is shorter.
                tracing::warn!(
                    device = %self.device(),
                    "killing UPS power (delay asked {delay_s} s, applied through the UPS's \
                     grace delay), return on mains: {return_on_mains}"
                );
                if return_on_mains {
                    self.kill_power_and_return(delay_s).await
                } else {
                    let grace = self.program_grace(delay_s).await;
                    self.power_off(grace).await
                }
            }
        };
        done.map(|()| String::new())
    }
}
