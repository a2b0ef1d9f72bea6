//! A small cache of decoded map keys, as orjson and ormsgpack keep: the same
//! short keys come back in message after message, and reusing the `str`
//! object saves its allocation and, because a str caches its hash, the
//! hashing when it is inserted into the dict. Both decoders share it.
//! (Short str values have a cache of their own: `codec::values`.)

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::codec::text;

/// Keys longer than this are not cached: long keys are rarely repeated.
pub const MAX_KEY_LEN: usize = 32;
const SLOTS: usize = 1024;
const _: () = assert!(SLOTS.is_power_of_two());

struct Slot {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
    value: Py<PyAny>,
}

/// A two-way cache: a key lives in its bucket's slot or that slot's
/// neighbour (index ^ 1), so two keys of one message that share a bucket
/// both stay cached (direct-mapped, "name" and "tags" evicted each other
/// in every 7-key message); a new key takes the first slot, its previous
/// holder moves to the neighbour.
pub struct KeyCache {
    slots: Vec<Option<Slot>>,
}

/// The process-wide cache. A decode takes it with `try_lock`, so a decode
/// re-entered from a finalizer (or racing on another thread) simply runs
/// without it instead of waiting.
pub static KEY_CACHE: Mutex<Option<KeyCache>> = Mutex::new(None);

impl KeyCache {
    pub fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
        }
    }

    /// The str for the key `bytes` (at most [`MAX_KEY_LEN`] long): the cached
    /// one on a hit, else a new one that is remembered. A hit needs no UTF-8
    /// check (the bytes equal ones that passed it); None means invalid UTF-8.
    pub fn get<'py>(
        &mut self,
        py: Python<'py>,
        bytes: &[u8],
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        debug_assert!(bytes.len() <= MAX_KEY_LEN);
        let first = bucket(bytes);
        for at in [first, first ^ 1] {
            if let Some(hit) = &self.slots[at] {
                if usize::from(hit.len) == bytes.len() && same(&hit.bytes, bytes) {
                    return Ok(Some(hit.value.bind(py).clone()));
                }
            }
        }
        let Some(value) = text::new_str(py, bytes)? else {
            return Ok(None);
        };
        let mut stored = [0; MAX_KEY_LEN];
        stored[..bytes.len()].copy_from_slice(bytes);
        // The neighbour's key (if any) is dropped; the first slot's moves there.
        let previous = self.slots[first].take();
        if let Some(evicted) = std::mem::replace(&mut self.slots[first ^ 1], previous) {
            // Decref'd now: dropped as a `Py` on the plain call's path (where
            // PyO3 does not count the thread as attached) it would be queued.
            drop(evicted.value.into_bound(py));
        }
        self.slots[first] = Some(Slot {
            len: bytes.len() as u8,
            bytes: stored,
            value: value.clone().unbind(),
        });
        Ok(Some(value))
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of a key of at most [`MAX_KEY_LEN`] bytes, from a few
/// unaligned word loads (its first, last and, past 16 bytes, second eight
/// bytes) instead of a loop over every byte: this runs once per map key.
#[inline]
fn bucket(bytes: &[u8]) -> usize {
    // The top bits are the best mixed; SLOTS is a power of two.
    (hash(bytes) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// A hash of a string of at most [`MAX_KEY_LEN`] bytes, best mixed in its
/// top bits (the value cache shares it).
#[inline]
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let mut h = if n >= 8 {
        let mut h = word(bytes, 0) ^ word(bytes, n - 8).rotate_left(29);
        if n > 16 {
            h ^= word(bytes, 8).rotate_left(13);
        }
        h
    } else {
        small_word(bytes)
    };
    h ^= (n as u64) << 58;
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `a == b` for short map keys and field names, without a call to `memcmp`
/// (measured: that call was a twentieth of decoding twitter into dataclasses,
/// which compares every key with a field name).
#[inline]
pub fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=7 => small_word(a) == small_word(b),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// True if the zero-padded `stored` key holds exactly `bytes` (of the same length).
// Always inlined: with two callers (this cache and `values`) LLVM made it a
// call, 2% of decoding records (callgrind).
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn same(stored: &[u8; MAX_KEY_LEN], bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n < 8 {
        // The stored bytes past `n` are zero, as the high bytes of small_word are.
        return word(stored, 0) == small_word(bytes);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(stored, at) != word(bytes, at) {
            return false;
        }
        at += 8;
    }
    // The last word ends at `n` (it may overlap the one before).
    word(stored, n - 8) == word(bytes, n - 8)
}

/// The eight bytes at `at` as a little-endian word.
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Fewer than eight bytes as a little-endian word, zero above them.
#[inline]
fn small_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    debug_assert!(n < 8);
    if n >= 4 {
        // Two overlapping 4-byte loads; the shared bytes are equal, so OR is exact.
        let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let hi = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
        u64::from(lo) | (u64::from(hi) << (8 * (n - 4)))
    } else if n > 0 {
        // First, middle and last byte cover every length from 1 to 3.
        u64::from(bytes[0])
            | (u64::from(bytes[n / 2]) << (8 * (n / 2)))
            | (u64::from(bytes[n - 1]) << (8 * (n - 1)))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use pyo3::prelude::*;

    use super::{bucket, same, KeyCache, MAX_KEY_LEN};

    #[test]
    fn buckets_spread_similar_keys() {
        let a = bucket(b"id");
        let b = bucket(b"ie");
        assert_ne!(a, b);
        assert!(a < super::SLOTS && b < super::SLOTS);
    }

    /// Two keys that share a bucket (as "name" and "tags" do) are both kept.
    #[test]
    fn colliding_keys_both_stay_cached() {
        assert_eq!(bucket(b"name"), bucket(b"tags"));
        Python::initialize();
        Python::attach(|py| {
            let mut cache = KeyCache::new();
            let name = cache.get(py, b"name").unwrap().unwrap();
            let tags = cache.get(py, b"tags").unwrap().unwrap();
            let name2 = cache.get(py, b"name").unwrap().unwrap();
            let tags2 = cache.get(py, b"tags").unwrap().unwrap();
            assert!(name.is(&name2) && tags.is(&tags2));
            assert_eq!(name.extract::<String>().unwrap(), "name");
            assert_eq!(tags.extract::<String>().unwrap(), "tags");
        });
    }

    #[test]
    fn same_key_is_slice_equality() {
        for n in 0..=40usize {
            let key: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(super::same_key(&key, &key.clone()));
            assert!(!super::same_key(&key, &key[..n.saturating_sub(1)]) || n == 0);
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 1;
                assert!(!super::same_key(&key, &other), "len {n}, byte {i}");
            }
        }
    }

    #[test]
    fn same_compares_every_byte() {
        for n in 0..=MAX_KEY_LEN {
            let key: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            let mut stored = [0u8; MAX_KEY_LEN];
            stored[..n].copy_from_slice(&key);
            assert!(same(&stored, &key), "len {n}");
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 1;
                assert!(!same(&stored, &other), "len {n}, byte {i}");
            }
            assert!(bucket(&key) < super::SLOTS);
        }
    }
}
