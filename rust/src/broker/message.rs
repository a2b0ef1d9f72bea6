//! `RustMessage`: what the Rust routing core hands to every handler of one publish.
//!
//! It is built inside `RustBroker.send`, with no Python code run, and shared
//! by all the handlers of that publish (read-only, like the twin's).
//! `microstd.broker.Message` registers it as a virtual subclass, so
//! `isinstance(m, Message)` holds on every backend and the two compare equal
//! field by field.

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

static ENCODE_BODY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CODEC_GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DECODE_AS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SORTED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEEPCOPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MESSAGE_TYPE: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

const OCTET_STREAM: &str = "application/octet-stream";

/// The same words as the twin's `Message.ack()` and friends.
fn core_settle() -> PyErr {
    crate::errors::Error::NotSupported(
        "only messages of a durable subscription (subscribe(..., durable=NAME)) are acked, \
         nacked or terminated"
            .into(),
    )
    .into()
}

/// One delivered message: `topic`, `data` (the encoded body), `headers`, `content_type`.
#[pyclass(frozen, module = "microstd._core", name = "RustMessage")]
pub struct RustMessage {
    topic: Py<PyAny>,
    data: Py<PyAny>,
    headers: Py<PyAny>,
    content_type: Py<PyAny>,
}

impl RustMessage {
    /// The message one publish of `body` sends, encoded as the twin's `encode_body` would.
    ///
    /// The common case, a `bytes` body without headers or content type, is
    /// built here directly; everything else goes through `encode_body` itself,
    /// so both cores encode (and refuse) exactly the same bodies.
    pub fn build(
        py: Python<'_>,
        topic: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
        content_type: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if headers.is_none() && content_type.is_none() && body.is_exact_instance_of::<PyBytes>() {
            return Ok(Self {
                topic: topic.clone().unbind(),
                data: body.clone().unbind(),
                headers: PyDict::new(py).into_any().unbind(),
                content_type: pyo3::intern!(py, OCTET_STREAM).clone().into_any().unbind(),
            });
        }
        let encode = ENCODE_BODY.import(py, "microstd.broker.base", "encode_body")?;
        let encoded = encode.call1((body, content_type, headers))?;
        let (data, content_type, headers) =
            encoded.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
        Ok(Self {
            topic: topic.clone().unbind(),
            data: data.unbind(),
            headers: headers.unbind(),
            content_type: content_type.unbind(),
        })
    }

    /// The four fields, as new references (what a stream keeps of a publish).
    pub fn parts(&self, py: Python<'_>) -> [Py<PyAny>; 4] {
        [
            self.topic.clone_ref(py),
            self.data.clone_ref(py),
            self.headers.clone_ref(py),
            self.content_type.clone_ref(py),
        ]
    }

    /// `(topic, data, headers, content_type)`, compared as the twin's `__eq__` does.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [&self.topic, &self.data, &self.headers, &self.content_type].map(|f| f.bind(py)),
        )
    }
}

#[pymethods]
impl RustMessage {
    #[new]
    #[pyo3(signature = (topic, data, headers=None, content_type=None))]
    fn new(
        py: Python<'_>,
        topic: Py<PyAny>,
        data: Py<PyAny>,
        headers: Option<Py<PyAny>>,
        content_type: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            topic,
            data,
            headers: headers.unwrap_or_else(|| PyDict::new(py).into_any().unbind()),
            content_type: content_type
                .unwrap_or_else(|| pyo3::intern!(py, OCTET_STREAM).clone().into_any().unbind()),
        }
    }

    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyAny> {
        self.topic.clone_ref(py)
    }

    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyAny> {
        self.data.clone_ref(py)
    }

    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<PyAny> {
        self.headers.clone_ref(py)
    }

    #[getter]
    fn content_type(&self, py: Python<'_>) -> Py<PyAny> {
        self.content_type.clone_ref(py)
    }

    /// Core messages carry no id (`None`); durable ones do.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    #[getter]
    fn id(&self) -> Option<String> {
        None
    }

    /// A core message is delivered once.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    #[getter]
    fn delivery_count(&self) -> u32 {
        1
    }

    /// Only messages of a durable subscription are settled: `NotSupported`.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    fn ack(&self) -> PyResult<()> {
        Err(core_settle())
    }

    /// Only messages of a durable subscription are settled: `NotSupported`.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    #[pyo3(signature = (delay=None))]
    fn nack(&self, delay: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let _ = delay;
        Err(core_settle())
    }

    /// Only messages of a durable subscription are settled: `NotSupported`.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    fn term(&self) -> PyResult<()> {
        Err(core_settle())
    }

    /// Only messages of a durable subscription are settled: `NotSupported`.
    #[allow(clippy::unused_self)] // a method for Python, the same on every message
    fn in_progress(&self) -> PyResult<()> {
        Err(core_settle())
    }

    /// Lets the cycle collector see the fields: a handler may store the message
    /// in its own `headers`, which only the collector can then free.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.topic)?;
        visit.call(&self.data)?;
        visit.call(&self.headers)?;
        visit.call(&self.content_type)
    }

    /// The body decoded with the codec of its content type (bytes stay bytes);
    /// `type=T` decodes it into a `T` (`microstd.codec.typed.decode_as`).
    #[pyo3(signature = (r#type=None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        r#type: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(tp) = r#type.filter(|t| !t.is_none()) {
            let decode_as = DECODE_AS.import(py, "microstd.codec.typed", "decode_as")?;
            return decode_as.call1((self.content_type.bind(py), self.data.bind(py), tp));
        }
        let get = CODEC_GET.import(py, "microstd.codec", "get")?;
        get.call1((self.content_type.bind(py),))?
            .call_method1(pyo3::intern!(py, "loads"), (self.data.bind(py),))
    }

    /// `copy.copy`: a new message sharing the fields, as for the twin's slots.
    fn __copy__(&self, py: Python<'_>) -> Self {
        Self {
            topic: self.topic.clone_ref(py),
            data: self.data.clone_ref(py),
            headers: self.headers.clone_ref(py),
            content_type: self.content_type.clone_ref(py),
        }
    }

    /// `copy.deepcopy`: a new message with each field deep-copied.
    fn __deepcopy__(&self, py: Python<'_>, memo: &Bound<'_, PyAny>) -> PyResult<Self> {
        let deepcopy = DEEPCOPY.import(py, "copy", "deepcopy")?;
        let copy = |field: &Py<PyAny>| deepcopy.call1((field.bind(py), memo)).map(Bound::unbind);
        Ok(Self {
            topic: copy(&self.topic)?,
            data: copy(&self.data)?,
            headers: copy(&self.headers)?,
            content_type: copy(&self.content_type)?,
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let sorted = SORTED.import(py, "builtins", "sorted")?;
        Ok(format!(
            "Message(topic={}, content_type={}, size={}, headers={})",
            self.topic.bind(py).repr()?,
            self.content_type.bind(py).repr()?,
            self.data.bind(py).len()?,
            sorted.call1((self.headers.bind(py),))?.repr()?,
        ))
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let ours = self.fields(py)?;
        let theirs = if let Ok(other) = other.cast::<RustMessage>() {
            other.get().fields(py)?
        } else if other.is_instance(MESSAGE_TYPE.import(
            py,
            "microstd.broker.base",
            "Message",
        )?)? {
            let field = |name| other.getattr(name);
            PyTuple::new(
                py,
                [
                    field(pyo3::intern!(py, "topic"))?,
                    field(pyo3::intern!(py, "data"))?,
                    field(pyo3::intern!(py, "headers"))?,
                    field(pyo3::intern!(py, "content_type"))?,
                ],
            )?
        } else {
            return Ok(py.NotImplemented());
        };
        let equal = ours.eq(theirs)?;
        let answer = match op {
            CompareOp::Eq => equal,
            CompareOp::Ne => !equal,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(PyBool::new(py, answer).to_owned().into_any().unbind())
    }
}
