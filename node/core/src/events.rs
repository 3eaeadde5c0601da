//! apcupsd's events: their names and texts, the node's event history, and the events
//! file in apcupsd's format.
//!
//! [`EventKind`] is the closed list of apcupsd event names (docs/compat.md, "apcupsd's events"), each
//! with the text apcupsd logs. [`EventLog`] numbers events, keeps the most recent ones
//! in memory for the API, and appends each to the events file as
//! `YYYY-MM-DD HH:MM:SS ±HHMM  message` (two spaces), trimming the file like apcupsd's
//! EVENTSFILEMAX (keep the last 80 % once it is too big).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::policy::ShutdownRule;

/// apcupsd's events, plus `Notice` for lines apcupsd logs without an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    PowerOut,
    OnBattery,
    OffBattery,
    MainsBack,
    Failing,
    Timeout,
    RunLimit,
    LoadLimit,
    DoShutdown,
    CommFailure,
    CommOk,
    ChangeMe,
    BattAttach,
    BattDetach,
    Emergency,
    AnnoyMe,
    StartSelfTest,
    EndSelfTest,
    RemoteDown,
    KillPower,
    /// A legacy master stopped sending (apcupsd 3.12's slave event).
    MasterTimeout,
    /// A legacy master connected (again).
    MasterConnect,
    /// A log line with no apccontrol event (startup, shutdown details, ...).
    Notice,
}

impl EventKind {
    pub const ALL: [EventKind; 23] = [
        EventKind::PowerOut,
        EventKind::OnBattery,
        EventKind::OffBattery,
        EventKind::MainsBack,
        EventKind::Failing,
        EventKind::Timeout,
        EventKind::RunLimit,
        EventKind::LoadLimit,
        EventKind::DoShutdown,
        EventKind::CommFailure,
        EventKind::CommOk,
        EventKind::ChangeMe,
        EventKind::BattAttach,
        EventKind::BattDetach,
        EventKind::Emergency,
        EventKind::AnnoyMe,
        EventKind::StartSelfTest,
        EventKind::EndSelfTest,
        EventKind::RemoteDown,
        EventKind::KillPower,
        EventKind::MasterTimeout,
        EventKind::MasterConnect,
        EventKind::Notice,
    ];

    /// The apccontrol event name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::PowerOut => "powerout",
            EventKind::OnBattery => "onbattery",
            EventKind::OffBattery => "offbattery",
            EventKind::MainsBack => "mainsback",
            EventKind::Failing => "failing",
            EventKind::Timeout => "timeout",
            EventKind::RunLimit => "runlimit",
            EventKind::LoadLimit => "loadlimit",
            EventKind::DoShutdown => "doshutdown",
            EventKind::CommFailure => "commfailure",
            EventKind::CommOk => "commok",
            EventKind::ChangeMe => "changeme",
            EventKind::BattAttach => "battattach",
            EventKind::BattDetach => "battdetach",
            EventKind::Emergency => "emergency",
            EventKind::AnnoyMe => "annoyme",
            EventKind::StartSelfTest => "startselftest",
            EventKind::EndSelfTest => "endselftest",
            EventKind::RemoteDown => "remotedown",
            EventKind::KillPower => "killpower",
            EventKind::MasterTimeout => "mastertimeout",
            EventKind::MasterConnect => "masterconnect",
            EventKind::Notice => "notice",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The text apcupsd writes to the events file for this event.
    pub fn message(self) -> &'static str {
        match self {
            EventKind::PowerOut => "Power failure.",
            EventKind::OnBattery => "Running on UPS batteries.",
            EventKind::OffBattery => "Mains returned. No longer on UPS batteries.",
            EventKind::MainsBack => "Power is back. UPS running on mains.",
            EventKind::Failing => "Battery power exhausted.",
            EventKind::Timeout => "Reached run time limit on batteries.",
            EventKind::RunLimit => "Reached remaining time percentage limit on batteries.",
            EventKind::LoadLimit => "Battery charge below low limit.",
            EventKind::DoShutdown => "Initiating system shutdown!",
            EventKind::CommFailure => "Communications with UPS lost.",
            EventKind::CommOk => "Communications with UPS restored.",
            EventKind::ChangeMe => "UPS battery must be replaced.",
            EventKind::BattAttach => "Battery reattached.",
            EventKind::BattDetach => "Battery disconnected.",
            EventKind::Emergency => "Battery failure. Emergency.",
            EventKind::AnnoyMe => "Users requested to logoff.",
            EventKind::StartSelfTest => "UPS Self Test switch to battery.",
            EventKind::EndSelfTest => "UPS Self Test completed.",
            EventKind::RemoteDown => "Remote shutdown requested.",
            EventKind::KillPower => "Attempting to kill the UPS power!",
            EventKind::MasterTimeout => "Master not responding.",
            EventKind::MasterConnect => "Connection from master established.",
            EventKind::Notice => "",
        }
    }

    /// Whether apccontrol is called for this event (everything but plain log lines).
    pub fn runs_hook(self) -> bool {
        self != EventKind::Notice
    }

    /// The event that announces a shutdown rule.
    pub fn from_rule(rule: ShutdownRule) -> Self {
        match rule {
            ShutdownRule::Timeout => EventKind::Timeout,
            ShutdownRule::LowBattery => EventKind::Failing,
            ShutdownRule::BatteryLevel => EventKind::LoadLimit,
            ShutdownRule::Runtime => EventKind::RunLimit,
            ShutdownRule::Emergency => EventKind::Emergency,
            ShutdownRule::CommLostOnBattery => EventKind::Notice,
        }
    }
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub at: SystemTime,
    pub kind: EventKind,
    pub ups_name: String,
    pub message: String,
}

use crate::time::format_date;

/// One events-file line, without the newline: date, two spaces, message.
pub fn format_line(at: SystemTime, message: &str) -> String {
    format!("{}  {}", format_date(at), message)
}

/// Errors writing the events file.
#[derive(Debug, thiserror::Error)]
pub enum EventsFileError {
    #[error(
        "cannot write events file {path}: {source}; check that its directory exists and is writable"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The node's event history: numbered, kept in memory (bounded), appended to a file.
#[derive(Debug)]
pub struct EventLog {
    next_seq: u64,
    recent: VecDeque<Event>,
    capacity: usize,
    file: Option<PathBuf>,
    max_bytes: u64,
}

impl EventLog {
    /// `file`: the events file, if any; `max_kib`: EVENTSFILEMAX (0 = unlimited).
    pub fn new(file: Option<PathBuf>, max_kib: u64, capacity: usize) -> Self {
        EventLog {
            next_seq: 1,
            recent: VecDeque::new(),
            capacity: capacity.max(1),
            file,
            max_bytes: max_kib * 1024,
        }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Records an event, appends it to the file, and returns it. A file error is
    /// returned after the event is kept in memory, so no event is lost to a full disk.
    pub fn record(
        &mut self,
        kind: EventKind,
        ups_name: &str,
        message: &str,
        at: SystemTime,
    ) -> (Event, Result<(), EventsFileError>) {
        let ev = Event {
            seq: self.next_seq,
            at,
            kind,
            ups_name: ups_name.to_string(),
            message: message.to_string(),
        };
        self.next_seq += 1;
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(ev.clone());
        let res = match &self.file {
            Some(path) => append_line(path, &format_line(at, message), self.max_bytes),
            None => Ok(()),
        };
        (ev, res)
    }

    /// The most recent `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        let skip = self.recent.len().saturating_sub(limit);
        self.recent.iter().skip(skip).cloned().collect()
    }
}

fn append_line(path: &Path, line: &str, max_bytes: u64) -> Result<(), EventsFileError> {
    let io = |source| EventsFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    drop(f);
    if max_bytes > 0 {
        trim_file(path, max_bytes).map_err(io)?;
    }
    Ok(())
}

/// apcupsd's trim: once the file is over `max_bytes`, keep the last 80 %, cut at the
/// first newline so no partial line remains.
fn trim_file(path: &Path, max_bytes: u64) -> std::io::Result<()> {
    let len = std::fs::metadata(path)?.len();
    if len <= max_bytes {
        return Ok(());
    }
    let data = std::fs::read(path)?;
    let keep = (data.len() as u64 * 8 / 10) as usize;
    let start = data.len() - keep;
    let tail = &data[start..];
    let cut = tail
        .iter()
        .position(|&b| b == b'\n')
        .map_or(tail.len(), |p| p + 1);
    let tmp = path.with_extension("trim");
    std::fs::write(&tmp, &tail[cut..])?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn line_format_matches_apcupsd_3_14() {
        let at = UNIX_EPOCH + Duration::from_secs(1_464_703_200);
        let line = format_line(at, "Power failure.");
        // YYYY-MM-DD HH:MM:SS ±HHMM, two spaces, message.
        let (date, msg) = line.split_at(25);
        assert_eq!(msg, "  Power failure.");
        let b = date.as_bytes();
        assert_eq!(date.len(), 25);
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'-', b'-', b' ', b':', b':', b' ')
        );
        assert!(b[20] == b'+' || b[20] == b'-');
        assert!(date[21..].chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn names_and_texts_are_apcupsd_s() {
        assert_eq!(EventKind::from_name("powerout"), Some(EventKind::PowerOut));
        assert_eq!(
            EventKind::MainsBack.message(),
            "Power is back. UPS running on mains."
        );
        assert_eq!(
            EventKind::RunLimit.message(),
            "Reached remaining time percentage limit on batteries."
        );
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn file_is_appended_and_trimmed_to_80_percent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let mut log = EventLog::new(Some(path.clone()), 1, 10);
        for i in 0..40 {
            let (_, r) = log.record(
                EventKind::Notice,
                "ups",
                &format!("line {i:02} padding padding"),
                SystemTime::now(),
            );
            r.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 1024, "trimmed: {}", text.len());
        assert!(text.ends_with("line 39 padding padding\n"));
        assert!(
            text.lines().all(|l| l.contains("  line ")),
            "no partial line: {text}"
        );
        assert_eq!(log.recent(100).len(), 10, "memory bounded");
        assert_eq!(log.recent(3).last().unwrap().seq, 40);
    }

    #[test]
    fn unwritable_file_keeps_event_and_reports_path() {
        let mut log = EventLog::new(Some("/nonexistent-dir/events".into()), 10, 10);
        let (ev, r) = log.record(
            EventKind::PowerOut,
            "ups",
            "Power failure.",
            SystemTime::now(),
        );
        assert_eq!(ev.seq, 1);
        let err = r.unwrap_err().to_string();
        assert!(err.contains("/nonexistent-dir/events"), "{err}");
        assert_eq!(log.recent(10).len(), 1);
    }
}
