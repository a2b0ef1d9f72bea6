//! msgpack wire format: the header writers, with no Python in sight, so
//! `cargo test` checks every width boundary.
//!
//! Each writer picks the smallest encoding, exactly as the `msgpack` package
//! does, so the output is byte-identical to `msgpack.packb`.

/// Format bytes (msgpack spec, "Formats").
pub mod marker {
    pub const NIL: u8 = 0xc0;
    pub const RESERVED: u8 = 0xc1;
    pub const FALSE: u8 = 0xc2;
    pub const TRUE: u8 = 0xc3;
    pub const BIN8: u8 = 0xc4;
    pub const BIN16: u8 = 0xc5;
    pub const BIN32: u8 = 0xc6;
    pub const EXT8: u8 = 0xc7;
    pub const EXT16: u8 = 0xc8;
    pub const EXT32: u8 = 0xc9;
    pub const FLOAT32: u8 = 0xca;
    pub const FLOAT64: u8 = 0xcb;
    pub const UINT8: u8 = 0xcc;
    pub const UINT16: u8 = 0xcd;
    pub const UINT32: u8 = 0xce;
    pub const UINT64: u8 = 0xcf;
    pub const INT8: u8 = 0xd0;
    pub const INT16: u8 = 0xd1;
    pub const INT32: u8 = 0xd2;
    pub const INT64: u8 = 0xd3;
    pub const FIXEXT1: u8 = 0xd4;
    pub const FIXEXT2: u8 = 0xd5;
    pub const FIXEXT4: u8 = 0xd6;
    pub const FIXEXT8: u8 = 0xd7;
    pub const FIXEXT16: u8 = 0xd8;
    pub const STR8: u8 = 0xd9;
    pub const STR16: u8 = 0xda;
    pub const STR32: u8 = 0xdb;
    pub const ARRAY16: u8 = 0xdc;
    pub const ARRAY32: u8 = 0xdd;
    pub const MAP16: u8 = 0xde;
    pub const MAP32: u8 = 0xdf;
}

use marker::{
    ARRAY16, ARRAY32, BIN16, BIN32, BIN8, EXT16, EXT32, EXT8, FALSE, FIXEXT1, FIXEXT16, FIXEXT2,
    FIXEXT4, FIXEXT8, FLOAT64, INT16, INT32, INT64, INT8, MAP16, MAP32, NIL, STR16, STR32, STR8,
    TRUE, UINT16, UINT32, UINT64, UINT8,
};

/// Largest length any msgpack header can carry.
pub const MAX_LEN: usize = u32::MAX as usize;

#[inline]
pub fn write_nil(out: &mut Vec<u8>) {
    out.push(NIL);
}

#[inline]
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { TRUE } else { FALSE });
}

/// A non-negative integer in its smallest form.
#[inline]
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= 0xff {
        write_marked(out, UINT8, v, 1);
    } else if v <= 0xffff {
        write_marked(out, UINT16, v, 2);
    } else if v <= 0xffff_ffff {
        write_marked(out, UINT32, v, 4);
    } else {
        write_marked(out, UINT64, v, 8);
    }
}

/// A signed integer in its smallest form; non-negative values use the uint formats.
#[inline]
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as u8);
    } else if v >= i64::from(i8::MIN) {
        write_marked(out, INT8, v as u64, 1);
    } else if v >= i64::from(i16::MIN) {
        write_marked(out, INT16, v as u64, 2);
    } else if v >= i64::from(i32::MIN) {
        write_marked(out, INT32, v as u64, 4);
    } else {
        write_marked(out, INT64, v as u64, 8);
    }
}

/// `marker` and the low `n` (1, 2, 4 or 8) bytes of `v`, big-endian, in one
/// fixed 9-byte store: no call to memcpy for a variable length.
#[inline]
fn write_marked(out: &mut Vec<u8>, marker: u8, v: u64, n: usize) {
    debug_assert!(matches!(n, 1 | 2 | 4 | 8));
    let mut item = [marker; 9];
    // The low `n` bytes moved to the top, so they come first big-endian.
    item[1..].copy_from_slice(&(v << (64 - 8 * n)).to_be_bytes());
    out.reserve(9);
    let at = out.len();
    // SAFETY: `reserve` left room for 9 more bytes; all 9 are written and
    // only the first `1 + n` (at most 9) become part of the vector.
    unsafe {
        std::ptr::copy_nonoverlapping(item.as_ptr(), out.as_mut_ptr().add(at), 9);
        out.set_len(at + 1 + n);
    }
}

/// Always float64, as `msgpack.packb` does by default.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    // One 9-byte append (one capacity check) instead of a push and an append:
    // float arrays are nothing but this.
    let mut item = [FLOAT64; 9];
    item[1..].copy_from_slice(&v.to_be_bytes());
    out.extend_from_slice(&item);
}

#[inline]
fn write_len(out: &mut Vec<u8>, len: usize, m8: Option<u8>, m16: u8, m32: u8) {
    match m8 {
        Some(m8) if u8::try_from(len).is_ok() => out.extend_from_slice(&[m8, len as u8]),
        _ if u16::try_from(len).is_ok() => {
            out.push(m16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// A str header followed by the UTF-8 bytes; `s.len()` must be at most [`MAX_LEN`].
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_utf8(out, s.as_bytes());
}

/// [`write_str`] for bytes already known to be UTF-8.
// Always inlined (its long-str half is not): it is most of every map key.
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn write_utf8(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        out.reserve(len + 1);
        // Most strs are short (map keys above all): header and bytes written
        // with fixed-size moves rather than a push and a call to memcpy.
        let at = out.len();
        // SAFETY: `reserve` left room for the header byte and `len` bytes,
        // which are all written before `set_len` takes them in.
        unsafe {
            let dst = out.as_mut_ptr().add(at);
            *dst = 0xa0 | len as u8;
            copy_short(s, dst.add(1));
            out.set_len(at + 1 + len);
        }
        return;
    }
    write_long_utf8(out, s);
}

#[inline(never)]
fn write_long_utf8(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 5);
    write_len(out, s.len(), Some(STR8), STR16, STR32);
    out.extend_from_slice(s);
}

/// Copies `src` (under 32 bytes) to `dst` with two fixed-size moves that
/// overlap for lengths in between, as memcpy itself does for small sizes,
/// without the call.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and not overlap `src`.
#[inline]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    use std::ptr::copy_nonoverlapping as copy;
    let n = src.len();
    debug_assert!(n < 32);
    let s = src.as_ptr();
    // SAFETY: each move reads and writes inside the first `n` bytes of
    // `src` and `dst` (the second starts at `n - k`, for `k <= n`).
    unsafe {
        if n >= 16 {
            copy(s, dst, 16);
            copy(s.add(n - 16), dst.add(n - 16), 16);
        } else if n >= 8 {
            copy(s, dst, 8);
            copy(s.add(n - 8), dst.add(n - 8), 8);
        } else if n >= 4 {
            copy(s, dst, 4);
            copy(s.add(n - 4), dst.add(n - 4), 4);
        } else if n > 0 {
            *dst = *s;
            *dst.add(n / 2) = *s.add(n / 2);
            *dst.add(n - 1) = *s.add(n - 1);
        }
    }
}

/// A bin header followed by the bytes; `b.len()` must be at most [`MAX_LEN`].
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 5);
    write_len(out, b.len(), Some(BIN8), BIN16, BIN32);
    out.extend_from_slice(b);
}

#[allow(clippy::inline_always)]
#[inline(always)]
pub fn write_array_header(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else {
        write_long_array_header(out, len);
    }
}

#[inline(never)]
fn write_long_array_header(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, None, ARRAY16, ARRAY32);
}

#[allow(clippy::inline_always)]
#[inline(always)]
pub fn write_map_header(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x80 | len as u8);
    } else {
        write_long_map_header(out, len);
    }
}

#[inline(never)]
fn write_long_map_header(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, None, MAP16, MAP32);
}

/// An extension: fixext for 1, 2, 4, 8 and 16 bytes, ext 8/16/32 otherwise.
pub fn write_ext(out: &mut Vec<u8>, code: i8, data: &[u8]) {
    out.reserve(data.len() + 6);
    let fixed = match data.len() {
        1 => Some(FIXEXT1),
        2 => Some(FIXEXT2),
        4 => Some(FIXEXT4),
        8 => Some(FIXEXT8),
        16 => Some(FIXEXT16),
        _ => None,
    };
    match fixed {
        Some(m) => out.push(m),
        None => write_len(out, data.len(), Some(EXT8), EXT16, EXT32),
    }
    out.push(code as u8);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_int(&mut out, v);
        out
    }

    #[test]
    fn ints_take_the_smallest_width() {
        assert_eq!(int(0), [0x00]);
        assert_eq!(int(127), [0x7f]);
        assert_eq!(int(128), [0xcc, 0x80]);
        assert_eq!(int(255), [0xcc, 0xff]);
        assert_eq!(int(256), [0xcd, 0x01, 0x00]);
        assert_eq!(int(65536), [0xce, 0, 1, 0, 0]);
        assert_eq!(int(1 << 32)[0], 0xcf);
        assert_eq!(int(-1), [0xff]);
        assert_eq!(int(-32), [0xe0]);
        assert_eq!(int(-33), [0xd0, 0xdf]);
        assert_eq!(int(-128), [0xd0, 0x80]);
        assert_eq!(int(-129), [0xd1, 0xff, 0x7f]);
        assert_eq!(int(-32769)[0], 0xd2);
        assert_eq!(int(i64::MIN)[0], 0xd3);
        let mut out = Vec::new();
        write_uint(&mut out, u64::MAX);
        assert_eq!(out, [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    /// The plain byte-by-byte encoding the fixed-size writers must match.
    fn reference_int(v: i64) -> Vec<u8> {
        let wide = i128::from(v);
        let (marker, n): (u8, usize) = match wide {
            -32..=0x7f => return vec![v as u8],
            0x80..=0xff => (UINT8, 1),
            0x100..=0xffff => (UINT16, 2),
            0x1_0000..=0xffff_ffff => (UINT32, 4),
            0x1_0000_0000.. => (UINT64, 8),
            -128..=-33 => (INT8, 1),
            -32768..=-129 => (INT16, 2),
            -2_147_483_648..=-32769 => (INT32, 4),
            _ => (INT64, 8),
        };
        let mut out = vec![marker];
        out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
        out
    }

    #[test]
    fn ints_match_the_reference_at_every_width_edge() {
        let mut edges = vec![0i64, i64::MAX, i64::MIN];
        for bits in 0..63 {
            let p = 1i64 << bits;
            edges.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        for v in edges {
            // Appended after other bytes, so the writers' offsets are checked too.
            let mut out = vec![0x55];
            write_int(&mut out, v);
            assert_eq!(out[1..], reference_int(v)[..], "{v}");
        }
    }

    #[test]
    fn short_strs_copy_every_byte() {
        for n in 0..40 {
            let s: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let mut out = vec![0x55];
            write_str(&mut out, &s);
            let header: &[u8] = if n < 32 {
                &[0xa0 | n as u8]
            } else {
                &[STR8, n as u8]
            };
            assert_eq!(out[1..=header.len()], *header, "len {n}");
            assert_eq!(&out[1 + header.len()..], s.as_bytes(), "len {n}");
        }
    }

    #[test]
    fn strs_and_containers_use_fix_forms_when_short() {
        let mut out = Vec::new();
        write_str(&mut out, "abc");
        assert_eq!(out, b"\xa3abc");
        out.clear();
        write_str(&mut out, &"x".repeat(32));
        assert_eq!(&out[..2], [STR8, 32]);
        out.clear();
        write_str(&mut out, &"x".repeat(256));
        assert_eq!(&out[..3], [STR16, 1, 0]);
        out.clear();
        write_array_header(&mut out, 15);
        write_array_header(&mut out, 16);
        write_map_header(&mut out, 15);
        write_map_header(&mut out, 70000);
        assert_eq!(out, [0x9f, ARRAY16, 0, 16, 0x8f, MAP32, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn bins_and_exts() {
        let mut out = Vec::new();
        write_bin(&mut out, b"");
        write_bin(&mut out, &[7; 300]);
        assert_eq!(&out[..5], [BIN8, 0, BIN16, 1, 44]);
        out.clear();
        write_ext(&mut out, 5, &[1, 2, 3, 4]);
        assert_eq!(out, [FIXEXT4, 5, 1, 2, 3, 4]);
        out.clear();
        write_ext(&mut out, -3, &[9; 3]);
        assert_eq!(out, [EXT8, 3, 0xfd, 9, 9, 9]);
    }
}
