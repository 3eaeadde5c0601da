//! The store identity record beside sled's files: any bytes are a record or a named
//! fault (cut short, checksum, not a record), never a panic; a record read back encodes
//! to the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::store_identity::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = decode(data) {
        assert_eq!(decode(encode(&id).as_bytes()), Ok(id));
    }
});
