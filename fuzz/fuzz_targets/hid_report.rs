//! The HID report decoder: a descriptor and a report from the same bytes (the first byte
//! says where they split); every field decodes to a value within its bit size or to an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::ups::hid::descriptor::ReportDescriptor;
use upsilon_core::ups::hid::report::{apc_date, hid_date, physical, raw_value};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize).min(rest.len());
    let (desc, report) = rest.split_at(cut);
    if let Ok(d) = ReportDescriptor::parse(desc) {
        for f in &d.fields {
            if let Ok(v) = raw_value(f, report) {
                let _ = (physical(f, v), hid_date(v), apc_date(v));
            }
        }
    }
});
