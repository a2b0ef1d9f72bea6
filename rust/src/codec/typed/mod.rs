//! Typed decoding in the core: `TypedPlan` holds a decoder plan compiled by
//! `microstd.codec._plan` (one per type, cached there) and converts decoded
//! values into the plan's type.

mod build;
mod cbor;
mod convert;
mod inline_values;
mod json;
mod json_text;
mod msgpack;
mod plan;
mod wire;

use pyo3::prelude::*;

use crate::errors::Error;
use convert::{Fail, Run};

/// A compiled decoder plan (`_plan.Plan.core`).
#[pyclass(frozen, module = "microstd._core")]
pub struct TypedPlan {
    nodes: Vec<plan::Node>,
}

#[pymethods]
impl TypedPlan {
    #[new]
    fn new(nodes: &Bound<'_, PyAny>) -> PyResult<Self> {
        let nodes = plan::parse(nodes)?;
        if nodes.is_empty() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "malformed decoder plan: no nodes",
            ));
        }
        Ok(Self { nodes })
    }

    /// `value` (already decoded) as the plan's type. `strings`: strings stand
    /// for datetimes and base64 bytes (JSON); `forbid_unknown_fields`: a map
    /// key that is no field is an error.
    fn convert<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        strings: bool,
        forbid_unknown_fields: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = Run {
            nodes: &self.nodes,
            strings,
            forbid: forbid_unknown_fields,
        };
        into_py(run.conv(0, value, 0))
    }

    /// Decodes msgpack `data` straight into the plan's type, in one pass.
    #[pyo3(signature = (data, forbid_unknown_fields=false))]
    fn decode_msgpack<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        forbid_unknown_fields: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = Run {
            nodes: &self.nodes,
            strings: false,
            forbid: forbid_unknown_fields,
        };
        crate::codec::msgpack::with_bytes(data, |bytes| msgpack::decode(&run, py, bytes))
    }

    /// Decodes CBOR `data` straight into the plan's type, in one pass (bytes;
    /// other inputs go through `codec.cbor.loads`, then `convert`).
    #[pyo3(signature = (data, forbid_unknown_fields=false))]
    fn decode_cbor<'py>(
        &self,
        data: &Bound<'py, PyAny>,
        forbid_unknown_fields: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = Run {
            nodes: &self.nodes,
            strings: false,
            forbid: forbid_unknown_fields,
        };
        cbor::decode(&run, data)
    }

    /// Decodes a JSON document straight into the plan's type, in one pass
    /// (bytes; other inputs go through `codec.json.loads`, then `convert`).
    #[pyo3(signature = (data, forbid_unknown_fields=false))]
    fn decode_json<'py>(
        &self,
        data: &Bound<'py, PyAny>,
        forbid_unknown_fields: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = Run {
            nodes: &self.nodes,
            strings: true,
            forbid: forbid_unknown_fields,
        };
        json::decode(&run, data)
    }

    fn __len__(&self) -> usize {
        self.nodes.len()
    }
}

/// A conversion's outcome as Python sees it: a `ValidationError` with the
/// path for a mismatch, user code's own exception passed through.
pub(crate) fn into_py(result: Result<Bound<'_, PyAny>, Fail>) -> PyResult<Bound<'_, PyAny>> {
    match result {
        Ok(v) => Ok(v),
        Err(Fail::Py(e)) => Err(e),
        Err(Fail::Invalid(bad)) => {
            let mut path = String::from("$");
            for segment in bad.segments.iter().rev() {
                path.push_str(segment);
            }
            Err(Error::Validation {
                message: bad.message,
                path,
                expected: bad.expected,
                found: bad.found,
            }
            .into())
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TypedPlan>()?;
    Ok(())
}
