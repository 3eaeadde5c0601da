//! From HID reports to a [`UpsReading`], the way apcupsd reads a USB UPS: which usage
//! means what (and in which collection: a Voltage in Input is the line, in Output the
//! output, in Battery or PowerSummary the battery), the unit rules of `report`, the
//! string indexes APC puts in feature reports, and its dates. Pure: the driver hands in
//! the last bytes of each report and the strings it fetched.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::descriptor::{Field, ReportDescriptor, ReportType};
use super::report::{apc_date, hid_date, physical, raw_value};
use crate::reading::{UpsFlags, UpsReading};

/// Usages (page << 16 | id) the reading is made of (docs/hardware/usb-hid.md §3).
pub mod usage {
    pub const INPUT: u32 = 0x0084_001A;
    pub const OUTPUT: u32 = 0x0084_001C;
    pub const BATTERY: u32 = 0x0084_0012;
    pub const POWER_SUMMARY: u32 = 0x0084_0024;
    pub const VOLTAGE: u32 = 0x0084_0030;
    pub const FREQUENCY: u32 = 0x0084_0032;
    pub const PERCENT_LOAD: u32 = 0x0084_0035;
    pub const TEMPERATURE: u32 = 0x0084_0036;
    pub const CONFIG_ACTIVE_POWER: u32 = 0x0084_0044;
    /// UPS.Battery.Test: write 1 for a quick self test (NUT: 1 quick, 2 deep, 3 abort).
    pub const TEST: u32 = 0x0084_0058;
    pub const OVERLOAD: u32 = 0x0084_0065;
    pub const SHUTDOWN_IMMINENT: u32 = 0x0084_0069;
    pub const BOOST: u32 = 0x0084_006E;
    pub const BUCK: u32 = 0x0084_006F;
    pub const I_MANUFACTURER: u32 = 0x0084_00FD;
    pub const I_PRODUCT: u32 = 0x0084_00FE;
    pub const I_SERIAL: u32 = 0x0084_00FF;
    pub const BELOW_CAPACITY_LIMIT: u32 = 0x0085_0042;
    pub const CHARGING: u32 = 0x0085_0044;
    pub const DISCHARGING: u32 = 0x0085_0045;
    pub const NEED_REPLACEMENT: u32 = 0x0085_004B;
    pub const REMAINING_CAPACITY: u32 = 0x0085_0066;
    pub const RUN_TIME_TO_EMPTY: u32 = 0x0085_0068;
    pub const MANUFACTURE_DATE: u32 = 0x0085_0085;
    pub const AC_PRESENT: u32 = 0x0085_00D0;
    pub const BATTERY_PRESENT: u32 = 0x0085_00D1;
    pub const APC_BATT_REPLACE_DATE: u32 = 0xFF86_0016;
    pub const APC_UPS_FIRMWARE: u32 = 0xFF86_0042;
}

/// What the driver last read: each report's bytes (ID first) and the string descriptors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSet {
    pub reports: BTreeMap<(ReportType, u8), Vec<u8>>,
    pub strings: BTreeMap<u8, String>,
}

impl ReportSet {
    /// Stores a report (from GET_REPORT or the interrupt endpoint).
    pub fn put(&mut self, kind: ReportType, bytes: &[u8]) {
        if let Some(&id) = bytes.first() {
            self.reports.insert((kind, id), bytes.to_vec());
        }
    }
}

/// Reads usages from a descriptor and a report set.
pub struct Values<'a> {
    pub desc: &'a ReportDescriptor,
    pub set: &'a ReportSet,
}

impl Values<'_> {
    /// The field for `usage` (inside `collection` when given) whose report we hold: an
    /// Input report first (what the interrupt endpoint updates), else a Feature one
    /// (APC mirrors most Input usages there; NUT reads only those).
    fn field(&self, usage: u32, collection: Option<u32>) -> Option<(&Field, &[u8])> {
        [ReportType::Input, ReportType::Feature]
            .into_iter()
            .flat_map(|kind| {
                self.desc.fields.iter().filter(move |f| {
                    f.usage == usage
                        && f.report_type == kind
                        && collection.is_none_or(|c| f.within(c))
                })
            })
            .find_map(|f| {
                let bytes = self.set.reports.get(&(f.report_type, f.report_id))?;
                Some((f, bytes.as_slice()))
            })
    }

    /// The raw value of `usage`, if the UPS reports it and the bytes hold it.
    pub fn raw(&self, usage: u32, collection: Option<u32>) -> Option<i64> {
        let (f, bytes) = self.field(usage, collection)?;
        raw_value(f, bytes).ok()
    }

    /// The physical value of `usage`.
    pub fn value(&self, usage: u32, collection: Option<u32>) -> Option<f64> {
        let (f, bytes) = self.field(usage, collection)?;
        raw_value(f, bytes).ok().map(|v| physical(f, v))
    }

    fn flag(&self, usage: u32) -> Option<bool> {
        self.raw(usage, None).map(|v| v != 0)
    }

    /// A string usage: its feature report holds the string index (or the descriptor's
    /// String Index item does).
    pub fn string(&self, usage: u32) -> Option<String> {
        let idx = match self.field(usage, None) {
            Some((f, bytes)) => raw_value(f, bytes).ok().map(|v| v as u8),
            None => self
                .desc
                .fields
                .iter()
                .find(|f| f.usage == usage)
                .and_then(|f| f.string_index),
        }?;
        self.set
            .strings
            .get(&idx)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The reading apcupsd would make of these reports, read at `at`.
    pub fn reading(&self, at: SystemTime) -> UpsReading {
        use usage::*;
        let discharging = self.flag(DISCHARGING);
        let ac = self.flag(AC_PRESENT);
        // AC present decides when the UPS reports it; otherwise discharging does.
        let online = ac.or(discharging.map(|d| !d)).unwrap_or(true);
        let flags = UpsFlags {
            online,
            on_battery: !online,
            low_battery: self.flag(BELOW_CAPACITY_LIMIT).unwrap_or(false)
                || self.flag(SHUTDOWN_IMMINENT).unwrap_or(false),
            replace_battery: self.flag(NEED_REPLACEMENT).unwrap_or(false),
            overload: self.flag(OVERLOAD).unwrap_or(false),
            boost: self.flag(BOOST).unwrap_or(false),
            trim: self.flag(BUCK).unwrap_or(false),
            battery_present: self.flag(BATTERY_PRESENT).unwrap_or(true),
            calibration: false,
        };
        let mut r = UpsReading::empty(flags, at);
        r.charge_percent = self.value(REMAINING_CAPACITY, None);
        r.runtime_s = self.value(RUN_TIME_TO_EMPTY, None);
        r.line_voltage = self.value(VOLTAGE, Some(INPUT));
        r.output_voltage = self.value(VOLTAGE, Some(OUTPUT));
        r.battery_voltage = self
            .value(VOLTAGE, Some(BATTERY))
            .or_else(|| self.value(VOLTAGE, Some(POWER_SUMMARY)));
        r.load_percent = self.value(PERCENT_LOAD, None);
        r.line_frequency_hz = self
            .value(FREQUENCY, Some(INPUT))
            .or_else(|| self.value(FREQUENCY, Some(OUTPUT)));
        // Kelvin, as the Smart-UPS reports it (0.1 K steps through the exponent).
        r.internal_temp_c = self
            .value(TEMPERATURE, Some(BATTERY))
            .or_else(|| self.value(TEMPERATURE, None))
            .map(|k| ((k - 273.15) * 10.0).round() / 10.0);
        r.nominal_power_w = self
            .value(CONFIG_ACTIVE_POWER, None)
            .and_then(|w| (w > 0.0).then_some(w as u32));
        r.model = self.string(I_PRODUCT).unwrap_or_default();
        r.serial_number = self.string(I_SERIAL).unwrap_or_default();
        r.firmware = self.string(APC_UPS_FIRMWARE).unwrap_or_default();
        let date = |d: (i32, u32, u32)| format!("{:04}-{:02}-{:02}", d.0, d.1, d.2);
        if let Some(d) = self.raw(APC_BATT_REPLACE_DATE, None).and_then(apc_date) {
            r.battery_date = date(d);
        }
        if let Some(d) = self.raw(MANUFACTURE_DATE, None).and_then(hid_date) {
            r.details.insert("MANDATE".into(), date(d));
        }
        if let Some(m) = self.string(I_MANUFACTURER) {
            r.details.insert("MANUFACTURER".into(), m);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::descriptor::{ReportDescriptor, ReportType};
    use super::*;

    /// A Back-UPS-style descriptor (report IDs as the ES 850G2 and the 2001 Back-UPS
    /// 350 use): 1 iProduct, 2 iSerialNumber, 6 Charging/Discharging/APCStatusFlag,
    /// 9 battery Voltage (centivolts), 12 RemainingCapacity + RunTimeToEmpty,
    /// 19 ACPresent, 20 BelowRemainingCapacityLimit + ShutdownImminent (Input).
    fn back_ups() -> ReportDescriptor {
        let hex = "05 84 09 04 a1 01 09 24 a1 00 \
            85 01 09 fe 79 02 75 08 95 01 15 00 26 ff 00 b1 22 \
            85 02 09 ff 79 03 b1 22 \
            85 06 05 85 09 44 81 a2 09 45 81 a2 06 86 ff 09 60 81 a2 \
            85 09 05 84 09 30 75 10 27 ff ff 00 00 67 21 d1 f0 00 55 05 81 a2 \
            85 0c 05 85 09 66 75 08 25 64 65 00 55 00 81 a2 09 68 75 10 27 ff ff 00 00 66 01 10 81 a2 \
            85 13 09 d0 75 08 25 01 65 00 81 a2 \
            85 14 09 42 81 a2 05 84 09 69 81 a2 \
            c0 c0";
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .map(|w| u8::from_str_radix(w, 16).unwrap())
            .collect();
        ReportDescriptor::parse(&bytes).unwrap()
    }

    fn set(on_battery: bool, low: bool) -> ReportSet {
        let mut s = ReportSet::default();
        s.put(ReportType::Feature, &[0x01, 2]);
        s.put(ReportType::Feature, &[0x02, 3]);
        s.put(
            ReportType::Input,
            &[0x06, u8::from(!on_battery), u8::from(on_battery), 8],
        );
        // 13.42 V in centivolts.
        s.put(ReportType::Input, &[0x09, 0x3e, 0x05]);
        // 100 %, 1380 s.
        s.put(ReportType::Input, &[0x0c, 100, 0x64, 0x05]);
        s.put(ReportType::Input, &[0x13, u8::from(!on_battery)]);
        s.put(ReportType::Input, &[0x14, u8::from(low), 0]);
        s.strings
            .insert(2, "Back-UPS 350 FW: 5.4.D USB FW: c1 ".into());
        s.strings.insert(3, "BB0100009999  ".into());
        s
    }

    #[test]
    fn a_back_ups_reading_has_apcupsds_values() {
        let d = back_ups();
        let s = set(false, false);
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert!(r.flags.online && !r.flags.on_battery && !r.flags.low_battery);
        assert_eq!(r.charge_percent, Some(100.0));
        assert_eq!(r.runtime_s, Some(1380.0));
        assert!((r.battery_voltage.unwrap() - 13.42).abs() < 1e-9);
        assert_eq!(r.model, "Back-UPS 350 FW: 5.4.D USB FW: c1");
        assert_eq!(r.serial_number, "BB0100009999");
        assert_eq!(r.line_voltage, None, "not reported");
    }

    #[test]
    fn on_battery_then_low_battery_then_shutdown_imminent() {
        let d = back_ups();
        let s = set(true, false);
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert!(r.flags.on_battery && !r.flags.online && !r.flags.low_battery);
        let s = set(true, true);
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert!(r.flags.low_battery);
        // ShutdownImminent alone counts as low battery too.
        let mut s = set(true, false);
        s.put(ReportType::Input, &[0x14, 0, 1]);
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert!(r.flags.low_battery);
        // Without ACPresent, Discharging decides.
        let mut s = set(true, false);
        s.reports.remove(&(ReportType::Input, 0x13));
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert!(r.flags.on_battery);
        // A short report is no value, not a panic.
        let mut s = set(false, false);
        s.put(ReportType::Input, &[0x0c, 100]);
        let r = Values { desc: &d, set: &s }.reading(SystemTime::UNIX_EPOCH);
        assert_eq!((r.charge_percent, r.runtime_s), (Some(100.0), None));
    }
}
