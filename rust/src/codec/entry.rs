//! The plain call of a public `loads` (one bytes argument, no keywords)
//! without PyO3's argument handling.
//!
//! `codec.msgpack.loads(data)` is the most frequent call of the library. Its
//! PyO3 function takes ten parameters; parsing them and entering PyO3's
//! trampoline cost ~20 ns of a call that decodes a small int in ~25 ns
//! (ormsgpack's whole call overhead is ~10 ns). So the public function is a
//! builtin of our own: the plain call decodes at once; any other call is
//! passed, as it came, to the PyO3 function (kept in a static of the
//! format), which does everything else and reports every error. Both have
//! the same name, doc and signature.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use crate::codec::gc::GcPause;

/// A format's decoder of one whole object.
pub type Decode = for<'py> fn(Python<'py>, &[u8]) -> crate::errors::Result<Bound<'py, PyAny>>;

/// What a builtin made by [`plain_loads`] runs.
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
    decode: Decode,
) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises: an attached thread and `nargs` live
    // arguments; a bytes object is not changed while we read it.
    unsafe {
        if kwnames.is_null() && nargs == 1 && ffi::PyBytes_CheckExact(*args) != 0 {
            let py = Python::assume_attached();
            let data = Borrowed::from_ptr(py, *args).cast_unchecked::<PyBytes>();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let _pause = GcPause::new(py);
                decode(py, data.as_bytes())
            }));
            match outcome {
                Ok(Ok(value)) => return value.into_ptr(),
                Ok(Err(err)) => {
                    PyErr::from(err).restore(py);
                    return ptr::null_mut();
                }
                // A panic: the full function runs the call again, and PyO3
                // turns the panic into its exception there.
                Err(_) => {}
            }
        }
        let py = Python::assume_attached();
        let Some(full) = full.get(py) else {
            pyo3::exceptions::PyRuntimeError::new_err("microstd._core is not initialized")
                .restore(py);
            return ptr::null_mut();
        };
        ffi::PyObject_Vectorcall(full.as_ptr(), args, nargs as usize, kwnames)
    }
}

/// Adds to `m` a builtin named and documented as the PyO3 function `full`,
/// running `entry` (a function calling [`call`] with `slot` and the decoder);
/// `slot` keeps `full`.
pub fn add_plain_loads(
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
