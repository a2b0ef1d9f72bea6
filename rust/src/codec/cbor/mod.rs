//! CBOR (RFC 8949): encoder and decoder.
//!
//! `head`, `float`, `canonical`, `epoch` and `rfc3339` are pure Rust (tested by
//! `cargo test`); `encode`, `decode` and `tags` work on Python objects.

pub mod canonical;
#[cfg(feature = "python")]
pub mod decode;
#[cfg(feature = "python")]
pub mod encode;
pub mod epoch;
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
use crate::codec::limits::Limits;
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

/// Encode `obj` as CBOR.
///
/// `canonical=True` gives the deterministic encoding of RFC 8949 section
/// 4.2.1: preferred serialization, shortest floats, map keys sorted by their
/// encoded bytes.
// `microstd.codec.cbor.dumps` itself, as `cbor_loads` is its `loads`.
#[cfg(feature = "python")]
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

/// Decode one CBOR data item; trailing bytes are an error.
///
/// With `type=T` the result is checked and built as a `T`; a mismatch raises
/// `ValidationError` with its path. `tag_hook(tag, value)` builds the value
/// of tags outside the type model (else they decode to `codec.Tag`).
///
/// Limits for untrusted input (each refused with a `DecodeError` at its
/// offset): `max_container_len` items per array or map, `max_str_len` bytes
/// per str, bytes or extension, `max_depth` levels of nesting (at most 256),
/// `strict_keys` (map keys must be str or int), `unique_keys` (a key may not
/// repeat within a map).
// `microstd.codec.cbor.loads` itself: no Python frame on the common call.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (
    data, *, r#type=None, forbid_unknown_fields=false, tag_hook=None, max_container_len=None,
    max_str_len=None, max_depth=None, strict_keys=false, unique_keys=false,
))]
#[allow(clippy::too_many_arguments)] // keyword-only options, one per limit
fn cbor_loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    r#type: Option<&Bound<'py, PyAny>>,
    forbid_unknown_fields: bool,
    tag_hook: Option<&Bound<'py, PyAny>>,
    max_container_len: Option<&Bound<'py, PyAny>>,
    max_str_len: Option<&Bound<'py, PyAny>>,
    max_depth: Option<&Bound<'py, PyAny>>,
    strict_keys: bool,
    unique_keys: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if r#type.is_none()
        && tag_hook.is_none()
        && max_container_len.is_none()
        && max_str_len.is_none()
        && max_depth.is_none()
        && !strict_keys
        && !unique_keys
    {
        // The plain call, straight to the decoder (as in `msgpack_loads`).
        if let Ok(b) = data.cast::<PyBytes>() {
            let _pause = crate::codec::gc::GcPause::new(py);
            return Ok(decode::decode(py, b.as_bytes())?);
        }
    }
    let limits = Limits::from_py(
        max_container_len,
        max_str_len,
        max_depth,
        strict_keys,
        unique_keys,
    )?;
    let Some(tp) = r#type else {
        return untyped(py, data, tag_hook, limits);
    };
    let plan = crate::codec::plans::core_plan(tp)?;
    if tag_hook.is_none() && limits == Limits::default() {
        return plan.call_method1(
            pyo3::intern!(py, "decode_cbor"),
            (data, forbid_unknown_fields),
        );
    }
    let value = untyped(py, data, tag_hook, limits)?;
    plan.call_method1(
        pyo3::intern!(py, "convert"),
        (value, false, forbid_unknown_fields),
    )
}

/// `loads` without a type: `data` as bytes, bytearray or memoryview.
#[cfg(feature = "python")]
pub(crate) fn untyped<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    tag_hook: Option<&Bound<'py, PyAny>>,
    limits: Limits,
) -> PyResult<Bound<'py, PyAny>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    if tag_hook.is_none() && limits == Limits::default() {
        if let Ok(b) = data.cast::<PyBytes>() {
            return Ok(decode::decode(py, b.as_bytes())?);
        }
    }
    let decode_all = |bytes: &[u8]| -> PyResult<Bound<'py, PyAny>> {
        let (value, end) = decode::decode_prefix(py, bytes, tag_hook.cloned(), limits)?;
        if end != bytes.len() {
            return Err(crate::errors::Error::decode(
                format!("{} trailing bytes after the data item", bytes.len() - end),
                end,
            )
            .into());
        }
        Ok(value)
    };
    if let Ok(b) = data.cast::<PyBytes>() {
        return decode_all(b.as_bytes());
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
    decode_all(&copied)
}

/// The next item of a CBOR sequence: `(item, end)` for the item that starts
/// at `start` in `data`, or None when `data` ends before it does.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (
    data, start, *, tag_hook=None, max_container_len=None, max_str_len=None, max_depth=None,
    strict_keys=false, unique_keys=false,
))]
#[allow(clippy::too_many_arguments)] // keyword-only options, one per limit
fn cbor_next<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    start: usize,
    tag_hook: Option<Bound<'py, PyAny>>,
    max_container_len: Option<usize>,
    max_str_len: Option<usize>,
    max_depth: Option<usize>,
    strict_keys: bool,
    unique_keys: bool,
) -> PyResult<Option<(Bound<'py, PyAny>, usize)>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    let rest = data.as_bytes().get(start..).unwrap_or_default();
    let tag_hook = tag_hook.filter(|h| !h.is_none());
    let limits = Limits::new(
        max_container_len,
        max_str_len,
        max_depth,
        strict_keys,
        unique_keys,
    );
    match decode::decode_prefix(py, rest, tag_hook, limits) {
        Ok((value, used)) => Ok(Some((value, start + used))),
        Err(err) if crate::codec::is_incomplete(&err) => Ok(None),
        Err(err) => Err(crate::codec::shifted(err, start).into()),
    }
}

#[cfg(feature = "python")]
crate::codec::entry::plain_entry!(loads_entry, FULL_LOADS, |data| {
    crate::codec::entry::plain_decode(data, decode::decode)
});

#[cfg(feature = "python")]
crate::codec::entry::plain_entry!(dumps_entry, FULL_DUMPS, |obj| {
    Some(output::with_buffer(|out| {
        encode::Encoder::new(out, false, None).encode(obj, 0)?;
        Ok(PyBytes::new(obj.py(), out).into_any())
    }))
});

#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let full = wrap_pyfunction!(cbor_dumps, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_DUMPS, dumps_entry)?;
    let full = wrap_pyfunction!(cbor_loads, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_LOADS, loads_entry)?;
    m.add_function(wrap_pyfunction!(cbor_next, m)?)?;
    Ok(())
}
