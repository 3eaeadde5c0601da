//! What one host is told over apcupsd's protocols: a UPS's status (the UPS the
//! answering node drives, or the host's supply) in apcupsd's terms, with the host's
//! own truth laid over it. Both daemons use it: the node for its own host, the bridge
//! for each legacy host.
//!
//! The overrides are the point: an apcupsd client shuts down on what it reads, so a
//! host whose stage has started reads SHUTTING DOWN (apcupsd's `net` clients then run
//! `remotedown`/`doshutdown`), and a daemon that lost the cluster (or its UPS) serves
//! COMMLOST, never a healthy UPS it cannot vouch for.

use std::time::SystemTime;

use upsilon_core::policy::Policy;
use upsilon_core::reading::{UpsReading, statflag, status_text};
use upsilon_core::time::{format_date, from_unix_ms};
use upsilon_core::view::UpsStatus;

use crate::apcaccess::StatusInput;

/// apcupsd's VERSION line, with ours after it (clients parse the first word).
pub fn version() -> String {
    format!(
        "3.14.14 (31 May 2016) upsilon-{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// This machine's host name (HOSTNAME in the status), or `fallback`.
pub fn hostname(fallback: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// One host's view, as the answering daemon knows it.
#[derive(Debug, Clone)]
pub struct HostStatus<'a> {
    /// UPSNAME: the UPS's name, or a supply's main feed.
    pub ups_name: &'a str,
    pub status: &'a UpsStatus,
    /// The host's thresholds (MBATTCHG, MINTIMEL, MAXTIME).
    pub policy: &'a Policy,
    pub hostname: &'a str,
    /// When the answering daemon started (Unix ms).
    pub started_ms: i64,
    /// This host's stage has started (or its own monitor decided): SHUTTING DOWN.
    pub shutting_down: bool,
    /// The answering daemon cannot vouch for the UPS (it lost the cluster): COMMLOST.
    pub comm_lost: bool,
}

/// The cable and driver names apcupsd would print for a UPS read by `driver`.
fn cable_and_driver(driver: &str) -> (&'static str, &'static str) {
    match driver {
        "apcsmart" => ("Custom Cable Smart", "APC Smart UPS (any)"),
        "sim" => ("Custom Cable Smart", "Upsilon simulated UPS"),
        "net" => ("Ethernet Link", "NETWORK UPS Driver"),
        "usbhid" => ("USB Cable", "USB UPS Driver"),
        _ => ("Ethernet Link", "Upsilon cluster"),
    }
}

/// STATFLAG as this host must read it.
pub fn host_statflag(h: &HostStatus) -> u32 {
    let mut f = h.status.statflag;
    if h.status.reading.is_none() || h.comm_lost {
        f |= statflag::COMMLOST;
    }
    if h.shutting_down {
        f |= statflag::SHUTDOWN;
    }
    f
}

/// The status records' input for `h`, as of `now`.
pub fn status_input(h: &HostStatus, now: SystemTime) -> StatusInput {
    let empty = UpsReading::empty(Default::default(), now);
    let r = h.status.reading.as_ref().unwrap_or(&empty);
    let flag = host_statflag(h);
    let (cable, driver) = cable_and_driver(&h.status.driver);
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    StatusInput {
        date: format_date(if h.status.reading.is_some() {
            r.read_at
        } else {
            now
        }),
        hostname: h.hostname.to_string(),
        version: version(),
        upsname: h.ups_name.to_string(),
        cable: cable.into(),
        driver: driver.into(),
        upsmode: "Stand Alone".into(),
        starttime: format_date(from_unix_ms(h.started_ms)),
        model: text(&r.model),
        status: status_text(flag),
        linev: r.line_voltage,
        loadpct: r.load_percent,
        bcharge: r.charge_percent,
        timeleft: r.runtime_s.map(|s| s / 60.0),
        mbattchg: h.policy.battery_level,
        mintimel: h.policy.minutes,
        maxtime: h.policy.timeout,
        maxlinev: r.max_line_voltage,
        minlinev: r.min_line_voltage,
        outputv: r.output_voltage,
        itemp: r.internal_temp_c,
        battv: r.battery_voltage,
        linefreq: r.line_frequency_hz,
        lastxfer: text(&r.last_transfer),
        numxfers: h.status.transfers,
        xonbatt: None,
        tonbatt: h.status.time_on_battery_s,
        cumonbatt: 0,
        xoffbatt: None,
        laststest: None,
        selftest: text(&r.self_test),
        statflag: flag,
        serialno: text(&r.serial_number),
        battdate: text(&r.battery_date),
        nompower: r.nominal_power_w,
        firmware: text(&r.firmware),
        end_apc: format_date(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apcaccess::{StatusText, render_text};

    fn status(on_battery: bool) -> UpsStatus {
        let mut r = UpsReading::basic(on_battery, 81.5, 1830.0, SystemTime::now());
        r.model = "Smart-UPS 1500".into();
        r.line_voltage = Some(if on_battery { 0.0 } else { 229.4 });
        UpsStatus {
            driver: "apcsmart".into(),
            reading: Some(r),
            statflag: statflag::BATTPRESENT
                | statflag::PLUGGED
                | if on_battery {
                    statflag::ONBATT
                } else {
                    statflag::ONLINE
                },
            on_battery,
            time_on_battery_s: if on_battery { 12 } else { 0 },
            transfers: 1,
            ..Default::default()
        }
    }

    fn host<'a>(s: &'a UpsStatus, p: &'a Policy) -> HostStatus<'a> {
        HostStatus {
            ups_name: "ups1",
            status: s,
            policy: p,
            hostname: "rack1",
            started_ms: 1_780_000_000_000,
            shutting_down: false,
            comm_lost: false,
        }
    }

    fn parsed(h: &HostStatus) -> StatusText {
        let text = render_text(&status_input(h, SystemTime::now()));
        StatusText::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_ups_reads_as_apcupsd_would_print_it() {
        let (s, p) = (status(true), Policy::default());
        let t = parsed(&host(&s, &p));
        assert_eq!(t.get("UPSNAME"), Some("ups1"));
        assert_eq!(t.get("STATUS"), Some("ONBATT"));
        assert_eq!(t.number("BCHARGE"), Some(81.5));
        assert_eq!(t.number("TIMELEFT"), Some(30.5));
        assert_eq!(t.number("TONBATT"), Some(12.0));
        assert_eq!(t.get("DRIVER"), Some("APC Smart UPS (any)"));
        assert_eq!(t.statflag(), Some(0x0500_0010));
    }

    #[test]
    fn the_host_s_truth_overrides_the_ups() {
        let (s, p) = (status(true), Policy::default());
        let mut h = host(&s, &p);
        h.shutting_down = true;
        let t = parsed(&h);
        assert_eq!(t.get("STATUS"), Some("SHUTTING DOWN"));
        assert_eq!(
            t.statflag().map(|f| f & statflag::SHUTDOWN),
            Some(statflag::SHUTDOWN)
        );
        let s = status(false);
        let mut h = host(&s, &p);
        h.comm_lost = true;
        let t = parsed(&h);
        assert_eq!(t.get("STATUS"), Some("COMMLOST"));
        // Never a healthy UPS without a reading.
        let none = UpsStatus::default();
        let t = parsed(&host(&none, &p));
        assert_eq!(t.get("STATUS"), Some("COMMLOST"));
    }
}
