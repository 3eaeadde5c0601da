//! A field's value in a report's bytes: the raw logical value (bits little-endian,
//! sign-extended when the field is signed) and the physical value with apcupsd's unit
//! rules, plus the two date encodings. Pure; every bad report is an error.

use super::descriptor::Field;

/// Why a value cannot be read from a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("report {want:#04x}: got report {got:#04x}")]
    WrongId { want: u8, got: u8 },
    #[error("report {id:#04x}: {got} bytes, the field needs {need}")]
    Short { id: u8, got: usize, need: usize },
    #[error("report {id:#04x}: empty")]
    Empty { id: u8 },
}

/// The raw (logical) value of `field` in `report` (byte 0 is the report ID). Longer
/// reports than the descriptor says are accepted (some Back-UPS overflow theirs).
pub fn raw_value(field: &Field, report: &[u8]) -> Result<i64, ReportError> {
    let id = field.report_id;
    let (&got_id, body) = report.split_first().ok_or(ReportError::Empty { id })?;
    if id != 0 && got_id != id {
        return Err(ReportError::WrongId {
            want: id,
            got: got_id,
        });
    }
    let end = (field.bit_offset + field.bit_size) as usize;
    let need = end.div_ceil(8);
    if body.len() < need || field.bit_size > 64 {
        return Err(ReportError::Short {
            id,
            got: report.len(),
            need: need + 1,
        });
    }
    let mut v: u64 = 0;
    for (k, bit) in (field.bit_offset as usize..end).enumerate() {
        if body[bit / 8] >> (bit % 8) & 1 == 1 {
            v |= 1 << k;
        }
    }
    let n = field.bit_size;
    Ok(
        if field.signed() && n > 0 && n < 64 && v >> (n - 1) & 1 == 1 {
            (v | (u64::MAX << n)) as i64
        } else {
            v as i64
        },
    )
}

/// Unit codes APC uses and the exponent bias apcupsd applies to each.
pub mod units {
    pub const VOLT: u32 = 0x00F0_D121;
    pub const SECOND: u32 = 0x1001;
    pub const HERTZ: u32 = 0xF001;
    pub const AMPERE: u32 = 0x0010_0001;
    pub const WATT: u32 = 0xD121;
    pub const KELVIN: u32 = 0x0001_0001;
}

fn bias(unit: u32) -> i32 {
    match unit {
        units::VOLT | units::WATT => 7,
        units::AMPERE => -2,
        _ => 0,
    }
}

/// The physical value: raw × 10^(unit exponent − the unit's bias).
pub fn physical(field: &Field, raw: i64) -> f64 {
    raw as f64 * 10f64.powi(i32::from(field.unit_exponent) - bias(field.unit))
}

/// A HID date: (year − 1980) × 512 + month × 32 + day, e.g. 10896 = 2001-04-16.
pub fn hid_date(v: i64) -> Option<(i32, u32, u32)> {
    // Any 64-bit value can come from a device: no overflow (fuzzing found one).
    let (y, m, d) = (
        i32::try_from(v >> 9).ok()?.checked_add(1980)?,
        ((v >> 5) & 0xF) as u32,
        (v & 0x1F) as u32,
    );
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// APC's battery date: hex digits read as decimal mmddyy, e.g. 0x041601 = 2001-04-16.
pub fn apc_date(v: i64) -> Option<(i32, u32, u32)> {
    let s = format!("{v:06x}");
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize| s[a..a + 2].parse::<u32>().ok();
    let (m, d, y) = (n(0)?, n(2)?, n(4)?);
    let year = if y < 80 {
        2000 + y as i32
    } else {
        1900 + y as i32
    };
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((year, m, d))
}

#[cfg(test)]
mod tests {
    use super::super::descriptor::{ReportDescriptor, ReportType};
    use super::*;

    fn es850_report_0c() -> (ReportDescriptor, Vec<u8>) {
        // RemainingCapacity (8 bits) and RunTimeToEmpty (16 bits) in report 0x0C.
        let d = ReportDescriptor::parse(&[
            0x05, 0x84, 0x09, 0x24, 0xa1, 0x00, 0x05, 0x85, 0x85, 0x0c, 0x75, 0x08, 0x95, 0x01,
            0x15, 0x00, 0x25, 0x64, 0x09, 0x66, 0x81, 0xa2, 0x09, 0x68, 0x75, 0x10, 0x27, 0xff,
            0xff, 0x00, 0x00, 0x66, 0x01, 0x10, 0x81, 0xa2, 0xc0,
        ])
        .unwrap();
        // 100 %, 1380 s (the Back-UPS 350 capture's values).
        (d, vec![0x0c, 100, 0x64, 0x05])
    }

    #[test]
    fn values_decode_from_report_bytes() {
        let (d, r) = es850_report_0c();
        let cap = d.find(0x0085_0066, ReportType::Input, None).unwrap();
        let rt = d.find(0x0085_0068, ReportType::Input, None).unwrap();
        assert_eq!(raw_value(cap, &r), Ok(100));
        assert_eq!(raw_value(rt, &r), Ok(1380));
        assert_eq!(physical(rt, 1380), 1380.0);
        // Overflowing reports are read; short ones, wrong IDs and empty ones are errors.
        let mut long = r.clone();
        long.extend([0, 0, 0]);
        assert_eq!(raw_value(rt, &long), Ok(1380));
        assert_eq!(
            raw_value(rt, &r[..3]),
            Err(ReportError::Short {
                id: 0x0c,
                got: 3,
                need: 4
            })
        );
        assert_eq!(
            raw_value(rt, &[0x0d, 1, 2, 3]),
            Err(ReportError::WrongId {
                want: 0x0c,
                got: 0x0d
            })
        );
        assert_eq!(raw_value(rt, &[]), Err(ReportError::Empty { id: 0x0c }));
    }

    #[test]
    fn units_dates_and_signs_follow_apcupsd() {
        let mut f = ReportDescriptor::parse(&[
            0x05, 0x84, 0x09, 0x30, 0x85, 0x01, 0x75, 0x10, 0x95, 0x01, 0x16, 0xff, 0xff, 0x26,
            0xff, 0x7f, 0x67, 0x21, 0xd1, 0xf0, 0x00, 0x55, 0x05, 0xb1, 0x02,
        ])
        .unwrap()
        .fields
        .remove(0);
        // Voltage 1342 with exponent 5 in volts: 13.42 V (Back-UPS 350); exponent 7: V.
        assert!((physical(&f, 1342) - 13.42).abs() < 1e-9);
        f.unit_exponent = 7;
        assert_eq!(physical(&f, 230), 230.0);
        // Signed 16-bit: ff ff is -1 (DelayBeforeShutdown: no countdown).
        assert_eq!(raw_value(&f, &[0x01, 0xff, 0xff]), Ok(-1));
        assert_eq!(hid_date(10896), Some((2001, 4, 16)));
        assert_eq!(apc_date(0x041601), Some((2001, 4, 16)));
        assert_eq!(apc_date(267777), Some((2001, 4, 16)));
        assert_eq!(apc_date(0xABCDEF), None);
        assert_eq!(hid_date(0), None);
    }
}
