//! A cache of short str values for the typed readers: the str leaves of a
//! message repeat as its keys do (twitter: of 4754 str leaves, 3289 are at
//! most 32 bytes and only 829 of those distinct: colors, language codes,
//! sources, urls), and reusing the str saves its allocation, its UTF-8
//! check and, later, its deallocation.
//!
//! It is not the key cache: values would evict keys, and unlike keys many
//! values never repeat (ids, timestamps). Measured with the key cache's
//! design (insert every miss), a miss cost ~10 ns more than making the str
//! (5,000 unique short strs a message decoded 25% slower) and twitter got
//! no faster. So a miss is told from a small array of check words alone,
//! and a str is admitted only the second time it is seen.

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::codec::keys::{hash, same, MAX_KEY_LEN};
use crate::codec::text;

/// Values longer than this are not cached (ids and timestamps are longer).
pub const MAX_VALUE_LEN: usize = 32;
const _: () = assert!(MAX_VALUE_LEN <= MAX_KEY_LEN);
const SLOTS_LOG2: u32 = 10;
const SLOTS: usize = 1 << SLOTS_LOG2;

/// Taken with `try_lock`, as the key cache is: a decode re-entered from a
/// finalizer or a `__post_init__` (or racing on another thread) runs without it.
static VALUE_CACHE: Mutex<Option<ValueCache>> = Mutex::new(None);

/// Runs `f` with the value cache, or with None when another decode holds it.
pub fn with_values<T>(f: impl FnOnce(Option<&mut ValueCache>) -> T) -> T {
    let mut guard = VALUE_CACHE.try_lock().ok();
    let cache = guard
        .as_mut()
        .map(|g| g.get_or_insert_with(ValueCache::new));
    f(cache)
}

struct Entry {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
    value: Py<PyAny>,
}

/// Two-way set-associative, as the key cache: a str lives in its bucket's
/// slot or that slot's neighbour (index ^ 1).
pub struct ValueCache {
    /// A check word per slot (0: empty), so that a miss reads this 4 KB
    /// array only, not the 48 KB of entries.
    tags: Vec<u32>,
    entries: Vec<Option<Entry>>,
    /// Per bucket, the check word of the last str that missed there: a str
    /// missing again while it is still here is admitted.
    seen: Vec<u32>,
}

impl ValueCache {
    pub fn new() -> Self {
        Self {
            tags: vec![0; SLOTS],
            entries: (0..SLOTS).map(|_| None).collect(),
            seen: vec![0; SLOTS],
        }
    }

    /// The str for `bytes` (at most [`MAX_VALUE_LEN`] long): the cached one
    /// on a hit (no UTF-8 check needed: the bytes equal ones that passed
    /// it), else `make(py, bytes)`, remembered when seen before. None means
    /// invalid UTF-8 (never cached).
    pub fn get_or_make<'py>(
        &mut self,
        py: Python<'py>,
        bytes: &[u8],
        make: impl FnOnce(Python<'py>, &[u8]) -> PyResult<Option<Bound<'py, PyAny>>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        debug_assert!(bytes.len() <= MAX_VALUE_LEN);
        let h = hash(bytes);
        let first = (h >> (64 - SLOTS_LOG2)) as usize;
        // Bits below the bucket's; never 0, the empty slot's word.
        let tag = (h >> 16) as u32 | 1;
        for at in [first, first ^ 1] {
            if self.tags[at] == tag {
                if let Some(hit) = &self.entries[at] {
                    if usize::from(hit.len) == bytes.len() && same(&hit.bytes, bytes) {
                        return Ok(Some(hit.value.bind(py).clone()));
                    }
                }
            }
        }
        let Some(value) = make(py, bytes)? else {
            return Ok(None);
        };
        if self.seen[first] != tag {
            self.seen[first] = tag;
            return Ok(Some(value));
        }
        let mut stored = [0; MAX_KEY_LEN];
        stored[..bytes.len()].copy_from_slice(bytes);
        // The neighbour's str (if any) is dropped; the first slot's moves there.
        let previous = self.entries[first].take();
        self.tags[first ^ 1] = self.tags[first];
        if let Some(evicted) = std::mem::replace(&mut self.entries[first ^ 1], previous) {
            // Decref'd now, not queued by PyO3 (see `entry::DRAIN_EVERY`).
            drop(evicted.value.into_bound(py));
        }
        self.tags[first] = tag;
        self.entries[first] = Some(Entry {
            len: bytes.len() as u8,
            bytes: stored,
            value: value.clone().unbind(),
        });
        Ok(Some(value))
    }
}

impl Default for ValueCache {
    fn default() -> Self {
        Self::new()
    }
}

/// The str for the UTF-8 `bytes` of a str leaf: from `cache` when short
/// enough, else new. None means invalid UTF-8 (refused as `text::new_str` does).
#[inline]
pub fn str_value<'py>(
    cache: Option<&mut ValueCache>,
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match cache {
        Some(cache) if bytes.len() <= MAX_VALUE_LEN => cache.get_or_make(py, bytes, text::new_str),
        _ => text::new_str(py, bytes),
    }
}

/// [`str_value`] for bytes the caller has checked are all ASCII (a miss
/// then skips sizing and validating them).
#[inline]
pub fn ascii_value<'py>(
    cache: Option<&mut ValueCache>,
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    debug_assert!(bytes.is_ascii());
    let made = match cache {
        Some(cache) if bytes.len() <= MAX_VALUE_LEN => {
            cache.get_or_make(py, bytes, |py, bytes| text::new_ascii(py, bytes).map(Some))?
        }
        _ => Some(text::new_ascii(py, bytes)?),
    };
    Ok(made.expect("ASCII is valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use pyo3::prelude::*;

    use super::{ascii_value, str_value, ValueCache, MAX_VALUE_LEN, SLOTS_LOG2};
    use crate::codec::keys::hash;

    fn text(v: &Bound<'_, PyAny>) -> String {
        v.extract().unwrap()
    }

    fn count(v: &Bound<'_, PyAny>) -> isize {
        // SAFETY: `v` is a live object.
        unsafe { pyo3::ffi::Py_REFCNT(v.as_ptr()) }
    }

    #[test]
    fn a_str_seen_twice_is_cached_and_a_long_one_never() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = ValueCache::new();
            for n in [0, 1, 7, 8, 16, 17, MAX_VALUE_LEN] {
                let s = "é".repeat(n / 2) + &"a".repeat(n % 2);
                let made: Vec<_> = (0..4)
                    .map(|_| {
                        str_value(Some(&mut cache), py, s.as_bytes())
                            .unwrap()
                            .unwrap()
                    })
                    .collect();
                // (CPython's empty str is a singleton)
                assert!(n == 0 || !made[0].is(&made[1]), "len {n}: admitted at once");
                assert!(made[1].is(&made[2]) && made[2].is(&made[3]), "len {n}");
                assert!(made.iter().all(|v| text(v) == s));
            }
            let long = "a".repeat(MAX_VALUE_LEN + 1);
            let made: Vec<_> = (0..3)
                .map(|_| ascii_value(Some(&mut cache), py, long.as_bytes()).unwrap())
                .collect();
            assert!(!made[1].is(&made[2]));
            assert_eq!(text(&made[2]), long);
        });
    }

    #[test]
    fn invalid_utf8_is_refused_and_never_cached() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = ValueCache::new();
            for bad in [&b"ab\xff"[..], b"\xed\xa0\x80", b"\xc3"] {
                for _ in 0..3 {
                    assert!(str_value(Some(&mut cache), py, bad).unwrap().is_none());
                }
                assert!(str_value(None, py, bad).unwrap().is_none());
            }
        });
    }

    /// A third str of one bucket evicts the oldest, whose str is released
    /// at once (not queued).
    #[test]
    fn an_evicted_str_is_released_at_once() {
        let bucket = |s: &str| hash(s.as_bytes()) >> (64 - SLOTS_LOG2);
        let names: Vec<String> = (0..100_000)
            .map(|i| format!("s{i}"))
            .filter(|s| bucket(s) == bucket("s0"))
            .take(3)
            .collect();
        assert_eq!(names.len(), 3);
        Python::initialize();
        Python::attach(|py| {
            let mut cache = ValueCache::new();
            let mut get = |s: &str| {
                str_value(Some(&mut cache), py, s.as_bytes())
                    .unwrap()
                    .unwrap()
            };
            get(&names[0]);
            let first = get(&names[0]);
            let held = count(&first);
            for name in &names[1..] {
                get(name);
                get(name);
            }
            assert_eq!(count(&first), held - 1);
            let again = get(&names[0]);
            assert!(!again.is(&first));
            assert_eq!(text(&again), names[0]);
        });
    }
}
