//! msgpack: an encoder writing straight from Python objects into one buffer
//! and a decoder reading straight into Python objects.
//!
//! The output is byte-identical to `msgpack.packb(obj)` for the plain types;
//! see `codec::types` for the type model both formats share.

#[cfg(feature = "python")]
pub(crate) mod decode;
#[cfg(feature = "python")]
mod encode;
pub mod timestamp;
pub mod wire;

// Everything below binds the codec to Python objects; `timestamp` and `wire`
// above are the pure-Rust wire format.
#[cfg(feature = "python")]
use pyo3::buffer::PyUntypedBuffer;

#[cfg(feature = "python")]
use pyo3::prelude::*;
#[cfg(feature = "python")]
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

#[cfg(feature = "python")]
use crate::codec::limits::Limits;
#[cfg(feature = "python")]
use crate::codec::output;
#[cfg(feature = "python")]
use crate::errors::Result;
#[cfg(feature = "python")]
use encode::Encoder;

#[cfg(feature = "python")]
pub use decode::decode;

/// Encodes `obj` as msgpack bytes with the default options.
#[cfg(feature = "python")]
pub fn encode(obj: &Bound<'_, PyAny>) -> Result<Vec<u8>> {
    encode_with(obj, None, false)
}

/// Encodes `obj`, calling `default` for objects outside the type model and
/// sorting map keys when `sort_keys` is set.
#[cfg(feature = "python")]
pub fn encode_with<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
    sort_keys: bool,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    encode_into(obj, &mut out, default, sort_keys)?;
    Ok(out)
}

/// Appends the encoding of `obj` to `out` (which is left with a partial
/// object in it on error).
#[cfg(feature = "python")]
pub fn encode_into<'py>(
    obj: &Bound<'py, PyAny>,
    out: &mut Vec<u8>,
    default: Option<&Bound<'py, PyAny>>,
    sort_keys: bool,
) -> Result<()> {
    Encoder::new(out, default, sort_keys).encode(obj, 0)
}

/// Calls `f` with the bytes of a bytes-like object: bytes are borrowed,
/// anything else exporting a contiguous buffer is copied first (a bytearray
/// could be changed under us while we decode).
#[cfg(feature = "python")]
pub fn with_bytes<T>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> PyResult<T>) -> PyResult<T> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return f(bytes.as_bytes());
    }
    if let Ok(array) = data.cast::<PyByteArray>() {
        return f(&array.to_vec());
    }
    let buffer = PyUntypedBuffer::get(data).map_err(|err| {
        if data.is_instance_of::<PyMemoryView>() {
            // A released memoryview: CPython's own ValueError says so.
            return err;
        }
        pyo3::exceptions::PyTypeError::new_err(format!(
            "expected bytes, bytearray or memoryview, got {}",
            crate::codec::types::type_name(data)
        ))
    })?;
    if !buffer.is_c_contiguous() {
        return f(data
            .cast::<PyMemoryView>()
            .map_err(PyErr::from)?
            .call_method0("tobytes")?
            .cast::<PyBytes>()
            .map_err(PyErr::from)?
            .as_bytes());
    }
    let len = buffer.len_bytes();
    let copy = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: the buffer is C-contiguous and stays exported (so its memory
        // stays valid) until `buffer` drops, after this copy.
        unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) }.to_vec()
    };
    drop(buffer);
    f(&copy)
}

/// Encode `obj` as msgpack.
///
/// `default` is called with any object outside the type model and must
/// return something encodable; `sort_keys` sorts map keys for a stable output.
// `microstd.codec.msgpack.dumps` itself, as `msgpack_loads` is its `loads`.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (obj, *, default=None, sort_keys=false))]
fn msgpack_dumps<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
    sort_keys: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    output::with_buffer(|out| {
        encode_into(obj, out, default, sort_keys)?;
        Ok(PyBytes::new(obj.py(), out))
    })
}

/// Decode one msgpack object; trailing bytes are an error.
///
/// With `type=T` the result is checked and built as a `T` (a dataclass,
/// `list[Item]`, ...); a mismatch raises `ValidationError` with its path.
/// `ext_hook(code, data)` builds the value of extension types other than
/// timestamps (else they decode to `codec.Ext`).
///
/// Limits for untrusted input (each refused with a `DecodeError` at its
/// offset): `max_container_len` items per array or map, `max_str_len` bytes
/// per str, bytes or extension, `max_depth` levels of nesting (at most 256),
/// `strict_keys` (map keys must be str or int), `unique_keys` (a key may not
/// repeat within a map).
// This is `microstd.codec.msgpack.loads` itself (the pure twin there has the
// same signature): a Python wrapper taking these keywords cost ~220 ns per
// call, a third of a small message's decode.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (
    data, *, r#type=None, forbid_unknown_fields=false, ext_hook=None, max_container_len=None,
    max_str_len=None, max_depth=None, strict_keys=false, unique_keys=false,
))]
#[allow(clippy::too_many_arguments)] // keyword-only options, one per limit
fn msgpack_loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    r#type: Option<&Bound<'py, PyAny>>,
    forbid_unknown_fields: bool,
    ext_hook: Option<Bound<'py, PyAny>>,
    max_container_len: Option<&Bound<'py, PyAny>>,
    max_str_len: Option<&Bound<'py, PyAny>>,
    max_depth: Option<&Bound<'py, PyAny>>,
    strict_keys: bool,
    unique_keys: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if r#type.is_none()
        && ext_hook.is_none()
        && max_container_len.is_none()
        && max_str_len.is_none()
        && max_depth.is_none()
        && !strict_keys
        && !unique_keys
    {
        // The plain call, straight to the decoder (measured: ~15 ns less than
        // going through the limits and the hook, a quarter of decoding an int).
        let _pause = crate::codec::gc::GcPause::new(py);
        return with_bytes(data, |bytes| Ok(decode::decode(py, bytes)?));
    }
    let limits = Limits::from_py(
        max_container_len,
        max_str_len,
        max_depth,
        strict_keys,
        unique_keys,
    )?;
    let Some(tp) = r#type else {
        return untyped(py, data, ext_hook, limits);
    };
    let plan = crate::codec::plans::core_plan(tp)?;
    if ext_hook.is_none() && limits == Limits::default() {
        return plan.call_method1(
            pyo3::intern!(py, "decode_msgpack"),
            (data, forbid_unknown_fields),
        );
    }
    let value = untyped(py, data, ext_hook, limits)?;
    plan.call_method1(
        pyo3::intern!(py, "convert"),
        (value, false, forbid_unknown_fields),
    )
}

#[cfg(feature = "python")]
fn untyped<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    ext_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
) -> PyResult<Bound<'py, PyAny>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    with_bytes(data, |bytes| {
        Ok(decode::decode_with(py, bytes, ext_hook, limits)?)
    })
}

/// The next object of a msgpack stream: `(object, end)` for the object that
/// starts at `start` in `data`, or None when `data` ends before it does.
#[cfg(feature = "python")]
#[pyfunction]
#[pyo3(signature = (
    data, start, *, ext_hook=None, max_container_len=None, max_str_len=None, max_depth=None,
    strict_keys=false, unique_keys=false,
))]
#[allow(clippy::too_many_arguments)] // keyword-only options, one per limit
fn msgpack_next<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    start: usize,
    ext_hook: Option<Bound<'py, PyAny>>,
    max_container_len: Option<usize>,
    max_str_len: Option<usize>,
    max_depth: Option<usize>,
    strict_keys: bool,
    unique_keys: bool,
) -> PyResult<Option<(Bound<'py, PyAny>, usize)>> {
    let _pause = crate::codec::gc::GcPause::new(py);
    let bytes = data.as_bytes();
    let rest = bytes.get(start..).unwrap_or_default();
    let ext_hook = ext_hook.filter(|h| !h.is_none());
    let limits = Limits::new(
        max_container_len,
        max_str_len,
        max_depth,
        strict_keys,
        unique_keys,
    );
    match decode::decode_prefix(py, rest, ext_hook, limits) {
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
        encode_into(obj, out, None, false)?;
        Ok(PyBytes::new(obj.py(), out).into_any())
    }))
});

#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let full = wrap_pyfunction!(msgpack_dumps, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_DUMPS, dumps_entry)?;
    let full = wrap_pyfunction!(msgpack_loads, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_LOADS, loads_entry)?;
    m.add_function(wrap_pyfunction!(msgpack_next, m)?)?;
    Ok(())
}
