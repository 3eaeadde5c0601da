//! The master/slave packet: any bytes decode to a packet or a length error, never a
//! panic; a packet re-encodes to the bytes it came from, and its magics print.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_legacy_bridge::netdata::NetData;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = NetData::decode(data) {
        assert_eq!(&p.encode()[..], data);
        let _ = (p.apc_magic_ok(), p.user_magic_text(), p.to_string());
        let r = p.slave_reply(&p.user_magic_text());
        assert_eq!(NetData::decode(&r.encode()).unwrap(), r);
    }
});
