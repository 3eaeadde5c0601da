//! apcaccess status text: any bytes parse or fail with an error, never a panic; what
//! parses becomes a reading the way the `net` driver reads a NIS server.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_legacy_bridge::apcaccess::StatusText;
use upsilon_legacy_bridge::net_client::reading_of;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = StatusText::parse(data) {
        let _ = st.statflag();
        let _ = st.number("BCHARGE");
        let _ = st.get("STATUS");
        let _ = reading_of(&st, std::time::SystemTime::UNIX_EPOCH);
    }
});
