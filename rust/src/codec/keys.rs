//! A small cache of decoded map keys, as orjson and ormsgpack keep: the same
//! short keys come back in message after message, and reusing the `str`
//! object saves its allocation and, because a str caches its hash, the
//! hashing when it is inserted into the dict. Both decoders share it.

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::codec::text;

/// Keys longer than this are not cached: long keys are rarely repeated.
pub const MAX_KEY_LEN: usize = 32;
const SLOTS: usize = 1024;

struct Slot {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
    value: Py<PyAny>,
}

/// A direct-mapped cache: one slot per hash bucket, newest entry wins.
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
        let slot = &mut self.slots[bucket(bytes)];
        if let Some(hit) = slot {
            if usize::from(hit.len) == bytes.len() && &hit.bytes[..bytes.len()] == bytes {
                return Ok(Some(hit.value.bind(py).clone()));
            }
        }
        let Some(value) = text::new_str(py, bytes)? else {
            return Ok(None);
        };
        let mut stored = [0; MAX_KEY_LEN];
        stored[..bytes.len()].copy_from_slice(bytes);
        *slot = Some(Slot {
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

/// FNV-1a: short keys, so a simple byte loop beats anything clever.
fn bucket(bytes: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h as usize) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_spread_similar_keys() {
        let a = bucket(b"id");
        let b = bucket(b"ie");
        assert_ne!(a, b);
        assert!(a < super::SLOTS && b < super::SLOTS);
    }
}
