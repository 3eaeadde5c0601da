//! A USB HID UPS over any transport: the protocol logic of the `usbhid` driver, with
//! the USB underneath behind [`HidTransport`] (rusb in the node; [`FakeHid`] serving
//! recorded bytes in tests). Opens (descriptor, strings), polls every report that holds
//! a usage the reading needs (as Feature reports, as NUT does), takes interrupt reports
//! as they come (ignoring ones whose length the descriptor contradicts, as apcupsd
//! does), and carries out the kill sequence. Blocking by design: the driver runs it on a
//! thread of its own, never on the async runtime's workers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::descriptor::{DescriptorError, ReportDescriptor, ReportType};
use super::kill::{KillPlan, encode, kill_plan};
use super::values::{ReportSet, Values, usage};
use crate::reading::UpsReading;

/// What the USB layer gives the protocol.
pub trait HidTransport {
    fn report_descriptor(&mut self) -> Result<Vec<u8>, HidError>;
    /// GET_REPORT: the report, ID first.
    fn get_report(&mut self, kind: ReportType, id: u8, len: usize) -> Result<Vec<u8>, HidError>;
    /// SET_REPORT: `data` starts with the report ID.
    fn set_report(&mut self, kind: ReportType, data: &[u8]) -> Result<(), HidError>;
    /// The next interrupt IN report, or `None` after `timeout`.
    fn read_interrupt(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, HidError>;
    fn string(&mut self, index: u8) -> Result<String, HidError>;
    /// Writes an interrupt OUT report (`data` starts with the report ID): APC's Modbus
    /// over USB. Devices without an OUT endpoint refuse it.
    fn write_interrupt(&mut self, data: &[u8]) -> Result<(), HidError> {
        let _ = data;
        Err(HidError::Request(
            "this device has no interrupt OUT endpoint".into(),
        ))
    }
}

impl<T: HidTransport + ?Sized> HidTransport for Box<T> {
    fn report_descriptor(&mut self) -> Result<Vec<u8>, HidError> {
        (**self).report_descriptor()
    }
    fn get_report(&mut self, kind: ReportType, id: u8, len: usize) -> Result<Vec<u8>, HidError> {
        (**self).get_report(kind, id, len)
    }
    fn set_report(&mut self, kind: ReportType, data: &[u8]) -> Result<(), HidError> {
        (**self).set_report(kind, data)
    }
    fn read_interrupt(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, HidError> {
        (**self).read_interrupt(timeout)
    }
    fn string(&mut self, index: u8) -> Result<String, HidError> {
        (**self).string(index)
    }
    fn write_interrupt(&mut self, data: &[u8]) -> Result<(), HidError> {
        (**self).write_interrupt(data)
    }
}

/// Why a USB HID UPS cannot be read or told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HidError {
    /// Unplugged or gone: the driver reports commfailure and looks for it again.
    #[error("the USB UPS is gone: {0}")]
    Gone(String),
    /// A request failed (stall, timeout); the device is still there.
    #[error("USB request failed: {0}")]
    Request(String),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
}

/// An open USB HID UPS.
pub struct HidUps<T: HidTransport> {
    transport: T,
    pub desc: ReportDescriptor,
    pub set: ReportSet,
    /// The Feature reports a poll reads: those holding a usage the reading uses.
    polled: Vec<u8>,
}

/// Usages a poll reads (the reading's, from `values`).
const READ: [u32; 19] = [
    usage::REMAINING_CAPACITY,
    usage::RUN_TIME_TO_EMPTY,
    usage::AC_PRESENT,
    usage::CHARGING,
    usage::DISCHARGING,
    usage::BELOW_CAPACITY_LIMIT,
    usage::SHUTDOWN_IMMINENT,
    usage::NEED_REPLACEMENT,
    usage::OVERLOAD,
    usage::BATTERY_PRESENT,
    usage::BOOST,
    usage::BUCK,
    usage::VOLTAGE,
    usage::FREQUENCY,
    usage::PERCENT_LOAD,
    usage::TEMPERATURE,
    usage::CONFIG_ACTIVE_POWER,
    usage::APC_BATT_REPLACE_DATE,
    usage::MANUFACTURE_DATE,
];

/// String usages: their Feature report holds the string index.
const STRINGS: [u32; 4] = [
    usage::I_PRODUCT,
    usage::I_SERIAL,
    usage::I_MANUFACTURER,
    usage::APC_UPS_FIRMWARE,
];

impl<T: HidTransport> HidUps<T> {
    /// Reads and parses the descriptor and fetches the strings the reading shows.
    pub fn open(mut transport: T) -> Result<Self, HidError> {
        let desc = ReportDescriptor::parse(&transport.report_descriptor()?)?;
        let feature_ids = |usages: &[u32]| -> Vec<u8> {
            let ids: BTreeSet<u8> = desc
                .fields
                .iter()
                .filter(|f| f.report_type == ReportType::Feature && usages.contains(&f.usage))
                .map(|f| f.report_id)
                .collect();
            ids.into_iter().collect()
        };
        let polled = feature_ids(&READ);
        let string_reports = feature_ids(&STRINGS);
        let mut ups = HidUps {
            transport,
            set: ReportSet::default(),
            polled,
            desc,
        };
        for id in string_reports {
            ups.read(ReportType::Feature, id)?;
        }
        let indexes: BTreeSet<u8> = STRINGS
            .iter()
            .filter_map(|u| {
                let v = Values {
                    desc: &ups.desc,
                    set: &ups.set,
                };
                v.raw(*u, None).map(|i| i as u8).or_else(|| {
                    ups.desc
                        .fields
                        .iter()
                        .find(|f| f.usage == *u)
                        .and_then(|f| f.string_index)
                })
            })
            .filter(|i| *i != 0)
            .collect();
        for i in indexes {
            // A string that cannot be read stays empty; it is no reason to give up.
            if let Ok(s) = ups.transport.string(i) {
                ups.set.strings.insert(i, s);
            }
        }
        Ok(ups)
    }

    fn read(&mut self, kind: ReportType, id: u8) -> Result<(), HidError> {
        let len = self.desc.report_len(kind, id);
        match self.transport.get_report(kind, id, len) {
            Ok(bytes) => {
                self.set.put(kind, &bytes);
                Ok(())
            }
            Err(HidError::Request(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads every polled report and returns the reading.
    pub fn poll(&mut self, at: SystemTime) -> Result<UpsReading, HidError> {
        for id in self.polled.clone() {
            self.read(ReportType::Feature, id)?;
        }
        Ok(self.reading(at))
    }

    /// The reading from what was read last.
    pub fn reading(&self, at: SystemTime) -> UpsReading {
        Values {
            desc: &self.desc,
            set: &self.set,
        }
        .reading(at)
    }

    /// Waits up to `timeout` for an interrupt report; true if one changed a value. A
    /// report whose length contradicts the descriptor is ignored (some Back-UPS CS send
    /// short ones).
    pub fn interrupt(&mut self, timeout: Duration) -> Result<bool, HidError> {
        let Some(bytes) = self.transport.read_interrupt(timeout)? else {
            return Ok(false);
        };
        let Some(&id) = bytes.first() else {
            return Ok(false);
        };
        if bytes.len() < self.desc.report_len(ReportType::Input, id) {
            return Ok(false);
        }
        let before = self.set.reports.get(&(ReportType::Input, id)).cloned();
        self.set.put(ReportType::Input, &bytes);
        Ok(before.as_deref() != Some(bytes.as_slice()))
    }

    /// apcupsd's kill sequence with `delay_s`: setup writes (failures ignored), then the
    /// attempts in order until one is accepted (undoing a half-done one), then one read
    /// of APCStatusFlag. Returns what was done, in words.
    pub fn kill(&mut self, delay_s: u32, return_on_mains: bool) -> Result<String, HidError> {
        let plan: KillPlan = kill_plan(&self.desc, delay_s, return_on_mains);
        for w in &plan.setup {
            let _ = self.write(w.usage, w.value);
        }
        let mut done = None;
        for a in &plan.attempts {
            let mut ok = true;
            for w in &a.writes {
                match self.write(w.usage, w.value) {
                    Ok(()) => {}
                    Err(HidError::Gone(e)) => return Err(HidError::Gone(e)),
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                done = Some(a.what);
                break;
            }
            for u in &a.undo {
                let _ = self.write(u.usage, u.value);
            }
        }
        if let Some(id) = plan.read_after {
            let _ = self.read(ReportType::Feature, id);
        }
        done.map(|w| format!("{w} with a {delay_s} s delay"))
            .ok_or_else(|| {
                HidError::Request(
                    "the UPS accepted none of the kill-power writes (see apcupsd's list: it may need the front-panel button)"
                        .into(),
                )
            })
    }

    /// Starts a quick battery self test (UPS.Battery.Test = 1).
    pub fn self_test(&mut self) -> Result<(), HidError> {
        self.write(usage::TEST, 1)
    }

    /// The transport, for what rides on the same interface (APC's Modbus over USB).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    fn write(&mut self, usage: u32, value: i64) -> Result<(), HidError> {
        let f = self
            .desc
            .fields
            .iter()
            .find(|f| f.usage == usage && f.report_type == ReportType::Feature)
            .cloned()
            .ok_or_else(|| HidError::Request(format!("no Feature usage {usage:#010x}")))?;
        let base = self
            .set
            .reports
            .get(&(ReportType::Feature, f.report_id))
            .cloned()
            .unwrap_or_default();
        let bytes = encode(&self.desc, &f, &base, value).ok_or_else(|| {
            HidError::Request(format!("{value} does not fit usage {usage:#010x}"))
        })?;
        self.transport.set_report(ReportType::Feature, &bytes)?;
        self.set.put(ReportType::Feature, &bytes);
        Ok(())
    }
}

/// A USB HID UPS in memory: a descriptor, a table of report bytes, string descriptors,
/// scripted interrupt reports, unplugging, and every SET_REPORT recorded.
#[derive(Debug, Clone, Default)]
pub struct FakeHid {
    pub descriptor: Vec<u8>,
    pub reports: BTreeMap<(ReportType, u8), Vec<u8>>,
    pub strings: BTreeMap<u8, String>,
    pub interrupts: VecDeque<Vec<u8>>,
    pub writes: Vec<(ReportType, Vec<u8>)>,
    /// Report IDs whose SET_REPORT the device refuses (stalls).
    pub refuse: BTreeSet<u8>,
    pub unplugged: bool,
}

impl FakeHid {
    fn gone(&self) -> Result<(), HidError> {
        if self.unplugged {
            Err(HidError::Gone(
                "no such device (it may have been disconnected)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl HidTransport for &mut FakeHid {
    fn report_descriptor(&mut self) -> Result<Vec<u8>, HidError> {
        self.gone()?;
        Ok(self.descriptor.clone())
    }
    fn get_report(&mut self, kind: ReportType, id: u8, _len: usize) -> Result<Vec<u8>, HidError> {
        self.gone()?;
        // APC mirrors Input usages into Feature reports of the same ID.
        self.reports
            .get(&(kind, id))
            .or_else(|| self.reports.get(&(ReportType::Input, id)))
            .cloned()
            .ok_or_else(|| HidError::Request(format!("report {id:#04x}: stall")))
    }
    fn set_report(&mut self, kind: ReportType, data: &[u8]) -> Result<(), HidError> {
        self.gone()?;
        let id = data.first().copied().unwrap_or(0);
        self.writes.push((kind, data.to_vec()));
        if self.refuse.contains(&id) {
            return Err(HidError::Request(format!("SET_REPORT {id:#04x}: stall")));
        }
        self.reports.insert((kind, id), data.to_vec());
        Ok(())
    }
    fn read_interrupt(&mut self, _timeout: Duration) -> Result<Option<Vec<u8>>, HidError> {
        self.gone()?;
        Ok(self.interrupts.pop_front())
    }
    fn string(&mut self, index: u8) -> Result<String, HidError> {
        self.gone()?;
        self.strings
            .get(&index)
            .cloned()
            .ok_or_else(|| HidError::Request(format!("string {index}: stall")))
    }
}
