//! Which SET_REPORT writes cut a USB UPS's power, in apcupsd's order (docs/hardware/usb-hid.md §5),
//! and a value written into a report's bytes. Pure: the driver sends the writes of each
//! attempt in turn and stops at the first attempt the UPS accepts.

use super::descriptor::{Field, ReportDescriptor, ReportType};

/// The usages the kill sequence writes.
pub mod usage {
    pub const DELAY_BEFORE_REBOOT: u32 = 0x0084_0055;
    pub const DELAY_BEFORE_STARTUP: u32 = 0x0084_0056;
    pub const DELAY_BEFORE_SHUTDOWN: u32 = 0x0084_0057;
    pub const APC_BATT_CAP_BEFORE_STARTUP: u32 = 0xFF86_0019;
    pub const APC_STATUS_FLAG: u32 = 0xFF86_0060;
    pub const APC_FORCE_SHUTDOWN: u32 = 0xFF86_007C;
    pub const APC_DELAY_BEFORE_SHUTDOWN: u32 = 0xFF86_007D;
    pub const APC_DELAY_BEFORE_STARTUP: u32 = 0xFF86_007E;
}

/// One Feature write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub usage: u32,
    pub report_id: u8,
    pub value: i64,
}

/// A way to cut power: its writes in order, and what to write back if a later one of
/// them fails (Smart-UPS: the startup delay is reset to -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub what: &'static str,
    pub writes: Vec<Write>,
    pub undo: Vec<Write>,
}

/// The whole sequence: setup writes (made when present, failures ignored), the attempts
/// in order, and the report to read once afterwards (a Back-UPS RS re-runs its last kill
/// command on re-enumeration unless another command follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillPlan {
    pub setup: Vec<Write>,
    pub attempts: Vec<Attempt>,
    pub read_after: Option<u8>,
}

fn feature(desc: &ReportDescriptor, usage: u32) -> Option<&Field> {
    desc.fields
        .iter()
        .find(|f| f.usage == usage && f.report_type == ReportType::Feature)
}

/// apcupsd's kill sequence for this UPS, with `delay_s` as the shutdown delay (apcupsd
/// uses 60, as does 0 here; the cluster asks for what its hosts need). `return_on_mains = false` is the
/// power-off: DelayBeforeShutdown alone, the UPS stays off.
pub fn kill_plan(desc: &ReportDescriptor, delay_s: u32, return_on_mains: bool) -> KillPlan {
    use usage::*;
    // 0 (an operator's `ups kill-power`) is apcupsd's own 60 s.
    let delay = i64::from(if delay_s == 0 { 60 } else { delay_s });
    let w = |usage: u32, value: i64| {
        feature(desc, usage).map(|f| Write {
            usage,
            report_id: f.report_id,
            value,
        })
    };
    let mut plan = KillPlan {
        setup: vec![],
        attempts: vec![],
        read_after: feature(desc, APC_STATUS_FLAG).map(|f| f.report_id),
    };
    if !return_on_mains {
        if let Some(off) = w(DELAY_BEFORE_SHUTDOWN, delay) {
            plan.attempts.push(Attempt {
                what: "power off (DelayBeforeShutdown)",
                writes: vec![off],
                undo: vec![],
            });
        }
        return plan;
    }
    // Output returns as soon as it can: no charge needed, 10 s after mains.
    plan.setup.extend(w(APC_BATT_CAP_BEFORE_STARTUP, 0));
    plan.setup.extend(w(APC_DELAY_BEFORE_STARTUP, 10));
    if let Some(x) = w(APC_DELAY_BEFORE_SHUTDOWN, delay) {
        plan.attempts.push(Attempt {
            what: "Back-UPS hibernate (APCDelayBeforeShutdown)",
            writes: vec![x],
            undo: vec![],
        });
    }
    if let (Some(start), Some(stop)) = (
        w(DELAY_BEFORE_STARTUP, 64.max(delay + 4)),
        w(DELAY_BEFORE_SHUTDOWN, delay),
    ) {
        // Order matters: the shutdown write starts both timers.
        plan.attempts.push(Attempt {
            what: "Smart-UPS shutdown with return (DelayBeforeStartup, DelayBeforeShutdown)",
            undo: w(DELAY_BEFORE_STARTUP, -1).into_iter().collect(),
            writes: vec![start, stop],
        });
    }
    if let Some(x) = w(DELAY_BEFORE_REBOOT, delay) {
        plan.attempts.push(Attempt {
            what: "reboot (DelayBeforeReboot)",
            writes: vec![x],
            undo: vec![],
        });
    }
    if let Some(x) = w(APC_FORCE_SHUTDOWN, 1) {
        plan.attempts.push(Attempt {
            what: "forced shutdown (APCForceShutdown)",
            writes: vec![x],
            undo: vec![],
        });
    }
    plan
}

/// `base` (the report's last bytes, ID first; zeros if none) with `field` set to
/// `value`, as SET_REPORT sends it. `None` when the value does not fit the field.
pub fn encode(desc: &ReportDescriptor, field: &Field, base: &[u8], value: i64) -> Option<Vec<u8>> {
    if value < field.logical_min || value > field.logical_max || field.bit_size > 63 {
        return None;
    }
    let len = desc.report_len(field.report_type, field.report_id);
    let mut out = vec![0u8; len];
    for (o, b) in out.iter_mut().zip(base) {
        *o = *b;
    }
    out[0] = field.report_id;
    let bits = value as u64 & ((1u64 << field.bit_size) - 1);
    for k in 0..field.bit_size {
        let bit = (field.bit_offset + k) as usize;
        let (byte, mask) = (1 + bit / 8, 1u8 << (bit % 8));
        if bits >> k & 1 == 1 {
            out[byte] |= mask;
        } else {
            out[byte] &= !mask;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::report::raw_value;
    use super::*;

    fn parse(hex: &str) -> ReportDescriptor {
        let b: Vec<u8> = hex
            .split_whitespace()
            .map(|w| u8::from_str_radix(w, 16).unwrap())
            .collect();
        ReportDescriptor::parse(&b).unwrap()
    }

    /// Back-UPS: APCBattCapBeforeStartup (0x21), APCDelayBeforeStartup (0x22),
    /// APCDelayBeforeShutdown (0x23), APCStatusFlag (0x06), 16-bit signed delays.
    fn back_ups() -> ReportDescriptor {
        parse(
            "06 86 ff 75 08 95 01 15 00 26 ff 00 85 21 09 19 b1 02 \
             85 06 09 60 b1 02 \
             75 10 16 ff ff 26 ff 7f 85 22 09 7e b1 02 85 23 09 7d b1 02",
        )
    }

    /// Smart-UPS: DelayBeforeReboot (0x11), DelayBeforeStartup (0x12) and
    /// DelayBeforeShutdown (0x13), 16-bit signed.
    fn smart_ups() -> ReportDescriptor {
        parse(
            "05 84 75 10 95 01 16 ff ff 26 ff 7f \
             85 11 09 55 b1 02 85 12 09 56 b1 02 85 13 09 57 b1 02",
        )
    }

    #[test]
    fn back_ups_hibernates_after_setting_the_return() {
        let p = kill_plan(&back_ups(), 60, true);
        let setup: Vec<(u8, i64)> = p.setup.iter().map(|w| (w.report_id, w.value)).collect();
        assert_eq!(setup, [(0x21, 0), (0x22, 10)]);
        assert_eq!(
            p.attempts[0].writes,
            [Write {
                usage: usage::APC_DELAY_BEFORE_SHUTDOWN,
                report_id: 0x23,
                value: 60
            }]
        );
        assert_eq!(p.attempts.len(), 1);
        assert_eq!(p.read_after, Some(0x06));
    }

    #[test]
    fn smart_ups_writes_startup_then_shutdown_and_undoes_on_failure() {
        let p = kill_plan(&smart_ups(), 130, true);
        assert!(p.setup.is_empty());
        let a = &p.attempts[0];
        let w: Vec<(u8, i64)> = a.writes.iter().map(|w| (w.report_id, w.value)).collect();
        assert_eq!(
            w,
            [(0x12, 134), (0x13, 130)],
            "startup first, then shutdown"
        );
        assert_eq!(a.undo[0].value, -1);
        assert_eq!(
            p.attempts[1].writes[0].report_id, 0x11,
            "then the reboot delay"
        );
        // apcupsd's own values when asked for its 60 s.
        let p = kill_plan(&smart_ups(), 60, true);
        assert_eq!(p.attempts[0].writes[0].value, 64);
        // Power off: DelayBeforeShutdown alone.
        let p = kill_plan(&smart_ups(), 20, false);
        assert_eq!(p.attempts.len(), 1);
        assert_eq!(p.attempts[0].writes[0].report_id, 0x13);
    }

    #[test]
    fn values_encode_into_report_bytes_and_read_back() {
        let d = smart_ups();
        let f = d.fields.iter().find(|f| f.report_id == 0x13).unwrap();
        let bytes = encode(&d, f, &[], -1).unwrap();
        assert_eq!(bytes, [0x13, 0xff, 0xff]);
        assert_eq!(raw_value(f, &bytes), Ok(-1));
        let bytes = encode(&d, f, &bytes, 130).unwrap();
        assert_eq!(bytes, [0x13, 130, 0]);
        assert_eq!(encode(&d, f, &[], 40_000), None, "out of range");
        // Other fields of the same report keep their bits.
        let d = parse("05 85 85 07 75 04 95 01 15 00 25 0f 09 66 b1 02 09 68 b1 02");
        let lo = &d.fields[0];
        let hi = &d.fields[1];
        let bytes = encode(&d, lo, &[0x07, 0xa0], 5).unwrap();
        assert_eq!(bytes, [0x07, 0xa5]);
        assert_eq!(raw_value(hi, &bytes), Ok(10));
    }
}
