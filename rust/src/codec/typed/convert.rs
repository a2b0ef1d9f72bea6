//! The executor of a decoder plan: walks decoded Python values and builds the
//! typed result, or fails with the path, the expected type and what was found.
//!
//! It follows the pure twin (`microstd.codec._convert`) rule for rule; the
//! rare slow paths (strings parsed into datetimes, UUIDs..., `Annotated`
//! bounds, error descriptions) call the twin's own functions so the two
//! cannot drift apart there.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateTime, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet,
    PyString, PyTuple, PyType,
};

use super::build::{new_instance, new_named_tuple, FieldSink};
use super::plan::{self, Dataclass, Default, Node};
use crate::codec::types::{decimal_type, timestamp_type, uuid_type};
use crate::codec::{fast, MAX_DEPTH};

/// A value that does not fit the plan; the path is built as the error unwinds.
pub struct Invalid {
    pub message: String,
    pub expected: String,
    pub found: String,
    /// Path segments, innermost first.
    pub segments: Vec<String>,
}

pub enum Fail {
    Invalid(Box<Invalid>),
    /// User code raised (a `__post_init__`, a default factory): passed through.
    Py(PyErr),
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Self::Py(err)
    }
}

type R<T> = Result<T, Fail>;

fn invalid(message: String, expected: &str, found: String) -> Fail {
    Fail::Invalid(Box::new(Invalid {
        message,
        expected: expected.to_owned(),
        found,
        segments: Vec::new(),
    }))
}

static TWIN: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static INVALID_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn twin(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(TWIN
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("microstd.codec._convert")?.unbind())
        })?
        .bind(py))
}

/// What the twin says was found (`str '7'`, `int 7`, `dict`).
fn describe(value: &Bound<'_, PyAny>) -> String {
    twin(value.py())
        .and_then(|m| m.getattr("describe")?.call1((value,))?.extract())
        .unwrap_or_else(|_| "?".to_owned())
}

fn wrong(expected: &str, value: &Bound<'_, PyAny>) -> Fail {
    let found = describe(value);
    invalid(format!("expected {expected}, got {found}"), expected, found)
}

/// Runs a twin function; its `_Invalid` becomes ours, other errors pass through.
fn call_twin<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> R<Bound<'py, PyAny>> {
    let module = twin(py)?;
    match module.getattr(name)?.call1(args) {
        Ok(v) => Ok(v),
        Err(err) => {
            let invalid_type = INVALID_TYPE.import(py, "microstd.codec._convert", "_Invalid")?;
            if !err.is_instance(py, invalid_type) {
                return Err(Fail::Py(err));
            }
            let e = err.value(py);
            Err(Fail::Invalid(Box::new(Invalid {
                message: e.getattr("message")?.extract()?,
                expected: e.getattr("expected")?.extract()?,
                found: e.getattr("found")?.extract()?,
                segments: Vec::new(),
            })))
        }
    }
}

fn index_segment(i: usize) -> String {
    format!("[{i}]")
}

fn key_segment(key: &Bound<'_, PyAny>) -> String {
    match key.cast::<PyString>() {
        Ok(s) => format!(".{}", s.to_string_lossy()),
        Err(_) => format!(
            "[{}]",
            key.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ),
    }
}

/// The union dispatch kind of a decoded value (`_plan.V_*`), as the twin's `value_kind`.
fn value_kind(value: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let ty = fast::type_ptr(value);
    let exact = if value.is_none() {
        Some(0)
    } else if ty == fast::bool_type() {
        Some(1)
    } else if ty == fast::int_type() {
        Some(2)
    } else if ty == fast::float_type() {
        Some(3)
    } else if ty == fast::str_type() {
        Some(4)
    } else if ty == fast::dict_type() {
        Some(7)
    } else if ty == fast::list_type() {
        Some(6)
    } else {
        None
    };
    if exact.is_some() {
        return Ok(exact);
    }
    let kind = twin(value.py())?
        .getattr("value_kind")?
        .call1((value,))?
        .extract()?;
    Ok(kind)
}

pub struct Run<'a> {
    pub nodes: &'a [Node],
    pub strings: bool,
    pub forbid: bool,
}

impl Run<'_> {
    /// Converts a child value one level down, adding its path segment on failure.
    fn item<'py>(
        &self,
        node: usize,
        value: &Bound<'py, PyAny>,
        depth: usize,
        segment: impl FnOnce() -> String,
    ) -> R<Bound<'py, PyAny>> {
        let result = if depth >= MAX_DEPTH {
            Err(invalid(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                &format!("at most {MAX_DEPTH} levels"),
                "deeper data".to_owned(),
            ))
        } else {
            self.conv(node, value, depth + 1)
        };
        result.map_err(|fail| match fail {
            Fail::Invalid(mut bad) => {
                bad.segments.push(segment());
                Fail::Invalid(bad)
            }
            other @ Fail::Py(_) => other,
        })
    }

    #[allow(clippy::too_many_lines)] // one arm per node kind
    pub fn conv<'py>(
        &self,
        index: usize,
        value: &Bound<'py, PyAny>,
        depth: usize,
    ) -> R<Bound<'py, PyAny>> {
        let py = value.py();
        let ty = fast::type_ptr(value);
        match &self.nodes[index] {
            Node::Any => Ok(value.clone()),
            Node::Str => {
                if ty == fast::str_type() || value.is_instance_of::<PyString>() {
                    Ok(value.clone())
                } else {
                    Err(wrong("str", value))
                }
            }
            Node::Int => {
                if ty == fast::int_type()
                    || (value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>())
                {
                    Ok(value.clone())
                } else {
                    Err(wrong("int", value))
                }
            }
            Node::Float => {
                if ty == fast::float_type() {
                    Ok(value.clone())
                } else if (value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>())
                    || value.is_instance_of::<PyFloat>()
                {
                    Ok(value.call_method0(pyo3::intern!(py, "__float__"))?)
                } else {
                    Err(wrong("float", value))
                }
            }
            Node::Bool => {
                if ty == fast::bool_type() {
                    Ok(value.clone())
                } else {
                    Err(wrong("bool", value))
                }
            }
            Node::None => {
                if value.is_none() {
                    Ok(value.clone())
                } else {
                    Err(wrong("None", value))
                }
            }
            Node::Scalar(kind) => self.scalar(*kind, value),
            Node::List(item) => {
                let items = sequence(value).ok_or_else(|| wrong("array", value))?;
                let n = items.len();
                Ok(fast::new_list(py, n, {
                    let mut i = 0;
                    move || {
                        let v = items.get_item(i).map_err(Fail::Py)?;
                        let out = self.item(*item, &v, depth, || index_segment(i));
                        i += 1;
                        out
                    }
                })?)
            }
            Node::VarTuple(item) => {
                let items = sequence(value).ok_or_else(|| wrong("array", value))?;
                let mut out = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    out.push(self.item(*item, &items.get_item(i)?, depth, || index_segment(i))?);
                }
                Ok(PyTuple::new(py, out)?.into_any())
            }
            Node::Tuple(nodes) => {
                let items = sequence(value).ok_or_else(|| wrong("array", value))?;
                if items.len() != nodes.len() {
                    let expected = format!("array of {}", nodes.len());
                    let found = format!("array of {}", items.len());
                    return Err(invalid(
                        format!("expected {expected}, got {found}"),
                        &expected,
                        found,
                    ));
                }
                let mut out = Vec::with_capacity(nodes.len());
                for (i, node) in nodes.iter().enumerate() {
                    out.push(self.item(*node, &items.get_item(i)?, depth, || index_segment(i))?);
                }
                Ok(PyTuple::new(py, out)?.into_any())
            }
            Node::Set(item) | Node::FrozenSet(item) => {
                let frozen = matches!(self.nodes[index], Node::FrozenSet(_));
                if !(sequence(value).is_some()
                    || value.is_instance_of::<PySet>()
                    || value.is_instance_of::<PyFrozenSet>())
                {
                    return Err(wrong("array", value));
                }
                let mut out = Vec::new();
                for (i, v) in value.try_iter()?.enumerate() {
                    out.push(self.item(*item, &v?, depth, || index_segment(i))?);
                }
                let built = if frozen {
                    PyFrozenSet::new(py, &out).map(Bound::into_any)
                } else {
                    PySet::new(py, &out).map(Bound::into_any)
                };
                built.map_err(|e| {
                    if e.is_instance_of::<PyTypeError>(py) {
                        invalid(
                            format!("unusable set member: {}", e.value(py)),
                            "hashable",
                            "unhashable".to_owned(),
                        )
                    } else {
                        Fail::Py(e)
                    }
                })
            }
            Node::Dict(key_node, value_node) => {
                let dict = value.cast::<PyDict>().map_err(|_| wrong("map", value))?;
                let out = PyDict::new(py);
                for (k, v) in snapshot_items(dict) {
                    let key = self.item(*key_node, &k, depth, || key_segment(&k))?;
                    let val = self.item(*value_node, &v, depth, || key_segment(&k))?;
                    out.set_item(key, val)?;
                }
                Ok(out.into_any())
            }
            Node::Union { name, table } => {
                let option = value_kind(value)?.and_then(|k| table.get(k).copied().flatten());
                match option {
                    Some(node) => self.conv(node, value, depth),
                    None => Err(wrong(name, value)),
                }
            }
            Node::Literal { name, values } => {
                for lit in values {
                    let lit = lit.bind(py);
                    if fast::type_ptr(lit) == ty && lit.eq(value)? {
                        return Ok(lit.clone());
                    }
                }
                Err(wrong(name, value))
            }
            Node::Enum { name, cls, members } => {
                if value.is_instance(cls.bind(py))? {
                    return Ok(value.clone());
                }
                let member = members.bind(py).get_item(value).ok().flatten();
                if let Some(member) = member {
                    let inner = member.getattr(pyo3::intern!(py, "value"))?;
                    if fast::type_ptr(&inner) == ty {
                        return Ok(member);
                    }
                }
                let found = describe(value);
                Err(invalid(
                    format!("expected {name} value, got {found}"),
                    name,
                    found,
                ))
            }
            Node::Dataclass(dc) => self.dataclass(dc, value, depth),
            Node::TypedDict { name, fields } => {
                let dict = value.cast::<PyDict>().map_err(|_| wrong(name, value))?;
                let out = PyDict::new(py);
                let mut used = 0;
                for f in fields {
                    let key = f.name.bind(py);
                    if let Some(v) = dict.get_item(key)? {
                        used += 1;
                        let v = self.item(f.node, &v, depth, || format!(".{key}"))?;
                        out.set_item(key, v)?;
                    } else if f.required {
                        return Err(missing(key, name));
                    }
                }
                if self.forbid && used != dict.len() {
                    let known: Vec<_> = fields.iter().map(|f| f.name.bind(py)).collect();
                    return Err(unknown(dict, &known, name));
                }
                Ok(out.into_any())
            }
            Node::NamedTuple {
                name,
                cls,
                nodes,
                defaults,
            } => {
                let items = sequence(value).ok_or_else(|| wrong(name, value))?;
                let (n, max) = (items.len(), nodes.len());
                let min = max - defaults.len();
                if n < min || n > max {
                    let expected = if defaults.is_empty() {
                        format!("array of {min}")
                    } else {
                        format!("array of {min} to {max}")
                    };
                    let found = format!("array of {n}");
                    return Err(invalid(
                        format!("expected {expected}, got {found}"),
                        &expected,
                        found,
                    ));
                }
                let mut out = Vec::with_capacity(max);
                for (i, node) in nodes.iter().enumerate().take(n) {
                    out.push(self.item(*node, &items.get_item(i)?, depth, || index_segment(i))?);
                }
                for d in &defaults[defaults.len() - (max - n)..] {
                    out.push(d.bind(py).clone());
                }
                Ok(new_named_tuple(cls.bind(py), out)?)
            }
            Node::Constrained { inner, node } => {
                let out = self.conv(*inner, value, depth)?;
                call_twin(py, "check_bounds", (node.bind(py), out))
            }
        }
    }

    fn scalar<'py>(&self, kind: u8, value: &Bound<'py, PyAny>) -> R<Bound<'py, PyAny>> {
        let py = value.py();
        let exact = match kind {
            plan::BYTES => value.is_exact_instance_of::<PyBytes>(),
            plan::DATETIME => value.is_instance_of::<PyDateTime>(),
            plan::DATE => value.is_instance_of::<PyDate>() && !value.is_instance_of::<PyDateTime>(),
            plan::UUID => value.get_type().is(uuid_type(py)?),
            plan::TIMESTAMP => value.get_type().is(timestamp_type(py)?),
            _ => value.get_type().is(decimal_type(py)?),
        };
        if exact {
            return Ok(value.clone());
        }
        call_twin(py, "scalar", (kind, value, self.strings))
    }

    fn dataclass<'py>(
        &self,
        dc: &Dataclass,
        value: &Bound<'py, PyAny>,
        depth: usize,
    ) -> R<Bound<'py, PyAny>> {
        let py = value.py();
        let dict = value.cast::<PyDict>().map_err(|_| wrong(&dc.name, value))?;
        let obj = new_instance(dc.cls.bind(py))?;
        let sink = FieldSink::new(&obj, dc)?;
        let mut used = 0;
        for f in &dc.fields {
            let name = f.name.bind(py);
            let v = if let Some(v) = dict.get_item(name)? {
                used += 1;
                self.item(f.node, &v, depth, || format!(".{name}"))?
            } else {
                match &f.default {
                    Default::Value(d) => d.bind(py).clone(),
                    Default::Factory(make) => make.bind(py).call0()?,
                    Default::Required => return Err(missing(name, &dc.name)),
                }
            };
            sink.set(&obj, f, &v)?;
        }
        if self.forbid && used != dict.len() {
            let known: Vec<_> = dc.fields.iter().map(|f| f.name.bind(py)).collect();
            return Err(unknown(dict, &known, &dc.name));
        }
        if dc.post_init {
            obj.call_method0(pyo3::intern!(py, "__post_init__"))?;
        }
        Ok(obj)
    }
}

/// A list or tuple, as a tuple-like view for indexing (None for anything else).
fn sequence<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Option<Seq<'a, 'py>> {
    if let Ok(list) = value.cast::<PyList>() {
        return Some(Seq::List(list));
    }
    value.cast::<PyTuple>().ok().map(Seq::Tuple)
}

enum Seq<'a, 'py> {
    List(&'a Bound<'py, PyList>),
    Tuple(&'a Bound<'py, PyTuple>),
}

impl<'py> Seq<'_, 'py> {
    fn len(&self) -> usize {
        match self {
            Self::List(l) => l.len(),
            Self::Tuple(t) => t.len(),
        }
    }

    /// Item `i`, owned: user code (a `__post_init__`) may shrink a list while it is converted.
    fn get_item(&self, i: usize) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Self::List(l) => l.get_item(i),
            Self::Tuple(t) => t.get_item(i),
        }
    }
}

/// A dict's pairs, owned, taken before any user code can run.
fn snapshot_items<'py>(dict: &Bound<'py, PyDict>) -> Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut items = Vec::with_capacity(dict.len());
    // SAFETY: the closure only takes strong references (no Python code runs).
    let _ = unsafe {
        fast::for_each_item::<()>(dict, |k, v| {
            items.push((k.to_owned(), v.to_owned()));
            Ok(())
        })
    };
    items
}

fn missing(name: &Bound<'_, PyString>, owner: &str) -> Fail {
    invalid(
        format!("missing required field '{}'", name.to_string_lossy()),
        owner,
        "map".to_owned(),
    )
}

fn unknown<'py>(dict: &Bound<'py, PyDict>, known: &[&Bound<'py, PyString>], owner: &str) -> Fail {
    for (key, _) in snapshot_items(dict) {
        let is_known = known.iter().any(|k| k.as_any().eq(&key).unwrap_or(false));
        if !is_known {
            let repr = key.repr().map_or_else(|_| "?".into(), |r| r.to_string());
            return invalid(format!("unknown field {repr}"), owner, "map".to_owned());
        }
    }
    invalid("unknown field".to_owned(), owner, "map".to_owned())
}
