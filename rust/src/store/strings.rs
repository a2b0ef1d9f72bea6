//! `str` objects for keys handed to Python (`list()`), and a small cache of
//! them.
//!
//! The store keeps keys as bytes in its tree (Python `str` objects would cost
//! some 50 bytes more per record), so every listed key needs a new `str`:
//! making one and freeing it later was most of a listing's time. The pure
//! twin hands out the `str` objects it stores. `KeyStrings` gets most of that
//! back for keys listed again and again (a page refreshed, a prefix polled):
//! a direct-mapped cache of `str` objects, bounded in size whatever the store
//! holds, checked by content so it needs no invalidation, and admitting a
//! key only on its second miss in a row, so one-off listings pass through it
//! at the cost of a hash per key.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Slots in the cache (a power of two): a page of 100 keys rarely has two
/// sharing one. The table is 24 bytes a slot (96 KiB), plus the cached strs.
const SLOTS: usize = 4096;
/// Longer keys are made afresh each time.
const MAX_CACHED: usize = 48;

/// The cache; its table is allocated on the first listing.
#[derive(Default)]
pub struct KeyStrings {
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The cached str and its key's full hash.
    held: Option<(u64, Py<PyString>)>,
    /// The hash of the last key that missed here. A key is cached when it
    /// misses twice in a row, so a one-off listing of many keys costs a hash
    /// and a store per key, and never evicts (or frees) what is cached.
    missed: u64,
}

impl KeyStrings {
    /// A `str` equal to `key`: the cached one if there is one, else a new one.
    pub fn get<'py>(&mut self, py: Python<'py>, key: &str) -> Bound<'py, PyString> {
        // Only ASCII keys are cached, so every cached str is compact ASCII.
        if key.len() > MAX_CACHED || !key.is_ascii() {
            return key_object(py, key);
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Slot::default);
        }
        let hash = hash(key.as_bytes());
        let slot = &mut self.slots[(hash >> (64 - SLOTS.trailing_zeros())) as usize];
        if let Some((held, cached)) = &slot.held {
            if *held == hash {
                let ptr = cached.as_ptr();
                // SAFETY: `ptr` is a live compact ASCII str (see above), whose
                // characters are `PyUnicode_GET_LENGTH` bytes at `PyUnicode_DATA`.
                let chars = unsafe {
                    std::slice::from_raw_parts(
                        ffi::PyUnicode_DATA(ptr).cast::<u8>(),
                        ffi::PyUnicode_GET_LENGTH(ptr) as usize,
                    )
                };
                if chars == key.as_bytes() {
                    return cached.bind(py).clone();
                }
            }
        }
        let made = key_object(py, key);
        if slot.missed == hash {
            slot.held = Some((hash, made.clone().unbind()));
        } else {
            slot.missed = hash;
        }
        made
    }
}

/// Multiply-rotate over eight-byte words, the last one overlapping the one
/// before it: keys share long prefixes and differ at the end, so every byte
/// counts; a product's top bits depend on every bit of its operands. Only
/// fixed-size loads (copying a partial word into a buffer stalled the load
/// that followed).
fn hash(key: &[u8]) -> u64 {
    let mix = |h: u64, w: u64| (h.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let n = key.len();
    let mut h = n as u64;
    if n < 8 {
        h = mix(h, key.iter().fold(0, |w, b| w << 8 | u64::from(*b)));
    } else {
        let mut at = 0;
        while at + 8 <= n {
            h = mix(h, word(at));
            at += 8;
        }
        if at < n {
            h = mix(h, word(n - 8));
        }
    }
    h
}

/// A new `str` holding `key`. Keys are nearly always ASCII, and an ASCII str
/// is one allocation and a copy, without CPython's UTF-8 decoder.
pub fn key_object<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    if key.is_ascii() {
        let len = ffi::Py_ssize_t::try_from(key.len()).expect("a str's length fits isize");
        // SAFETY: PyUnicode_New(len, 127) returns a compact ASCII str with room
        // for exactly `len` one-byte characters, or NULL with an exception set
        // (only on memory exhaustion, where we fall back to PyString::new and
        // its error handling). Every character is written before anyone else
        // sees the object.
        unsafe {
            let obj = ffi::PyUnicode_New(len, 127);
            if !obj.is_null() {
                std::ptr::copy_nonoverlapping(
                    key.as_ptr(),
                    ffi::PyUnicode_DATA(obj).cast::<u8>(),
                    key.len(),
                );
                return Bound::from_owned_ptr(py, obj).cast_into_unchecked();
            }
            ffi::PyErr_Clear();
        }
    }
    PyString::new(py, key)
}

#[cfg(test)]
mod tests {
    use super::{hash, SLOTS};

    #[test]
    fn slots_spread_keys_that_differ_only_at_the_end() {
        let bits = 64 - SLOTS.trailing_zeros();
        for shape in ["g0500/{}", "k/{}", "users/00000000000{}"] {
            let slots: std::collections::HashSet<u64> = (100..200)
                .map(|i| hash(shape.replace("{}", &i.to_string()).as_bytes()) >> bits)
                .collect();
            assert!(slots.len() >= 95, "{shape}: {} slots", slots.len());
        }
        assert_eq!(std::mem::size_of::<super::Slot>(), 24);
    }
}
