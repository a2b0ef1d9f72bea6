//! `RustStreams` and `RustDurableMessage`: the durable core bound to Python.
//!
//! `RustStreams` wraps `Streams` in a mutex. Every operation that hands
//! messages out collects `Delivery`s under the lock and passes them to their
//! members after releasing it: a `RustQueue` member is pushed to natively,
//! any other target is called. The routing core (`RustBroker.send`) stores
//! each publish here first when any stream exists.
//!
//! `RustDurableMessage` is what a durable handler gets. `ack()` settles it in
//! the core without running Python; `nack()` and `term()` go through the
//! subscription's Python settler (backoff, dead letters), which calls back
//! `settle()`. Its twin is `PythonDurableMessage` in `_streams_pure.py`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::stream::Limits;
use super::streams::{Delivery, Settled, Start, Streams};
use crate::broker::message::RustMessage;
use crate::broker::py::{try_locked, RustQueue};
use crate::errors::Error;

static CODEC_GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DECODE_AS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MESSAGE_TYPE: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static SORTED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A stored message: the four fields every delivery of it shares.
struct Stored {
    topic: Py<PyAny>,
    data: Py<PyAny>,
    headers: Py<PyAny>,
    content_type: Py<PyAny>,
}

/// A member of a durable consumer: where its deliveries go.
struct MemberRef {
    target: Py<PyAny>,
    /// Set when the target is a `RustQueue`: pushed to without a Python call.
    queue: Option<Py<RustQueue>>,
    settler: Py<PyAny>,
}

type Core = Streams<Arc<Stored>, Arc<MemberRef>>;
type Out = Vec<Delivery<Arc<Stored>, Arc<MemberRef>>>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Monotonic seconds (deadlines), from a fixed point in this process.
fn now() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Wall-clock epoch seconds (message times, `max_age`, start by time).
fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Streams and durable consumers of one in-memory broker (see `_streams_pure.py`).
#[pyclass(frozen, module = "microstd._core")]
pub struct RustStreams {
    inner: Mutex<Core>,
    /// True once a stream exists: publishes check it before anything else.
    active: AtomicBool,
}

impl RustStreams {
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Store a message the routing core built (`RustBroker.send`).
    pub fn store_built(
        slf: &Bound<'_, Self>,
        message: &Bound<'_, RustMessage>,
        topic: &str,
    ) -> PyResult<usize> {
        let [topic_obj, data, headers, content_type] = message.get().parts(slf.py());
        let stored = Arc::new(Stored {
            topic: topic_obj,
            data,
            headers,
            content_type,
        });
        Self::keep(slf, &stored, topic)
    }

    fn keep(slf: &Bound<'_, Self>, stored: &Arc<Stored>, topic: &str) -> PyResult<usize> {
        let py = slf.py();
        let size = message_size(py, stored)?;
        let mut out = Vec::new();
        let n = locked(&slf.get().inner).store(stored, topic, size, now(), wall(), &mut out)?;
        hand_out(slf, out);
        Ok(n)
    }
}

/// What a message counts for against `max_bytes`: UTF-8 bytes of topic and headers, and the body.
fn message_size(py: Python<'_>, stored: &Stored) -> PyResult<u64> {
    let text_len = |obj: &Bound<'_, PyAny>| -> PyResult<u64> {
        Ok(obj.cast::<PyString>()?.to_str()?.len() as u64)
    };
    let mut size = text_len(stored.topic.bind(py))?;
    size += stored.data.bind(py).cast::<PyBytes>()?.as_bytes().len() as u64;
    let headers = stored.headers.bind(py).cast::<PyDict>()?;
    for (key, value) in headers.iter() {
        size += text_len(&key)? + text_len(&value)?;
    }
    Ok(size)
}

/// Pass each delivery to its member (the lock is released by now).
fn hand_out(slf: &Bound<'_, RustStreams>, out: Out) {
    let py = slf.py();
    for delivery in out {
        let member = Arc::clone(&delivery.target);
        let message = RustDurableMessage::new(py, slf, &delivery);
        let pushed = Bound::new(py, message).and_then(|message| match &member.queue {
            // Redelivery has no publisher to hold back: a full queue just keeps it.
            Some(queue) => queue.get().push_inner(py, message.as_any()).map(|_| ()),
            None => member.target.bind(py).call1((message,)).map(|_| ()),
        });
        if let Err(err) = pushed {
            // A member that cannot take it: its ack_wait runs out and another gets it.
            err.write_unraisable(py, Some(member.target.bind(py)));
        }
    }
}

impl Default for RustStreams {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Core::default()),
            active: AtomicBool::new(false),
        }
    }
}

#[pymethods]
impl RustStreams {
    // Members hold their delivery target and settler, which lead back to the
    // broker. Stored messages are not visited: their fields are str, bytes and
    // a str -> str dict, which lead nowhere, and visiting them would make every
    // full collection walk every retained message.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(core) = try_locked(&self.inner) {
            for member in core.member_targets() {
                visit.call(&member.target)?;
                visit.call(&member.queue)?;
                visit.call(&member.settler)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Taken under the lock, dropped after it: a drop may run Python code.
        let core = try_locked(&self.inner).map(|mut core| std::mem::take(&mut *core));
        if core.is_some() {
            self.active.store(false, Ordering::Release);
        }
        drop(core);
    }

    #[new]
    fn new() -> Self {
        Self::default()
    }

    #[getter]
    fn active(&self) -> bool {
        self.is_active()
    }

    /// Create or update stream `name`; True if created.
    #[pyo3(signature = (name, subjects, max_age, max_count, max_bytes))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts a list into an owned Vec
    fn add_stream(
        &self,
        name: &str,
        subjects: Vec<String>,
        max_age: Option<f64>,
        max_count: Option<u64>,
        max_bytes: Option<u64>,
    ) -> PyResult<bool> {
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let limits = Limits {
            max_age,
            max_count,
            max_bytes,
        };
        let created = locked(&self.inner).add_stream(name, &subjects, limits, wall())?;
        self.active.store(true, Ordering::Release);
        Ok(created)
    }

    fn delete_stream(&self, name: &str) -> bool {
        let mut core = locked(&self.inner);
        let deleted = core.delete_stream(name);
        self.active.store(core.is_active(), Ordering::Release);
        deleted
    }

    /// The stream whose subjects cover `pattern`, or None.
    fn stream_for(&self, pattern: &str) -> Option<String> {
        locked(&self.inner)
            .stream_for(pattern)
            .map(|s| s.to_string())
    }

    /// Keep `message` (anything with topic, data, headers, content_type) in every
    /// stream its topic matches, and hand it out; returns how many streams kept it.
    fn store(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(built) = message.cast::<RustMessage>() {
            let [topic, ..] = built.get().parts(slf.py());
            let topic = topic
                .bind(slf.py())
                .cast::<PyString>()?
                .to_str()?
                .to_owned();
            return Self::store_built(slf, built, &topic);
        }
        let py = slf.py();
        let field = |name: &str| message.getattr(name).map(Bound::unbind);
        let stored = Arc::new(Stored {
            topic: field("topic")?,
            data: field("data")?,
            headers: field("headers")?,
            content_type: field("content_type")?,
        });
        let topic = stored
            .topic
            .bind(py)
            .cast::<PyString>()?
            .to_str()?
            .to_owned();
        Self::keep(slf, &stored, &topic)
    }

    /// The id of durable `name` of stream `stream`, created at the start given if new.
    #[pyo3(signature = (stream, name, pattern, ack_wait, start, start_time, start_seq))]
    #[allow(clippy::too_many_arguments)]
    fn consumer(
        &self,
        stream: &str,
        name: &str,
        pattern: &str,
        ack_wait: f64,
        start: &str,
        start_time: f64,
        start_seq: u64,
    ) -> PyResult<u64> {
        let start = match start {
            "new" => Start::New,
            "first" => Start::First,
            "time" => Start::Time(start_time),
            "sequence" => Start::Sequence(start_seq),
            other => return Err(Error::Invalid(format!("unknown start {other:?}")).into()),
        };
        Ok(locked(&self.inner).consumer(stream, name, pattern, ack_wait, start)?)
    }

    fn delete_consumer(&self, stream: &str, name: &str) -> bool {
        locked(&self.inner).delete_consumer(stream, name)
    }

    /// Add a member to consumer `cid`: deliveries go to `target`, at most `capacity`
    /// unsettled; `settler` handles its messages' nack() and term().
    fn attach(
        slf: &Bound<'_, Self>,
        cid: u64,
        target: Py<PyAny>,
        capacity: usize,
        settler: Py<PyAny>,
    ) -> PyResult<u64> {
        let py = slf.py();
        let queue = target
            .bind(py)
            .cast::<RustQueue>()
            .ok()
            .map(|q| q.clone().unbind());
        let member = Arc::new(MemberRef {
            target,
            queue,
            settler,
        });
        let mut out = Vec::new();
        let mid =
            locked(&slf.get().inner).attach(cid, member, capacity, now(), wall(), &mut out)?;
        hand_out(slf, out);
        Ok(mid)
    }

    /// Hand member `mid` nothing more (it drains before `detach`).
    fn pause(&self, mid: u64) {
        locked(&self.inner).pause(mid);
    }

    /// Remove member `mid`; what it still holds goes to the others at once.
    fn detach(slf: &Bound<'_, Self>, mid: u64) {
        let mut out = Vec::new();
        locked(&slf.get().inner).detach(mid, now(), wall(), &mut out);
        hand_out(slf, out);
    }

    /// Done with the message (a late ack of an earlier delivery counts too).
    fn ack(slf: &Bound<'_, Self>, cid: u64, seq: u64, count: u32) -> bool {
        let _ = count; // any delivery's ack means the work was done
        let mut out = Vec::new();
        let done = locked(&slf.get().inner).ack(cid, seq, now(), wall(), &mut out);
        hand_out(slf, out);
        done == Settled::Done
    }

    /// Never redeliver; `dead` counts it as dead-lettered.
    fn term(slf: &Bound<'_, Self>, cid: u64, seq: u64, count: u32, dead: bool) -> bool {
        let mut out = Vec::new();
        let done = locked(&slf.get().inner).term(cid, seq, count, dead, now(), wall(), &mut out);
        hand_out(slf, out);
        done == Settled::Done
    }

    /// Redeliver the current delivery after `delay` seconds (0: at once).
    fn nack(slf: &Bound<'_, Self>, cid: u64, seq: u64, count: u32, delay: f64) -> bool {
        let mut out = Vec::new();
        let done =
            locked(&slf.get().inner).nack(cid, seq, count, delay, false, now(), wall(), &mut out);
        hand_out(slf, out);
        done == Settled::Done
    }

    /// Hand back a delivery its subscriber never started: redelivered at once, uncounted.
    fn release(slf: &Bound<'_, Self>, cid: u64, seq: u64, count: u32) -> bool {
        let mut out = Vec::new();
        let done =
            locked(&slf.get().inner).nack(cid, seq, count, 0.0, true, now(), wall(), &mut out);
        hand_out(slf, out);
        done == Settled::Done
    }

    /// Restart the current delivery's `ack_wait`.
    fn progress(&self, cid: u64, seq: u64, count: u32) -> bool {
        locked(&self.inner).progress(cid, seq, count, now()) == Settled::Done
    }

    /// Expire consumer `cid`'s due timers and hand out what that frees; the seconds
    /// until its next timer, or None.
    fn tick(slf: &Bound<'_, Self>, cid: u64) -> Option<f64> {
        let mut out = Vec::new();
        let wait = locked(&slf.get().inner).tick(cid, now(), wall(), &mut out);
        hand_out(slf, out);
        wait
    }

    /// Every stream and its durables, as plain dicts (see `StreamInfo`).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let summaries = locked(&self.inner).info(wall());
        let out = PyList::empty(py);
        for s in summaries {
            let d = PyDict::new(py);
            d.set_item("name", &*s.name)?;
            let subjects: Vec<&str> = s.subjects.iter().map(|x| &**x).collect();
            d.set_item("subjects", subjects)?;
            d.set_item("max_age", s.limits.max_age)?;
            d.set_item("max_count", s.limits.max_count)?;
            d.set_item("max_bytes", s.limits.max_bytes)?;
            d.set_item("messages", s.messages)?;
            d.set_item("bytes", s.bytes)?;
            d.set_item("first_sequence", s.first_sequence)?;
            d.set_item("last_sequence", s.last_sequence)?;
            let durables = PyList::empty(py);
            for c in s.durables {
                let dd = PyDict::new(py);
                dd.set_item("name", &*c.name)?;
                dd.set_item("pattern", &*c.pattern)?;
                dd.set_item("pending", c.pending)?;
                dd.set_item("unacked", c.unacked)?;
                dd.set_item("redelivered", c.redelivered)?;
                dd.set_item("dead_lettered", c.dead_lettered)?;
                dd.set_item("consumers", c.consumers)?;
                durables.append(dd)?;
            }
            d.set_item("durables", durables)?;
            out.append(d)?;
        }
        Ok(out)
    }
}

/// One delivery of a durable subscription's message.
#[pyclass(frozen, module = "microstd._core", name = "RustDurableMessage")]
pub struct RustDurableMessage {
    topic: Py<PyAny>,
    data: Py<PyAny>,
    headers: Py<PyAny>,
    content_type: Py<PyAny>,
    stream: Arc<str>,
    count: u32,
    cid: u64,
    seq: u64,
    core: Py<RustStreams>,
    settler: Py<PyAny>,
    settled: AtomicBool,
}

impl RustDurableMessage {
    fn new(
        py: Python<'_>,
        core: &Bound<'_, RustStreams>,
        d: &Delivery<Arc<Stored>, Arc<MemberRef>>,
    ) -> Self {
        let m = &d.message;
        Self {
            topic: m.topic.clone_ref(py),
            data: m.data.clone_ref(py),
            headers: m.headers.clone_ref(py),
            content_type: m.content_type.clone_ref(py),
            stream: Arc::clone(&d.stream),
            count: d.count,
            cid: d.cid,
            seq: d.seq,
            core: core.clone().unbind(),
            settler: d.target.settler.clone_ref(py),
            settled: AtomicBool::new(false),
        }
    }

    pub fn delivery_count_value(&self) -> u32 {
        self.count
    }

    /// `ack()` without a Python call: what `RustQueue.run` does after a handler returns.
    pub fn ack_native(&self, py: Python<'_>) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            RustStreams::ack(self.core.bind(py), self.cid, self.seq, self.count);
        }
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [&self.topic, &self.data, &self.headers, &self.content_type].map(|f| f.bind(py)),
        )
    }
}

#[pymethods]
impl RustDurableMessage {
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

    /// `stream:sequence`, the same for every delivery of this message.
    #[getter]
    fn id(&self) -> String {
        format!("{}:{}", self.stream, self.seq)
    }

    #[getter]
    fn delivery_count(&self) -> u32 {
        self.count
    }

    /// True once acked, nacked, terminated or released (further settles are no-ops).
    #[getter]
    fn settled(&self) -> bool {
        self.is_settled()
    }

    #[setter]
    fn set_settled(&self, value: bool) {
        self.settled.store(value, Ordering::Release);
    }

    #[getter]
    fn settler(&self, py: Python<'_>) -> Py<PyAny> {
        self.settler.clone_ref(py)
    }

    /// Done: never deliver again. A second settle is a no-op.
    fn ack(&self, py: Python<'_>) {
        self.ack_native(py);
    }

    /// Failed: redeliver after `delay` seconds (None: the subscription's backoff).
    #[pyo3(signature = (delay=None))]
    fn nack(slf: &Bound<'_, Self>, delay: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        if slf.get().is_settled() {
            return Ok(());
        }
        let settler = slf.get().settler.bind(slf.py());
        settler.call_method1(
            pyo3::intern!(slf.py(), "nack"),
            (slf, delay, pyo3::intern!(slf.py(), "nacked")),
        )?;
        Ok(())
    }

    /// Never redeliver; dead-lettered if the subscription has a dead-letter topic.
    fn term(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().is_settled() {
            return Ok(());
        }
        let settler = slf.get().settler.bind(slf.py());
        settler.call_method1(
            pyo3::intern!(slf.py(), "term"),
            (slf, pyo3::intern!(slf.py(), "terminated")),
        )?;
        Ok(())
    }

    /// Still working on it: restart the `ack_wait` clock.
    fn in_progress(&self) {
        if !self.is_settled() {
            self.core.get().progress(self.cid, self.seq, self.count);
        }
    }

    /// The core operations behind nack, term and release, for the settler.
    #[pyo3(signature = (how, delay=0.0, dead=false))]
    fn settle(&self, py: Python<'_>, how: &str, delay: f64, dead: bool) -> PyResult<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let core = self.core.bind(py);
        match how {
            "nack" => {
                RustStreams::nack(core, self.cid, self.seq, self.count, delay);
            }
            "release" => {
                RustStreams::release(core, self.cid, self.seq, self.count);
            }
            "term" => {
                RustStreams::term(core, self.cid, self.seq, self.count, dead);
            }
            other => {
                self.settled.store(false, Ordering::Release);
                return Err(Error::Invalid(format!("unknown settle {other:?}")).into());
            }
        }
        Ok(())
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

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.topic)?;
        visit.call(&self.data)?;
        visit.call(&self.headers)?;
        visit.call(&self.content_type)?;
        visit.call(&self.core)?;
        visit.call(&self.settler)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let sorted = SORTED.import(py, "builtins", "sorted")?;
        Ok(format!(
            "Message(topic={}, content_type={}, size={}, headers={}, id='{}', delivery_count={})",
            self.topic.bind(py).repr()?,
            self.content_type.bind(py).repr()?,
            self.data.bind(py).len()?,
            sorted.call1((self.headers.bind(py),))?.repr()?,
            self.id(),
            self.count,
        ))
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let message_type = MESSAGE_TYPE.import(py, "microstd.broker.base", "Message")?;
        if !other.is_instance(message_type)? {
            return Ok(py.NotImplemented());
        }
        let theirs = PyTuple::new(
            py,
            [
                other.getattr(pyo3::intern!(py, "topic"))?,
                other.getattr(pyo3::intern!(py, "data"))?,
                other.getattr(pyo3::intern!(py, "headers"))?,
                other.getattr(pyo3::intern!(py, "content_type"))?,
            ],
        )?;
        let equal = self.fields(py)?.eq(theirs)?;
        let answer = match op {
            CompareOp::Eq => equal,
            CompareOp::Ne => !equal,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(PyBool::new(py, answer).to_owned().into_any().unbind())
    }
}
