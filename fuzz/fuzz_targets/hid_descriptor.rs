//! The HID report descriptor parser: any bytes parse to fields or an error, never a
//! panic or a runaway; every field lies inside its report's declared length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::ups::hid::descriptor::ReportDescriptor;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = ReportDescriptor::parse(data) {
        for f in &d.fields {
            let len = d.report_len(f.report_type, f.report_id);
            assert!(((f.bit_offset + f.bit_size) as usize).div_ceil(8) < len);
            assert!(f.logical_min <= f.logical_max);
        }
    }
});
