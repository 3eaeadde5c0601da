//! apcaccess status text: any bytes parse or fail with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_legacy_bridge::apcaccess::StatusText;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = StatusText::parse(data) {
        let _ = st.statflag();
        let _ = st.number("BCHARGE");
        let _ = st.get("STATUS");
    }
});
