//! Golden tests on the recorded APC descriptors of docs/hardware/usb-hid.md §6 and hand-built ones.

use super::descriptor::{DescriptorError, ReportDescriptor, ReportType};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .map(|w| u8::from_str_radix(w, 16).unwrap())
        .collect()
}

/// Back-UPS ES 850G2, the first 195 of its 1049 descriptor bytes (NUT #1304).
const ES850G2_HEAD: &str = "
0000: 05 84 09 04 a1 01 09 24 a1 00 85 01 09 fe 79 02
0010: 75 08 95 01 15 00 26 ff 00 b1 22 85 02 09 ff 79
0020: 03 b1 22 85 03 05 85 09 89 79 04 b1 22 85 04 09
0030: 8f 79 01 b1 22 85 05 09 8b b1 22 85 06 09 44 81
0040: a2 09 44 b1 a2 09 45 81 a2 09 45 b1 a2 06 86 ff
0050: 09 60 81 a2 09 60 b1 a2 85 07 05 85 09 85 75 10
0060: 27 ff ff 00 00 b1 a2 85 08 05 84 09 40 67 21 d1
0070: f0 00 55 05 b1 22 85 09 09 30 b1 a2 85 0a 09 fd
0080: 75 08 26 ff 00 65 00 55 00 79 01 b1 22 85 0b 05
0090: 85 09 2c b1 22 85 0c 09 66 25 64 81 a2 09 66 b1
00a0: a2 09 68 75 10 27 ff ff 00 00 66 01 10 81 a2 09
00b0: 68 b1 a2 85 0d 09 83 75 08 25 64 65 00 b1 22 85
00c0: 0e 09 67";

/// Back-UPS XS 1400U, the descriptor's tail (NUT #1189).
const XS1400U_TAIL: &str = "
0000: 55 07 85 52 05 84 09 44 b1 a2 c0 06 86 ff 09 01
0010: a1 00 85 60 09 23 65 00 55 00 b1 a2 85 61 09 26
0020: 75 08 16 8c 00 26 94 00 b1 a2 85 62 09 25 75 20
0030: 17 01 00 00 80 27 ff ff ff 7f b2 a2 01 c0 85 7f
0040: 05 84 09 fe 79 05 75 08 95 01 15 00 26 ff 00 b1
0050: 22 85 7e 06 86 ff 09 42 79 06 b1 22 85 7d 05 84
0060: 09 ff 79 02 b1 22 85 7c 09 fd 79 03 b1 22 85 7b
0070: 05 85 09 85 75 10 27 ff ff 00 00 b1 a2 05 84 09
0080: 02 a1 02 85 7a 05 85 09 44 75 01 25 01 b1 a2 09
0090: 45 b1 a2 09 d0 b1 a2 09 d1 b1 a2 09 42 b1 a2 05
00a0: 84 09 69 b1 a2 05 85 09 43 b1 a2 05 84 09 73 b1
00b0: a2 05 85 09 4b b1 a2 05 84 09 65 b1 a2 05 85 09
00c0: db b1 a2 95 15 b1 01 c0 85 79 06 86 ff 09 72 75
00d0: 08 95 01 b1 a2 85 78 05 84 09 5a 15 01 25 03 b1
00e0: a2 85 75 06 86 ff 09 29 75 10 15 00 27 ff ff 00
00f0: 00 b1 a2 85 74 06 86 ff 09 2a 75 20 17 01 00 00
0100: 80 27 ff ff ff 7f b1 a2 c0";

const POWER_SUMMARY: u32 = 0x0084_0024;

#[test]
fn the_back_ups_es_850g2_head_decodes_to_its_report_layout() {
    let d = ReportDescriptor::parse(&hex(ES850G2_HEAD)).unwrap();
    // Report 0x0C: RemainingCapacity (8 bits, 0..100) then RunTimeToEmpty (16 bits,
    // seconds), Input and Feature, inside UPS.PowerSummary.
    for kind in [ReportType::Input, ReportType::Feature] {
        let cap = d.find(0x0085_0066, kind, Some(POWER_SUMMARY)).unwrap();
        assert_eq!((cap.report_id, cap.bit_offset, cap.bit_size), (0x0C, 0, 8));
        assert_eq!((cap.logical_min, cap.logical_max), (0, 100));
        assert_eq!(cap.path, [0x0084_0004, POWER_SUMMARY]);
        let rt = d.find(0x0085_0068, kind, None).unwrap();
        assert_eq!((rt.report_id, rt.bit_offset, rt.bit_size), (0x0C, 8, 16));
        assert_eq!((rt.logical_min, rt.logical_max), (0, 65535));
        assert_eq!(rt.unit, 0x1001, "seconds");
    }
    assert_eq!(d.report_len(ReportType::Input, 0x0C), 4);
    // String-valued usages carry their string index: iProduct 2, iSerialNumber 3,
    // iDeviceChemistry 4, iOEMInformation 1, iManufacturer 1.
    for (usage, id, idx) in [
        (0x0084_00FE, 0x01, 2),
        (0x0084_00FF, 0x02, 3),
        (0x0085_0089, 0x03, 4),
        (0x0085_008F, 0x04, 1),
        (0x0084_00FD, 0x0A, 1),
    ] {
        let f = d.find(usage, ReportType::Feature, None).unwrap();
        assert_eq!(
            (f.report_id, f.string_index),
            (id, Some(idx)),
            "{usage:08x}"
        );
    }
    // Report 6: Charging, Discharging, APCStatusFlag, 8 bits each, Input and Feature.
    for (usage, off) in [(0x0085_0044, 0), (0x0085_0045, 8), (0xFF86_0060, 16)] {
        for kind in [ReportType::Input, ReportType::Feature] {
            let f = d.find(usage, kind, None).unwrap();
            assert_eq!((f.report_id, f.bit_offset, f.bit_size), (6, off, 8));
        }
    }
    // ConfigVoltage in volts with exponent 5 (centivolts); ManufactureDate 16 bits.
    let cv = d.find(0x0084_0040, ReportType::Feature, None).unwrap();
    assert_eq!(
        (cv.report_id, cv.unit, cv.unit_exponent),
        (8, 0x00F0_D121, 5)
    );
    let date = d.find(0x0085_0085, ReportType::Feature, None).unwrap();
    assert_eq!((date.report_id, date.bit_size), (7, 16));
    // The capture stops inside the collections.
    assert!(
        d.warnings.iter().any(|w| w.contains("left open")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn the_back_ups_xs_1400u_tail_decodes_with_its_faults() {
    // The capture starts mid-descriptor: the globals its head set are missing. Every
    // APC descriptor sets a report count of 1 first (as the ES 850G2's does): supply it.
    let mut bytes = hex("95 01");
    bytes.extend(hex(XS1400U_TAIL));
    let d = ReportDescriptor::parse(&bytes).unwrap();
    // Report 0x7A: 11 one-bit PresentStatus fields then 21 bits of padding: 5 bytes.
    let present = 0x0084_0002;
    let bits: Vec<(u32, u32)> = d
        .fields
        .iter()
        .filter(|f| f.report_id == 0x7A)
        .map(|f| (f.usage, f.bit_offset))
        .collect();
    assert_eq!(
        bits,
        [
            (0x0085_0044, 0),
            (0x0085_0045, 1),
            (0x0085_00D0, 2),
            (0x0085_00D1, 3),
            (0x0085_0042, 4),
            (0x0084_0069, 5),
            (0x0085_0043, 6),
            (0x0084_0073, 7),
            (0x0085_004B, 8),
            (0x0084_0065, 9),
            (0x0085_00DB, 10),
        ]
    );
    assert!(
        d.fields
            .iter()
            .filter(|f| f.report_id == 0x7A)
            .all(|f| f.within(present))
    );
    assert_eq!(d.report_len(ReportType::Feature, 0x7A), 5);
    // Report 0x62: a 32-bit field with signed limits, from a 2-byte main item.
    let f = d.find(0xFF86_0025, ReportType::Feature, None).unwrap();
    assert_eq!((f.report_id, f.bit_size), (0x62, 32));
    assert_eq!(
        (f.logical_min, f.logical_max),
        (-2_147_483_647, 2_147_483_647)
    );
    // 0x61 APC sensitivity-like range 140..148; 0x78 AudibleAlarmControl 1..3.
    let f = d.find(0xFF86_0026, ReportType::Feature, None).unwrap();
    assert_eq!((f.logical_min, f.logical_max), (140, 148));
    let f = d.find(0x0084_005A, ReportType::Feature, None).unwrap();
    assert_eq!((f.report_id, f.logical_min, f.logical_max), (0x78, 1, 3));
    // It starts mid-collection: the first End Collection has no start.
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("End Collection without"))
    );
}

/// Found by `cargo fuzz run hid_report`: a usage range (Usage Minimum/Maximum) on a
/// zero-size field with a huge Report Count made the parser allocate 2 GB. It must
/// parse (or fail) with bounded memory.
#[test]
fn a_huge_usage_range_on_a_zero_size_field_stays_bounded() {
    let bytes = hex_compact(
        "058409fca13109feff650081a2090fffffffff75089501150026ff650081a209ff24a1d9d9d9d9d9d9d9d9d9d9d98a00d9d9d900850109feff6500810924a100850109feff650081a2090fffffffff7508951b1bffffffff1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b001027ffff16ff2bce000035228509327e099705ff85210919257eb1a28523097d05",
    );
    if let Ok(d) = ReportDescriptor::parse(&bytes) {
        assert!(d.fields.len() <= crate::ups::hid::descriptor::MAX_FIELDS);
    }
}

/// Found by `cargo fuzz run hid_report`: a 64-bit value read as a HID date overflowed
/// the year.
#[test]
fn dates_from_any_value_never_overflow() {
    use crate::ups::hid::report::{apc_date, hid_date};
    for v in [i64::MAX, i64::MIN, (i64::from(i32::MAX) << 9) | 0x21, -1, 0] {
        let _ = (hid_date(v), apc_date(v));
    }
    assert_eq!(hid_date(10896), Some((2001, 4, 16)));
    assert_eq!(hid_date((i64::from(i32::MAX) << 9) | 0x21), None);
}

fn hex_compact(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_one_byte_logical_maximum_on_a_16_bit_field_reads_as_unsigned() {
    // Usage page 0x85, RunTimeToEmpty, report 1, 16 bits, min 0, max `25 ff`.
    let d =
        ReportDescriptor::parse(&hex("05 85 09 68 85 01 75 10 95 01 15 00 25 ff 81 02")).unwrap();
    let f = &d.fields[0];
    assert_eq!((f.logical_min, f.logical_max), (0, 255));
    assert!(!d.warnings.is_empty());
    // Signed limits stay signed: DelayBeforeShutdown -1..32767.
    let d = ReportDescriptor::parse(&hex(
        "05 84 09 57 85 02 75 10 95 01 16 ff ff 26 ff 7f b1 02",
    ))
    .unwrap();
    let f = &d.fields[0];
    assert_eq!((f.logical_min, f.logical_max), (-1, 32767));
    assert!(f.signed());
}

#[test]
fn every_item_kind_is_read_and_bad_descriptors_are_errors() {
    // Push/Pop, a usage range, a long item, physical limits, a 4-byte usage.
    let d = ReportDescriptor::parse(&hex(
        "05 84 09 04 a1 01 a4 85 03 75 08 95 02 19 30 29 31 35 00 45 64 81 02 b4 \
         fe 02 10 aa bb 0b 66 00 85 00 85 04 75 08 95 01 b1 02 c0",
    ))
    .unwrap();
    let u: Vec<(u32, u8, u32)> = d
        .fields
        .iter()
        .map(|f| (f.usage, f.report_id, f.bit_offset))
        .collect();
    assert_eq!(
        u,
        [
            (0x0084_0030, 3, 0),
            (0x0084_0031, 3, 8),
            (0x0085_0066, 4, 0)
        ]
    );
    assert_eq!(
        (d.fields[0].physical_min, d.fields[0].physical_max),
        (0, 100)
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // Truncated items and a Pop without a Push are errors, not panics.
    assert!(matches!(
        ReportDescriptor::parse(&hex("05 84 27 ff ff")),
        Err(DescriptorError::Truncated { at: 2, .. })
    ));
    assert!(matches!(
        ReportDescriptor::parse(&hex("b4")),
        Err(DescriptorError::PopWithoutPush { at: 0 })
    ));
    assert!(matches!(
        ReportDescriptor::parse(&hex("fe 05 00")),
        Err(DescriptorError::Truncated { .. })
    ));
    // A report larger than any UPS sends.
    assert!(matches!(
        ReportDescriptor::parse(&hex("09 01 75 ff 96 ff 7f 81 02")),
        Err(DescriptorError::TooLarge { .. })
    ));
}

proptest::proptest! {
    /// Any bytes parse to fields inside their reports, or to an error; never a panic.
    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        if let Ok(d) = ReportDescriptor::parse(&bytes) {
            for f in &d.fields {
                let len = d.report_len(f.report_type, f.report_id);
                proptest::prop_assert!(((f.bit_offset + f.bit_size) as usize).div_ceil(8) < len);
                proptest::prop_assert!(f.logical_min <= f.logical_max);
            }
        }
    }
}

mod session {
    use super::hex;
    use crate::ups::hid::descriptor::ReportType;
    use crate::ups::hid::fixtures::back_ups;
    use crate::ups::hid::session::{FakeHid, HidError, HidUps};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_fake_back_ups_polls_then_interrupts_report_the_outage_at_once() {
        let mut dev = back_ups();
        let mut ups = HidUps::open(&mut dev).unwrap();
        let r = ups.poll(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(r.model, "Back-UPS ES 850G2");
        assert_eq!(r.serial_number, "4B1234P56789");
        assert!(r.flags.online);
        assert_eq!((r.charge_percent, r.runtime_s), (Some(100.0), Some(1380.0)));
        drop(ups);
        // On battery -> low battery -> shutdown imminent, from the interrupt endpoint
        // (Input reports take precedence over the last Feature poll).
        dev.interrupts.extend([
            vec![0x13, 0],
            vec![0x06, 0, 1],
            vec![0x14, 1, 0],
            vec![0x14, 1, 1],
            vec![0x0c, 9], // short: ignored, as apcupsd does
        ]);
        let mut ups = HidUps::open(&mut dev).unwrap();
        ups.poll(SystemTime::UNIX_EPOCH).unwrap();
        assert!(ups.interrupt(Duration::ZERO).unwrap());
        assert!(ups.reading(SystemTime::UNIX_EPOCH).flags.on_battery);
        assert!(ups.interrupt(Duration::ZERO).unwrap());
        assert!(ups.interrupt(Duration::ZERO).unwrap());
        assert!(ups.reading(SystemTime::UNIX_EPOCH).flags.low_battery);
        assert!(ups.interrupt(Duration::ZERO).unwrap());
        assert!(
            !ups.interrupt(Duration::ZERO).unwrap(),
            "short report ignored"
        );
        assert_eq!(
            ups.reading(SystemTime::UNIX_EPOCH).charge_percent,
            Some(100.0)
        );
        assert!(!ups.interrupt(Duration::ZERO).unwrap(), "nothing more");
    }

    #[test]
    fn the_smart_ups_fixture_reads_and_is_killed_startup_then_shutdown() {
        let mut dev = crate::ups::hid::fixtures::smart_ups();
        let mut ups = HidUps::open(&mut dev).unwrap();
        let r = ups.poll(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(r.model, "Smart-UPS 1000 FW:600.1.I");
        assert!(r.flags.online && !r.flags.on_battery);
        assert_eq!(
            (r.charge_percent, r.runtime_s),
            (Some(100.0), Some(21000.0))
        );
        let what = ups.kill(90, true).unwrap();
        assert!(what.contains("Smart-UPS shutdown with return"), "{what}");
        drop(ups);
        let w: Vec<Vec<u8>> = dev.writes.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(w, [vec![0x28, 94, 0], vec![0x12, 90, 0]]);
    }

    #[test]
    fn kill_power_issues_apcupsds_writes_and_unplugging_is_gone() {
        let mut dev = back_ups();
        let mut ups = HidUps::open(&mut dev).unwrap();
        let what = ups.kill(130, true).unwrap();
        assert!(what.contains("Back-UPS hibernate"), "{what}");
        drop(ups);
        assert_eq!(
            dev.writes,
            [
                (ReportType::Feature, vec![0x21, 0]),
                (ReportType::Feature, vec![0x22, 10, 0]),
                (ReportType::Feature, vec![0x23, 130, 0]),
            ]
        );
        dev.unplugged = true;
        assert!(matches!(HidUps::open(&mut dev), Err(HidError::Gone(_))));
    }

    #[test]
    fn a_refused_smart_ups_write_is_undone_and_the_next_way_tried() {
        // DelayBeforeReboot 0x11, DelayBeforeStartup 0x12, DelayBeforeShutdown 0x13.
        let mut dev = FakeHid {
            descriptor: hex("05 84 09 04 a1 01 75 10 95 01 16 ff ff 26 ff 7f \
                 85 11 09 55 b1 02 85 12 09 56 b1 02 85 13 09 57 b1 02 c0"),
            ..Default::default()
        };
        dev.refuse.insert(0x13);
        let mut ups = HidUps::open(&mut dev).unwrap();
        let what = ups.kill(60, true).unwrap();
        assert!(what.contains("reboot"), "{what}");
        drop(ups);
        let w: Vec<Vec<u8>> = dev.writes.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(
            w,
            [
                vec![0x12, 64, 0],
                vec![0x13, 60, 0],
                vec![0x12, 0xff, 0xff],
                vec![0x11, 60, 0],
            ]
        );
    }
}
