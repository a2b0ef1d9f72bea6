//! The plain call of a public `loads` or `dumps` (one argument, no keywords)
//! without PyO3's argument handling.
//!
//! `codec.msgpack.loads(data)` is the most frequent call of the library. Its
//! PyO3 function takes ten parameters; parsing them and entering PyO3's
//! trampoline cost ~20 ns of a call that decodes a small int in ~25 ns
//! (ormsgpack's whole call overhead is ~10 ns). So the public function is a
//! builtin of our own: the plain call does its work at once; any other call is
//! passed, as it came, to the PyO3 function (kept in a static of the
//! format), which does everything else and reports every error. Both have
//! the same name, doc and signature.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use crate::codec::gc::GcPause;

/// The plain call's whole work on its one argument: None when the argument
/// is not for the plain path (a bytearray for a decoder), so the full
/// function takes the call.
pub type Plain = for<'py> fn(&Bound<'py, PyAny>) -> Option<PyResult<Bound<'py, PyAny>>>;

/// Every this many plain calls, PyO3's queue of deferred decrefs is drained.
///
/// The plain path does not enter PyO3's trampoline (its attach count and
/// deferred-decref drain cost ~60 instructions a call), so PyO3 does not
/// count the thread as attached: a `Py<T>` dropped there (a dropped `PyErr`,
/// e.g. from an int too big for i64) is queued, not decref'd. With no other
/// PyO3 call the queue grew without bound (200,000 plain calls: 11 MB);
/// draining it now and then bounds it by the garbage of that many calls.
const DRAIN_EVERY: u32 = 256;
static PLAIN_CALLS: AtomicU32 = AtomicU32::new(0);

/// What a builtin made by [`add_plain`] runs.
///
/// # Safety
/// Called by the interpreter as a `METH_FASTCALL | METH_KEYWORDS` function:
/// the thread is attached, `args` holds `nargs` live objects followed by one
/// per name in `kwnames`. `full` holds the PyO3 function once the module is
/// initialized.
pub unsafe fn call(
    full: &PyOnceLock<Py<PyAny>>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    plain: Plain,
) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises: an attached thread and `nargs` live
    // arguments (borrowed for the call, which holds them).
    unsafe {
        let py = Python::assume_attached();
        if kwnames.is_null() && nargs == 1 {
            let arg = Borrowed::from_ptr(py, *args);
            let result = catch_unwind(AssertUnwindSafe(|| plain(&arg)));
            // A plain load and store, not an atomic add: the thread holds
            // the GIL, and a count lost to a race only delays a drain.
            let calls = PLAIN_CALLS.load(Ordering::Relaxed).wrapping_add(1);
            PLAIN_CALLS.store(calls, Ordering::Relaxed);
            if calls % DRAIN_EVERY == 0 {
                // Entering PyO3 drains its queue (the thread holds the GIL,
                // so PyGILState_Ensure only counts).
                Python::attach(|_| ());
            }
            match result {
                Ok(Some(Ok(value))) => return value.into_ptr(),
                Ok(Some(Err(err))) => {
                    err.restore(py);
                    return ptr::null_mut();
                }
                Ok(None) => {}
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(ToString::to_string)
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic in microstd._core".into());
                    pyo3::panic::PanicException::new_err(message).restore(py);
                    return ptr::null_mut();
                }
            }
        }
        let Some(full) = full.get(py) else {
            pyo3::exceptions::PyRuntimeError::new_err("microstd._core is not initialized")
                .restore(py);
            return ptr::null_mut();
        };
        ffi::PyObject_Vectorcall(full.as_ptr(), args, nargs as usize, kwnames)
    }
}

/// The plain call of a decoder: exact bytes, decoded with the GC paused.
#[inline]
pub fn plain_decode<'py>(
    data: &Bound<'py, PyAny>,
    decode: for<'a> fn(Python<'a>, &[u8]) -> crate::errors::Result<Bound<'a, PyAny>>,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let bytes = data.cast_exact::<PyBytes>().ok()?;
    let _pause = GcPause::new(data.py());
    Some(decode(data.py(), bytes.as_bytes()).map_err(PyErr::from))
}

/// Defines `$entry`, the `METH_FASTCALL | METH_KEYWORDS` function of a
/// builtin made by [`add_plain`], and `$slot`, where its full function is kept.
macro_rules! plain_entry {
    ($entry:ident, $slot:ident, $plain:expr) => {
        static $slot: pyo3::sync::PyOnceLock<pyo3::Py<pyo3::PyAny>> = pyo3::sync::PyOnceLock::new();

        unsafe extern "C" fn $entry(
            _module: *mut pyo3::ffi::PyObject,
            args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kwnames: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: the interpreter calls this as the builtin `add_plain` made.
            unsafe { $crate::codec::entry::call(&$slot, args, nargs, kwnames, $plain) }
        }
    };
}
pub(crate) use plain_entry;

/// Adds to `m` a builtin named and documented as the PyO3 function `full`,
/// running `entry` (made by [`plain_entry`]);
/// `slot` keeps `full`.
pub fn add_plain(
    m: &Bound<'_, PyModule>,
    full: &Bound<'_, PyAny>,
    slot: &PyOnceLock<Py<PyAny>>,
    entry: ffi::PyCFunctionFastWithKeywords,
) -> PyResult<()> {
    let py = full.py();
    let _ = slot.set(py, full.clone().unbind());
    let name: String = full.getattr("__name__")?.extract()?;
    let attr = name.clone();
    let signature: String = full.getattr("__text_signature__")?.extract()?;
    let doc: String = full.getattr("__doc__")?.extract()?;
    let to_c = |text: String| {
        CString::new(text).map_err(|_| pyo3::exceptions::PyValueError::new_err("NUL in a doc"))
    };
    // The method table must outlive the function: one per module load, kept.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: to_c(name)?.into_raw().cast_const(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: entry,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: to_c(format!("{attr}{signature}\n--\n\n{doc}"))?
            .into_raw()
            .cast_const()
            .cast::<c_char>(),
    }));
    let module_name = m.name()?;
    // SAFETY: `def` lives for ever; `m` and `module_name` are live objects
    // the new function takes references to.
    let builtin = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def, m.as_ptr(), module_name.as_ptr()),
        )
    }?;
    m.add(attr, builtin)
}
