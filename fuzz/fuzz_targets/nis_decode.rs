//! NIS framing: any bytes decode to frames or a clear error, never a panic, and a
//! decoded message re-encodes to the bytes it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_legacy_bridge::nis::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = nis::decode(rest, nis::MAX_STATUS_REPLY) {
        if let Frame::Message(m) = &frame {
            assert_eq!(nis::encode(m).unwrap(), rest[..used]);
        }
        rest = &rest[used..];
    }
    let _ = nis::Command::parse(data);
});
