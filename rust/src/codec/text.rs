//! str in and out of the codecs without intermediate copies.
//!
//! Encoding borrows the UTF-8 a str already has: a compact ASCII str's own
//! characters, else the UTF-8 copy CPython caches on the object. Decoding
//! sizes the new str exactly first (see `utf8`), so it is allocated once at
//! its final width and filled in one pass.

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::utf8::{self, Width};

/// The UTF-8 bytes of `s`, borrowed from the object; None if it holds a lone
/// surrogate (which UTF-8 cannot carry).
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn str_utf8<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    let p = s.as_ptr();
    #[cfg(not(any(Py_3_14, PyPy, GraalPy, Py_LIMITED_API)))]
    // SAFETY: `s` is a live str. A compact ASCII str stores its `length`
    // characters, which are its UTF-8, right after the PyASCIIObject header;
    // they live (unchanged: str is immutable) as long as `s`.
    // A compact non-ASCII str keeps its cached UTF-8 (if made yet) in
    // `utf8` / `utf8_length`, freed only with the str.
    unsafe {
        if ffi::PyUnicode_IS_COMPACT_ASCII(p) != 0 {
            let len = (*p.cast::<ffi::PyASCIIObject>()).length as usize;
            let data = p.cast::<ffi::PyASCIIObject>().add(1).cast::<u8>();
            return Some(std::slice::from_raw_parts(data, len));
        }
        if ffi::PyUnicode_IS_COMPACT(p) != 0 {
            let compact = &*p.cast::<ffi::PyCompactUnicodeObject>();
            if !compact.utf8.is_null() {
                let data = compact.utf8.cast::<u8>().cast_const();
                return Some(std::slice::from_raw_parts(
                    data,
                    compact.utf8_length as usize,
                ));
            }
        }
    }
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str; the returned buffer is owned by (cached on)
    // the str object and lives as long as it does.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(p, &raw mut len) };
    if data.is_null() {
        // The UnicodeEncodeError is replaced by the caller's own error.
        drop(PyErr::take(s.py()));
        return None;
    }
    // SAFETY: CPython returned `len` valid bytes at `data`, kept alive by `s`.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) })
}

/// A new str from `bytes` that the caller has checked are all ASCII.
#[inline]
pub fn new_ascii<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    debug_assert!(bytes.is_ascii());
    let chars = ffi::Py_ssize_t::try_from(bytes.len()).expect("str length fits isize");
    // SAFETY: PyUnicode_New returns a new compact ASCII str of `chars`
    // one-byte characters (or NULL with an exception set, turned into an
    // error); all of them are written before it is returned.
    unsafe {
        let obj = Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_New(chars, 0x7f))?;
        let data = ffi::PyUnicode_DATA(obj.as_ptr());
        ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), bytes.len());
        Ok(obj)
    }
}

/// A new str from UTF-8 `bytes`, or None (with no exception left set) when
/// they are not valid UTF-8.
#[inline]
pub fn new_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let shape = utf8::shape(bytes);
    // Validated before anything is allocated.
    let text = if shape.width == Width::Ascii {
        None
    } else {
        match utf8::validate(bytes) {
            Some(text) => Some(text),
            None => return Ok(None),
        }
    };
    let chars = ffi::Py_ssize_t::try_from(shape.chars).expect("str length fits isize");
    // SAFETY: PyUnicode_New returns a new compact str of `chars` characters
    // of the width `max_char` asks for (or NULL with an exception set, which
    // from_owned_ptr_or_err turns into an error); its storage is private to
    // us until we return it.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_New(chars, shape.width.max_char()))?
    };
    // SAFETY: the storage holds exactly `chars` code units of the width
    // PyUnicode_New chose from `max_char` (suitably aligned: it follows the
    // 8-aligned header). Every unit is written before the str is returned; a
    // str dropped half-filled never has its characters read. An ASCII
    // str has one unit per byte.
    let filled = unsafe {
        let data = ffi::PyUnicode_DATA(obj.as_ptr());
        match (shape.width, text) {
            (Width::Ascii, _) => {
                ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), bytes.len());
                true
            }
            (Width::One, Some(text)) => utf8::fill(
                text,
                std::slice::from_raw_parts_mut(data.cast::<u8>(), shape.chars),
            ),
            (Width::Two, Some(text)) => utf8::fill(
                text,
                std::slice::from_raw_parts_mut(data.cast::<u16>(), shape.chars),
            ),
            (Width::Four, Some(text)) => utf8::fill(
                text,
                std::slice::from_raw_parts_mut(data.cast::<u32>(), shape.chars),
            ),
            (_, None) => false,
        }
    };
    Ok(filled.then_some(obj))
}

/// Where the first invalid byte of `bytes` is (they were refused by `new_str`).
pub fn invalid_at(bytes: &[u8]) -> usize {
    std::str::from_utf8(bytes)
        .err()
        .map_or(0, |e| e.valid_up_to())
}
