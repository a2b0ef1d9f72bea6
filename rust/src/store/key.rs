//! `Key`: a store key, kept inline when short so a small record costs no
//! separate allocation for its key (most keys are under 23 bytes).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Longest key kept inline.
const INLINE: usize = 22;

/// A UTF-8 key: inline up to `INLINE` bytes, boxed beyond. Orders and
/// compares exactly as the `str` it holds; maps keyed by it are searched
/// with a `&KeyBytes`.
#[derive(Clone)]
pub enum Key {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl Key {
    pub fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Self::Inline(s.len() as u8, buf)
        } else {
            Self::Heap(Box::from(s))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Inline(len, buf) => {
                let bytes = &buf[..usize::from(*len)];
                // SAFETY: `bytes` is a copy of a whole `&str` (see `new`), so it
                // is valid UTF-8; checking again on every tree comparison is
                // measurable on the hot path.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Self::Heap(s) => s,
        }
    }
}

/// A key's bytes as the tree compares them: byte order (which is `str`
/// order), eight bytes at a time, inline. A lookup compares its key with
/// some thirty stored ones; for short keys a call into libc's `memcmp` for
/// each was a large part of a lookup's time.
#[repr(transparent)]
pub struct KeyBytes([u8]);

impl KeyBytes {
    pub fn new(bytes: &[u8]) -> &Self {
        // SAFETY: `KeyBytes` is a `repr(transparent)` wrapper of `[u8]`, so
        // the two references have the same layout and lifetime.
        unsafe { &*(std::ptr::from_ref::<[u8]>(bytes) as *const Self) }
    }

    pub fn of(key: &str) -> &Self {
        Self::new(key.as_bytes())
    }
}

fn chunk(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

impl Ord for KeyBytes {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        let common = a.len().min(b.len());
        let mut at = 0;
        // Big-endian words compare like the bytes they hold.
        while at + 8 <= common {
            let (x, y) = (chunk(a, at), chunk(b, at));
            if x != y {
                return x.cmp(&y);
            }
            at += 8;
        }
        while at < common {
            if a[at] != b[at] {
                return a[at].cmp(&b[at]);
            }
            at += 1;
        }
        a.len().cmp(&b.len())
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyBytes {}

impl PartialOrd for KeyBytes {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// `Key` orders exactly as its `KeyBytes`, so maps keyed by it are searched
// with a `&KeyBytes`, including for range bounds that are not whole UTF-8
// strings (the end of a prefix's range).
impl Borrow<KeyBytes> for Key {
    fn borrow(&self) -> &KeyBytes {
        KeyBytes::of(self.as_str())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        KeyBytes::of(self.as_str()).cmp(KeyBytes::of(other.as_str()))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_long_and_unicode() {
        for s in [
            "a",
            "",
            "exactly-22-bytes-long!",
            "twenty-three bytes long",
            "é/ü/日本",
        ] {
            assert_eq!(Key::new(s).as_str(), s);
        }
        assert!(matches!(
            Key::new("exactly-22-bytes-long!"),
            Key::Inline(..)
        ));
        assert!(matches!(Key::new("twenty-three bytes long"), Key::Heap(..)));
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn orders_like_str() {
        let mut keys: Vec<Key> = ["b", "a/very/long/key/beyond/inline", "a", "ab"]
            .iter()
            .map(|s| Key::new(s))
            .collect();
        keys.sort();
        let strs: Vec<&str> = keys.iter().map(Key::as_str).collect();
        assert_eq!(strs, vec!["a", "a/very/long/key/beyond/inline", "ab", "b"]);
    }

    #[test]
    fn key_bytes_order_like_str() {
        let words = [
            "",
            "a",
            "a\0",
            "ab",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgi",
            "abcdefh",
            "b",
            "é",
            "ê",
            "\u{7f}",
            "\u{80}",
            "日本",
            "key/00000001",
            "key/00000010",
        ];
        for x in words {
            for y in words {
                assert_eq!(
                    KeyBytes::of(x).cmp(KeyBytes::of(y)),
                    x.cmp(y),
                    "{x:?} vs {y:?}"
                );
            }
        }
    }
}
