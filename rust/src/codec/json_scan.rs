//! JSON text, pure Rust: finding the end of a string's plain run sixteen
//! bytes at a time, and the common decimal numbers read exactly.
//!
//! Measured on the twitter corpus: the byte-at-a-time loop that looked for
//! the closing quote was a fifth of typed JSON decoding, and sizing each
//! str afterwards (a second pass to learn whether it was ASCII) another
//! fourteenth. One SSE2 pass answers both.

/// The index of the first `"`, `\` or control byte (below 0x20) at or after
/// `start` (`data.len()` if there is none), and whether any byte from
/// `start` up to it is not ASCII.
#[inline]
pub fn scan(data: &[u8], start: usize) -> (usize, bool) {
    let mut i = start;
    let mut high = false;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is enabled for this target (the cfg above); each load
        // reads the 16 bytes at `i`, and the loop runs only while
        // `i + 16 <= data.len()`, so they are all inside `data`.
        // The loads and stores are the unaligned kind (`loadu`, `storeu`).
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let control = _mm_set1_epi8(0x1f);
            while i + 16 <= data.len() {
                let v = _mm_loadu_si128(data.as_ptr().add(i).cast::<__m128i>());
                // v <= 0x1f (unsigned) exactly when max(v, 0x1f) == 0x1f.
                let special = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    _mm_cmpeq_epi8(_mm_max_epu8(v, control), control),
                );
                let stop = _mm_movemask_epi8(special) as u32;
                let top = _mm_movemask_epi8(v) as u32;
                if stop != 0 {
                    let k = stop.trailing_zeros();
                    high |= top & ((1 << k) - 1) != 0;
                    return (i + k as usize, high);
                }
                high |= top != 0;
                i += 16;
            }
        }
    }
    while let Some(&b) = data.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        high |= b >= 0x80;
        i += 1;
    }
    (i, high)
}

/// Powers of ten that are exact doubles.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number token (`-12.5`, `3e2`) as the correctly rounded double,
/// when that is one exact operation (Clinger's fast path: at most 15
/// significant digits, so the digits are an exact double, scaled by an
/// exact power of ten); None otherwise (the full parser decides). Measured:
/// std's parser cost ~290 instructions for "1.5", a sixth of the small
/// message's decode.
pub fn exact_float(text: &[u8]) -> Option<f64> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut scale: i32 = 0;
    let mut i = 0;
    while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
        mantissa = mantissa * 10 + u64::from(d - b'0');
        digits += usize::from(mantissa != 0);
        i += 1;
        if digits > 15 {
            return None;
        }
    }
    if body.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
            mantissa = mantissa * 10 + u64::from(d - b'0');
            digits += usize::from(mantissa != 0);
            scale -= 1;
            i += 1;
            if digits > 15 {
                return None;
            }
        }
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        let sign = match body.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let mut exp: i32 = 0;
        while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
            exp = exp.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
            i += 1;
        }
        scale = scale.checked_add(sign * exp)?;
    }
    if i != body.len() {
        return None;
    }
    // Below 2^53 every integer is exact; 15 digits stay below it.
    let m = mantissa as f64;
    let power = *EXACT_POWERS.get(scale.unsigned_abs() as usize)?;
    let v = if scale < 0 { m / power } else { m * power };
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::{exact_float, scan};

    fn slow(data: &[u8], start: usize) -> (usize, bool) {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map_or(data.len(), |k| start + k);
        (end, data[start..end].iter().any(|&b| b >= 0x80))
    }

    #[test]
    fn finds_the_first_special_byte_at_every_offset() {
        let base: Vec<u8> = "abcdefghé東xyz0123456789ABCDEFGHIJKLMNOP".bytes().collect();
        for len in 0..base.len() {
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..=len {
                    let mut data = base[..len].to_vec();
                    if at < len {
                        data[at] = special;
                    }
                    for start in 0..=len.min(3) {
                        if start > data.len() {
                            continue;
                        }
                        assert_eq!(scan(&data, start), slow(&data, start), "{data:?} {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_past_the_stop_do_not_count() {
        let mut data = b"0123456789\"abcd".to_vec();
        data.extend("é".bytes());
        data.extend(b"0123456789abcdef");
        assert_eq!(scan(&data, 0), (10, false));
        assert_eq!(scan(b" 0x20 and 0x7f \x7f \"", 0), (17, false));
    }

    #[test]
    fn exact_floats_are_correctly_rounded() {
        for text in [
            "0.0",
            "-0.0",
            "1.5",
            "-12.25",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567.8901234",
            "3e2",
            "3E-2",
            "1e22",
            "1e-22",
            "2.5e+10",
            "0.000001",
            "0.1234567890123",
            "100000000000000e-5",
        ] {
            let want: f64 = text.parse().unwrap();
            let got = exact_float(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        // Out of the fast path: the full parser decides.
        for text in [
            "9007199254740991",
            "1e23",
            "1e-23",
            "1234567890123456",
            "0.12345678901234567",
            "1e999",
            "x",
        ] {
            assert_eq!(exact_float(text.as_bytes()), None, "{text}");
        }
    }
}
