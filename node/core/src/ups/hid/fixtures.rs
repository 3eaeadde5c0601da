//! Devices for tests, in memory: a Back-UPS and a Smart-UPS laid out as docs/hardware/usb-hid.md
//! §6 records them (report IDs of the ES 850G2 / Back-UPS 350 and the Smart-UPS 1000
//! captures), served by `FakeHid`. Used by this crate's tests and by the integration
//! tests' emulated USB device.

use super::descriptor::ReportType;
use super::session::FakeHid;

/// Bytes from a hex dump ("05 84 09 04 ...").
pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// A Back-UPS (report IDs as the ES 850G2 and Back-UPS 350 captures): strings 1 and 2,
/// Charging/Discharging 6, RemainingCapacity + RunTimeToEmpty 12, ACPresent 19,
/// BelowRemainingCapacityLimit + ShutdownImminent 20, and APC's kill usages:
/// APCBattCapBeforeStartup 0x21, APCDelayBeforeStartup 0x22, APCDelayBeforeShutdown
/// 0x23 (16-bit signed); on charge, on mains, 100 %, 1380 s.
pub fn back_ups() -> FakeHid {
    let mut f = FakeHid {
        descriptor: hex("05 84 09 04 a1 01 09 24 a1 00 \
             85 01 09 fe 75 08 95 01 15 00 26 ff 00 b1 22 \
             85 02 09 ff b1 22 \
             85 06 05 85 09 44 81 a2 09 44 b1 a2 09 45 81 a2 09 45 b1 a2 \
             85 0c 09 66 25 64 81 a2 09 66 b1 a2 09 68 75 10 27 ff ff 00 00 66 01 10 81 a2 09 68 b1 a2 \
             85 13 09 d0 75 08 25 01 65 00 81 a2 09 d0 b1 a2 \
             85 14 09 42 81 a2 09 42 b1 a2 05 84 09 69 81 a2 09 69 b1 a2 \
             06 86 ff 85 21 09 19 26 ff 00 b1 a2 \
             75 10 16 ff ff 26 ff 7f 85 22 09 7e b1 a2 85 23 09 7d b1 a2 \
             c0 c0"),
        ..Default::default()
    };
    for bytes in [
        vec![0x01, 2],
        vec![0x02, 3],
        vec![0x06, 1, 0],
        vec![0x0c, 100, 0x64, 0x05],
        vec![0x13, 1],
        vec![0x14, 0, 0],
    ] {
        f.reports.insert((ReportType::Feature, bytes[0]), bytes);
    }
    f.strings.insert(2, "Back-UPS ES 850G2".into());
    f.strings.insert(3, "4B1234P56789".into());
    f
}

/// A Smart-UPS (as the Smart-UPS 1000 capture): PresentStatus bits in report 7
/// (Charging, Discharging, ACPresent, BelowRemainingCapacityLimit, ShutdownImminent),
/// RemainingCapacity 12, RunTimeToEmpty 13, DelayBeforeShutdown 18, DelayBeforeReboot
/// 19, DelayBeforeStartup 40 (16-bit signed), iProduct 1 and the Modbus usages
/// ModbusRTURx (Output 0x90) and ModbusRTUTx (Input 0x91), 63 bytes each.
pub fn smart_ups() -> FakeHid {
    let mut f = FakeHid {
        descriptor: hex("05 84 09 04 a1 01 09 24 a1 00 \
             85 01 09 fe 75 08 95 01 15 00 26 ff 00 b1 22 \
             85 07 05 85 75 01 25 01 09 44 b1 a2 09 45 b1 a2 09 d0 b1 a2 09 42 b1 a2 \
             05 84 09 69 b1 a2 95 03 b1 01 95 01 \
             85 0c 05 85 75 08 25 64 09 66 b1 a2 \
             85 0d 09 68 75 10 27 ff ff 00 00 66 01 10 b1 a2 \
             05 84 65 00 16 00 80 26 ff 7f \
             85 12 09 57 b1 a2 85 13 09 55 b1 a2 85 28 09 56 b1 a2 \
             c0 \
             06 86 ff 15 00 26 ff 00 75 08 95 3f \
             85 90 09 fc 91 02 85 91 09 fd 81 02 \
             c0"),
        ..Default::default()
    };
    for bytes in [
        vec![0x01, 1],
        vec![0x07, 0b0000_0101],
        vec![0x0c, 100],
        vec![0x0d, 0x08, 0x52],
        vec![0x12, 0xff, 0xff],
        vec![0x13, 0xff, 0xff],
        vec![0x28, 0xff, 0xff],
    ] {
        f.reports.insert((ReportType::Feature, bytes[0]), bytes);
    }
    f.strings.insert(1, "Smart-UPS 1000 FW:600.1.I".into());
    f
}
