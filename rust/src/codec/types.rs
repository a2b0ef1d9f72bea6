//! The Python-type dispatch shared by every encoder.
//!
//! `classify` answers "which member of the type model is this object?" with
//! exact type checks first (one pointer compare each, the hot path for plain
//! data) and the slower subclass / protocol checks only when those miss.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateTime, PyDict, PyFloat, PyFrozenSet, PyInt, PyList,
    PyMemoryView, PySet, PyString, PyTuple, PyType,
};

use crate::errors::Error;

/// A member of the type model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    ByteArray,
    MemoryView,
    List,
    Tuple,
    Dict,
    /// `datetime.datetime`, aware or naive; the encoder decides what naive means.
    DateTime,
    /// `datetime.date` that is not a datetime.
    Date,
    Uuid,
    Decimal,
    /// An `enum.Enum` member: encoded as its `.value`.
    Enum,
    /// A dataclass instance: encoded as a map of its fields, in definition order.
    Dataclass,
    Set,
    FrozenSet,
    /// `microstd.codec.Ext`: a msgpack extension carried unchanged.
    Ext,
    /// `microstd.codec.Tag`: a CBOR tag carried unchanged.
    Tag,
    /// `microstd.codec.Timestamp`: an instant a datetime cannot hold exactly.
    Timestamp,
    /// Anything else: handed to `default=` if given, else an `EncodeError`.
    Other,
}

static UUID_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DECIMAL_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ENUM_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EXT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TAG_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMESTAMP_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FIELD_MARKER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `uuid.UUID`, imported once.
pub fn uuid_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID_TYPE.import(py, "uuid", "UUID")
}

/// `decimal.Decimal`, imported once.
pub fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL_TYPE.import(py, "decimal", "Decimal")
}

/// `enum.Enum`, imported once.
pub fn enum_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    ENUM_TYPE.import(py, "enum", "Enum")
}

/// `microstd.codec.Ext`, imported once.
pub fn ext_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    EXT_TYPE.import(py, "microstd.codec._ext", "Ext")
}

/// `microstd.codec.Tag`, imported once.
pub fn tag_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TAG_TYPE.import(py, "microstd.codec._ext", "Tag")
}

/// `microstd.codec.Timestamp`, imported once.
pub fn timestamp_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TIMESTAMP_TYPE.import(py, "microstd.codec._timestamp", "Timestamp")
}

/// A Timestamp's (seconds, nanoseconds).
pub fn timestamp_parts(obj: &Bound<'_, PyAny>) -> PyResult<(i64, u32)> {
    let py = obj.py();
    Ok((
        obj.getattr(pyo3::intern!(py, "seconds"))?.extract()?,
        obj.getattr(pyo3::intern!(py, "nanoseconds"))?.extract()?,
    ))
}

/// Which member of the type model `obj` is.
pub fn classify(obj: &Bound<'_, PyAny>) -> PyResult<Kind> {
    // Exact types: the common case for decoded or hand-built data.
    if obj.is_exact_instance_of::<PyString>() {
        return Ok(Kind::Str);
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return Ok(Kind::Int);
    }
    if obj.is_exact_instance_of::<PyDict>() {
        return Ok(Kind::Dict);
    }
    if obj.is_exact_instance_of::<PyList>() {
        return Ok(Kind::List);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Kind::Float);
    }
    if obj.is_none() {
        return Ok(Kind::None);
    }
    // bool cannot be subclassed, so this check is exact too.
    if obj.is_instance_of::<PyBool>() {
        return Ok(Kind::Bool);
    }
    if obj.is_exact_instance_of::<PyBytes>() {
        return Ok(Kind::Bytes);
    }
    if obj.is_exact_instance_of::<PyTuple>() {
        return Ok(Kind::Tuple);
    }
    classify_slow(obj)
}

fn classify_slow(obj: &Bound<'_, PyAny>) -> PyResult<Kind> {
    let py = obj.py();
    let ty = obj.get_type();
    // A class already encoded as a dataclass skips the dozen checks below
    // (they all miss for it).
    if known_dataclass(&ty).is_some() {
        return Ok(Kind::Dataclass);
    }
    if ty.is(ext_type(py)?) {
        return Ok(Kind::Ext);
    }
    if ty.is(tag_type(py)?) {
        return Ok(Kind::Tag);
    }
    if ty.is(timestamp_type(py)?) {
        return Ok(Kind::Timestamp);
    }
    // Before the builtin subclasses: an IntEnum or StrEnum is encoded by value.
    if obj.is_instance(enum_type(py)?)? {
        return Ok(Kind::Enum);
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(Kind::Int);
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Kind::Float);
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Kind::Str);
    }
    if obj.is_instance_of::<PyBytes>() {
        return Ok(Kind::Bytes);
    }
    if obj.is_instance_of::<PyByteArray>() {
        return Ok(Kind::ByteArray);
    }
    if obj.is_instance_of::<PyMemoryView>() {
        return Ok(Kind::MemoryView);
    }
    if obj.is_instance_of::<PyDict>() {
        return Ok(Kind::Dict);
    }
    if obj.is_instance_of::<PyList>() {
        return Ok(Kind::List);
    }
    if obj.is_instance_of::<PyTuple>() {
        return Ok(Kind::Tuple);
    }
    // datetime is a subclass of date: test it first.
    if obj.is_instance_of::<PyDateTime>() {
        return Ok(Kind::DateTime);
    }
    if obj.is_instance_of::<PyDate>() {
        return Ok(Kind::Date);
    }
    if obj.is_instance(uuid_type(py)?)? {
        return Ok(Kind::Uuid);
    }
    if obj.is_instance(decimal_type(py)?)? {
        return Ok(Kind::Decimal);
    }
    if obj.is_instance_of::<PySet>() {
        return Ok(Kind::Set);
    }
    if obj.is_instance_of::<PyFrozenSet>() {
        return Ok(Kind::FrozenSet);
    }
    if is_dataclass_instance(obj)? {
        return Ok(Kind::Dataclass);
    }
    Ok(Kind::Other)
}

/// True for an instance (not the class) of a dataclass.
fn is_dataclass_instance(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if obj.is_instance_of::<PyType>() {
        return Ok(false);
    }
    obj.get_type()
        .hasattr(pyo3::intern!(obj.py(), "__dataclass_fields__"))
}

/// Dataclasses already encoded: the class -> the names of its real fields.
/// Bounded: past this many classes it starts again. It holds the classes, as
/// the decoder plans of `codec._plan` do.
static DATACLASS_FIELDS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
const MAX_DATACLASSES: usize = 1024;

fn known_dataclass<'py>(ty: &Bound<'py, PyType>) -> Option<Bound<'py, PyTuple>> {
    let py = ty.py();
    let cache = DATACLASS_FIELDS.get(py)?.bind(py);
    let names = cache.get_item(ty).ok()??;
    names.cast_into::<PyTuple>().ok()
}

/// The names of the real fields of the dataclass `ty`, in definition order.
pub fn field_names<'py>(ty: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyTuple>> {
    if let Some(names) = known_dataclass(ty) {
        return Ok(names);
    }
    let py = ty.py();
    let fields = ty.getattr(pyo3::intern!(py, "__dataclass_fields__"))?;
    let fields = fields.cast_into::<PyDict>()?;
    // `__dataclass_fields__` also lists ClassVar and InitVar pseudo-fields;
    // only real fields (`_field_type is dataclasses._FIELD`) are data, as in
    // `dataclasses.fields()`.
    let real = FIELD_MARKER.import(py, "dataclasses", "_FIELD")?;
    let field_type = pyo3::intern!(py, "_field_type");
    let mut names = Vec::with_capacity(fields.len());
    for (name, field) in fields.iter() {
        if field.getattr(field_type)?.is(real) {
            names.push(name.cast_into::<PyString>()?);
        }
    }
    let names = PyTuple::new(py, names)?;
    let cache = DATACLASS_FIELDS
        .get_or_init(py, || PyDict::new(py).unbind())
        .bind(py);
    if cache.len() >= MAX_DATACLASSES {
        cache.clear();
    }
    cache.set_item(ty, &names)?;
    Ok(names)
}

/// The fields of a dataclass instance as `(name, value)` pairs, in definition order.
pub fn dataclass_fields<'py>(
    obj: &Bound<'py, PyAny>,
) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>> {
    let names = field_names(&obj.get_type())?;
    let mut out = Vec::with_capacity(names.len());
    for name in names.iter() {
        let name = name.cast_into::<PyString>()?;
        let value = obj.getattr(&name)?;
        out.push((name, value));
    }
    Ok(out)
}

/// The EncodeError message for a released memoryview; the pure codecs use the
/// same text (`microstd.codec._paths.RELEASED`).
pub const RELEASED: &str = "cannot encode a released memoryview (its buffer is gone)";

/// The bytes of a memoryview, or an encode error when it was released (its
/// buffer is gone: CPython raises a bare ValueError from `tobytes`).
pub fn memoryview_bytes<'py>(obj: &Bound<'py, PyAny>) -> Result<Bound<'py, PyBytes>, Error> {
    match obj.call_method0(pyo3::intern!(obj.py(), "tobytes")) {
        Ok(b) => Ok(b.cast_into::<PyBytes>().map_err(PyErr::from)?),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyValueError>(obj.py()) => {
            Err(Error::encode(RELEASED, "$"))
        }
        Err(e) => Err(Error::Python(e)),
    }
}

/// The qualified type name of `obj`, for error messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .fully_qualified_name()
        .map_or_else(|_| "<unknown type>".to_owned(), |n| n.to_string())
}

/// Adds one path segment in front of an encode error's path as it unwinds,
/// so `$.items[3].price` is built only when an error actually happens.
pub fn at_index(err: Error, index: usize) -> Error {
    prefix_path(err, &format!("[{index}]"))
}

/// Like [`at_index`] for a mapping key.
pub fn at_key(err: Error, key: &Bound<'_, PyAny>) -> Error {
    let segment = match key.cast::<PyString>() {
        Ok(s) => format!(".{}", s.to_string_lossy()),
        Err(_) => format!(
            "[{}]",
            key.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ),
    };
    prefix_path(err, &segment)
}

fn prefix_path(err: Error, segment: &str) -> Error {
    match err {
        Error::Encode { message, path } => {
            // `path` always starts with "$"; insert the segment right after it.
            let rest = path.strip_prefix('$').unwrap_or(&path);
            Error::Encode {
                message,
                path: format!("${segment}{rest}"),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_outermost_last() {
        let err = Error::encode("cannot encode object", "$");
        let err = at_index(err, 3);
        let err = prefix_path(err, ".items");
        assert_eq!(err.to_string(), "cannot encode object at $.items[3]");
    }
}
