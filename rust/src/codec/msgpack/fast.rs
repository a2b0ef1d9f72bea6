//! Measured hot paths that drop to `pyo3::ffi`, each behind a small safe
//! function. Profiles of the codec benchmarks showed these four spots
//! (dict iteration, list indexing, int conversion, str creation) dominating;
//! the safe API spends its time there on reference counting and on
//! validating UTF-8 twice.

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The type object pointer of `obj`, for exact type checks.
#[inline]
pub fn type_ptr(obj: &Bound<'_, PyAny>) -> *mut ffi::PyTypeObject {
    // SAFETY: `obj` is a live object, so its type pointer is valid to read.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) }
}

macro_rules! builtin_type {
    ($name:ident, $ty:ident) => {
        #[inline]
        pub fn $name() -> *mut ffi::PyTypeObject {
            // Only the address is taken: no access to the static's contents.
            &raw mut ffi::$ty
        }
    };
}

builtin_type!(str_type, PyUnicode_Type);
builtin_type!(int_type, PyLong_Type);
builtin_type!(float_type, PyFloat_Type);
builtin_type!(dict_type, PyDict_Type);
builtin_type!(list_type, PyList_Type);

/// Calls `f` with each (key, value) of `dict`, borrowed (no reference-count traffic).
/// Stops with an error if `f` fails; the pair count is returned so callers can
/// detect a dict that changed size under them.
pub fn for_each_item<'py, E>(
    dict: &Bound<'py, PyDict>,
    mut f: impl FnMut(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> Result<(), E>,
) -> Result<usize, E> {
    let py = dict.py();
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key = ptr::null_mut();
    let mut value = ptr::null_mut();
    let mut seen = 0;
    // SAFETY: PyDict_Next is called on a live dict with the GIL held; it returns
    // borrowed references that stay valid while the dict holds them. `f` may
    // run Python code (a `default` hook) that mutates the dict; we take a
    // strong reference to each pair before calling `f` so they stay alive, and
    // PyDict_Next itself tolerates (bounds-checks) a mutated dict.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &raw mut pos, &raw mut key, &raw mut value) }
        != 0
    {
        seen += 1;
        let (k, v) = unsafe {
            (
                Bound::from_borrowed_ptr(py, key),
                Bound::from_borrowed_ptr(py, value),
            )
        };
        f(&k, &v)?;
    }
    Ok(seen)
}

/// Item `i` of `list`, or None once `i` is past its current length.
#[inline]
pub fn list_item<'py>(list: &Bound<'py, PyList>, i: usize) -> Option<Bound<'py, PyAny>> {
    let p = list.as_ptr();
    // SAFETY: `list` is a live list and the GIL is held; the index is checked
    // against the current size right before the read, and the item is turned
    // into a strong reference immediately.
    unsafe {
        let index = ffi::Py_ssize_t::try_from(i).ok()?;
        if index >= ffi::PyList_GET_SIZE(p) {
            return None;
        }
        Some(Bound::from_borrowed_ptr(
            list.py(),
            ffi::PyList_GET_ITEM(p, index),
        ))
    }
}

/// An int as i64, or None when it does not fit (without raising and clearing
/// an OverflowError, which is what `extract::<i64>` costs on big values).
#[inline]
pub fn int_as_i64(obj: &Bound<'_, PyAny>) -> Option<i64> {
    let mut overflow = 0;
    // SAFETY: `obj` is an int (callers check), the GIL is held.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &raw mut overflow) };
    if overflow != 0 || (v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() }) {
        // SAFETY: clearing a possibly set error indicator is always allowed.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(v)
}

/// A new str from UTF-8 `bytes`, or None (with no exception left set) when
/// they are not valid UTF-8. ASCII, the common case, is copied straight into
/// a fresh compact str; anything else goes to CPython's UTF-8 decoder, which
/// validates and builds the str in one pass.
pub fn new_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let len = ffi::Py_ssize_t::try_from(bytes.len()).expect("str length fits isize");
    if bytes.is_ascii() {
        // SAFETY: PyUnicode_New(len, 127) returns a compact ASCII str with room
        // for exactly `len` one-byte characters (or NULL with an exception set,
        // which from_owned_ptr_or_err turns into an error). We fill all of them
        // before anyone else sees the object.
        unsafe {
            let obj = Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_New(len, 127))?;
            ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                ffi::PyUnicode_DATA(obj.as_ptr()).cast::<u8>(),
                bytes.len(),
            );
            return Ok(Some(obj));
        }
    }
    // SAFETY: the pointer and length describe a live slice; the decoder copies
    // it and returns a new reference, or NULL with an exception set.
    let obj = unsafe { ffi::PyUnicode_DecodeUTF8(bytes.as_ptr().cast(), len, c"strict".as_ptr()) };
    if obj.is_null() {
        // The caller reports its own DecodeError with the exact offset.
        drop(PyErr::take(py));
        return Ok(None);
    }
    // SAFETY: non-null new reference just returned by CPython.
    Ok(Some(unsafe { Bound::from_owned_ptr(py, obj) }))
}
