//! Instances of `microstd.store.base`'s frozen dataclasses (`Record`,
//! `Event`), built without running their interpreted `__init__`.
//!
//! A read makes one `Record` per key, and `__init__`'s per-field
//! `object.__setattr__` calls cost more than the rest of the read. Both
//! classes are slotted, so each field lives at a fixed offset in the
//! instance: the offsets are read once from the class's member descriptors
//! and a new instance's fields are stored there directly. Should a class
//! ever stop being slotted, `object.__setattr__`'s C implementation is used
//! instead. Measured hot path: this is why it drops to `pyo3::ffi`.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};

/// How to fill one class's instances, in the caller's field order.
pub struct Layout {
    cls: Py<PyType>,
    /// Each field's slot offset, or None if some field is not a plain slot.
    offsets: Option<Vec<ffi::Py_ssize_t>>,
}

/// The layout of `microstd.store.base.<name>` for `fields`, found on first use.
/// A cell must always be used with the same name and fields.
pub fn layout<'a>(
    py: Python<'_>,
    cell: &'a PyOnceLock<Layout>,
    name: &str,
    fields: &[&Bound<'_, PyString>],
) -> PyResult<&'a Layout> {
    cell.get_or_try_init(py, || {
        let cls = py
            .import("microstd.store.base")?
            .getattr(name)?
            .cast_into::<PyType>()?;
        let offsets = fields
            .iter()
            .map(|f| slot_offset(&cls, f))
            .collect::<Option<Vec<_>>>();
        Ok(Layout {
            cls: cls.unbind(),
            offsets,
        })
    })
}

/// The offset of `cls`'s own writable object slot `field`, if it is one.
fn slot_offset(cls: &Bound<'_, PyType>, field: &Bound<'_, PyString>) -> Option<ffi::Py_ssize_t> {
    let descr = cls.getattr(field).ok()?;
    let ptr = descr.as_ptr();
    // SAFETY: `ptr` is a live object. Only once its type is checked to be
    // exactly `member_descriptor` is it read as a `PyMemberDescrObject`,
    // whose `d_member` points to the `PyMemberDef` CPython made for the slot
    // (pyo3-ffi types that pointer as `PyGetSetDef` before 3.11; it is a
    // `PyMemberDef` on every version).
    unsafe {
        if ffi::Py_TYPE(ptr) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
            return None;
        }
        let descr = ptr.cast::<ffi::PyMemberDescrObject>();
        if (*descr).d_common.d_type != cls.as_type_ptr() {
            return None;
        }
        let member = (*descr).d_member.cast::<ffi::PyMemberDef>();
        let plain = (*member).type_code == ffi::Py_T_OBJECT_EX
            && (*member).flags & ffi::Py_READONLY == 0
            && (*member).offset >= std::mem::size_of::<ffi::PyObject>() as ffi::Py_ssize_t
            && (*member).offset % std::mem::align_of::<*mut ffi::PyObject>() as ffi::Py_ssize_t
                == 0;
        plain.then_some((*member).offset)
    }
}

impl Layout {
    /// A new instance holding `values` for `fields` (the ones the layout was
    /// made for, in the same order).
    pub fn build<'py, const N: usize>(
        &self,
        py: Python<'py>,
        fields: &[&Bound<'py, PyString>],
        values: [Bound<'py, PyAny>; N],
    ) -> PyResult<Bound<'py, PyAny>> {
        let tp = self.cls.bind(py).as_type_ptr();
        let empty = PyTuple::empty(py);
        // SAFETY: `tp` is a live type object (held by `self.cls`); its
        // `tp_new` takes (type, args tuple, NULL kwargs) and returns a new
        // reference, or NULL with an exception set, which
        // `from_owned_ptr_or_err` turns into a PyErr.
        let obj = unsafe {
            let new = (*tp)
                .tp_new
                .ok_or_else(|| PyTypeError::new_err("cannot create store instances"))?;
            Bound::from_owned_ptr_or_err(py, new(tp, empty.as_ptr(), std::ptr::null_mut()))?
        };
        match &self.offsets {
            Some(offsets) => {
                debug_assert_eq!(offsets.len(), N);
                for (offset, value) in offsets.iter().zip(values) {
                    // SAFETY: `offset` is that of an object slot of exactly
                    // this type (checked in `slot_offset`), inside the
                    // instance just made; the slot owns one reference, so
                    // the new value's is moved in and any old one released,
                    // as the slot's own setter does.
                    unsafe {
                        let slot = obj
                            .as_ptr()
                            .cast::<*mut ffi::PyObject>()
                            .byte_offset(*offset);
                        let old = std::ptr::replace(slot, value.into_ptr());
                        ffi::Py_XDECREF(old);
                    }
                }
            }
            None => {
                for (field, value) in fields.iter().zip(values) {
                    // SAFETY: all three pointers are live for the call; it
                    // returns -1 with an exception set on failure.
                    let rc = unsafe {
                        ffi::PyObject_GenericSetAttr(obj.as_ptr(), field.as_ptr(), value.as_ptr())
                    };
                    if rc != 0 {
                        return Err(PyErr::fetch(py));
                    }
                }
            }
        }
        Ok(obj)
    }
}
