//! APC smart protocol bytes: the decoder and every reply parser take any bytes, split
//! anywhere, without a panic; the decoded lines then build a reading.
#![no_main]
use libfuzzer_sys::fuzz_target;
use upsilon_core::ups::apcsmart::{self, Piece, ReplyDecoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let mut d = ReplyDecoder::new();
    d.literal = split % 2 == 1;
    let mut out = Vec::new();
    let cut = split.min(data.len());
    d.feed(&data[..cut], &mut out);
    d.feed(&data[cut..], &mut out);
    let mut replies = apcsmart::Replies::new();
    let cmds: Vec<u8> = apcsmart::VOLATILE.iter().chain(apcsmart::STATIC).copied().collect();
    for (i, p) in out.iter().enumerate() {
        if let Piece::Line(l) = p {
            let _ = apcsmart::Capabilities::parse(l);
            let _ = apcsmart::parse_status_byte(l);
            let _ = apcsmart::parse_number(l);
            let _ = apcsmart::parse_hex(l);
            let _ = apcsmart::last_transfer_phrase(l);
            let _ = apcsmart::model_from_old_firmware(l);
            replies.insert(cmds[i % cmds.len()], l.clone());
        }
    }
    let _ = apcsmart::build_reading(
        &replies,
        &replies,
        split as u8,
        &apcsmart::AlertOverlay::default(),
        std::time::SystemTime::UNIX_EPOCH,
    );
});
