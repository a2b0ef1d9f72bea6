//! Per-call limits for JSON (`max_container_len`, `max_str_len`,
//! `max_depth`), checked on the text after orjson has accepted it.
//!
//! msgpack and CBOR check their limits while decoding, at each item's
//! header, before it costs memory. JSON declares no lengths, and its input
//! is bounded by its own size, so one pass over the (already valid) text
//! after the decode is enough, and it knows each item's byte offset, which a
//! walk of the decoded value would not. The error is the one msgpack's
//! decoder would give: the same message for the violation that starts
//! first in the text (a container's count is known only at its close, but
//! it still wins over anything inside it, as msgpack reads its header
//! first; at one offset the depth is reported before the count).
//!
//! A str counts the UTF-8 bytes of its decoded value, as msgpack counts a
//! str's bytes; object keys count as strs. The pure twin is
//! `microstd/codec/_json_limits.py`.

use crate::codec::json_scan;
use crate::codec::limits::Limits;
use crate::errors::{Error, Result};

/// One open array or object.
struct Open {
    start: usize,
    commas: usize,
    map: bool,
}

/// The violation that starts first, kept while the scan goes on.
struct First(Option<(usize, String)>);

impl First {
    fn offer(&mut self, start: usize, message: Option<String>) {
        if let Some(message) = message {
            // Strictly earlier only: at one offset the depth (found at the
            // open) beats the count (found at the close), as in msgpack.
            if self.0.as_ref().is_none_or(|(at, _)| start < *at) {
                self.0 = Some((start, message));
            }
        }
    }
}

/// Refuses `text` (JSON that orjson decoded) if an item breaks `limits`:
/// a `DecodeError` with msgpack's message at the item's byte offset. The
/// scan only assumes valid JSON for its answer, not for its safety: any
/// bytes end it without a panic.
pub fn check(text: &[u8], limits: &Limits) -> Result<()> {
    let mut open: Vec<Open> = Vec::new();
    let mut first = First(None);
    // Where the last structural byte was, if it opened a container: a
    // close after only whitespace from there ends an empty one.
    let mut just_opened: Option<usize> = None;
    let mut i = 0;
    loop {
        i = next_structural(text, i);
        let Some(&b) = text.get(i) else { break };
        let opened = just_opened.take();
        match b {
            b'[' | b'{' => {
                first.offer(i, limits.depth(open.len()));
                open.push(Open {
                    start: i,
                    commas: 0,
                    map: b == b'{',
                });
                just_opened = Some(i);
                i += 1;
            }
            b']' | b'}' => {
                if let Some(o) = open.pop() {
                    let empty = opened.is_some_and(|at| {
                        text[at + 1..i]
                            .iter()
                            .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
                    });
                    let items = if empty { 0 } else { o.commas + 1 };
                    let what = if o.map { "map" } else { "array" };
                    first.offer(o.start, limits.container(what, items));
                }
                i += 1;
            }
            b',' => {
                if let Some(o) = open.last_mut() {
                    o.commas += 1;
                }
                i += 1;
            }
            _ => {
                let (end, len) = string(text, i + 1);
                first.offer(i, limits.string("str", len));
                i = end;
            }
        }
    }
    match first.0 {
        Some((at, message)) => Err(Error::decode(message, at)),
        None => Ok(()),
    }
}

/// The bytes `next_structural` looks for.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'[' as usize] = true;
    table[b']' as usize] = true;
    table[b'{' as usize] = true;
    table[b'}' as usize] = true;
    table[b',' as usize] = true;
    table[b'"' as usize] = true;
    table
};

/// The index of the first `[`, `]`, `{`, `}`, `,` or `"` at or after `i`
/// (`text.len()` if none): numbers, literals, colons and whitespace are
/// skipped. The next one is most often a few bytes on (`":1,"`), so the
/// first sixteen bytes are tried one by one, the rest sixteen at a time
/// (measured on the benchmark payloads: bytes one by one only, the check
/// of a document of floats cost two thirds of orjson's decode of it;
/// sixteen at a time only, a third more on records of short fields).
fn next_structural(text: &[u8], mut i: usize) -> usize {
    let probe = text.len().min(i + 16);
    while i < probe {
        if STRUCTURAL[usize::from(text[i])] {
            return i;
        }
        i += 1;
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is enabled for this target (the cfg above); each
        // unaligned load reads the 16 bytes at `i`, and the loop runs only
        // while `i + 16 <= text.len()`, so they are all inside `text`.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            let open_b = _mm_set1_epi8(b'[' as i8);
            let close_b = _mm_set1_epi8(b']' as i8);
            let open_c = _mm_set1_epi8(b'{' as i8);
            let close_c = _mm_set1_epi8(b'}' as i8);
            let comma = _mm_set1_epi8(b',' as i8);
            let quote = _mm_set1_epi8(b'"' as i8);
            while i + 16 <= text.len() {
                let v = _mm_loadu_si128(text.as_ptr().add(i).cast::<__m128i>());
                let hit = _mm_or_si128(
                    _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, open_b), _mm_cmpeq_epi8(v, close_b)),
                        _mm_or_si128(_mm_cmpeq_epi8(v, open_c), _mm_cmpeq_epi8(v, close_c)),
                    ),
                    _mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, quote)),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while let Some(&b) = text.get(i) {
        if STRUCTURAL[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// The end (past the closing quote) of the string whose body starts at
/// `i`, and the UTF-8 length of its decoded value.
fn string(text: &[u8], mut i: usize) -> (usize, usize) {
    let mut len = 0;
    loop {
        let (stop, _) = json_scan::scan(text, i);
        len += stop - i;
        i = stop;
        match text.get(i) {
            None => return (i, len),
            Some(b'"') => return (i + 1, len),
            Some(b'\\') => {
                let (used, bytes) = escape(text, i);
                i += used;
                len += bytes;
            }
            // A control byte (not valid JSON): counted as itself.
            Some(_) => {
                i += 1;
                len += 1;
            }
        }
    }
}

/// The escape at `i`: how many bytes of text it takes and how many UTF-8
/// bytes it decodes to (a surrogate pair is one 4-byte character).
fn escape(text: &[u8], i: usize) -> (usize, usize) {
    if text.get(i + 1) != Some(&b'u') {
        return (2, 1);
    }
    let Some(cp) = hex4(text, i + 2) else {
        return (2, 1);
    };
    if (0xd800..0xdc00).contains(&cp)
        && text.get(i + 6) == Some(&b'\\')
        && text.get(i + 7) == Some(&b'u')
        && hex4(text, i + 8).is_some_and(|low| (0xdc00..0xe000).contains(&low))
    {
        return (12, 4);
    }
    let bytes = match cp {
        0..0x80 => 1,
        0x80..0x800 => 2,
        _ => 3,
    };
    (6, bytes)
}

fn hex4(text: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str, limits: Limits) -> Option<(String, usize)> {
        match check(text.as_bytes(), &limits) {
            Ok(()) => None,
            Err(Error::Decode { message, offset }) => Some((message, offset)),
            Err(other) => panic!("{other}"),
        }
    }

    fn limits(len: Option<usize>, str_len: Option<usize>, depth: Option<usize>) -> Limits {
        Limits {
            max_container_len: len.unwrap_or(usize::MAX),
            max_str_len: str_len.unwrap_or(usize::MAX),
            max_depth: depth.unwrap_or(usize::MAX),
            strict_keys: false,
            unique_keys: false,
        }
    }

    #[test]
    fn containers_at_the_boundary() {
        let two = limits(Some(2), None, None);
        assert_eq!(
            refused("[1, [2,3], {}, []]", limits(Some(4), None, None)),
            None
        );
        assert_eq!(refused("[[1,2]]", two), None);
        assert_eq!(
            refused(" [1,[2,3,4]]", two),
            Some((
                "array of 3 items is longer than max_container_len (2)".into(),
                4
            ))
        );
        assert_eq!(
            refused("[[1,2,3],{\"a\":1,\"b\":2,\"c\":3}, 1]", two),
            Some((
                "array of 3 items is longer than max_container_len (2)".into(),
                0
            ))
        );
        assert_eq!(
            refused("{\"a\":[],\"b\":{},\"c\":\"x,y\"}", two).map(|e| e.1),
            Some(0)
        );
        assert_eq!(refused("[]", limits(Some(0), None, None)), None);
        assert_eq!(refused("[ ]", limits(Some(0), None, None)), None);
    }

    #[test]
    fn strings_count_decoded_utf8_bytes() {
        let three = limits(None, Some(3), None);
        assert_eq!(
            refused(r#"["abc", "\n\t\"", "é€"]"#, limits(None, Some(5), None)),
            None
        );
        assert_eq!(refused(r#"["\u00e9x"]"#, three), None);
        assert_eq!(
            refused(r#"["\u20acx"]"#, three),
            Some(("str of 4 bytes is longer than max_str_len (3)".into(), 1))
        );
        assert_eq!(
            refused(r#"{"\ud83d\ude00": 1}"#, three),
            Some(("str of 4 bytes is longer than max_str_len (3)".into(), 1))
        );
        assert_eq!(
            refused(
                r#"["abcdefghijklmnopqrstu\\"]"#,
                limits(None, Some(21), None)
            ),
            Some(("str of 22 bytes is longer than max_str_len (21)".into(), 1))
        );
    }

    #[test]
    fn depth_counts_open_containers() {
        let two = limits(None, None, Some(2));
        assert_eq!(refused("[[1], {\"a\": 1}]", two), None);
        assert_eq!(
            refused("[{\"a\": [[]]}]", two),
            Some(("nesting deeper than 2 levels".into(), 7))
        );
        assert_eq!(refused("1", limits(None, None, Some(0))), None);
        // Depth before count at the same offset, as msgpack checks them.
        assert_eq!(
            refused("[[1,2,3]]", limits(Some(1), None, Some(1))),
            Some(("nesting deeper than 1 levels".into(), 1))
        );
    }

    #[test]
    fn finds_the_next_structural_byte_at_every_offset() {
        let mut text = vec![b'1'; 70];
        for (at, &c) in [3usize, 17, 18, 40, 69].iter().zip(b"[,\"}]") {
            text[*at] = c;
        }
        for start in 0..=text.len() {
            let naive = (start..text.len())
                .find(|&k| STRUCTURAL[usize::from(text[k])])
                .unwrap_or(text.len());
            assert_eq!(next_structural(&text, start), naive, "from {start}");
        }
    }

    #[test]
    fn any_bytes_end_the_scan() {
        for text in [&b"]]}},,\"\\u12"[..], b"[\"\\", b"\"\x01\xff", b"{[}]]"] {
            let _ = check(text, &limits(Some(0), Some(0), Some(0)));
        }
    }
}
