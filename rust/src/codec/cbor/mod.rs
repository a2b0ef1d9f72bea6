//! CBOR (RFC 8949): encoder and decoder.
//!
//! `head`, `float`, `canonical` and `rfc3339` are pure Rust (tested by
//! `cargo test`); `encode`, `decode` and `tags` work on Python objects.

pub mod canonical;
#[cfg(feature = "python")]
pub mod decode;
#[cfg(feature = "python")]
pub mod encode;
pub mod float;
pub mod head;
pub mod rfc3339;
#[cfg(feature = "python")]
pub mod tags;

#[cfg(feature = "python")]
use pyo3::exceptions::PyTypeError;
#[cfg(feature = "python")]
use pyo3::prelude::*;
#[cfg(feature = "python")]
use pyo3::types::{PyByteArray, PyBytes};

#[cfg(feature = "python")]
use crate::codec::output;
#[cfg(feature = "python")]
use crate::errors::Result;

/// Encodes `obj` as CBOR bytes.
#[cfg(feature = "python")]
pub fn encode(
    obj: &Bound<'_, PyAny>,
    canonical: bool,
    default: Option<&Bound<'_, PyAny>>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    encode::Encoder::new(&mut out, canonical, default).encode(obj, 0)?;
    Ok(out)
}

#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (obj, *, canonical=false, default=None))]
#[cfg(feature = "python")]
fn cbor_dumps<'py>(
    obj: &Bound<'py, PyAny>,
    canonical: bool,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    output::with_buffer(|out| {
        encode::Encoder::new(out, canonical, default).encode(obj, 0)?;
        Ok(PyBytes::new(obj.py(), out))
    })
}

#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (data, *, tag_hook=None))]
fn cbor_loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    tag_hook: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    let tag_hook = tag_hook.filter(|h| !h.is_none());
    if tag_hook.is_none() {
        if let Ok(b) = data.cast::<PyBytes>() {
            return Ok(decode::decode(py, b.as_bytes())?);
        }
    }
    let copied: Vec<u8> = if let Ok(b) = data.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(b) = data.cast::<PyByteArray>() {
        b.to_vec()
    } else if data.is_instance_of::<pyo3::types::PyMemoryView>() {
        data.call_method0(pyo3::intern!(py, "tobytes"))?
            .cast_into::<PyBytes>()?
            .as_bytes()
            .to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "cbor_loads expects bytes, bytearray or memoryview, not {}",
            crate::codec::types::type_name(data)
        )));
    };
    let (value, end) = decode::decode_prefix(py, &copied, tag_hook)?;
    if end != copied.len() {
        return Err(crate::errors::Error::decode(
            format!("{} trailing bytes after the data item", copied.len() - end),
            end,
        )
        .into());
    }
    Ok(value)
}

/// The next item of a CBOR sequence: `(item, end)` for the item that starts
/// at `start` in `data`, or None when `data` ends before it does.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (data, start, *, tag_hook=None))]
fn cbor_next<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    start: usize,
    tag_hook: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<(Bound<'py, PyAny>, usize)>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    let rest = data.as_bytes().get(start..).unwrap_or_default();
    let tag_hook = tag_hook.filter(|h| !h.is_none());
    match decode::decode_prefix(py, rest, tag_hook) {
        Ok((value, used)) => Ok(Some((value, start + used))),
        Err(err) if crate::codec::is_incomplete(&err) => Ok(None),
        Err(err) => Err(crate::codec::shifted(err, start).into()),
    }
}

#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cbor_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(cbor_loads, m)?)?;
    m.add_function(wrap_pyfunction!(cbor_next, m)?)?;
    Ok(())
}
