//! Framing and meaning of the APC smart protocol, with no I/O (docs/hardware/apc-smart.md).
//!
//! [`ReplyDecoder`] splits the byte stream from the UPS into reply lines and the
//! single-byte alerts that may arrive between or inside them. The rest of this module
//! turns reply text into values: the `a` capability string, the `Q` status byte, numbers,
//! apcupsd's phrases, and finally a whole [`UpsReading`] ([`build_reading`]). Everything
//! here is pure so it is tested directly and fuzzed (`fuzz/fuzz_targets/apcsmart_reply.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::reading::{UpsFlags, UpsReading};

/// Longest reply line we accept; real replies are under 80 bytes except `^Z` (a few
/// hundred). Anything longer is line noise and is thrown away.
pub const MAX_LINE: usize = 1024;

/// `^A`: the model name.
pub const CMD_MODEL: u8 = 0x01;
/// `^Z`: the permitted EEPROM values.
pub const CMD_EEPROM: u8 = 0x1A;

/// Queried on every poll, in apcupsd's order (docs/hardware/apc-smart.md §3).
pub const VOLATILE: &[u8] = b"Q9GXLMNOfBPFjC7~'8htd";
/// Queried once after the link comes up (`c` only matters without a configured name).
pub const STATIC: &[u8] = b"srpluekqcEmnxogb><\x01V\x1a";

/// An unsolicited single byte from the UPS (docs/hardware/apc-smart.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// `!`: line fail, on battery (repeated every 30 s).
    LineFail,
    /// `$`: back on line.
    LineRestored,
    /// `%`: low battery.
    LowBattery,
    /// `+`: low battery cleared.
    LowBatteryCleared,
    /// `#`: replace battery.
    ReplaceBattery,
    /// `?`: abnormal condition.
    Abnormal,
    /// `=`: abnormal condition cleared.
    AbnormalCleared,
    /// `*`: about to turn off the load (also a kill-power acknowledgement).
    TurningOff,
    /// `&`: check the alarm register (Measure-UPS).
    CheckAlarms,
    /// `|`: an EEPROM value changed.
    EepromChanged,
}

impl Alert {
    pub fn from_byte(b: u8) -> Option<Alert> {
        Some(match b {
            b'!' => Alert::LineFail,
            b'$' => Alert::LineRestored,
            b'%' => Alert::LowBattery,
            b'+' => Alert::LowBatteryCleared,
            b'#' => Alert::ReplaceBattery,
            b'?' => Alert::Abnormal,
            b'=' => Alert::AbnormalCleared,
            b'*' => Alert::TurningOff,
            b'&' => Alert::CheckAlarms,
            b'|' => Alert::EepromChanged,
            _ => return None,
        })
    }

    /// Alerts that change the power state; apcupsd re-polls at once for these.
    pub fn changes_state(self) -> bool {
        matches!(
            self,
            Alert::LineFail
                | Alert::LineRestored
                | Alert::LowBattery
                | Alert::LowBatteryCleared
                | Alert::ReplaceBattery
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Alert::LineFail => "line fail, on battery",
            Alert::LineRestored => "line restored",
            Alert::LowBattery => "low battery",
            Alert::LowBatteryCleared => "low battery cleared",
            Alert::ReplaceBattery => "replace battery",
            Alert::Abnormal => "abnormal condition",
            Alert::AbnormalCleared => "abnormal condition cleared",
            Alert::TurningOff => "about to turn off the load",
            Alert::CheckAlarms => "check alarm register",
            Alert::EepromChanged => "EEPROM value changed",
        }
    }
}

/// One thing decoded from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Alert(Alert),
    /// A reply line without its CR LF.
    Line(String),
    /// A line that was not printable ASCII or was too long; its bytes are dropped.
    Garbage {
        len: usize,
    },
}

/// Splits the UPS's bytes into lines and alerts. CR is ignored and LF ends a line, as
/// in apcupsd's reader; `:` (trailer) is dropped. In `literal` mode (used for the `a`
/// reply, whose text lists the alert characters) alert bytes stay in the line.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    buf: Vec<u8>,
    bad: bool,
    pub literal: bool,
}

impl ReplyDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Piece>) {
        for &b in bytes {
            match b {
                b'\r' => {}
                b':' if !self.literal => {}
                b'\n' => {
                    let line = std::mem::take(&mut self.buf);
                    if std::mem::take(&mut self.bad) {
                        out.push(Piece::Garbage { len: line.len() });
                    } else {
                        // Only ASCII is kept, so nothing is lost here.
                        out.push(Piece::Line(String::from_utf8_lossy(&line).into_owned()));
                    }
                }
                _ if !self.literal && Alert::from_byte(b).is_some() => {
                    if let Some(a) = Alert::from_byte(b) {
                        out.push(Piece::Alert(a));
                    }
                }
                // `a` lists ^A and ^Z among its commands, so control bytes are text there.
                0x00..=0x1F if self.literal => self.push(b),
                0x20..=0x7E => self.push(b),
                _ => {
                    self.bad = true;
                    self.push(b);
                }
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() < MAX_LINE {
            self.buf.push(b);
        } else {
            // Keep counting the line as noise without growing without bound.
            self.bad = true;
        }
    }

    /// Bytes of an unfinished line (a truncated reply when the UPS goes quiet).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets an unfinished line (after a timeout or a port flush).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.bad = false;
    }
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("expected {what}, got {got:?}")]
    Malformed { what: &'static str, got: String },
}

fn malformed(what: &'static str, got: &str) -> ReplyError {
    ReplyError::Malformed {
        what,
        got: got.chars().take(40).collect(),
    }
}

/// `true` for the UPS's "not available" answer.
pub fn is_na(reply: &str) -> bool {
    reply.trim() == "NA"
}

/// The `a` reply: protocol version, alert characters, command characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub protocol: String,
    pub alerts: BTreeSet<u8>,
    pub commands: BTreeSet<u8>,
}

impl Capabilities {
    /// Parses `3.!$%+?=#|.^A^Z~'789...`; the command section may itself contain `.`.
    pub fn parse(reply: &str) -> Result<Self, ReplyError> {
        let mut parts = reply.splitn(3, '.');
        let (Some(protocol), Some(alerts), Some(commands)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "three '.'-separated sections (version.alerts.commands)",
                reply,
            ));
        };
        if protocol.is_empty() || !protocol.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("a numeric protocol version", reply));
        }
        Ok(Capabilities {
            protocol: protocol.to_string(),
            alerts: alerts.bytes().collect(),
            commands: commands.bytes().collect(),
        })
    }

    /// Whether the UPS lists `cmd`. apcupsd looks in the alert and command sections
    /// together (a quirk of its parser), and so do we, so the same commands are tried.
    pub fn lists(&self, cmd: u8) -> bool {
        self.commands.contains(&cmd) || self.alerts.contains(&cmd)
    }
}

/// The `Q` status byte: two hex digits.
pub fn parse_status_byte(reply: &str) -> Result<u8, ReplyError> {
    let r = reply.trim();
    if r.len() != 2 {
        return Err(malformed("2 hex digits", reply));
    }
    u8::from_str_radix(r, 16).map_err(|_| malformed("2 hex digits", reply))
}

/// The status byte as flags (bits as apcupsd's STATFLAG low byte, docs/protocols/nis.md, STATFLAG bits).
pub fn flags_of_status(b: u8, battery_present: bool) -> UpsFlags {
    UpsFlags {
        battery_present,
        ..UpsFlags::from_statflag(u32::from(b))
    }
}

/// A decimal number such as `118.3`, `099.0` or `0327` (the `:` is already gone).
pub fn parse_number(reply: &str) -> Result<f64, ReplyError> {
    let r = reply.trim();
    let ok = !r.is_empty()
        && r.len() <= 16
        && r.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    let v: f64 =
        if ok { r.parse().ok() } else { None }.ok_or_else(|| malformed("a number", reply))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(malformed("a number", reply))
    }
}

/// A register or DIP switch value: hex digits.
pub fn parse_hex(reply: &str) -> Result<u8, ReplyError> {
    let r = reply.trim();
    if r.is_empty() || r.len() > 2 {
        return Err(malformed("1-2 hex digits", reply));
    }
    u8::from_str_radix(r, 16).map_err(|_| malformed("1-2 hex digits", reply))
}

/// `G`: apcupsd's LASTXFER phrase; `None` for `NA` (not yet known).
pub fn last_transfer_phrase(reply: &str) -> Option<&'static str> {
    Some(match reply.trim() {
        "NA" => return None,
        "R" => "Unacceptable line voltage changes",
        "H" => "High line voltage",
        "L" => "Low line voltage",
        "T" => "Line voltage notch or spike",
        "O" => "No transfers since turnon",
        "K" => "Forced by software",
        "S" => crate::reading::TRANSFER_SELF_TEST,
        _ => "UNKNOWN EVENT",
    })
}

/// `X`: apcupsd's SELFTEST code.
pub fn self_test_code(reply: &str) -> &'static str {
    match reply.trim() {
        "OK" => "OK",
        "BT" => "BT",
        "NG" => "NG",
        _ => "NO",
    }
}

/// `s`: apcupsd's SENSE words.
pub fn sensitivity(reply: &str) -> &'static str {
    match reply.trim() {
        "A" => "Auto Adjust",
        "L" => "Low",
        "M" => "Medium",
        "H" => "High",
        _ => "Unknown",
    }
}

/// `k`: apcupsd's ALARMDEL words.
pub fn alarm_delay(reply: &str) -> &'static str {
    match reply.trim() {
        "0" => "5 Seconds",
        "T" => "30 Seconds",
        "L" => "Low Battery",
        "N" => "No alarm",
        _ => "Always",
    }
}

/// Model name for old firmware that only answers `V` (its first letter).
pub fn model_from_old_firmware(v: &str) -> String {
    let model = match v.bytes().next() {
        Some(b'0') => "Matrix-UPS 3000",
        Some(b'2') => "Smart-UPS 250",
        Some(b'3' | b'4') => "Smart-UPS 400",
        Some(b'5') => "Matrix-UPS 5000",
        Some(b'6') => "Smart-UPS 600",
        Some(b'7') => "Smart-UPS 900",
        Some(b'8') => "Smart-UPS 1250",
        Some(b'9') => "Smart-UPS 2000",
        Some(b'A') => "Smart-UPS 1400",
        Some(b'B') => "Smart-UPS 1000",
        Some(b'C') => "Smart-UPS 650",
        Some(b'D') => "Smart-UPS 420",
        Some(b'E') => "Smart-UPS 280",
        Some(b'F') => "Smart-UPS 450",
        Some(b'G') => "Smart-UPS 700",
        Some(b'H') => "Smart-UPS 700 XL",
        Some(b'I') => "Smart-UPS 1000",
        Some(b'J') => "Smart-UPS 1000 XL",
        Some(b'K') => "Smart-UPS 1400",
        Some(b'L') => "Smart-UPS 1400 XL",
        Some(b'M') => "Smart-UPS 2200",
        Some(b'N') => "Smart-UPS 2200 XL",
        Some(b'O') => "Smart-UPS 3000",
        Some(b'P') => "Smart-UPS 5000",
        _ => return format!("Smart-UPS (firmware {})", v.trim()),
    };
    model.to_string()
}

/// What the UPS answered, by command byte; absent = unsupported or not asked.
pub type Replies = BTreeMap<u8, String>;

/// What the alerts said since the last status byte (apcupsd applies them to its status
/// at once; a later `Q` reply overrides them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertOverlay {
    pub on_battery: Option<bool>,
    pub low_battery: Option<bool>,
    pub replace_battery: bool,
}

impl AlertOverlay {
    pub fn apply_alert(&mut self, a: Alert) {
        match a {
            Alert::LineFail => self.on_battery = Some(true),
            Alert::LineRestored => self.on_battery = Some(false),
            Alert::LowBattery => self.low_battery = Some(true),
            Alert::LowBatteryCleared => self.low_battery = Some(false),
            Alert::ReplaceBattery => self.replace_battery = true,
            _ => {}
        }
    }

    pub fn apply_to(&self, f: &mut UpsFlags) {
        if let Some(b) = self.on_battery {
            f.on_battery = b;
            f.online = !b;
        }
        if let Some(l) = self.low_battery {
            f.low_battery = l;
        }
        if self.replace_battery {
            f.replace_battery = true;
        }
    }
}

/// Builds the normalised reading from the static and volatile replies. `status` is the
/// `Q` byte read this poll (required: without it there is no reading). Values that are
/// malformed are left out and listed in the returned warnings.
pub fn build_reading(
    statics: &Replies,
    volatile: &Replies,
    status: u8,
    overlay: &AlertOverlay,
    at: SystemTime,
) -> (UpsReading, Vec<String>) {
    let mut warnings = Vec::new();
    let mut num = |src: &Replies, cmd: u8, what: &str| -> Option<f64> {
        let r = src.get(&cmd)?;
        match parse_number(r) {
            Ok(v) => Some(v),
            Err(e) => {
                warnings.push(format!("{what} ('{}'): {e}", cmd as char));
                None
            }
        }
    };
    // REG2 bit 0x20: battery disconnected.
    let reg2 = volatile.get(&b'\'').and_then(|r| parse_hex(r).ok());
    let battery_present = reg2.is_none_or(|v| v & 0x20 == 0);
    let mut flags = flags_of_status(status, battery_present);
    overlay.apply_to(&mut flags);
    let mut r = UpsReading::empty(flags, at);
    r.line_voltage = num(volatile, b'L', "line voltage");
    r.max_line_voltage = num(volatile, b'M', "max line voltage");
    r.min_line_voltage = num(volatile, b'N', "min line voltage");
    r.output_voltage = num(volatile, b'O', "output voltage");
    r.charge_percent = num(volatile, b'f', "battery charge");
    r.battery_voltage = num(volatile, b'B', "battery voltage");
    r.load_percent = num(volatile, b'P', "load");
    r.line_frequency_hz = num(volatile, b'F', "line frequency");
    r.runtime_s = num(volatile, b'j', "runtime").map(|m| m * 60.0);
    r.internal_temp_c = num(volatile, b'C', "internal temperature");
    let humidity = num(volatile, b'h', "humidity");
    let ambient = num(volatile, b't', "ambient temperature");
    let dwake = num(statics, b'r', "wakeup delay");
    let dshutd = num(statics, b'p', "shutdown delay");
    let lotrans = num(statics, b'l', "low transfer voltage");
    let hitrans = num(statics, b'u', "high transfer voltage");
    let retpct = num(statics, b'e', "return charge");
    let dlowbatt = num(statics, b'q', "low battery warning");
    let nomoutv = num(statics, b'o', "nominal output voltage");
    let nombattv = num(statics, b'g', "nominal battery voltage");
    let extbatts = num(statics, b'>', "external battery packs");
    let badbatts = num(statics, b'<', "bad battery packs");

    if let Some(g) = volatile.get(&b'G') {
        r.last_transfer = last_transfer_phrase(g).unwrap_or_default().to_string();
    }
    if let Some(x) = volatile.get(&b'X') {
        r.self_test = self_test_code(x).to_string();
    }
    // MODEL from ^A, else from the old firmware letter; FIRMWARE from b, else V.
    let old_fw = statics.get(&b'V');
    r.model = match (statics.get(&CMD_MODEL), old_fw) {
        (Some(m), _) => m.trim().to_string(),
        (None, Some(v)) => model_from_old_firmware(v),
        (None, None) => String::new(),
    };
    r.firmware = statics
        .get(&b'b')
        .or(old_fw)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    r.serial_number = text(statics, b'n');
    r.battery_date = text(statics, b'x');

    let d = &mut r.details;
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            d.insert(k.to_string(), v);
        }
    };
    put("SENSE", statics.get(&b's').map(|s| sensitivity(s).into()));
    put("DWAKE", dwake.map(|v| format!("{} Seconds", v as i64)));
    put("DSHUTD", dshutd.map(|v| format!("{} Seconds", v as i64)));
    put(
        "DLOWBATT",
        dlowbatt.map(|v| format!("{} Minutes", v as i64)),
    );
    put("LOTRANS", lotrans.map(|v| format!("{}.0 Volts", v as i64)));
    put("HITRANS", hitrans.map(|v| format!("{}.0 Volts", v as i64)));
    put("RETPCT", retpct.map(|v| format!("{}.0 Percent", v as i64)));
    put(
        "ALARMDEL",
        statics.get(&b'k').map(|s| alarm_delay(s).into()),
    );
    put("STESTI", statics.get(&b'E').map(|s| s.trim().to_string()));
    for (key, cmd) in [
        ("DIPSW", b'7'),
        ("REG1", b'~'),
        ("REG2", b'\''),
        ("REG3", b'8'),
    ] {
        match volatile.get(&cmd).map(|s| (s, parse_hex(s))) {
            Some((_, Ok(v))) => put(key, Some(format!("0x{v:02X}"))),
            Some((_, Err(e))) => warnings.push(format!("{key} ('{}'): {e}", cmd as char)),
            None => {}
        }
    }
    put("MANDATE", statics.get(&b'm').map(|s| s.trim().to_string()));
    put("NOMOUTV", nomoutv.map(|v| format!("{} Volts", v as i64)));
    put("NOMBATTV", nombattv.map(|v| format!("{v:.1} Volts")));
    put("HUMIDITY", humidity.map(|v| format!("{v:.1} Percent")));
    put("AMBTEMP", ambient.map(|v| format!("{v:.1} C")));
    put("EXTBATTS", extbatts.map(|v| format!("{}", v as i64)));
    put("BADBATTS", badbatts.map(|v| format!("{}", v as i64)));
    put("UPSNAME", statics.get(&b'c').map(|s| s.trim().to_string()));
    (r, warnings)
}

fn text(src: &Replies, cmd: u8) -> String {
    src.get(&cmd)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Piece> {
        let mut d = ReplyDecoder::new();
        let mut out = vec![];
        d.feed(bytes, &mut out);
        out
    }

    fn line(s: &str) -> Piece {
        Piece::Line(s.into())
    }

    #[test]
    fn golden_lines_and_alerts() {
        // docs/hardware/apc-smart.md §1: replies end with CR LF; CR is ignored.
        assert_eq!(decode(b"SM\r\n"), vec![line("SM")]);
        // §7.3: `j` is colon-terminated; the trailer is dropped like apcupsd does.
        assert_eq!(decode(b"0327:\r\n"), vec![line("0327")]);
        // §7.4: alerts are single bytes, between or inside replies.
        assert_eq!(
            decode(b"!118.3\r\n"),
            vec![Piece::Alert(Alert::LineFail), line("118.3")]
        );
        assert_eq!(
            decode(b"11%8.3\r$\n"),
            vec![
                Piece::Alert(Alert::LowBattery),
                Piece::Alert(Alert::LineRestored),
                line("118.3")
            ]
        );
        assert_eq!(decode(b"|"), vec![Piece::Alert(Alert::EepromChanged)]);
        assert_eq!(decode(b"*"), vec![Piece::Alert(Alert::TurningOff)]);
        for (b, a) in [
            (b'#', Alert::ReplaceBattery),
            (b'+', Alert::LowBatteryCleared),
            (b'?', Alert::Abnormal),
            (b'=', Alert::AbnormalCleared),
            (b'&', Alert::CheckAlarms),
        ] {
            assert_eq!(decode(&[b]), vec![Piece::Alert(a)]);
        }
    }

    #[test]
    fn split_feeds_and_literal_mode() {
        let mut d = ReplyDecoder::new();
        let mut out = vec![];
        d.feed(b"09", &mut out);
        assert!(out.is_empty());
        assert_eq!(d.pending(), 2);
        d.feed(b"9.0\r", &mut out);
        d.feed(b"\n", &mut out);
        assert_eq!(out, vec![line("099.0")]);
        d.literal = true;
        out.clear();
        d.feed(b"3.!$%+?=#|.\x01~'789ABC\r\n", &mut out);
        assert_eq!(out, vec![line("3.!$%+?=#|.\x01~'789ABC")]);
    }

    #[test]
    fn garbage_and_overlong_lines_are_flagged_not_kept() {
        assert_eq!(decode(b"\xff\xfe\r\n"), vec![Piece::Garbage { len: 2 }]);
        assert_eq!(decode(b"ab\x00c\n"), vec![Piece::Garbage { len: 4 }]);
        let mut long = vec![b'7'; MAX_LINE + 10];
        long.push(b'\n');
        let out = decode(&long);
        assert!(matches!(out[..], [Piece::Garbage { .. }]), "{out:?}");
        // The decoder recovers on the next line.
        let mut d = ReplyDecoder::new();
        let mut out = vec![];
        d.feed(&long, &mut out);
        d.feed(b"OK\r\n", &mut out);
        assert_eq!(out.last(), Some(&line("OK")));
    }

    proptest::proptest! {
        /// However the bytes are split into reads, the same pieces come out, and no
        /// input panics.
        #[test]
        fn any_split_decodes_the_same(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..300,
        ) {
            let whole = decode(&bytes);
            let mut d = ReplyDecoder::new();
            let mut out = vec![];
            let cut = cut.min(bytes.len());
            d.feed(&bytes[..cut], &mut out);
            d.feed(&bytes[cut..], &mut out);
            proptest::prop_assert_eq!(whole, out);
        }
    }

    #[test]
    fn capabilities_golden() {
        let c = Capabilities::parse(
            "3.!$%+?=#|.\x01\x1a~'789>@ABCDEFGKLMNOPQRSUVWXYZabcefgjklmnopqrsuxyz",
        )
        .unwrap();
        assert_eq!(c.protocol, "3");
        assert!(c.alerts.contains(&b'!') && c.alerts.contains(&b'|'));
        assert!(c.lists(b'Q') && c.lists(CMD_MODEL) && c.lists(b'j'));
        assert!(!c.lists(b'h'));
        // The command section may contain '.' itself.
        let c = Capabilities::parse("3.!$.Q.f").unwrap();
        assert!(c.lists(b'.') && c.lists(b'f'));
        for bad in ["NA", "", "x.!$.Q", "3!$Q"] {
            assert!(Capabilities::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_and_codes_golden() {
        assert_eq!(parse_status_byte("08"), Ok(0x08));
        assert_eq!(parse_status_byte("50"), Ok(0x50));
        assert!(parse_status_byte("SM").is_err());
        assert!(parse_status_byte("8").is_err());
        assert!(parse_status_byte("080").is_err());
        let f = flags_of_status(0x50, true);
        assert!(f.on_battery && f.low_battery && !f.online);
        let f = flags_of_status(0x0A, true);
        assert!(f.online && f.trim && !f.on_battery);
        assert_eq!(parse_number("099.0"), Ok(99.0));
        assert_eq!(parse_number("27.87"), Ok(27.87));
        assert_eq!(parse_number("0327"), Ok(327.0));
        for bad in ["", "NA", "1e5", "12.3V", "inf", "--", "1.2.3"] {
            assert!(parse_number(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_hex("00"), Ok(0));
        assert_eq!(parse_hex("FF"), Ok(0xFF));
        assert!(parse_hex("GG").is_err() && parse_hex("123").is_err());
        assert_eq!(
            last_transfer_phrase("R"),
            Some("Unacceptable line voltage changes")
        );
        assert_eq!(last_transfer_phrase("O"), Some("No transfers since turnon"));
        assert_eq!(
            last_transfer_phrase("S"),
            Some("Automatic or explicit self test")
        );
        assert_eq!(last_transfer_phrase("NA"), None);
        assert_eq!(last_transfer_phrase("Z"), Some("UNKNOWN EVENT"));
        assert_eq!(self_test_code("BT"), "BT");
        assert_eq!(self_test_code("NO"), "NO");
        assert_eq!(sensitivity("H"), "High");
        assert_eq!(sensitivity("A"), "Auto Adjust");
        assert_eq!(alarm_delay("T"), "30 Seconds");
        assert_eq!(alarm_delay("N"), "No alarm");
        assert_eq!(model_from_old_firmware("GWD"), "Smart-UPS 700");
        assert_eq!(model_from_old_firmware("ZZZ"), "Smart-UPS (firmware ZZZ)");
    }

    fn replies(pairs: &[(u8, &str)]) -> Replies {
        pairs.iter().map(|(c, s)| (*c, s.to_string())).collect()
    }

    #[test]
    fn reading_from_typical_smart_ups_replies() {
        let statics = replies(&[
            (b's', "H"),
            (b'r', "000"),
            (b'p', "020"),
            (b'l', "103"),
            (b'u', "132"),
            (b'e', "00"),
            (b'k', "0"),
            (b'q', "02"),
            (b'c', "UPS_IDEN"),
            (b'E', "336"),
            (b'm', "11/29/96"),
            (b'n', "WS9643050926"),
            (b'x', "11/29/96"),
            (b'o', "115"),
            (b'g', "024"),
            (b'b', "50.9.D"),
            (CMD_MODEL, "SMART-UPS 700"),
        ]);
        let volatile = replies(&[
            (b'G', "O"),
            (b'X', "OK"),
            (b'L', "118.3"),
            (b'M', "118.9"),
            (b'N', "117.8"),
            (b'O', "118.3"),
            (b'f', "099.0"),
            (b'B', "27.87"),
            (b'P', "023.5"),
            (b'F', "60.00"),
            (b'j', "0327"),
            (b'C', "036.0"),
            (b'7', "00"),
            (b'~', "00"),
            (b'\'', "00"),
            (b'8', "00"),
        ]);
        let (r, w) = build_reading(
            &statics,
            &volatile,
            0x08,
            &AlertOverlay::default(),
            SystemTime::UNIX_EPOCH,
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(r.flags.online && r.flags.battery_present && !r.flags.on_battery);
        assert_eq!(r.line_voltage, Some(118.3));
        assert_eq!(r.max_line_voltage, Some(118.9));
        assert_eq!(r.min_line_voltage, Some(117.8));
        assert_eq!(r.charge_percent, Some(99.0));
        assert_eq!(r.battery_voltage, Some(27.87));
        assert_eq!(r.load_percent, Some(23.5));
        assert_eq!(r.line_frequency_hz, Some(60.0));
        assert_eq!(r.runtime_s, Some(327.0 * 60.0));
        assert_eq!(r.internal_temp_c, Some(36.0));
        assert_eq!(r.model, "SMART-UPS 700");
        assert_eq!(r.firmware, "50.9.D");
        assert_eq!(r.serial_number, "WS9643050926");
        assert_eq!(r.battery_date, "11/29/96");
        assert_eq!(r.last_transfer, "No transfers since turnon");
        assert_eq!(r.self_test, "OK");
        let d = &r.details;
        assert_eq!(d["SENSE"], "High");
        assert_eq!(d["DWAKE"], "0 Seconds");
        assert_eq!(d["DSHUTD"], "20 Seconds");
        assert_eq!(d["LOTRANS"], "103.0 Volts");
        assert_eq!(d["HITRANS"], "132.0 Volts");
        assert_eq!(d["RETPCT"], "0.0 Percent");
        assert_eq!(d["ALARMDEL"], "5 Seconds");
        assert_eq!(d["DLOWBATT"], "2 Minutes");
        assert_eq!(d["STESTI"], "336");
        assert_eq!(d["DIPSW"], "0x00");
        assert_eq!(d["REG2"], "0x00");
        assert_eq!(d["MANDATE"], "11/29/96");
        assert_eq!(d["NOMOUTV"], "115 Volts");
        assert_eq!(d["NOMBATTV"], "24.0 Volts");
        assert_eq!(d["UPSNAME"], "UPS_IDEN");
    }

    #[test]
    fn reading_handles_old_firmware_garbage_and_alerts() {
        let statics = replies(&[(b'V', "GWD")]);
        let volatile = replies(&[(b'L', "11x.3"), (b'\'', "20"), (b'7', "zz")]);
        let mut overlay = AlertOverlay::default();
        overlay.apply_alert(Alert::LineFail);
        overlay.apply_alert(Alert::LowBattery);
        let (r, w) = build_reading(&statics, &volatile, 0x08, &overlay, SystemTime::UNIX_EPOCH);
        assert_eq!(r.model, "Smart-UPS 700");
        assert_eq!(r.firmware, "GWD");
        assert_eq!(r.line_voltage, None);
        assert!(!r.flags.battery_present, "REG2 0x20 = battery disconnected");
        assert!(r.flags.on_battery && !r.flags.online && r.flags.low_battery);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("line voltage ('L')"), "{w:?}");
        assert!(w[1].contains("DIPSW"), "{w:?}");
    }
}
