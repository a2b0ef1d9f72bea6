//! UTF-8 to Python's str storage, pure Rust.
//!
//! CPython keeps a str as one array of 1, 2 or 4 byte code units, the
//! narrowest that holds its largest character. Its own UTF-8 decoder starts
//! narrow and widens (copying) each time it meets a larger character; the
//! profile of the non-ASCII benchmark showed that widening dominating. Here
//! one vectorisable pass sizes the string exactly, so it is allocated once
//! at its final width, and a second pass validates and decodes into it.

/// Which code-unit width a str needs, and how many characters it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Characters, counting each byte that does not continue a sequence.
    pub chars: usize,
    pub width: Width,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// All ASCII: the bytes are the str's storage as they are.
    Ascii,
    /// Latin-1 (up to U+00FF), one byte per character.
    One,
    /// Up to U+FFFF, two bytes per character.
    Two,
    /// Beyond U+FFFF, four bytes per character.
    Four,
}

impl Width {
    /// The `maxchar` to hand `PyUnicode_New` for this width.
    pub fn max_char(self) -> u32 {
        match self {
            Width::Ascii => 0x7f,
            Width::One => 0xff,
            Width::Two => 0xffff,
            Width::Four => 0x10_ffff,
        }
    }
}

/// The shape `bytes` has if they are valid UTF-8 (the decode pass checks that).
///
/// The largest byte decides the width: lead bytes `C2..C3` start Latin-1
/// characters, `C4..EF` characters up to U+FFFF, `F0..F4` the rest; a
/// continuation byte (`80..BF`) is below every multi-byte lead.
pub fn shape(bytes: &[u8]) -> Shape {
    let mut chars = 0usize;
    let mut max = 0u8;
    for &b in bytes {
        // Written branch-free so the loop vectorises.
        chars += usize::from((b as i8) >= -0x40);
        max = max.max(b);
    }
    let width = match max {
        0x00..=0x7f => Width::Ascii,
        0x80..=0xc3 => Width::One,
        0xc4..=0xef => Width::Two,
        _ => Width::Four,
    };
    Shape { chars, width }
}

/// A code unit of one str width.
pub trait Unit: Copy {
    fn from_char(c: u32) -> Option<Self>;
}

impl Unit for u8 {
    #[inline]
    fn from_char(c: u32) -> Option<Self> {
        u8::try_from(c).ok()
    }
}

impl Unit for u16 {
    #[inline]
    fn from_char(c: u32) -> Option<Self> {
        u16::try_from(c).ok()
    }
}

impl Unit for u32 {
    #[inline]
    fn from_char(c: u32) -> Option<Self> {
        Some(c)
    }
}

/// Decodes `src` into exactly `dst.len()` code units; false when `src` is not
/// valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past
/// U+10FFFF) or does not have the shape `dst` was sized for. `dst` may be
/// partly written on false.
pub fn decode_into<T: Unit>(src: &[u8], dst: &mut [T]) -> bool {
    let mut i = 0;
    let mut o = 0;
    while i < src.len() {
        let b = src[i];
        let (c, n) = if b < 0x80 {
            (u32::from(b), 1)
        } else {
            match decode_one(src, i) {
                Some(decoded) => decoded,
                None => return false,
            }
        };
        let (Some(slot), Some(unit)) = (dst.get_mut(o), T::from_char(c)) else {
            return false;
        };
        *slot = unit;
        i += n;
        o += 1;
    }
    o == dst.len()
}

/// The multi-byte character starting at `src[i]` and its length in bytes.
#[inline]
fn decode_one(src: &[u8], i: usize) -> Option<(u32, usize)> {
    let b0 = src[i];
    let cont = |k: usize| {
        src.get(i + k)
            .copied()
            .filter(|b| b & 0xc0 == 0x80)
            .map(|b| u32::from(b & 0x3f))
    };
    match b0 {
        0xc2..=0xdf => Some(((u32::from(b0 & 0x1f) << 6) | cont(1)?, 2)),
        0xe0..=0xef => {
            let b1 = *src.get(i + 1)?;
            let second = match b0 {
                0xe0 => 0xa0..=0xbf, // no overlongs
                0xed => 0x80..=0x9f, // no surrogates
                _ => 0x80..=0xbf,
            };
            if !second.contains(&b1) {
                return None;
            }
            let c = (u32::from(b0 & 0x0f) << 12) | (u32::from(b1 & 0x3f) << 6) | cont(2)?;
            Some((c, 3))
        }
        0xf0..=0xf4 => {
            let b1 = *src.get(i + 1)?;
            let second = match b0 {
                0xf0 => 0x90..=0xbf, // no overlongs
                0xf4 => 0x80..=0x8f, // nothing past U+10FFFF
                _ => 0x80..=0xbf,
            };
            if !second.contains(&b1) {
                return None;
            }
            let c = (u32::from(b0 & 0x07) << 18)
                | (u32::from(b1 & 0x3f) << 12)
                | (cont(2)? << 6)
                | cont(3)?;
            Some((c, 4))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Option<Vec<u32>> {
        let s = shape(bytes);
        let mut out = vec![0u32; s.chars];
        decode_into(bytes, &mut out).then_some(out)
    }

    #[test]
    fn shapes_pick_the_narrowest_width() {
        assert_eq!(shape(b"abc").width, Width::Ascii);
        assert_eq!(
            shape("café".as_bytes()),
            Shape {
                chars: 4,
                width: Width::One
            }
        );
        assert_eq!(shape("ÿ".as_bytes()).width, Width::One);
        assert_eq!(shape("Ā".as_bytes()).width, Width::Two);
        assert_eq!(
            shape("東京".as_bytes()),
            Shape {
                chars: 2,
                width: Width::Two
            }
        );
        assert_eq!(
            shape("a😀".as_bytes()),
            Shape {
                chars: 2,
                width: Width::Four
            }
        );
        assert_eq!(shape(b"").chars, 0);
    }

    #[test]
    fn valid_text_decodes_like_std() {
        for text in [
            "",
            "plain",
            "café ÿ",
            "Straße",
            "東京 Привет",
            "😀 ok \u{10ffff}",
            "\u{7ff}\u{800}\u{ffff}",
        ] {
            let want: Vec<u32> = text.chars().map(u32::from).collect();
            assert_eq!(decoded(text.as_bytes()), Some(want), "{text}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        for bad in [
            &b"\x80"[..],
            b"\xc0\xaf",         // overlong
            b"\xc3",             // truncated
            b"\xe0\x80\xaf",     // overlong
            b"\xed\xa0\x80",     // surrogate
            b"\xf0\x8f\xbf\xbf", // overlong
            b"\xf4\x90\x80\x80", // past U+10FFFF
            b"\xf5\x80\x80\x80",
            b"\xe6\x9d",
            b"a\xffb",
        ] {
            assert_eq!(decoded(bad), None, "{bad:?}");
            assert!(std::str::from_utf8(bad).is_err());
        }
    }

    #[test]
    fn a_narrow_buffer_is_refused_not_truncated() {
        let bytes = "Ā".as_bytes();
        let mut one = [0u8; 1];
        assert!(!decode_into(bytes, &mut one));
        let mut short = [0u32; 0];
        assert!(!decode_into(b"a", &mut short));
    }
}
