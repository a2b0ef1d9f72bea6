//! The argument rules of `microstd._validate` (ttl, wait, keys and names),
//! applied by the Rust cores.
//!
//! The rules and their messages are written once, in Python. Here each check
//! has a fast path that accepts the plainly valid values (an exact `float` or
//! small `int`, a non-empty `str`) without calling into Python, and hands
//! everything else to the Python function, which raises the shared error (or
//! returns the value, for what the fast path leaves out, such as a `float`
//! subclass). So a bad value raises the same class and message from the Rust
//! core as from its twin, at no cost on the hot path.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt, PyString};

static TTL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static WAIT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static KEY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Longest lease or wait the lock manager schedules: ~31 years, far past any
/// lease and far from `Instant` overflow. Longer values are accepted and capped.
const MAX_SECONDS: f64 = 1e9;

fn rule<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "microstd._validate", name)
}

/// Seconds from an exact `float` or `int`, or None (the slow path decides).
fn plain_seconds(value: &Bound<'_, PyAny>) -> Option<f64> {
    if value.is_exact_instance_of::<PyFloat>() {
        return value.extract::<f64>().ok();
    }
    if value.is_exact_instance_of::<PyInt>() {
        return value.extract::<i64>().ok().map(|i| i as f64);
    }
    None
}

/// A ttl: finite float seconds > 0 (`microstd._validate.ttl`).
pub fn ttl(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    match plain_seconds(value) {
        Some(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => rule(value.py(), &TTL, "ttl")?.call1((value,))?.extract(),
    }
}

/// A ttl where `None` (or no argument) means no expiry.
pub fn ttl_or_none(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    value.filter(|v| !v.is_none()).map(ttl).transpose()
}

/// A wait: `None` (forever) or finite float seconds >= 0 (`microstd._validate.wait`).
pub fn wait(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    match plain_seconds(value) {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(s)),
        _ => rule(value.py(), &WAIT, "wait")?.call1((value,))?.extract(),
    }
}

/// A key or name: a non-empty `str` without lone surrogates (`microstd._validate.key`).
/// `what` names the kind in the message, plural: "store keys", "lock names".
pub fn key<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a str> {
    if let Ok(s) = value.cast::<PyString>() {
        if let Ok(text) = s.to_str() {
            if !text.is_empty() {
                return Ok(text);
            }
        }
    }
    // Raises the shared error; returns only if the rules accept what we did not.
    rule(value.py(), &KEY, "key")?.call1((value, what))?;
    value.cast::<PyString>().map_err(PyErr::from)?.to_str()
}

/// Validated seconds as a `Duration` the lock manager can schedule.
pub fn duration(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.min(MAX_SECONDS))
}
