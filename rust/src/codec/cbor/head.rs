//! The CBOR initial byte and argument ("head"), pure Rust.

pub const UINT: u8 = 0;
pub const NINT: u8 = 1;
pub const BYTES: u8 = 2;
pub const TEXT: u8 = 3;
pub const ARRAY: u8 = 4;
pub const MAP: u8 = 5;
pub const TAG: u8 = 6;
pub const SIMPLE: u8 = 7;

/// Additional information 31: indefinite length, or the break stop code in major 7.
pub const INDEFINITE: u8 = 31;
pub const BREAK: u8 = 0xff;

/// Appends a head with the shortest argument encoding (preferred serialization).
// Measured: left out of line, the call was ~6% of encoding time.
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn write_head(buf: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        buf.push(m | n as u8);
    } else if n <= 0xff {
        buf.extend_from_slice(&[m | 0x18, n as u8]);
    } else if n <= 0xffff {
        buf.push(m | 0x19);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        buf.push(m | 0x1a);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        buf.push(m | 0x1b);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

/// A parsed head: major type, additional information, and the argument
/// (for floats in major 7 the raw bits; for ai 31 zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub major: u8,
    pub ai: u8,
    pub arg: u64,
}

/// Why a head could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The input ended; the payload is the offset where more bytes were needed.
    Truncated(usize),
    /// Additional information 28..=30 is reserved.
    Reserved,
}

/// Reads the head at `pos`, returning it and the offset just past it.
// Inlined into the decoder's hot loop (see `Decoder::head`).
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn read_head(data: &[u8], pos: usize) -> Result<(Head, usize), HeadError> {
    let Some(&ib) = data.get(pos) else {
        return Err(HeadError::Truncated(pos));
    };
    let major = ib >> 5;
    let ai = ib & 0x1f;
    let start = pos + 1;
    let width = match ai {
        0..=23 => {
            return Ok((
                Head {
                    major,
                    ai,
                    arg: u64::from(ai),
                },
                start,
            ))
        }
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        28..=30 => return Err(HeadError::Reserved),
        _ => return Ok((Head { major, ai, arg: 0 }, start)),
    };
    let end = start + width;
    let Some(bytes) = data.get(start..end) else {
        return Err(HeadError::Truncated(data.len()));
    };
    let arg = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok((Head { major, ai, arg }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(major: u8, n: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        write_head(&mut buf, major, n);
        buf
    }

    #[test]
    fn heads_are_shortest() {
        assert_eq!(head(UINT, 23), [0x17]);
        assert_eq!(head(UINT, 24), [0x18, 0x18]);
        assert_eq!(head(NINT, 255), [0x38, 0xff]);
        assert_eq!(head(TEXT, 256), [0x79, 0x01, 0x00]);
        assert_eq!(head(ARRAY, 65536), [0x9a, 0, 1, 0, 0]);
        assert_eq!(
            head(UINT, u64::MAX),
            [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn heads_read_back() {
        for n in [
            0,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let buf = head(MAP, n);
            let (h, end) = read_head(&buf, 0).unwrap();
            assert_eq!((h.major, h.arg, end), (MAP, n, buf.len()));
        }
        assert_eq!(read_head(&[0x1c], 0), Err(HeadError::Reserved));
        assert_eq!(read_head(&[0x19, 0x01], 0), Err(HeadError::Truncated(2)));
        assert_eq!(read_head(&[], 0), Err(HeadError::Truncated(0)));
        assert_eq!(read_head(&[0x9f], 0).unwrap().0.ai, INDEFINITE);
    }
}
