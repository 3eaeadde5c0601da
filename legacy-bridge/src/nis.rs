//! apcupsd NIS framing and commands (docs/protocols/nis.md §1-2).
//!
//! Every message is a 2-byte big-endian length and that many bytes; a 0-length message
//! ends a reply. A receiver refuses a message longer than its buffer (apcupsd's server
//! takes commands of at most 256 bytes). [`decode`] is incremental: give it what has
//! arrived, it says how much it used. The async helpers add apcupsd's 15 s read timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// apcupsd's per-read timeout; an idle NIS connection is dropped after it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest command apcupsd's server accepts (MAXSTRING).
pub const MAX_COMMAND: usize = 256;
/// The buffer apcupsd's `net` driver reads status replies into.
pub const MAX_STATUS_REPLY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A message with its payload.
    Message(Vec<u8>),
    /// The 0-length end-of-reply marker.
    End,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NisError {
    #[error("NIS message of {len} bytes is longer than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("NIS payload of {0} bytes cannot be framed (at most 65535)")]
    Unframeable(usize),
    #[error("connection closed in the middle of a NIS message")]
    Truncated,
    #[error("connection closed")]
    Closed,
    #[error("no data for {0} s")]
    Timeout(u64),
    #[error("I/O error: {0}")]
    Io(String),
}

/// Frames a payload.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, NisError> {
    let len = u16::try_from(payload.len()).map_err(|_| NisError::Unframeable(payload.len()))?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The end-of-reply marker.
pub const END: [u8; 2] = [0, 0];

/// Decodes one frame from the start of `buf`: `Ok(None)` if more bytes are needed,
/// else the frame and the number of bytes it used.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, NisError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if len == 0 {
        return Ok(Some((Frame::End, 2)));
    }
    if len > max {
        return Err(NisError::TooLong { len, max });
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    Ok(Some((Frame::Message(buf[2..2 + len].to_vec()), 2 + len)))
}

/// Reads one frame, with apcupsd's read timeout.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Frame, NisError> {
    let io = |e: std::io::Error| NisError::Io(e.to_string());
    let mut len = [0u8; 2];
    match tokio::time::timeout(timeout, r.read_exact(&mut len)).await {
        Err(_) => return Err(NisError::Timeout(timeout.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(NisError::Closed);
        }
        Ok(Err(e)) => return Err(io(e)),
        Ok(Ok(_)) => {}
    }
    let n = u16::from_be_bytes(len) as usize;
    if n == 0 {
        return Ok(Frame::End);
    }
    if n > max {
        return Err(NisError::TooLong { len: n, max });
    }
    let mut payload = vec![0u8; n];
    match tokio::time::timeout(timeout, r.read_exact(&mut payload)).await {
        Err(_) => Err(NisError::Timeout(timeout.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(NisError::Truncated),
        Ok(Err(e)) => Err(io(e)),
        Ok(Ok(_)) => Ok(Frame::Message(payload)),
    }
}

/// Writes one message.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> Result<(), NisError> {
    let buf = encode(payload)?;
    w.write_all(&buf)
        .await
        .map_err(|e| NisError::Io(e.to_string()))
}

/// Reads messages until the end marker; `max_total` bounds the whole reply.
pub async fn read_reply<R: AsyncRead + Unpin>(
    r: &mut R,
    max_total: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, NisError> {
    let mut out = Vec::new();
    let mut total = 0;
    loop {
        match read_frame(r, max_total, timeout).await? {
            Frame::End => return Ok(out),
            Frame::Message(m) => {
                total += m.len();
                if total > max_total {
                    return Err(NisError::TooLong {
                        len: total,
                        max: max_total,
                    });
                }
                out.push(m);
            }
        }
    }
}

/// A command a NIS client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Status,
    Events,
    /// Anything else: answered with [`INVALID_COMMAND`], connection kept.
    Invalid,
}

impl Command {
    /// apcupsd 3.14.13+: the payload must be exactly `status` or `events`.
    pub fn parse(payload: &[u8]) -> Command {
        match payload {
            b"status" => Command::Status,
            b"events" => Command::Events,
            _ => Command::Invalid,
        }
    }
}

/// apcupsd's reply to an unknown command (with its trailing NUL).
pub const INVALID_COMMAND: &[u8] = b"Invalid command\n\0";
/// apcupsd's reply to `events` when there is no events file (with its trailing NUL).
pub const NOT_AVAILABLE: &[u8] = b"Not available\n\0";

/// The `APC      : 001,RRR,BBBB\n` header for status records (each ending in `\n`,
/// the `END APC` record included): record count and their total bytes.
pub fn status_header(records: &[String]) -> String {
    let bytes: usize = records.iter().map(String::len).sum();
    format!("APC      : 001,{:03},{:04}\n", records.len(), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_status_command_bytes() {
        // docs/protocols/nis.md §1: client->server "status".
        assert_eq!(
            encode(b"status").unwrap(),
            [0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73]
        );
        assert_eq!(
            decode(
                &[0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00],
                MAX_COMMAND
            )
            .unwrap(),
            Some((Frame::Message(b"status".to_vec()), 8))
        );
    }

    #[test]
    fn decode_needs_more_ends_and_limits() {
        assert_eq!(decode(&[0x00], 10).unwrap(), None);
        assert_eq!(decode(&[0x00, 0x05, b'a'], 10).unwrap(), None);
        assert_eq!(
            decode(&[0x00, 0x00, 0xff], 10).unwrap(),
            Some((Frame::End, 2))
        );
        assert_eq!(
            decode(&[0x01, 0x01], MAX_COMMAND).unwrap_err(),
            NisError::TooLong { len: 257, max: 256 }
        );
        assert_eq!(
            encode(&vec![0u8; 70_000]).unwrap_err(),
            NisError::Unframeable(70_000)
        );
    }

    #[test]
    fn commands_are_exact_like_3_14_13() {
        assert_eq!(Command::parse(b"status"), Command::Status);
        assert_eq!(Command::parse(b"events"), Command::Events);
        assert_eq!(Command::parse(b"status\n"), Command::Invalid);
        assert_eq!(Command::parse(b"rawupsinfo"), Command::Invalid);
        assert_eq!(INVALID_COMMAND.len(), 17);
        assert_eq!(NOT_AVAILABLE.len(), 15);
    }

    #[test]
    fn status_header_counts_records_and_bytes() {
        let recs = vec![
            "STATUS   : ONLINE \n".to_string(),
            "END APC  : x\n".to_string(),
        ];
        assert_eq!(status_header(&recs), "APC      : 001,002,0032\n");
    }

    #[tokio::test]
    async fn async_reader_handles_truncation_and_timeout() {
        let mut data: &[u8] = &[0x00, 0x05, b'a', b'b'];
        assert_eq!(
            read_frame(&mut data, 100, READ_TIMEOUT).await,
            Err(NisError::Truncated)
        );
        let mut empty: &[u8] = &[];
        assert_eq!(
            read_frame(&mut empty, 100, READ_TIMEOUT).await,
            Err(NisError::Closed)
        );
        let (mut a, _b) = tokio::io::duplex(64);
        let r = read_frame(&mut a, 100, Duration::from_millis(50)).await;
        assert_eq!(r, Err(NisError::Timeout(0)));
        let mut two: &[u8] = &[0, 2, b'h', b'i', 0, 1, b'!', 0, 0];
        assert_eq!(
            read_reply(&mut two, 100, READ_TIMEOUT).await.unwrap(),
            vec![b"hi".to_vec(), b"!".to_vec()]
        );
    }

    proptest::proptest! {
        #[test]
        fn encode_decode_roundtrip(payload in proptest::collection::vec(proptest::num::u8::ANY, 1..300)) {
            let wire = encode(&payload).unwrap();
            let (f, used) = decode(&wire, 300).unwrap().unwrap();
            proptest::prop_assert_eq!(f, Frame::Message(payload));
            proptest::prop_assert_eq!(used, wire.len());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&bytes, 16);
        }
    }
}
