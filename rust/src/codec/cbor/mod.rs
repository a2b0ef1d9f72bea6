//! CBOR (RFC 8949): encoder and decoder. PLACEHOLDER until the codec lands.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::Error;

#[pyfunction]
#[pyo3(signature = (obj, *, canonical=false, default=None))]
fn cbor_dumps<'py>(
    obj: &Bound<'py, PyAny>,
    canonical: bool,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let _ = (obj, canonical, default);
    Err(Error::NotSupported("CBOR encoder not built yet".into()).into())
}

#[pyfunction]
fn cbor_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let _ = (py, data);
    Err(Error::NotSupported("CBOR decoder not built yet".into()).into())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cbor_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(cbor_loads, m)?)?;
    Ok(())
}
