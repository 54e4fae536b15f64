//! The on-disk frame of one record: `len u32 | crc32c u32 | timestamp i64 | key_len u16 | key | data` (little-endian).
//!
//! `len` counts the bytes after the checksum; the checksum covers them all, so a torn or corrupted write is detected.

use std::io::{self, Read};

pub const HEADER_BYTES: usize = 8;
const FIXED_BODY_BYTES: usize = 8 + 2;
/// Largest record (key plus data) the log accepts: the Kinesis maximum a stream can be raised to.
pub const MAX_RECORD_BYTES: usize = 10 << 20;

pub fn frame_len(key: &str, data: &[u8]) -> usize {
    HEADER_BYTES + FIXED_BODY_BYTES + key.len() + data.len()
}

pub fn encode(timestamp_ms: i64, key: &str, data: &[u8], out: &mut Vec<u8>) {
    let body_len = FIXED_BODY_BYTES + key.len() + data.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Record {
        timestamp_ms: i64,
        key: String,
        data: Vec<u8>,
        len: usize,
    },
    /// Clean end of data at a frame boundary.
    End,
    /// A partial or corrupt frame: the end of valid data (a torn tail after a crash, or a write in progress).
    Torn {
        reason: &'static str,
    },
}

/// Reads the next frame. I/O errors other than a short read are returned as errors.
pub fn read(r: &mut impl Read) -> io::Result<Frame> {
    let mut header = [0u8; HEADER_BYTES];
    match read_full(r, &mut header)? {
        0 => return Ok(Frame::End),
        n if n < HEADER_BYTES => return Ok(Frame::Torn { reason: "short header" }),
        _ => {}
    }
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(FIXED_BODY_BYTES..=FIXED_BODY_BYTES + u16::MAX as usize + MAX_RECORD_BYTES).contains(&body_len) {
        return Ok(Frame::Torn { reason: "impossible frame length" });
    }
    let mut body = vec![0u8; body_len];
    if read_full(r, &mut body)? < body_len {
        return Ok(Frame::Torn { reason: "short body" });
    }
    if crc32c::crc32c(&body) != crc {
        return Ok(Frame::Torn { reason: "checksum mismatch" });
    }
    let timestamp_ms = i64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let key_len = u16::from_le_bytes([body[8], body[9]]) as usize;
    if FIXED_BODY_BYTES + key_len > body_len {
        return Ok(Frame::Torn { reason: "key longer than frame" });
    }
    let Ok(key) = String::from_utf8(body[FIXED_BODY_BYTES..FIXED_BODY_BYTES + key_len].to_vec()) else {
        return Ok(Frame::Torn { reason: "key is not UTF-8" });
    };
    body.drain(..FIXED_BODY_BYTES + key_len);
    Ok(Frame::Record { timestamp_ms, key, data: body, len: HEADER_BYTES + body_len })
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn torn_frames_are_detected() {
        let mut buf = Vec::new();
        encode(7, "key", b"data", &mut buf);
        assert_eq!(buf.len(), frame_len("key", b"data"));
        for cut in 1..buf.len() {
            assert!(matches!(read(&mut &buf[..cut]).unwrap(), Frame::Torn { .. }), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[20] ^= 0x40;
        assert_eq!(read(&mut &flipped[..]).unwrap(), Frame::Torn { reason: "checksum mismatch" });
        assert_eq!(read(&mut &b""[..]).unwrap(), Frame::End);
    }

    proptest! {
        #[test]
        fn frames_round_trip(frames in prop::collection::vec((any::<i64>(), "[a-z/]{0,20}", prop::collection::vec(any::<u8>(), 0..100)), 0..20)) {
            let mut buf = Vec::new();
            for (ts, key, data) in &frames {
                encode(*ts, key, data, &mut buf);
            }
            let mut r = &buf[..];
            for (ts, key, data) in frames {
                let len = frame_len(&key, &data);
                prop_assert_eq!(read(&mut r).unwrap(), Frame::Record { timestamp_ms: ts, key, data, len });
            }
            prop_assert_eq!(read(&mut r).unwrap(), Frame::End);
        }

        #[test]
        fn read_is_total(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = read(&mut &bytes[..]);
        }
    }
}
