//! `Key`: a store key, kept inline when short so a small record costs no
//! separate allocation for its key (most keys are under 23 bytes).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Longest key kept inline.
const INLINE: usize = 22;

/// A UTF-8 key: inline up to `INLINE` bytes, boxed beyond. Orders, compares
/// and borrows exactly as the `str` it holds, so maps keyed by it can be
/// searched with a `&str`.
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

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Byte order is `str` order, so range bounds that are not whole UTF-8
// strings (the end of a prefix's range) can be searched for too.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_str().as_bytes()
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
        self.as_str().cmp(other.as_str())
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
}
