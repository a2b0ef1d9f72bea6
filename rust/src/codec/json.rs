//! `microstd.codec.json.dumps` and `loads` themselves, when the core is
//! loaded: the same orjson calls as the Python functions in
//! `microstd/codec/json.py`, made from here so that a call costs no Python
//! frame (the wrappers took ~130 ns of a small message's ~500 ns). Anything
//! off the common path (an error, `default=`, `sort_keys=`, a bytearray) is
//! handed to those Python functions, which decide.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString};

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
// `microstd.codec.json.loads` itself (see the module docs).
#[pyfunction]
#[pyo3(signature = (data, *, r#type=None, forbid_unknown_fields=false))]
fn json_loads<'py>(
    data: &Bound<'py, PyAny>,
    r#type: Option<&Bound<'py, PyAny>>,
    forbid_unknown_fields: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    if let Some(tp) = r#type {
        let plan = crate::codec::plans::core_plan(tp)?;
        return plan.call_method1(
            pyo3::intern!(py, "decode_json"),
            (data, forbid_unknown_fields),
        );
    }
    let j = json(py)?;
    if data.is_exact_instance_of::<PyBytes>() || data.is_exact_instance_of::<PyString>() {
        if let Ok(value) = j.orjson_loads.bind(py).call1((data,)) {
            return Ok(value);
        }
    }
    j.untyped_loads.bind(py).call1((data,))
}

crate::codec::entry::plain_entry!(dumps_entry, FULL_DUMPS, |obj| {
    Some(json_dumps(obj, None, false))
});
crate::codec::entry::plain_entry!(loads_entry, FULL_LOADS, |data| {
    Some(json_loads(data, None, false))
});

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let full = wrap_pyfunction!(json_dumps, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_DUMPS, dumps_entry)?;
    let full = wrap_pyfunction!(json_loads, m)?;
    crate::codec::entry::add_plain(m, full.as_any(), &FULL_LOADS, loads_entry)?;
    Ok(())
}
