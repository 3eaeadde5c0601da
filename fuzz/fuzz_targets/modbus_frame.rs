//! The Modbus RTU response decoder: any bytes, with or without CRC, as the answer to a
//! read or a write, decode to a response that matches the request or to an error;
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::ups::modbus::{Request, decode_response, kill_request, response_len};

fuzz_target!(|data: &[u8]| {
    for req in [
        Request::ReadHolding { addr: 128, count: 3 },
        kill_request(true),
    ] {
        for crc in [true, false] {
            let _ = response_len(&req, data, crc);
            if let Ok(upsilon_core::ups::modbus::Response::Registers(r)) =
                decode_response(&req, 1, data, crc)
            {
                assert_eq!(r.len(), 3);
            }
        }
    }
});
