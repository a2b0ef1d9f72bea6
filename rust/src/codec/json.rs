//! `microstd.codec.json.dumps` and `loads` themselves, when the core is
//! loaded: the same orjson calls as the Python functions in
//! `microstd/codec/json.py`, made from here so that a call costs no Python
//! frame (the wrappers took ~130 ns of a small message's ~500 ns). Anything
//! off the common path (an error, `default=`, `sort_keys=`, a bytearray) is
//! handed to those Python functions, which decide.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

use crate::codec::limits::Limits;

/// What the entry points call, looked up once in `microstd.codec.json`.
struct Json {
    orjson_dumps: Py<PyAny>,
    orjson_loads: Py<PyAny>,
    /// `_plain_hook`: the type model's mapping of non-JSON objects.
    plain_hook: Py<PyAny>,
    /// `_FAST_OPTIONS`: orjson's options for the common call.
    fast_options: Py<PyAny>,
    /// `_full_dumps(obj, default, sort_keys)`: every case, with its errors.
    full_dumps: Py<PyAny>,
    /// `_untyped_loads(data)`: every input, with its errors.
    untyped_loads: Py<PyAny>,
}

static JSON: PyOnceLock<Json> = PyOnceLock::new();

fn json(py: Python<'_>) -> PyResult<&'static Json> {
    JSON.get_or_try_init(py, || {
        let module = py.import("microstd.codec.json")?;
        let get = |name: &str| -> PyResult<Py<PyAny>> { Ok(module.getattr(name)?.unbind()) };
        Ok(Json {
            orjson_dumps: get("_orjson_dumps")?,
            orjson_loads: get("_orjson_loads")?,
            plain_hook: get("_plain_hook")?,
            fast_options: get("_FAST_OPTIONS")?,
            full_dumps: get("_full_dumps")?,
            untyped_loads: get("_untyped_loads")?,
        })
    })
}

/// Encode `obj` as compact UTF-8 JSON.
// `microstd.codec.json.dumps` itself (see the module docs).
#[pyfunction]
#[pyo3(signature = (obj, *, default=None, sort_keys=false))]
fn json_dumps<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
    sort_keys: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let j = json(py)?;
    if default.is_none() && !sort_keys {
        crate::codec::json_guard::json_check(obj)?;
        // The first try leaves out orjson's non-str-keys option (~130 ns of a
        // small message): a dict with other keys fails it and takes the full path.
        let first =
            j.orjson_dumps
                .bind(py)
                .call1((obj, j.plain_hook.bind(py), j.fast_options.bind(py)));
        if let Ok(encoded) = first {
            return Ok(encoded);
        }
    }
    j.full_dumps.bind(py).call1((obj, default, sort_keys))
}

/// Decode one JSON document.
///
/// With `type=T` the result is checked and built as a `T`; strings stand for
/// datetimes (RFC 3339) and bytes (base64) where `T` asks for them.
///
/// Limits for untrusted input (each refused with a `DecodeError` at the
/// offending item's byte offset, with msgpack's messages):
/// `max_container_len` items per array or object, `max_str_len` UTF-8 bytes
/// per decoded string (keys included), `max_depth` levels of nesting
/// (orjson's own bound, 1024, stays).
// `microstd.codec.json.loads` itself (see the module docs).
#[pyfunction]
#[pyo3(signature = (
    data, *, r#type=None, forbid_unknown_fields=false, max_container_len=None, max_str_len=None,
    max_depth=None,
))]
fn json_loads<'py>(
    data: &Bound<'py, PyAny>,
    r#type: Option<&Bound<'py, PyAny>>,
    forbid_unknown_fields: bool,
    max_container_len: Option<&Bound<'py, PyAny>>,
    max_str_len: Option<&Bound<'py, PyAny>>,
    max_depth: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let limits = Limits::json_from_py(max_container_len, max_str_len, max_depth)?;
    if let Some(tp) = r#type {
        let plan = crate::codec::plans::core_plan(tp)?;
        let Some(limits) = limits else {
            return plan.call_method1(
                pyo3::intern!(py, "decode_json"),
                (data, forbid_unknown_fields),
            );
        };
        // As msgpack's typed path with limits: the checked plain decode, then the plan.
        let value = limited(data, &limits)?;
        return plan.call_method1(
            pyo3::intern!(py, "convert"),
            (value, true, forbid_unknown_fields),
        );
    }
    match limits {
        None => untyped(data),
        Some(limits) => limited(data, &limits),
    }
}

/// The plain decode: orjson on exact bytes or str, the Python function on
/// anything else or on an error (it decides, and names the error).
fn untyped<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let j = json(py)?;
    if data.is_exact_instance_of::<PyBytes>() || data.is_exact_instance_of::<PyString>() {
        if let Ok(value) = j.orjson_loads.bind(py).call1((data,)) {
            return Ok(value);
        }
    }
    j.untyped_loads.bind(py).call1((data,))
}

/// The plain decode, then `limits` checked on the same text
/// (`json_limits`). A bytearray or memoryview is copied first, so the text
/// checked is the text decoded.
fn limited<'py>(data: &Bound<'py, PyAny>, limits: &Limits) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(text) = data.cast::<PyString>() {
        let value = untyped(data)?;
        // orjson accepted the str, so it is valid UTF-8 (no lone surrogate).
        crate::codec::json_limits::check(text.to_str()?.as_bytes(), limits)?;
        return Ok(value);
    }
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let value = untyped(data)?;
        crate::codec::json_limits::check(bytes.as_bytes(), limits)?;
        return Ok(value);
    }
    if !data.is_instance_of::<PyByteArray>() && !data.is_instance_of::<PyMemoryView>() {
        return untyped(data); // refused there, with the Python function's error
    }
    crate::codec::msgpack::with_bytes(data, |raw| {
        let copy = PyBytes::new(data.py(), raw);
        let value = untyped(copy.as_any())?;
        crate::codec::json_limits::check(raw, limits)?;
        Ok(value)
    })
}

crate::codec::entry::plain_entry!(dumps_entry, FULL_DUMPS, |obj| {
    Some(json_dumps(obj, None, false))
});
crate::codec::entry::plain_entry!(loads_entry, FULL_LOADS, |data| {
    Some(json_loads(data, None, false, None, None, None))
});

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let full = wrap_pyfunction!(json_dumps, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_DUMPS, dumps_entry)?;
    let full = wrap_pyfunction!(json_loads, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_LOADS, loads_entry)?;
    Ok(())
}
