//! The normalised UPS reading every driver produces, and how apcupsd would show it.
//!
//! A driver turns bytes into an [`UpsReading`]; everything above the drivers (monitor,
//! policy, API, legacy formats) works on this type only. The STATFLAG bits and the
//! STATUS text follow apcupsd exactly (docs/protocols/nis.md §3-4).

use std::time::SystemTime;

/// The UPS's own status bits (the low byte of apcupsd's STATFLAG) plus battery presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UpsFlags {
    pub calibration: bool,
    pub trim: bool,
    pub boost: bool,
    pub online: bool,
    pub on_battery: bool,
    pub overload: bool,
    pub low_battery: bool,
    pub replace_battery: bool,
    pub battery_present: bool,
}

/// apcupsd's STATFLAG bits (docs/protocols/nis.md, STATFLAG bits).
pub mod statflag {
    pub const CALIBRATION: u32 = 0x0000_0001;
    pub const TRIM: u32 = 0x0000_0002;
    pub const BOOST: u32 = 0x0000_0004;
    pub const ONLINE: u32 = 0x0000_0008;
    pub const ONBATT: u32 = 0x0000_0010;
    pub const OVERLOAD: u32 = 0x0000_0020;
    pub const BATTLOW: u32 = 0x0000_0040;
    pub const REPLACEBATT: u32 = 0x0000_0080;
    pub const COMMLOST: u32 = 0x0000_0100;
    pub const SHUTDOWN: u32 = 0x0000_0200;
    pub const SLAVE: u32 = 0x0000_0400;
    pub const SLAVEDOWN: u32 = 0x0000_0800;
    pub const ONBATT_MSG: u32 = 0x0002_0000;
    pub const FASTPOLL: u32 = 0x0004_0000;
    pub const SHUT_LOAD: u32 = 0x0008_0000;
    pub const SHUT_BTIME: u32 = 0x0010_0000;
    pub const SHUT_LTIME: u32 = 0x0020_0000;
    pub const SHUT_EMERG: u32 = 0x0040_0000;
    pub const SHUT_REMOTE: u32 = 0x0080_0000;
    pub const PLUGGED: u32 = 0x0100_0000;
    pub const BATTPRESENT: u32 = 0x0400_0000;
}

impl UpsFlags {
    /// The UPS-reported bits of STATFLAG (low byte and battery presence).
    pub fn statflag_bits(&self) -> u32 {
        use statflag::*;
        let mut v = 0;
        for (on, bit) in [
            (self.calibration, CALIBRATION),
            (self.trim, TRIM),
            (self.boost, BOOST),
            (self.online, ONLINE),
            (self.on_battery, ONBATT),
            (self.overload, OVERLOAD),
            (self.low_battery, BATTLOW),
            (self.replace_battery, REPLACEBATT),
            (self.battery_present, BATTPRESENT),
        ] {
            if on {
                v |= bit;
            }
        }
        v
    }

    /// The inverse of [`UpsFlags::statflag_bits`]; daemon-local bits are ignored.
    pub fn from_statflag(v: u32) -> Self {
        use statflag::*;
        UpsFlags {
            calibration: v & CALIBRATION != 0,
            trim: v & TRIM != 0,
            boost: v & BOOST != 0,
            online: v & ONLINE != 0,
            on_battery: v & ONBATT != 0,
            overload: v & OVERLOAD != 0,
            low_battery: v & BATTLOW != 0,
            replace_battery: v & REPLACEBATT != 0,
            battery_present: v & BATTPRESENT != 0,
        }
    }
}

/// apcupsd's STATUS text for a STATFLAG value, without the trailing space apcupsd
/// prints (docs/protocols/nis.md §4: tokens in a fixed order; COMMLOST and then SHUTTING DOWN
/// replace the whole string).
pub fn status_text(statflag_value: u32) -> String {
    use statflag::*;
    if statflag_value & SHUTDOWN != 0 {
        return "SHUTTING DOWN".to_string();
    }
    if statflag_value & COMMLOST != 0 {
        return "COMMLOST".to_string();
    }
    let mut words: Vec<&str> = Vec::new();
    for (bit, word) in [
        (CALIBRATION, "CAL"),
        (TRIM, "TRIM"),
        (BOOST, "BOOST"),
        (ONLINE, "ONLINE"),
        (ONBATT, "ONBATT"),
        (OVERLOAD, "OVERLOAD"),
        (BATTLOW, "LOWBATT"),
        (REPLACEBATT, "REPLACEBATT"),
    ] {
        if statflag_value & bit != 0 {
            words.push(word);
        }
    }
    if statflag_value & BATTPRESENT == 0 {
        words.push("NOBATT");
    }
    if statflag_value & SLAVE != 0 {
        words.push("SLAVE");
    }
    if statflag_value & SLAVEDOWN != 0 {
        words.push("SLAVEDOWN");
    }
    words.join(" ")
}

/// One normalised reading of one UPS. `None` means the UPS does not report the value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpsReading {
    pub flags: UpsFlags,
    pub line_voltage: Option<f64>,
    pub output_voltage: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub load_percent: Option<f64>,
    pub charge_percent: Option<f64>,
    /// Estimated runtime on battery, seconds (apcupsd's TIMELEFT is in minutes).
    pub runtime_s: Option<f64>,
    pub internal_temp_c: Option<f64>,
    pub line_frequency_hz: Option<f64>,
    pub min_line_voltage: Option<f64>,
    pub max_line_voltage: Option<f64>,
    pub nominal_power_w: Option<u32>,
    pub model: String,
    pub serial_number: String,
    pub firmware: String,
    pub battery_date: String,
    /// apcupsd's LASTXFER phrase; empty when the UPS does not report it.
    pub last_transfer: String,
    /// apcupsd's SELFTEST code (NO, NG, WN, IP, OK, BT, ??); empty when unsupported.
    pub self_test: String,
    /// Further values in apcupsd's words, keyed by its STATUS key (SENSE, DWAKE,
    /// DSHUTD, LOTRANS, HITRANS, DIPSW, REG1-3, MANDATE, NOMOUTV, ...).
    #[serde(default)]
    pub details: std::collections::BTreeMap<String, String>,
    pub read_at: SystemTime,
}

/// The LASTXFER phrase apcupsd uses for a transfer caused by a self test.
pub const TRANSFER_SELF_TEST: &str = "Automatic or explicit self test";

impl UpsReading {
    /// The essentials only: on line or on battery (battery present), charge (%) and
    /// runtime (s), read at `read_at`. What the simulator and the tests start from.
    pub fn basic(on_battery: bool, charge: f64, runtime_s: f64, read_at: SystemTime) -> Self {
        let mut r = UpsReading::empty(
            UpsFlags {
                online: !on_battery,
                on_battery,
                battery_present: true,
                ..Default::default()
            },
            read_at,
        );
        r.charge_percent = Some(charge);
        r.runtime_s = Some(runtime_s);
        r
    }

    /// A reading with nothing reported but the given flags; drivers fill in the rest.
    pub fn empty(flags: UpsFlags, read_at: SystemTime) -> Self {
        UpsReading {
            flags,
            line_voltage: None,
            output_voltage: None,
            battery_voltage: None,
            load_percent: None,
            charge_percent: None,
            runtime_s: None,
            internal_temp_c: None,
            line_frequency_hz: None,
            min_line_voltage: None,
            max_line_voltage: None,
            nominal_power_w: None,
            model: String::new(),
            serial_number: String::new(),
            firmware: String::new(),
            battery_date: String::new(),
            last_transfer: String::new(),
            self_test: String::new(),
            details: Default::default(),
            read_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_statflag_matches_apcupsd() {
        let f = UpsFlags {
            online: true,
            battery_present: true,
            ..Default::default()
        };
        // docs/protocols/nis.md, STATFLAG bits: typical healthy value 0x05000008 includes PLUGGED.
        assert_eq!(f.statflag_bits() | statflag::PLUGGED, 0x0500_0008);
        assert_eq!(UpsFlags::from_statflag(0x0500_0008), f);
    }

    #[test]
    fn status_text_follows_apcupsd_composition() {
        use statflag::*;
        assert_eq!(status_text(ONLINE | BATTPRESENT), "ONLINE");
        assert_eq!(status_text(ONBATT | BATTPRESENT), "ONBATT");
        assert_eq!(
            status_text(ONBATT | BATTLOW | BATTPRESENT),
            "ONBATT LOWBATT"
        );
        assert_eq!(status_text(ONLINE | SLAVE | BATTPRESENT), "ONLINE SLAVE");
        assert_eq!(status_text(ONLINE), "ONLINE NOBATT");
        assert_eq!(status_text(ONLINE | COMMLOST | BATTPRESENT), "COMMLOST");
        assert_eq!(status_text(ONBATT | COMMLOST | SHUTDOWN), "SHUTTING DOWN");
        assert_eq!(
            status_text(CALIBRATION | TRIM | BOOST | ONLINE | OVERLOAD | REPLACEBATT | BATTPRESENT),
            "CAL TRIM BOOST ONLINE OVERLOAD REPLACEBATT"
        );
    }
}
