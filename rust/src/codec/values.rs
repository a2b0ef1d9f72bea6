//! A cache of short str values for the typed readers: the str leaves of a
//! message repeat as its keys do (twitter: of 4754 str leaves, 3289 are at
//! most 32 bytes and only 829 of those distinct: colors, language codes,
//! sources, urls), and reusing the str saves its allocation, its UTF-8
//! check and, later, its deallocation. It is the key cache's structure
//! (`keys::StrCache`) as an instance of its own, so values never evict keys.

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::codec::keys::{StrCache, MAX_KEY_LEN};
use crate::codec::text;

/// Values longer than this are not cached.
pub const MAX_VALUE_LEN: usize = 32;
const _: () = assert!(MAX_VALUE_LEN <= MAX_KEY_LEN);
const VALUE_SLOTS_LOG2: u32 = 10;

/// Taken with `try_lock`, as the key cache is: a decode re-entered from a
/// finalizer or a `__post_init__` (or racing on another thread) runs without it.
static VALUE_CACHE: Mutex<Option<StrCache>> = Mutex::new(None);

/// Runs `f` with the value cache, or with None when another decode holds it.
pub fn with_values<T>(f: impl FnOnce(Option<&mut StrCache>) -> T) -> T {
    let mut guard = VALUE_CACHE.try_lock().ok();
    let cache = guard
        .as_mut()
        .map(|g| g.get_or_insert_with(|| StrCache::with_slots_log2(VALUE_SLOTS_LOG2)));
    f(cache)
}

/// The str for the UTF-8 `bytes` of a str leaf: from `cache` when short
/// enough, else new. None means invalid UTF-8 (refused as `text::new_str` does).
#[inline]
pub fn str_value<'py>(
    cache: Option<&mut StrCache>,
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match cache {
        Some(cache) if bytes.len() <= MAX_VALUE_LEN => cache.get(py, bytes),
        _ => text::new_str(py, bytes),
    }
}

/// [`str_value`] for bytes the caller has checked are all ASCII (a miss
/// then skips sizing and validating them).
#[inline]
pub fn ascii_value<'py>(
    cache: Option<&mut StrCache>,
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

    use super::{ascii_value, str_value, MAX_VALUE_LEN};
    use crate::codec::keys::StrCache;

    fn text(v: &Bound<'_, PyAny>) -> String {
        v.extract().unwrap()
    }

    #[test]
    fn a_hit_is_the_same_str_and_a_long_value_is_never_cached() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = StrCache::with_slots_log2(4);
            for n in [0, 1, 7, 8, 16, 17, MAX_VALUE_LEN] {
                let s = "é".repeat(n / 2) + &"a".repeat(n % 2);
                let a = str_value(Some(&mut cache), py, s.as_bytes())
                    .unwrap()
                    .unwrap();
                let b = str_value(Some(&mut cache), py, s.as_bytes())
                    .unwrap()
                    .unwrap();
                assert!(a.is(&b), "len {n}");
                assert_eq!(text(&a), s);
            }
            let long = "a".repeat(MAX_VALUE_LEN + 1);
            let a = ascii_value(Some(&mut cache), py, long.as_bytes()).unwrap();
            let b = ascii_value(Some(&mut cache), py, long.as_bytes()).unwrap();
            assert!(!a.is(&b));
            assert_eq!(text(&a), long);
        });
    }

    #[test]
    fn invalid_utf8_is_refused_and_never_cached() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = StrCache::with_slots_log2(1);
            for bad in [&b"ab\xff"[..], b"\xed\xa0\x80", b"\xc3"] {
                assert!(str_value(Some(&mut cache), py, bad).unwrap().is_none());
                assert!(str_value(Some(&mut cache), py, bad).unwrap().is_none());
                assert!(str_value(None, py, bad).unwrap().is_none());
            }
            let ok = str_value(Some(&mut cache), py, b"ab").unwrap().unwrap();
            assert_eq!(text(&ok), "ab");
        });
    }

    /// With two slots, a third value evicts the oldest, whose str is
    /// released at once (not queued).
    #[test]
    fn an_evicted_str_is_released_at_once() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = StrCache::with_slots_log2(1);
            let first = str_value(Some(&mut cache), py, b"first").unwrap().unwrap();
            let count = |v: &Bound<'_, PyAny>| {
                // SAFETY: `v` is a live object.
                unsafe { pyo3::ffi::Py_REFCNT(v.as_ptr()) }
            };
            let held = count(&first);
            for value in [&b"second"[..], b"third"] {
                str_value(Some(&mut cache), py, value).unwrap().unwrap();
            }
            assert_eq!(count(&first), held - 1);
            let again = str_value(Some(&mut cache), py, b"first").unwrap().unwrap();
            assert!(!again.is(&first));
            assert_eq!(text(&again), "first");
        });
    }
}
