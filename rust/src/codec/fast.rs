//! Measured hot paths that drop to `pyo3::ffi`, each behind a small safe
//! function. Profiles of the codec benchmarks showed these spots (type
//! dispatch, dict iteration, list indexing, int conversion, container
//! creation) dominating; the safe API spends its time there on reference
//! counting, error plumbing and checks the callers have already made.
//!
//! Object layouts differ between CPython versions: the `Py_3_x` cfgs come
//! from `build.rs` (pyo3-build-config).

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};
use pyo3::Borrowed;

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
builtin_type!(bool_type, PyBool_Type);

/// The valid version tag of a type (0 if it has none). CPython changes it
/// whenever an attribute of the type or of one of its bases is set or
/// deleted, so an unchanged tag means every lookup through the type still
/// finds what it found before.
#[inline]
pub fn type_version(tp: &Bound<'_, pyo3::types::PyType>) -> u32 {
    let p = tp.as_type_ptr();
    // SAFETY: `tp` is a live type object; both fields are plain reads.
    unsafe {
        if ffi::PyType_GetFlags(p) & ffi::Py_TPFLAGS_VALID_VERSION_TAG == 0 {
            return 0;
        }
        (*p).tp_version_tag
    }
}

/// True for `True` (callers have checked that `obj` is a bool).
#[inline]
pub fn is_true(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: only the address of the True singleton is taken.
    obj.as_ptr() == unsafe { ffi::Py_True() }
}

/// Calls `f` with each (key, value) of `dict`, borrowed from the dict (no
/// reference counting). Stops with an error if `f` fails; the pair count is
/// returned so callers can detect a dict that changed size under them.
///
/// # Safety
/// The references stay valid only while the dict is left alone. `f` must
/// not run Python code (which could mutate or free the dict's entries)
/// while it uses them: it must take strong references (`to_owned`) first.
#[inline]
pub unsafe fn for_each_item<'py, E>(
    dict: &Bound<'py, PyDict>,
    mut f: impl FnMut(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> Result<(), E>,
) -> Result<usize, E> {
    let py = dict.py();
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key = ptr::null_mut();
    let mut value = ptr::null_mut();
    let mut seen = 0;
    // SAFETY: PyDict_Next is called on a live dict while attached; it
    // tolerates (bounds-checks) a dict mutated between calls.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &raw mut pos, &raw mut key, &raw mut value) }
        != 0
    {
        seen += 1;
        // SAFETY: non-null borrowed references just returned by PyDict_Next,
        // used by `f` under the contract above.
        let (k, v) = unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) };
        f(&k, &v)?;
    }
    Ok(seen)
}

/// Item `i` of `list`, borrowed (no reference counting), or None once `i`
/// is past its current length.
///
/// # Safety
/// As for [`for_each_item`]: the caller must not run Python code while it
/// uses the item, or must take a strong reference (`to_owned`) first.
#[inline]
pub unsafe fn list_item_borrowed<'a, 'py>(
    list: &'a Bound<'py, PyList>,
    i: usize,
) -> Option<Borrowed<'a, 'py, PyAny>> {
    let p = list.as_ptr();
    let index = ffi::Py_ssize_t::try_from(i).ok()?;
    // SAFETY: `list` is a live list and we are attached; the index is checked
    // against the current size right before the read.
    unsafe {
        if index >= ffi::PyList_GET_SIZE(p) {
            return None;
        }
        Some(Borrowed::from_ptr(
            list.py(),
            ffi::PyList_GET_ITEM(p, index),
        ))
    }
}

/// A new list of `len` items, each made by `item` in order. Nothing is
/// copied: each item goes straight into its slot.
#[inline]
pub fn new_list<'py, E: From<PyErr>>(
    py: Python<'py>,
    len: usize,
    mut item: impl FnMut() -> Result<Bound<'py, PyAny>, E>,
) -> Result<Bound<'py, PyAny>, E> {
    let size = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("list too long"))?;
    // SAFETY: PyList_New returns a new reference to a list of `size` NULL
    // slots, or NULL with an exception set (handled by from_owned_ptr_or_err).
    let list = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyList_New(size))? };
    for i in 0..size {
        let value = item()?;
        // SAFETY: `list` is fresh and private to us, `i < size`, and slot `i`
        // is still NULL; SET_ITEM steals the reference `into_ptr` hands over.
        // On an early return the remaining NULL slots are fine: list
        // dealloc uses XDECREF.
        unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i, value.into_ptr()) };
    }
    Ok(list)
}

/// A new list holding `items` (their references move into it). PyO3's
/// `PyList::new` from an iterator cost ~280 instructions for a two-item list
/// (a third of decoding the small message's strs).
#[inline]
pub fn list_from_iter<'py>(
    py: Python<'py>,
    mut items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    new_list(py, items.len(), || {
        Ok::<_, PyErr>(items.next().expect("exactly len items"))
    })
}

/// A new float (PyO3's constructor, kept out of line, was a tenth of the
/// time of decoding a float array).
#[inline]
pub fn new_float(py: Python<'_>, v: f64) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: attached; returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyFloat_FromDouble(v)) }
}

/// A new empty dict with room for `len` items, so filling it never resizes.
#[inline]
pub fn new_dict(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyDict>> {
    #[cfg(not(any(Py_3_13, PyPy, GraalPy, Py_LIMITED_API)))]
    {
        extern "C" {
            // Exported by CPython up to 3.12 (orjson and ormsgpack use it too).
            fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
        }
        let len = ffi::Py_ssize_t::try_from(len).unwrap_or(ffi::Py_ssize_t::MAX);
        // SAFETY: attached; returns a new reference to an empty dict (CPython
        // caps the presize itself), or NULL with an exception set.
        let dict = unsafe { Bound::from_owned_ptr_or_err(py, _PyDict_NewPresized(len))? };
        Ok(dict.cast_into::<PyDict>()?)
    }
    #[cfg(any(Py_3_13, PyPy, GraalPy, Py_LIMITED_API))]
    {
        let _ = len;
        Ok(PyDict::new(py))
    }
}

/// Whether ints store 30-bit digits in `u32`s (the default build of every
/// platform we ship for); set once at import, checked before reading digits.
static THIRTY_BIT_DIGITS: AtomicBool = AtomicBool::new(false);

/// Reads `sys.int_info` once, to enable the inline int read.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let info = py.import("sys")?.getattr("int_info")?;
    let bits: u32 = info.getattr("bits_per_digit")?.extract()?;
    let size: u32 = info.getattr("sizeof_digit")?.extract()?;
    THIRTY_BIT_DIGITS.store(bits == 30 && size == 4, Ordering::Relaxed);
    Ok(())
}

/// An int as i64, or None when it does not fit (without raising and clearing
/// an OverflowError, which is what `extract::<i64>` costs on big values).
#[inline]
pub fn int_as_i64(obj: &Bound<'_, PyInt>) -> Option<i64> {
    if let Some(v) = compact_int(obj) {
        return Some(v);
    }
    let mut overflow = 0;
    // SAFETY: `obj` is an int and we are attached.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &raw mut overflow) };
    // SAFETY: reading the error indicator is always allowed while attached.
    if overflow != 0 || (v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() }) {
        // SAFETY: clearing a possibly set error indicator is always allowed.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(v)
}

/// The value of an int of at most one digit, read straight from the object
/// (CPython's own `_PyLong_IsCompact` test), or None for anything longer.
#[inline]
#[cfg(not(any(Py_3_12, PyPy, GraalPy, Py_LIMITED_API)))]
fn compact_int(obj: &Bound<'_, PyInt>) -> Option<i64> {
    // 3.11 and older: `ob_size` is the signed digit count.
    #[repr(C)]
    struct Long {
        head: ffi::PyVarObject,
        digit: u32,
    }
    if !THIRTY_BIT_DIGITS.load(Ordering::Relaxed) {
        return None;
    }
    let p = obj.as_ptr().cast::<Long>();
    // SAFETY: `obj` is a live int, whose layout starts like `Long`; the first
    // digit is read only when `ob_size` says there is one.
    unsafe {
        let size = (*p).head.ob_size;
        match size {
            0 => Some(0),
            1 => Some(i64::from((*p).digit)),
            -1 => Some(-i64::from((*p).digit)),
            _ => None,
        }
    }
}

#[inline]
#[cfg(all(Py_3_12, not(any(PyPy, GraalPy, Py_LIMITED_API))))]
fn compact_int(obj: &Bound<'_, PyInt>) -> Option<i64> {
    // 3.12 and newer: `lv_tag` holds the digit count above 3 sign/flag bits.
    #[repr(C)]
    struct Long {
        head: ffi::PyObject,
        lv_tag: usize,
        digit: u32,
    }
    if !THIRTY_BIT_DIGITS.load(Ordering::Relaxed) {
        return None;
    }
    let p = obj.as_ptr().cast::<Long>();
    // SAFETY: `obj` is a live int, whose layout starts like `Long`; every int
    // has room for at least one digit.
    unsafe {
        let tag = (*p).lv_tag;
        if tag >= 2 << 3 {
            return None;
        }
        // Sign bits: 0 positive, 1 zero, 2 negative.
        let sign = 1 - (tag & 3) as i64;
        Some(sign * i64::from((*p).digit))
    }
}

#[inline]
#[cfg(any(PyPy, GraalPy, Py_LIMITED_API))]
fn compact_int(_obj: &Bound<'_, PyInt>) -> Option<i64> {
    None
}
