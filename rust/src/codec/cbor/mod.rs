//! CBOR (RFC 8949): encoder and decoder.
//!
//! `head`, `float`, `canonical` and `rfc3339` are pure Rust (tested by
//! `cargo test`); `encode`, `decode` and `tags` work on Python objects.

pub mod canonical;
pub mod decode;
pub mod encode;
pub mod float;
pub mod head;
pub mod rfc3339;
pub mod tags;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use crate::codec::output;
use crate::errors::Result;

/// Encodes `obj` as CBOR bytes.
pub fn encode(
    obj: &Bound<'_, PyAny>,
    canonical: bool,
    default: Option<&Bound<'_, PyAny>>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    encode::Encoder::new(&mut out, canonical, default).encode(obj, 0)?;
    Ok(out)
}

#[pyfunction]
#[pyo3(signature = (obj, *, canonical=false, default=None))]
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

/// Pauses the cyclic garbage collector while a decode builds containers.
///
/// Measured: on a list of 2,000 records about an eighth of decoding time was
/// collections triggered by the new dicts and lists, which hold no cycles.
/// The previous state is restored on drop, errors included.
struct GcPause {
    was_enabled: bool,
}

impl GcPause {
    fn new(_py: Python<'_>) -> Self {
        // SAFETY: called while attached to the interpreter (the `Python` token
        // proves it); PyGC_Disable only flips the collector's enabled flag.
        let was_enabled = unsafe { pyo3::ffi::PyGC_Disable() } != 0;
        Self { was_enabled }
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: still attached: the pause lives inside `cbor_loads`.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

#[pyfunction]
fn cbor_loads<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let _pause = GcPause::new(py);
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(decode::decode(py, b.as_bytes())?);
    }
    let copied: Vec<u8> = if let Ok(b) = data.cast::<PyByteArray>() {
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
    Ok(decode::decode(py, &copied)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cbor_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(cbor_loads, m)?)?;
    Ok(())
}
