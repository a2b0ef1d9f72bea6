//! Python <-> store conversions for the binding: argument checks, value
//! encoding and decoding, and fast `Record` / `Event` construction.

use std::time::Instant;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyString};

use crate::codec::msgpack;
use crate::errors::{EncodeError, Error, Result};
use crate::store::entry::Packed;
use crate::store::instance::{layout, Layout};
use crate::store::memory::{Condition, TAG_ENCODED, TAG_RAW};
use crate::store::watch::{RawEvent, Snapshot};
use crate::validate;

static RECORD: PyOnceLock<Layout> = PyOnceLock::new();
static EVENT: PyOnceLock<Layout> = PyOnceLock::new();

/// The store's monotonic clock, and the wall-clock time of its epoch so an
/// `expires_at` is stable across reads of the same record.
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    wall_epoch: f64,
}

impl Clock {
    pub fn new() -> Self {
        let wall_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            epoch: Instant::now(),
            wall_epoch,
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn wall(&self, deadline: u64) -> f64 {
        self.wall_epoch + deadline as f64 / 1e9
    }
}

/// How values become bytes: msgpack in Rust, or a Python codec's functions.
#[derive(Debug)]
pub enum ValueCodec {
    Msgpack,
    Python { dumps: Py<PyAny>, loads: Py<PyAny> },
}

impl ValueCodec {
    /// Tag byte + payload. `bytes` pass through; anything else goes through
    /// the codec, and any failure is an `EncodeError`.
    pub fn encode(&self, value: &Bound<'_, PyAny>) -> Result<Vec<u8>> {
        if let Ok(raw) = value.cast::<PyBytes>() {
            let raw = raw.as_bytes();
            let mut out = Vec::with_capacity(raw.len() + 1);
            out.push(TAG_RAW);
            out.extend_from_slice(raw);
            return Ok(out);
        }
        let py = value.py();
        let encoded = match self {
            Self::Msgpack => msgpack::encode(value),
            Self::Python { dumps, .. } => dumps
                .bind(py)
                .call1((value,))
                .map_err(Error::from)
                .and_then(|b| {
                    b.cast_into::<PyBytes>()
                        .map(|b| b.as_bytes().to_vec())
                        .map_err(|_| Error::encode("the codec's dumps did not return bytes", "$"))
                }),
        };
        let payload = encoded.map_err(|e| as_encode_error(py, e, value))?;
        let mut out = Vec::with_capacity(payload.len() + 1);
        out.push(TAG_ENCODED);
        out.extend_from_slice(&payload);
        Ok(out)
    }

    pub fn decode<'py>(&self, py: Python<'py>, value: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let (tag, payload) = value.split_first().unwrap_or((&TAG_RAW, &[]));
        if *tag == TAG_RAW {
            return Ok(PyBytes::new(py, payload).into_any());
        }
        match self {
            Self::Msgpack => Ok(msgpack::decode(py, payload)?),
            Self::Python { loads, .. } => loads.bind(py).call1((PyBytes::new(py, payload),)),
        }
    }
}

/// A codec's own `EncodeError` passes through; any other failure (a
/// `TypeError` from a codec package, say) becomes one, chained to the cause.
fn as_encode_error(py: Python<'_>, err: Error, value: &Bound<'_, PyAny>) -> Error {
    match err {
        Error::Python(e) if !e.is_instance_of::<EncodeError>(py) => {
            let type_name = value
                .get_type()
                .name()
                .map_or_else(|_| "object".to_owned(), |n| n.to_string());
            let reason = e
                .value(py)
                .str()
                .map_or_else(|_| "error".to_owned(), |s| s.to_string());
            let new: PyErr =
                Error::encode(format!("cannot encode {type_name}: {reason}"), "$").into();
            new.set_cause(py, Some(e));
            Error::Python(new)
        }
        other => other,
    }
}

/// `key` as a `&str` if it is a non-empty `str`, else `InvalidKey` (the shared rules).
pub fn key_str<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    validate::key(key, "store keys")
}

/// A TTL in nanoseconds (at least 1) from float seconds, checked by the shared rules.
pub fn ttl_nanos(ttl: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    // `as` saturates, so an enormous TTL means "practically never".
    Ok(validate::ttl_or_none(ttl)?.map(|seconds| ((seconds * 1e9).ceil() as u64).max(1)))
}

/// `metadata` as owned pairs, checking it maps str to str.
pub fn metadata_pairs(metadata: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
    let Some(metadata) = metadata.filter(|m| !m.is_none()) else {
        return Ok(Vec::new());
    };
    let bad = || PyTypeError::new_err("metadata must map str to str");
    let items = match metadata.cast::<PyDict>() {
        Ok(d) => d.items().into_any(),
        Err(_) => metadata.call_method0(intern!(metadata.py(), "items"))?,
    };
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract().map_err(|_| bad())?;
        let k = k
            .cast::<PyString>()
            .map_err(|_| bad())?
            .to_str()?
            .to_owned();
        let v = v
            .cast::<PyString>()
            .map_err(|_| bad())?
            .to_str()?
            .to_owned();
        out.push((k, v));
    }
    Ok(out)
}

/// The write's condition from `if_revision` / `if_absent`.
pub fn condition(if_revision: Option<&Bound<'_, PyAny>>, if_absent: bool) -> PyResult<Condition> {
    match if_revision.filter(|r| !r.is_none()) {
        Some(_) if if_absent => Err(PyValueError::new_err(
            "pass if_revision or if_absent, not both",
        )),
        // A revision that is not one of ours matches no record.
        Some(rev) if rev.is_instance_of::<PyBool>() => Ok(Condition::Revision(None)),
        Some(rev) => Ok(Condition::Revision(rev.extract::<u64>().ok())),
        None if if_absent => Ok(Condition::Absent),
        None => Ok(Condition::Always),
    }
}

/// What a `Record` is made of, wherever it was copied to: a `Packed` record
/// of a bulk read, or a watch event's `Snapshot`.
pub struct Parts<'a, M> {
    /// Tag byte and payload.
    pub value: &'a [u8],
    pub metadata: M,
    pub revision: u64,
    pub deadline: Option<u64>,
}

// The `()` only gives the constructors a type to hang on: each returns the
// metadata iterator its source needs.
impl<'a> Parts<'a, ()> {
    pub fn packed(p: Packed<'a>) -> Parts<'a, impl Iterator<Item = (&'a str, &'a str)>> {
        Parts {
            value: p.value(),
            metadata: p.metadata(),
            revision: p.revision(),
            deadline: p.deadline(),
        }
    }

    pub fn snapshot(s: &'a Snapshot) -> Parts<'a, impl Iterator<Item = (&'a str, &'a str)>> {
        Parts {
            value: &s.value,
            metadata: s.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            revision: s.revision,
            deadline: s.deadline,
        }
    }
}

/// A `microstd.store.base.Record` under `key`, its value decoded straight
/// from the copied bytes.
pub fn record<'py, 'a>(
    py: Python<'py>,
    codec: &ValueCodec,
    clock: &Clock,
    key: Bound<'py, PyAny>,
    parts: Parts<'a, impl Iterator<Item = (&'a str, &'a str)>>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = codec.decode(py, parts.value)?;
    let metadata = PyDict::new(py);
    for (k, v) in parts.metadata {
        metadata.set_item(k, v)?;
    }
    let expires_at = match parts.deadline {
        Some(d) => PyFloat::new(py, clock.wall(d)).into_any(),
        None => py.None().into_bound(py),
    };
    let fields = [
        intern!(py, "key"),
        intern!(py, "value"),
        intern!(py, "metadata"),
        intern!(py, "revision"),
        intern!(py, "expires_at"),
    ];
    layout(py, &RECORD, "Record", &fields)?.build(
        py,
        &fields,
        [
            key,
            value,
            metadata.into_any(),
            parts.revision.into_pyobject(py)?.into_any(),
            expires_at,
        ],
    )
}

/// A `microstd.store.base.Event` for `event`.
pub fn event<'py>(
    py: Python<'py>,
    codec: &ValueCodec,
    clock: &Clock,
    event: &RawEvent,
) -> PyResult<Bound<'py, PyAny>> {
    let key = PyString::new(py, &event.key).into_any();
    let record = match &event.record {
        Some(snap) => record(py, codec, clock, key.clone(), Parts::snapshot(snap))?,
        None => py.None().into_bound(py),
    };
    let fields = [
        intern!(py, "kind"),
        intern!(py, "key"),
        intern!(py, "record"),
    ];
    layout(py, &EVENT, "Event", &fields)?.build(
        py,
        &fields,
        [
            PyString::new(py, event.kind.as_str()).into_any(),
            key,
            record,
        ],
    )
}
