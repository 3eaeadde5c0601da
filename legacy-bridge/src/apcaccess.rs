//! The `apcaccess status` text of apcupsd 3.14 (docs/protocols/nis.md §3): render it byte for
//! byte, and parse it back the way a client reads it.
//!
//! A record is `KEY` left-justified in 9 columns, `": "`, the value, `\n`; the value
//! always starts at byte 11. Dates end with two spaces (apcupsd's `format_date`). Keys
//! come in apcupsd's order, which matters: apcupsd's `net` driver finds keys by
//! substring search, so `LINEV` must precede `MAXLINEV` and `DATE` precede `BATTDATE`.

use std::fmt::Write as _;

/// Everything a status report can carry. Optional fields are omitted when `None`, as
/// apcupsd omits a key its UPS lacks. Dates are `YYYY-MM-DD HH:MM:SS ±zzzz`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusInput {
    pub date: String,
    pub hostname: String,
    pub version: String,
    pub upsname: String,
    pub cable: String,
    pub driver: String,
    pub upsmode: String,
    pub starttime: String,
    pub model: Option<String>,
    /// apcupsd's STATUS words without the trailing space (e.g. `ONBATT LOWBATT`).
    pub status: String,
    pub linev: Option<f64>,
    pub loadpct: Option<f64>,
    pub bcharge: Option<f64>,
    /// Minutes.
    pub timeleft: Option<f64>,
    pub mbattchg: u32,
    pub mintimel: u32,
    pub maxtime: u32,
    pub maxlinev: Option<f64>,
    pub minlinev: Option<f64>,
    pub outputv: Option<f64>,
    pub itemp: Option<f64>,
    pub battv: Option<f64>,
    pub linefreq: Option<f64>,
    pub lastxfer: Option<String>,
    pub numxfers: u32,
    pub xonbatt: Option<String>,
    pub tonbatt: u32,
    pub cumonbatt: u32,
    /// `None` prints `N/A`.
    pub xoffbatt: Option<String>,
    pub laststest: Option<String>,
    pub selftest: Option<String>,
    pub statflag: u32,
    pub serialno: Option<String>,
    pub battdate: Option<String>,
    pub nompower: Option<u32>,
    pub firmware: Option<String>,
    pub end_apc: String,
}

/// One record line.
pub fn record(key: &str, value: &str) -> String {
    format!("{key:<9}: {value}\n")
}

fn date(d: &str) -> String {
    format!("{d}  ")
}

/// apcupsd's STATUS value: each word followed by a space, except a final SLAVEDOWN
/// and the SHUTTING DOWN override.
pub fn status_value(words: &str) -> String {
    if words == "SHUTTING DOWN" || words.ends_with("SLAVEDOWN") || words.is_empty() {
        words.to_string()
    } else {
        format!("{words} ")
    }
}

/// The status records in apcupsd's order, `END APC` last (no `APC` header: see
/// [`crate::nis::status_header`]).
pub fn render(s: &StatusInput) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |k: &str, v: String| out.push(record(k, &v));
    push("DATE", date(&s.date));
    push("HOSTNAME", s.hostname.clone());
    push("VERSION", s.version.clone());
    if !s.upsname.is_empty() {
        push("UPSNAME", s.upsname.clone());
    }
    push("CABLE", s.cable.clone());
    push("DRIVER", s.driver.clone());
    push("UPSMODE", s.upsmode.clone());
    push("STARTTIME", date(&s.starttime));
    if let Some(m) = &s.model {
        push("MODEL", m.clone());
    }
    push("STATUS", status_value(&s.status));
    // A measured value is printed with one decimal and its unit, and left out when
    // the UPS does not report it (as apcupsd's `output_status` does).
    let measured = |push: &mut dyn FnMut(&str, String), values: &[(&str, Option<f64>, &str)]| {
        for (key, v, unit) in values {
            if let Some(v) = v {
                push(key, format!("{v:.1} {unit}"));
            }
        }
    };
    measured(
        &mut push,
        &[
            ("LINEV", s.linev, "Volts"),
            ("LOADPCT", s.loadpct, "Percent"),
            ("BCHARGE", s.bcharge, "Percent"),
            ("TIMELEFT", s.timeleft, "Minutes"),
        ],
    );
    push("MBATTCHG", format!("{} Percent", s.mbattchg));
    push("MINTIMEL", format!("{} Minutes", s.mintimel));
    push("MAXTIME", format!("{} Seconds", s.maxtime));
    measured(
        &mut push,
        &[
            ("MAXLINEV", s.maxlinev, "Volts"),
            ("MINLINEV", s.minlinev, "Volts"),
            ("OUTPUTV", s.outputv, "Volts"),
            ("ITEMP", s.itemp, "C"),
            ("BATTV", s.battv, "Volts"),
            ("LINEFREQ", s.linefreq, "Hz"),
        ],
    );
    if let Some(v) = &s.lastxfer {
        push("LASTXFER", v.clone());
    }
    push("NUMXFERS", s.numxfers.to_string());
    if s.numxfers > 0
        && let Some(d) = &s.xonbatt
    {
        push("XONBATT", date(d));
    }
    push("TONBATT", format!("{} Seconds", s.tonbatt));
    push("CUMONBATT", format!("{} Seconds", s.cumonbatt));
    push(
        "XOFFBATT",
        s.xoffbatt.as_deref().map_or("N/A".to_string(), date),
    );
    if let Some(d) = &s.laststest {
        push("LASTSTEST", date(d));
    }
    if let Some(v) = &s.selftest {
        push("SELFTEST", v.clone());
    }
    push("STATFLAG", format!("0x{:08X}", s.statflag));
    if let Some(v) = &s.serialno {
        push("SERIALNO", v.clone());
    }
    if let Some(v) = &s.battdate {
        push("BATTDATE", v.clone());
    }
    if let Some(v) = s.nompower {
        push("NOMPOWER", format!("{v} Watts"));
    }
    if let Some(v) = &s.firmware {
        push("FIRMWARE", v.clone());
    }
    push("END APC", date(&s.end_apc));
    out
}

/// The whole status text as `apcaccess` prints it: header line, then the records.
pub fn render_text(s: &StatusInput) -> String {
    let recs = render(s);
    let mut t = crate::nis::status_header(&recs);
    for r in &recs {
        let _ = write!(t, "{r}");
    }
    t
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("status text is not ASCII/UTF-8 at byte {0}")]
    Encoding(usize),
    #[error("line {line}: {text:?} is not `KEY : value`")]
    BadLine { line: usize, text: String },
    #[error("status text has no STATFLAG record; it is not apcupsd status output")]
    NoStatflag,
}

/// Parsed status text: records in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusText {
    pub records: Vec<(String, String)>,
}

impl StatusText {
    /// Parses `apcaccess status` text (header line optional). Values are trimmed of
    /// trailing blanks; keys are matched exactly, not by substring.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ParseError::Encoding(e.valid_up_to()))?;
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\0');
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(ParseError::BadLine {
                    line: i + 1,
                    text: line.chars().take(80).collect(),
                });
            };
            let key = k.trim();
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ')
            {
                return Err(ParseError::BadLine {
                    line: i + 1,
                    text: line.chars().take(80).collect(),
                });
            }
            let value = v.strip_prefix(' ').unwrap_or(v).trim_end();
            records.push((key.to_string(), value.to_string()));
        }
        let st = StatusText { records };
        if st.get("STATFLAG").is_none() {
            return Err(ParseError::NoStatflag);
        }
        Ok(st)
    }

    /// The first record with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.records
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first word of a value as a number (`12.0 Percent` → 12.0); `N/A` → None.
    pub fn number(&self, key: &str) -> Option<f64> {
        let v = self.get(key)?;
        let tok = v.split_whitespace().next()?;
        if tok == "N/A" {
            return None;
        }
        tok.parse().ok().filter(|x: &f64| x.is_finite())
    }

    /// STATFLAG as a number (`0x05000008`).
    pub fn statflag(&self) -> Option<u32> {
        let v = self.get("STATFLAG")?.split_whitespace().next()?;
        let hex = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"))?;
        u32::from_str_radix(hex, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> StatusInput {
        StatusInput {
            date: "2026-11-24 10:00:00 +0000".into(),
            hostname: "rack1".into(),
            version: "3.14.14 (31 May 2016) debian".into(),
            upsname: "ups1".into(),
            cable: "Custom Cable Smart".into(),
            driver: "APC Smart UPS (any)".into(),
            upsmode: "Stand Alone".into(),
            starttime: "2026-11-24 09:00:00 +0000".into(),
            model: Some("Smart-UPS 1500".into()),
            status: "ONLINE".into(),
            linev: Some(230.0),
            loadpct: Some(35.0),
            bcharge: Some(100.0),
            timeleft: Some(42.9),
            mbattchg: 10,
            mintimel: 5,
            maxtime: 0,
            outputv: Some(230.0),
            battv: Some(27.3),
            linefreq: Some(50.0),
            lastxfer: Some("No transfers since turnon".into()),
            numxfers: 0,
            tonbatt: 0,
            cumonbatt: 0,
            xoffbatt: None,
            selftest: Some("NO".into()),
            statflag: 0x0500_0008,
            serialno: Some("AS1234567890".into()),
            firmware: Some("UPS 08.3 / ID=18".into()),
            end_apc: "2026-11-24 10:00:01 +0000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn golden_records_match_apcupsd_layout() {
        let recs = render(&sample());
        assert_eq!(recs[0], "DATE     : 2026-11-24 10:00:00 +0000  \n");
        assert_eq!(recs[7], "STARTTIME: 2026-11-24 09:00:00 +0000  \n");
        assert!(recs.contains(&"STATUS   : ONLINE \n".to_string()));
        assert!(recs.contains(&"BCHARGE  : 100.0 Percent\n".to_string()));
        assert!(recs.contains(&"TIMELEFT : 42.9 Minutes\n".to_string()));
        assert!(recs.contains(&"MBATTCHG : 10 Percent\n".to_string()));
        assert!(recs.contains(&"XOFFBATT : N/A\n".to_string()));
        assert!(recs.contains(&"STATFLAG : 0x05000008\n".to_string()));
        assert_eq!(
            recs.last().unwrap(),
            "END APC  : 2026-11-24 10:00:01 +0000  \n"
        );
        for r in &recs {
            assert_eq!(&r[9..11], ": ", "value starts at byte 11: {r:?}");
        }
        // Order: LINEV before MAXLINEV etc. (net driver substring search).
        let keys: Vec<&str> = recs.iter().map(|r| r[..9].trim()).collect();
        let pos = |k| keys.iter().position(|x| *x == k).unwrap();
        assert!(
            pos("DATE") < pos("STATUS")
                && pos("STATUS") < pos("LINEV")
                && pos("LINEV") < pos("STATFLAG")
        );
    }

    #[test]
    fn status_value_trailing_space_rules() {
        assert_eq!(status_value("ONLINE"), "ONLINE ");
        assert_eq!(status_value("ONBATT LOWBATT"), "ONBATT LOWBATT ");
        assert_eq!(status_value("COMMLOST"), "COMMLOST ");
        assert_eq!(status_value("SHUTTING DOWN"), "SHUTTING DOWN");
        assert_eq!(
            status_value("ONLINE SLAVE SLAVEDOWN"),
            "ONLINE SLAVE SLAVEDOWN"
        );
    }

    #[test]
    fn render_then_parse_round_trips() {
        let text = render_text(&sample());
        assert!(text.starts_with("APC      : 001,"));
        let st = StatusText::parse(text.as_bytes()).unwrap();
        assert_eq!(st.get("UPSNAME"), Some("ups1"));
        assert_eq!(st.get("STATUS"), Some("ONLINE"));
        assert_eq!(st.number("BCHARGE"), Some(100.0));
        assert_eq!(st.number("XOFFBATT"), None);
        assert_eq!(st.statflag(), Some(0x0500_0008));
        assert_eq!(st.get("DATE"), Some("2026-11-24 10:00:00 +0000"));
        assert_eq!(st.get("END APC"), Some("2026-11-24 10:00:01 +0000"));
    }

    #[test]
    fn parse_tolerates_old_suffixes_and_rejects_garbage() {
        let old = "MODEL    : SMART-UPS 700\nLOADPCT  :  12.0 Percent Load Capacity\nSTATFLAG : 0x008 Status Flag\n";
        let st = StatusText::parse(old.as_bytes()).unwrap();
        assert_eq!(st.number("LOADPCT"), Some(12.0));
        assert_eq!(st.statflag(), Some(8));
        assert!(matches!(
            StatusText::parse(b"hello world\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
        assert_eq!(
            StatusText::parse(b"DATE     : x\n"),
            Err(ParseError::NoStatflag)
        );
        assert_eq!(
            StatusText::parse(&[b'A', 0xff]),
            Err(ParseError::Encoding(1))
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = StatusText::parse(&bytes);
        }
    }
}
