//! UTF-8 to Python's str storage, pure Rust.
//!
//! CPython keeps a str as one array of 1, 2 or 4 byte code units, the
//! narrowest that holds its largest character. Its own UTF-8 decoder starts
//! narrow and widens (copying) each time it meets a larger character; the
//! profile of the non-ASCII benchmark showed that widening dominating. Here
//! one vectorisable pass sizes the string exactly, so it is allocated once
//! at its final width; SIMD validation and std's (unchecked) char decoder
//! then fill it.

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
    // Most strs on the wire are ASCII: std's word-at-a-time check settles
    // them (short ones too, with no vector set-up), and stops at the first
    // non-ASCII byte otherwise.
    if bytes.is_ascii() {
        return Shape {
            chars: bytes.len(),
            width: Width::Ascii,
        };
    }
    let (chars, max) = count_and_max(bytes);
    let width = match max {
        0x00..=0x7f => Width::Ascii,
        0x80..=0xc3 => Width::One,
        0xc4..=0xef => Width::Two,
        _ => Width::Four,
    };
    Shape { chars, width }
}

/// 16 bytes read from offset `rest` (1..=15) keep the last `rest` lanes of a window.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
static TAIL_MASK: [u8; 32] = {
    let mut mask = [0u8; 32];
    let mut lane = 16;
    while lane < 32 {
        mask[lane] = 0xff;
        lane += 1;
    }
    mask
};

/// How many bytes of `bytes` start a character (are not `80..BF`), and the
/// largest byte.
#[inline]
fn count_and_max(bytes: &[u8]) -> (usize, u8) {
    let mut chars = 0usize;
    let mut max = 0u8;
    let mut i = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi64, _mm_and_si128, _mm_cmpgt_epi8, _mm_cvtsi128_si32,
            _mm_cvtsi128_si64, _mm_loadu_si128, _mm_max_epu8, _mm_sad_epu8, _mm_set1_epi8,
            _mm_setzero_si128, _mm_srli_si128, _mm_sub_epi8, _mm_unpackhi_epi64,
        };
        // Measured on the twitter corpus (Japanese text): the portable loop
        // below, which was meant to vectorise and did not, cost 6
        // instructions a byte, as much as filling the str. The starts are
        // counted per lane (a compare gives -1 for each) and summed every
        // 255 steps, before a lane can overflow: a movemask and `count_ones`
        // (a dozen instructions without POPCNT, which the target lacks) per
        // step were 3% of decoding twitter.
        // The last partial step re-reads the final 16 bytes and counts only
        // the ones not yet counted, and the largest byte is found by halving
        // in the register: a byte loop for the tail and a fold over the 16
        // lanes were a fifth of the cost of short mixed-script strs.
        if bytes.len() >= 16 {
            // SAFETY: SSE2 is enabled for this target; each load of `bytes`
            // reads 16 bytes at `i` while `i + 16 <= bytes.len()`, or the
            // last 16 (`bytes.len() >= 16`); the mask load reads 16 of the
            // 32 bytes of `TAIL_MASK` at `rest` < 16. The loads are the
            // unaligned kind (`loadu`).
            #[allow(clippy::cast_ptr_alignment)]
            unsafe {
                // A byte starts a character unless it is 80..BF, i.e. as i8 it is > -0x41.
                let continuation = _mm_set1_epi8(-0x41);
                let zero = _mm_setzero_si128();
                let mut top = zero;
                let mut sums = zero;
                let end = bytes.len();
                while i + 16 <= end {
                    let mut counts = zero;
                    let mut steps = 0;
                    while steps < 255 && i + 16 <= end {
                        let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast::<__m128i>());
                        counts = _mm_sub_epi8(counts, _mm_cmpgt_epi8(v, continuation));
                        top = _mm_max_epu8(top, v);
                        i += 16;
                        steps += 1;
                    }
                    sums = _mm_add_epi64(sums, _mm_sad_epu8(counts, zero));
                }
                let rest = end - i;
                if rest > 0 {
                    let v = _mm_loadu_si128(bytes.as_ptr().add(end - 16).cast::<__m128i>());
                    // Lanes 16 - rest.. of the window are the uncounted bytes.
                    let fresh = _mm_loadu_si128(TAIL_MASK.as_ptr().add(rest).cast::<__m128i>());
                    let starts = _mm_and_si128(_mm_cmpgt_epi8(v, continuation), fresh);
                    sums = _mm_add_epi64(sums, _mm_sad_epu8(_mm_sub_epi8(zero, starts), zero));
                    top = _mm_max_epu8(top, v);
                    i = end;
                }
                let total = _mm_add_epi64(sums, _mm_unpackhi_epi64(sums, sums));
                chars = _mm_cvtsi128_si64(total) as usize;
                top = _mm_max_epu8(top, _mm_srli_si128(top, 8));
                top = _mm_max_epu8(top, _mm_srli_si128(top, 4));
                top = _mm_max_epu8(top, _mm_srli_si128(top, 2));
                top = _mm_max_epu8(top, _mm_srli_si128(top, 1));
                max = _mm_cvtsi128_si32(top) as u8;
            }
        }
    }
    for &b in &bytes[i..] {
        chars += usize::from((b as i8) >= -0x40);
        max = max.max(b);
    }
    (chars, max)
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

/// `bytes` as a str if they are valid UTF-8 (RFC 3629: no overlongs, no
/// surrogates, nothing past U+10FFFF). SIMD-validated: on text that is not
/// ASCII, std's validator was as slow as CPython's whole decoder.
#[inline]
pub fn validate(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Writes the characters of `s` into exactly `dst.len()` code units; false
/// when `s` does not have the shape `dst` was sized for (then `dst` may be
/// partly written). `s` is valid UTF-8, so each lead byte says how many
/// continuation bytes follow (decoded directly: std's `chars()` cost 14
/// instructions a character on Japanese text).
///
/// One character a step, on purpose: eight-byte ASCII widening and a word
/// loop for three-byte runs saved 1% on twitter but cost mixed-script text
/// 10% more instructions (callgrind), and the untyped paths must not slow.
#[inline]
pub fn fill<T: Unit>(s: &str, dst: &mut [T]) -> bool {
    let src = s.as_bytes();
    let mut i = 0;
    for slot in dst.iter_mut() {
        let Some(&b) = src.get(i) else {
            return false;
        };
        let c = match b {
            0x00..=0x7f => {
                i += 1;
                u32::from(b)
            }
            0x80..=0xdf => {
                let c = (u32::from(b & 0x1f) << 6) | cont(src, i + 1);
                i += 2;
                c
            }
            0xe0..=0xef => {
                let c = (u32::from(b & 0x0f) << 12) | (cont(src, i + 1) << 6) | cont(src, i + 2);
                i += 3;
                c
            }
            _ => {
                let c = (u32::from(b & 0x07) << 18)
                    | (cont(src, i + 1) << 12)
                    | (cont(src, i + 2) << 6)
                    | cont(src, i + 3);
                i += 4;
                c
            }
        };
        let Some(unit) = T::from_char(c) else {
            return false;
        };
        *slot = unit;
    }
    i == src.len()
}

/// The six payload bits of the continuation byte at `src[i]` (valid UTF-8
/// always has it; 0 past the end keeps this total).
#[inline]
fn cont(src: &[u8], i: usize) -> u32 {
    src.get(i).map_or(0, |&b| u32::from(b & 0x3f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Option<Vec<u32>> {
        let text = validate(bytes)?;
        let mut out = vec![0u32; shape(bytes).chars];
        fill(text, &mut out).then_some(out)
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
        let long = "é".repeat(40) + &"a".repeat(37) + "東";
        assert_eq!(
            shape(long.as_bytes()),
            Shape {
                chars: 78,
                width: Width::Two
            }
        );
    }

    /// Past 255 steps of 16 bytes the per-lane counts are summed before
    /// they can overflow: lengths around and far beyond that.
    #[test]
    fn long_text_counts_every_character() {
        for len in [4079, 4080, 4081, 4096, 8160, 8161, 20_000] {
            for unit in ["é", "東", "😀", "a東", "éa"] {
                let mut text = unit.repeat(len / unit.len() + 1);
                while text.len() > len {
                    text.pop();
                }
                let want = text.chars().count();
                assert_eq!(shape(text.as_bytes()).chars, want, "{len} {unit}");
                assert_eq!(count_and_max(text.as_bytes()).0, want, "{len} {unit}");
            }
        }
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
    fn long_mixed_text_decodes_at_every_width() {
        let words = [
            "café",
            "naïve",
            "Straße",
            "東京",
            "Привет",
            "😀 ok",
            "a",
            "ÿ",
            "\u{10ffff}",
        ];
        for count in 0..40 {
            let text = (0..count)
                .map(|k| words[k % words.len()])
                .collect::<Vec<_>>()
                .join(" ");
            let want: Vec<u32> = text.chars().map(u32::from).collect();
            assert_eq!(decoded(text.as_bytes()), Some(want.clone()), "{text}");
            if want.iter().all(|&c| c <= 0xffff) {
                let mut two = vec![0u16; want.len()];
                assert!(fill(&text, &mut two));
                assert!(two.iter().zip(&want).all(|(&a, &b)| u32::from(a) == b));
            }
        }
    }

    /// Every length around the 16-byte steps, each ending in every kind of
    /// byte: the last partial step counts only bytes not counted yet.
    #[test]
    fn every_short_length_is_counted_once() {
        for unit in ["a", "é", "東", "😀", "a東é", "😀a"] {
            for len in 0..80 {
                let mut text = unit.repeat(len / unit.len() + 1);
                while text.len() > len {
                    text.pop();
                }
                let want = text.chars().count();
                let top = text.bytes().max().unwrap_or(0);
                assert_eq!(count_and_max(text.as_bytes()), (want, top), "{len} {unit}");
            }
        }
    }

    /// ASCII runs (widened eight at a time) and three-byte runs (read a word
    /// at a time) of every length, next to each width, at every width of str.
    #[test]
    fn runs_of_every_length_decode_at_every_width() {
        for wide in ["é", "Ā", "東", "😀"] {
            for run in 0..20 {
                let ascii: String = "abcdefghijklmnopqrstuvwxyz"[..run].into();
                for text in [
                    format!("{ascii}{wide}"),
                    format!("{wide}{ascii}"),
                    format!("{wide}{ascii}{wide}{ascii}"),
                    format!("{}{ascii}", wide.repeat(run)),
                    format!("x{}", wide.repeat(run)),
                    format!("{}東{}", "京".repeat(run), "a".repeat(run % 5)),
                ] {
                    let want: Vec<u32> = text.chars().map(u32::from).collect();
                    assert_eq!(decoded(text.as_bytes()), Some(want.clone()), "{text}");
                    let max = want.iter().copied().max().unwrap_or(0);
                    if max <= 0xff {
                        let mut one = vec![0u8; want.len()];
                        assert!(fill(&text, &mut one), "{text}");
                        assert!(one.iter().zip(&want).all(|(&a, &b)| u32::from(a) == b));
                    }
                    if max <= 0xffff {
                        let mut two = vec![0u16; want.len()];
                        assert!(fill(&text, &mut two), "{text}");
                        assert!(two.iter().zip(&want).all(|(&a, &b)| u32::from(a) == b));
                    } else {
                        let mut two = vec![0u16; want.len()];
                        assert!(!fill(&text, &mut two), "{text}");
                    }
                    // A buffer sized one short or one long is refused.
                    if !want.is_empty() {
                        let mut short = vec![0u32; want.len() - 1];
                        assert!(!fill(&text, &mut short), "{text}");
                    }
                    let mut long = vec![0u32; want.len() + 1];
                    assert!(!fill(&text, &mut long), "{text}");
                }
            }
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
        let mut one = [0u8; 1];
        assert!(!fill("Ā", &mut one));
        let mut short = [0u32; 0];
        assert!(!fill("a", &mut short));
        let mut long = [0u16; 2];
        assert!(!fill("a", &mut long));
    }
}
