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
    // True right after a `[` or `{`: a close then ends an empty container.
    let mut just_opened = false;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'[' | b'{' => {
                first.offer(i, limits.depth(open.len()));
                open.push(Open {
                    start: i,
                    commas: 0,
                    map: b == b'{',
                });
                just_opened = true;
                i += 1;
                continue;
            }
            b']' | b'}' => {
                if let Some(o) = open.pop() {
                    let items = if just_opened { 0 } else { o.commas + 1 };
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
            b'"' => {
                let (end, len) = string(text, i + 1);
                first.offer(i, limits.string("str", len));
                i = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {
                i += 1;
                continue;
            }
            _ => {
                // A number or literal: on to the next structural byte.
                while text.get(i).is_some_and(|c| !b",]}: \t\n\r".contains(c)) {
                    i += 1;
                }
            }
        }
        just_opened = false;
    }
    match first.0 {
        Some((at, message)) => Err(Error::decode(message, at)),
        None => Ok(()),
    }
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
    fn any_bytes_end_the_scan() {
        for text in [&b"]]}},,\"\\u12"[..], b"[\"\\", b"\"\x01\xff", b"{[}]]"] {
            let _ = check(text, &limits(Some(0), Some(0), Some(0)));
        }
    }
}
