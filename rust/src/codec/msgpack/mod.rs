//! msgpack: encoder and decoder. PLACEHOLDER until the codec lands: it
//! delegates to the `msgpack` package so other areas can build on the API.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{Error, Result};

/// Encodes `obj` as msgpack bytes.
pub fn encode(obj: &Bound<'_, PyAny>) -> Result<Vec<u8>> {
    let py = obj.py();
    let packed = py.import("msgpack")?.call_method1("packb", (obj,))?;
    Ok(packed
        .cast_into::<PyBytes>()
        .map_err(PyErr::from)?
        .as_bytes()
        .to_vec())
}

/// Decodes one msgpack object from `data`.
pub fn decode<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>> {
    let obj = py
        .import("msgpack")?
        .call_method1("unpackb", (PyBytes::new(py, data),))
        .map_err(|e| Error::decode(e.to_string(), 0))?;
    Ok(obj)
}

#[pyfunction]
#[pyo3(signature = (obj, *, default=None, sort_keys=false))]
fn msgpack_dumps<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
    sort_keys: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let _ = (default, sort_keys);
    Ok(PyBytes::new(obj.py(), &encode(obj)?))
}

#[pyfunction]
fn msgpack_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    Ok(decode(py, data)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(msgpack_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(msgpack_loads, m)?)?;
    Ok(())
}
