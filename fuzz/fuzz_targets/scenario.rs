//! Simulator scenario files: any text is accepted or refused with a located error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::ups::sim::Scenario;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scenario::parse(std::path::Path::new("fuzz.toml"), text);
    }
});
