//! Building the typed results: instances made without running `__init__`,
//! their fields set the way the dataclass's own `__init__` would leave them,
//! and NamedTuples made without their generated `__new__`. Shared by the
//! converter and the one-pass readers.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use super::plan::{Dataclass, Default, Field, TypedDictField};

static TUPLE_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `tuple.__new__(cls, items)`: a NamedTuple without its generated `__new__`.
pub(super) fn new_named_tuple<'py>(
    cls: &Bound<'py, PyType>,
    items: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let tuple_new = TUPLE_NEW.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.get_type::<PyTuple>().getattr("__new__")?.unbind())
    })?;
    tuple_new.bind(py).call1((cls, PyTuple::new(py, items)?))
}

/// A new instance of `cls` without running `__init__` (the fields are set next).
pub(super) fn new_instance<'py>(cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let tp = cls.as_type_ptr();
    let empty = PyTuple::empty(py);
    // SAFETY: `tp` is a live type object (held by `cls`); its `tp_new` takes
    // (type, args tuple, NULL kwargs) and returns a new reference, or NULL
    // with an exception set, which `from_owned_ptr_or_err` turns into a PyErr.
    unsafe {
        let new = (*tp)
            .tp_new
            .ok_or_else(|| PyTypeError::new_err("cannot create instances of this class"))?;
        Bound::from_owned_ptr_or_err(py, new(tp, empty.as_ptr(), std::ptr::null_mut()))
    }
}

/// Where a new dataclass instance's fields go: straight into its `__dict__`
/// (as the twin does, and as the dataclass's own `__init__` would end up),
/// or through `object.__setattr__`: for slotted classes, and for the others
/// while no field name is a data descriptor on the class (the plan's
/// `plain_attrs`, checked again when the class changed), when the two store the same thing.
/// `object.__setattr__` then writes into the instance's inline values
/// (CPython 3.11+) as `__init__`'s own assignments do, never making the
/// `__dict__` object: measured, the `__dict__` (made, filled, freed) was a
/// fifth of decoding citm_catalog into dataclasses. On CPython 3.11 those
/// stores go straight into the inline values when they can (`Inline`, see
/// `inline_values`), `object.__setattr__` otherwise.
pub(super) enum FieldSink<'py> {
    Dict(Bound<'py, PyDict>),
    Attrs,
    /// The plan's class (kept alive by the plan) and its `plain_attrs` tag.
    #[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API))))]
    Inline(*mut ffi::PyTypeObject, u32),
}

impl<'py> FieldSink<'py> {
    pub(super) fn new(obj: &Bound<'py, PyAny>, dc: &Dataclass) -> PyResult<Self> {
        if dc.slots {
            return Ok(Self::Attrs);
        }
        let cls = dc.cls.bind(obj.py());
        let tag = dc.plain_attrs.tag(cls, &dc.fields)?;
        if tag != 0 {
            #[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API))))]
            return Ok(Self::Inline(cls.as_type_ptr(), tag));
            #[cfg(not(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API)))))]
            return Ok(Self::Attrs);
        }
        let dict = obj.getattr(pyo3::intern!(obj.py(), "__dict__"))?;
        Ok(Self::Dict(dict.cast_into::<PyDict>()?))
    }

    // Always inlined into the field loops: as a call, saving and restoring
    // registers around it cost as much as the inline store itself.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(super) fn set(
        &self,
        obj: &Bound<'py, PyAny>,
        field: &Field,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let name = field.name.bind(obj.py());
        match self {
            Self::Dict(dict) => dict.set_item(name, value),
            Self::Attrs => generic_setattr(obj, name, value),
            #[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API))))]
            Self::Inline(cls, tag) => {
                if super::inline_values::store(obj, *cls, *tag, name, &field.slot, value) {
                    return Ok(());
                }
                generic_setattr(obj, name, value)
            }
        }
    }
}

/// `object.__setattr__(obj, name, value)`: bypasses a frozen dataclass's
/// `__setattr__`, as the dataclass's own `__init__` does.
fn generic_setattr(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    // SAFETY: all three pointers are live for the call; it returns -1 with an
    // exception set on failure.
    let rc = unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if rc != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

/// The end of a one-pass reader's dataclass, once the map is read: every
/// field it did not hold takes its default, then `__post_init__` runs.
/// Ok(false), with the instance left unfinished, when a required field was
/// missing (the reader gives up: the canonical path reports it).
#[allow(clippy::inline_always)] // as the field loops' own code (measured: citm +1.7% as a call)
#[inline(always)]
pub(super) fn finish_dataclass<'py>(
    obj: &Bound<'py, PyAny>,
    dc: &Dataclass,
    sink: &FieldSink<'py>,
    seen: &Seen,
) -> PyResult<bool> {
    let py = obj.py();
    for (i, field) in dc.fields.iter().enumerate() {
        if seen.has(i) {
            continue;
        }
        let value = match &field.default {
            Default::Value(v) => v.bind(py).clone(),
            Default::Factory(make) => make.bind(py).call0()?,
            Default::Required => return Ok(false),
        };
        sink.set(obj, field, &value)?;
    }
    if dc.post_init {
        obj.call_method0(pyo3::intern!(py, "__post_init__"))?;
    }
    Ok(true)
}

/// A one-pass reader's TypedDict from the values it read (by field), built
/// in the TypedDict's field order as the twin builds it; None when a
/// required key was missing (the reader gives up).
pub(super) fn typeddict_from<'py>(
    py: Python<'py>,
    fields: &[TypedDictField],
    values: Vec<Option<Bound<'py, PyAny>>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let out = PyDict::new(py);
    for (field, value) in fields.iter().zip(values) {
        match value {
            Some(v) => out.set_item(field.name.bind(py), v)?,
            None if field.required => return Ok(None),
            None => {}
        }
    }
    Ok(Some(out.into_any()))
}

/// Which fields of a map have been read: a bit mask, or a vector for
/// classes of more than 64 fields (no allocation per instance otherwise).
pub(super) enum Seen {
    Bits(u64),
    Many(Vec<bool>),
}

impl Seen {
    #[inline]
    pub(super) fn new(fields: usize) -> Self {
        if fields <= 64 {
            Self::Bits(0)
        } else {
            Self::Many(vec![false; fields])
        }
    }

    /// Marks field `i` read; false if it already was (a repeated key).
    #[inline]
    pub(super) fn mark(&mut self, i: usize) -> bool {
        match self {
            Self::Bits(bits) => {
                let bit = 1u64 << i;
                let fresh = *bits & bit == 0;
                *bits |= bit;
                fresh
            }
            Self::Many(seen) => !std::mem::replace(&mut seen[i], true),
        }
    }

    #[inline]
    pub(super) fn has(&self, i: usize) -> bool {
        match self {
            Self::Bits(bits) => *bits & (1u64 << i) != 0,
            Self::Many(seen) => seen[i],
        }
    }
}
