//! Guards around orjson, which crashes the interpreter on two inputs our
//! JSON codec must survive:
//!
//! - tuples nested a few thousand deep: orjson does not count tuples against
//!   its recursion limit and overflows the C stack (5,000 nested tuples
//!   corrupt the heap);
//! - a `default=` hook that mutates a container orjson is iterating: orjson
//!   holds borrowed items and reads them after the hook freed them.
//!
//! `json_check` walks the object once without building anything and refuses
//! nesting past `MAX_DEPTH` (measured: a few per cent of an orjson encode).
//! `json_snapshot`, used only when a `default=` hook is given (then user code
//! runs in the middle of the encode), copies every container into a fresh
//! dict or list that no user code can reach, so whatever the hook mutates is
//! not what orjson iterates.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::codec::types::{self, at_index, at_key, classify, Kind};
use crate::codec::{fast, MAX_DEPTH};
use crate::errors::{Error, Result};

fn too_deep() -> Error {
    Error::encode(format!("nesting deeper than {MAX_DEPTH} levels"), "$")
}

/// Kinds that hold other objects (an enum holds its value).
fn is_container(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Dict
            | Kind::List
            | Kind::Tuple
            | Kind::Set
            | Kind::FrozenSet
            | Kind::Enum
            | Kind::Dataclass
    )
}

#[inline]
fn is_scalar(obj: &Bound<'_, PyAny>) -> bool {
    let ty = fast::type_ptr(obj);
    ty == fast::str_type()
        || ty == fast::int_type()
        || ty == fast::float_type()
        || ty == fast::bool_type()
        || obj.is_none()
}

/// Refuses objects nested deeper than `MAX_DEPTH` containers (dicts, lists,
/// tuples, sets, dataclasses, enum values).
fn check(obj: &Bound<'_, PyAny>, depth: usize) -> Result<()> {
    if is_scalar(obj) {
        return Ok(());
    }
    let kind = classify(obj)?;
    if is_container(kind) && depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    match kind {
        Kind::Dict if obj.is_exact_instance_of::<PyDict>() => {
            let dict = obj.cast::<PyDict>().map_err(PyErr::from)?;
            // SAFETY: a borrowed pair is only tested by `is_scalar`, which runs
            // no Python code; anything else is owned before `check` (whose
            // getattr calls may run Python code) sees it.
            unsafe {
                fast::for_each_item(dict, |key, value| {
                    if is_scalar(value) {
                        return Ok(());
                    }
                    let (key, value) = (key.to_owned(), value.to_owned());
                    check(&value, depth + 1).map_err(|e| at_key(e, &key))
                })
            }?;
            Ok(())
        }
        Kind::List if obj.is_exact_instance_of::<PyList>() => {
            let list = obj.cast::<PyList>().map_err(PyErr::from)?;
            let mut i = 0;
            // SAFETY: as above; the index is checked against the current length.
            while let Some(item) = unsafe { fast::list_item_borrowed(list, i) } {
                if !is_scalar(&item) {
                    let item = item.to_owned();
                    check(&item, depth + 1).map_err(|e| at_index(e, i))?;
                }
                i += 1;
            }
            Ok(())
        }
        Kind::Tuple if obj.is_exact_instance_of::<PyTuple>() => {
            let tuple = obj.cast::<PyTuple>().map_err(PyErr::from)?;
            for (i, item) in tuple.iter().enumerate() {
                check(&item, depth + 1).map_err(|e| at_index(e, i))?;
            }
            Ok(())
        }
        Kind::Dict => {
            let dict = obj.cast::<PyDict>().map_err(PyErr::from)?;
            for (key, value) in dict.iter() {
                check(&value, depth + 1).map_err(|e| at_key(e, &key))?;
            }
            Ok(())
        }
        Kind::List | Kind::Tuple | Kind::Set | Kind::FrozenSet => {
            for (i, item) in obj.try_iter()?.enumerate() {
                check(&item?, depth + 1).map_err(|e| at_index(e, i))?;
            }
            Ok(())
        }
        Kind::Enum => check(&obj.getattr(intern!(obj.py(), "value"))?, depth + 1),
        Kind::Dataclass => {
            for (name, value) in types::dataclass_fields(obj)? {
                check(&value, depth + 1).map_err(|e| at_key(e, &name))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A copy of `obj` whose containers are all fresh: dicts stay dicts, every
/// sequence or set becomes a list, a dataclass becomes the dict of its
/// fields and an enum its (copied) value. Leaves are shared.
fn snapshot<'py>(obj: &Bound<'py, PyAny>, depth: usize) -> Result<Bound<'py, PyAny>> {
    let py = obj.py();
    if is_scalar(obj) {
        return Ok(obj.clone());
    }
    let kind = classify(obj)?;
    if is_container(kind) && depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    match kind {
        Kind::Dict => {
            // The items are collected first: a dict subclass may run Python
            // code while it is iterated, which must not see half a copy.
            let items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> =
                if obj.is_exact_instance_of::<PyDict>() {
                    obj.cast::<PyDict>().map_err(PyErr::from)?.iter().collect()
                } else {
                    obj.call_method0(intern!(py, "items"))?
                        .try_iter()?
                        .map(|kv| kv?.extract())
                        .collect::<PyResult<_>>()?
                };
            let copy = PyDict::new(py);
            for (key, value) in items {
                let value = snapshot(&value, depth + 1).map_err(|e| at_key(e, &key))?;
                copy.set_item(key, value)?;
            }
            Ok(copy.into_any())
        }
        Kind::List | Kind::Tuple | Kind::Set | Kind::FrozenSet => {
            let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = obj.cast::<PyTuple>() {
                t.iter().collect()
            } else {
                obj.try_iter()?.collect::<PyResult<_>>()?
            };
            let mut copies = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                copies.push(snapshot(item, depth + 1).map_err(|e| at_index(e, i))?);
            }
            Ok(PyList::new(py, copies)?.into_any())
        }
        Kind::Enum => snapshot(&obj.getattr(intern!(py, "value"))?, depth + 1),
        Kind::Dataclass => {
            let copy = PyDict::new(py);
            for (name, value) in types::dataclass_fields(obj)? {
                let value = snapshot(&value, depth + 1).map_err(|e| at_key(e, &name))?;
                copy.set_item(name, value)?;
            }
            Ok(copy.into_any())
        }
        _ => Ok(obj.clone()),
    }
}

/// True if `obj` holds a container at `MAX_DEPTH` or deeper: `check`'s walk
/// without building errors, for the common case where there is none.
/// Measured: returning a bare bool instead of `Result<(), Error>` (a large
/// enum moved on every return) halved the walk, about a quarter of an orjson
/// encode of plain records before.
fn too_deep_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    let ty = fast::type_ptr(obj);
    if ty == fast::dict_type() {
        if depth >= MAX_DEPTH {
            return Ok(true);
        }
        let dict = obj.cast::<PyDict>()?;
        let mut deep: PyResult<bool> = Ok(false);
        // SAFETY: a borrowed value is only tested by `is_scalar` (no Python
        // code); anything else is owned before the walk goes on.
        let _ = unsafe {
            fast::for_each_item::<()>(dict, |_, value| {
                if is_scalar(value) {
                    return Ok(());
                }
                let value = value.to_owned();
                match too_deep_at(&value, depth + 1) {
                    Ok(false) => Ok(()),
                    other => {
                        deep = other;
                        Err(())
                    }
                }
            })
        };
        return deep;
    }
    if ty == fast::list_type() {
        if depth >= MAX_DEPTH {
            return Ok(true);
        }
        let list = obj.cast::<PyList>()?;
        let mut i = 0;
        // SAFETY: as above; the index is checked against the current length.
        while let Some(item) = unsafe { fast::list_item_borrowed(list, i) } {
            if !is_scalar(&item) && too_deep_at(&item.to_owned(), depth + 1)? {
                return Ok(true);
            }
            i += 1;
        }
        return Ok(false);
    }
    if is_scalar(obj) {
        return Ok(false);
    }
    // Everything else (tuples, sets, dataclasses, enums, subclasses): the full check.
    match check(obj, depth) {
        Ok(()) => Ok(false),
        Err(Error::Encode { .. }) => Ok(true),
        Err(other) => Err(other.into()),
    }
}

/// Raises `EncodeError` (with the path) if `obj` nests deeper than `MAX_DEPTH`.
#[pyfunction]
pub(crate) fn json_check(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if !too_deep_at(obj, 0)? {
        return Ok(());
    }
    // Found: walk again, building the error's path.
    Ok(check(obj, 0)?)
}

/// A copy of `obj` built from fresh containers only (see the module docs).
#[pyfunction]
fn json_snapshot<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    Ok(snapshot(obj, 0)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(json_check, m)?)?;
    m.add_function(wrap_pyfunction!(json_snapshot, m)?)?;
    Ok(())
}
