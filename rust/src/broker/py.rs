//! `RustBroker`: the router bound to Python, and the fan-out loop that calls handlers.
//!
//! One publish crosses into Rust once (`send`): a bytes body becomes a
//! `RustMessage` without running any Python code, the subject is matched
//! (through the cache), queue-group members are picked, and every target is
//! called (or, for a `RustQueue`, pushed to) with that one message object, so
//! the body is never copied per subscriber.
//! A target that raises is passed to the error hook with its owner; the loop
//! goes on with the other targets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::durable::py::{RustDurableMessage, RustStreams};
use super::message::RustMessage;
use super::queue::Bounded;
use super::router::Router;
use super::subjects;
use crate::errors::Error;

/// What `RustQueue.run` reports, as `(index, outcome, object)`; Python reads these
/// names from the core (`_core.RUN_DONE`, ...), never bare numbers.
pub const RUN_DONE: u8 = 0;
/// The handler raised the object at the index (to report).
pub const RUN_RAISED: u8 = 1;
/// The object at the index must be awaited (an awaitable, or a `(coroutine,
/// yielded)` pair of a coroutine that suspended on its first step).
pub const RUN_AWAIT: u8 = 2;
/// The queue was stopped.
pub const RUN_STOPPED: u8 = 3;
/// The durable message at the index was delivered more than `max_deliver` times.
pub const RUN_OVER_DELIVERED: u8 = 4;

struct Entry {
    target: Py<PyAny>,
    /// Set when the target is a `RustQueue`: the fan-out pushes without a Python call.
    queue: Option<Py<RustQueue>>,
    owner: Py<PyAny>,
    /// Cleared on unsubscribe, so a delivery already in flight skips it.
    active: AtomicBool,
}

/// The in-memory routing core: subject trie, match cache, queue groups, fan-out.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustBroker {
    router: Mutex<Router<Entry>>,
    on_error: Mutex<Option<Py<PyAny>>>,
    /// The durable streams of this core; a publish stores into them first.
    streams: Py<RustStreams>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the router half-updated in a
    // way that matters more than losing it, so carry on with the data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The lock's data, or None if someone holds it. The garbage collector must
/// never wait for a lock: the thread collecting may be the one holding it (a
/// drop under the lock can run Python code that allocates). Skipping an
/// object's references in `__traverse__` is safe, only conservative: what
/// they reach looks referenced from outside and is kept for now.
pub(crate) fn try_locked<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[pymethods]
impl RustBroker {
    // Handlers, their subscriptions and the error hook are Python objects that
    // usually refer back to the broker: without these a broker dropped without
    // close() is a cycle the collector cannot see through.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.streams)?;
        if let Some(hook) = try_locked(&self.on_error) {
            visit.call(&*hook)?;
        }
        if let Some(router) = try_locked(&self.router) {
            for entry in router.entries() {
                visit.call(&entry.target)?;
                visit.call(&entry.queue)?;
                visit.call(&entry.owner)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Taken under the locks, dropped after them: a drop may run Python code.
        let hook = try_locked(&self.on_error).and_then(|mut hook| hook.take());
        let router = try_locked(&self.router).map(|mut router| std::mem::take(&mut *router));
        drop((hook, router));
    }

    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Self {
            router: Mutex::new(Router::default()),
            on_error: Mutex::new(None),
            streams: Py::new(py, RustStreams::default())?,
        })
    }

    /// The durable streams of this core (`RustStreams`).
    #[getter]
    fn streams(&self, py: Python<'_>) -> Py<RustStreams> {
        self.streams.clone_ref(py)
    }

    /// Route messages matching `pattern` to `target(message)`; `owner` is what the
    /// error hook is given when `target` raises. Returns the subscription id.
    #[pyo3(signature = (pattern, queue, target, owner))]
    fn subscribe(
        &self,
        py: Python<'_>,
        pattern: &str,
        queue: Option<&str>,
        target: Py<PyAny>,
        owner: Py<PyAny>,
    ) -> PyResult<u64> {
        let native = target
            .bind(py)
            .cast::<RustQueue>()
            .ok()
            .map(|q| q.clone().unbind());
        let entry = Arc::new(Entry {
            target,
            queue: native,
            owner,
            active: AtomicBool::new(true),
        });
        Ok(locked(&self.router).subscribe(pattern, queue, entry)?)
    }

    /// Remove subscription `sid`; False if it was already gone.
    fn unsubscribe(&self, sid: u64) -> bool {
        let removed = locked(&self.router).unsubscribe(sid);
        match removed {
            Some(entry) => {
                entry.active.store(false, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Set the hook called as `hook(exc, owner)` when a target raises.
    fn set_on_error(&self, hook: Option<Py<PyAny>>) {
        *locked(&self.on_error) = hook;
    }

    /// Call every target `subject` reaches with `message`; returns the owners of the
    /// queues it left past their bound (block policy), whose publisher should wait
    /// for room: usually the empty tuple.
    fn publish<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        self.fan_out(py, as_subject(subject)?, message)
    }

    /// The whole of one publish in one call: encode `body` into one `RustMessage`
    /// (as `encode_body` does) and fan it out. Returns what `publish` returns.
    #[pyo3(signature = (topic, body, headers=None, content_type=None))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        topic: &Bound<'py, PyAny>,
        body: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
        content_type: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let message = RustMessage::build(py, topic, body, headers, content_type)?;
        let message = Bound::new(py, message)?;
        let subject = as_subject(topic)?;
        let streams = self.streams.bind(py);
        if streams.get().is_active() {
            RustStreams::store_built(streams, &message, subject.to_str()?)?;
        }
        self.fan_out(py, subject, message.as_any())
    }

    /// The targets one publish to `subject` would reach (queue groups advance).
    fn targets(&self, py: Python<'_>, subject: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAny>>> {
        let subject = as_subject(subject)?;
        let hash = subject.hash()? as u64;
        let found = {
            let mut router = locked(&self.router);
            let m = router.lookup_hashed(hash, subject.to_str()?)?;
            let mut out = m.plain.clone();
            out.extend(m.groups.iter().filter_map(|p| p.pick().cloned()));
            out
        };
        Ok(found
            .iter()
            .filter(|e| e.active.load(Ordering::Acquire))
            .map(|e| e.target.clone_ref(py))
            .collect())
    }

    /// Drop every subscription.
    fn clear(&self) {
        let mut router = locked(&self.router);
        router.clear();
    }

    fn __len__(&self) -> usize {
        locked(&self.router).len()
    }
}

/// A subscriber's bounded queue for the async interface (see `queue.rs`).
///
/// `waker()` is called when a push finds the delivery task idle, after the lock
/// is released, so it may call back into the queue. A push that leaves the
/// queue past its bound (block policy) returns True: the publisher waits.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustQueue {
    inner: Mutex<Bounded<Py<PyAny>>>,
    /// Set by `close(discard=True)` (unsubscribe): `run` stops between messages.
    stopped: AtomicBool,
    waker: Py<PyAny>,
}

impl RustQueue {
    /// Queues `message`; true if the queue is now past its bound (block policy).
    pub(crate) fn push_inner(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<bool> {
        let pushed = locked(&self.inner).push(message.clone().unbind());
        if pushed.wake {
            self.waker.bind(py).call0()?;
        }
        Ok(pushed.over)
    }
}

#[pymethods]
impl RustQueue {
    // Queued messages lead to their durable's settler, and the waker to the
    // delivery that owns this queue: both can close a cycle back here.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.waker)?;
        if let Some(queue) = try_locked(&self.inner) {
            for item in queue.iter() {
                visit.call(item)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let items = try_locked(&self.inner).map(|mut queue| queue.take_items());
        drop(items);
    }

    #[new]
    fn new(max_pending: usize, drop_when_full: bool, waker: Py<PyAny>) -> Self {
        Self {
            inner: Mutex::new(Bounded::new(max_pending, drop_when_full)),
            stopped: AtomicBool::new(false),
            waker,
        }
    }

    /// Queue `message` (never waits); true if the publisher should wait for room.
    fn push(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.push_inner(py, message)
    }

    /// Everything queued, oldest first; empty means the task may sleep until woken.
    fn take(&self) -> Vec<Py<PyAny>> {
        locked(&self.inner).take()
    }

    /// Hand `batch[start:]` to `handler` in order until one needs the event loop.
    ///
    /// Returns `(index, outcome, obj)`, the outcome one of the `RUN_*` constants:
    /// `RUN_DONE`, all handled; `RUN_RAISED`, `handler` raised `obj` at `index`;
    /// `RUN_AWAIT`, `obj` at `index` must be awaited (an awaitable, or a
    /// `(coroutine, yielded)` pair of a coroutine that suspended on its first
    /// step); `RUN_STOPPED`, the queue was stopped; `RUN_OVER_DELIVERED`, the
    /// durable message at `index` was delivered more than `max_deliver` times
    /// (not handled). With `auto_ack`, a
    /// durable message whose handler returned here is acked. Coroutines are stepped here first, so a
    /// handler that finishes without suspending costs no trip through asyncio,
    /// exactly as `await handler(m)` would not.
    #[pyo3(signature = (handler, batch, start, auto_ack=false, max_deliver=0))]
    fn run(
        &self,
        py: Python<'_>,
        handler: &Bound<'_, PyAny>,
        batch: &Bound<'_, PyList>,
        start: usize,
        auto_ack: bool,
        max_deliver: u32,
    ) -> PyResult<(usize, u8, Option<Py<PyAny>>)> {
        let n = batch.len();
        for i in start..n {
            if self.stopped.load(Ordering::Acquire) {
                return Ok((i, RUN_STOPPED, None));
            }
            let message = batch.get_item(i)?;
            let durable = message.cast::<RustDurableMessage>().ok();
            if let Some(d) = &durable {
                if max_deliver > 0 && d.get().delivery_count_value() > max_deliver {
                    return Ok((i, RUN_OVER_DELIVERED, None));
                }
            }
            let result = match call_returning(py, handler, &message) {
                Ok(result) => result,
                Err(err) => return raised(py, i, err),
            };
            if result.is_none() {
                if auto_ack {
                    if let Some(d) = &durable {
                        d.get().ack_native(py);
                    }
                }
                continue;
            }
            // SAFETY: `result` is a live object and the GIL is held.
            if unsafe { pyo3::ffi::PyCoro_CheckExact(result.as_ptr()) } == 0 {
                return Ok((i, RUN_AWAIT, Some(result.unbind())));
            }
            let mut out: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
            // SAFETY: `result` is a coroutine (checked above); `out` receives a
            // new reference on RETURN and NEXT, and stays null on ERROR.
            let sent = unsafe {
                pyo3::ffi::PyIter_Send(result.as_ptr(), pyo3::ffi::Py_None(), &raw mut out)
            };
            match sent {
                pyo3::ffi::PySendResult::PYGEN_RETURN => {
                    // SAFETY: a new reference we own (the handler's return value).
                    drop(unsafe { Bound::from_owned_ptr(py, out) });
                    if auto_ack {
                        if let Some(d) = &durable {
                            d.get().ack_native(py);
                        }
                    }
                }
                pyo3::ffi::PySendResult::PYGEN_NEXT => {
                    // SAFETY: a new reference we own (what the coroutine yielded).
                    let yielded = unsafe { Bound::from_owned_ptr(py, out) };
                    let pair = (result, yielded).into_pyobject(py)?.into_any().unbind();
                    return Ok((i, RUN_AWAIT, Some(pair)));
                }
                pyo3::ffi::PySendResult::PYGEN_ERROR => return raised(py, i, PyErr::fetch(py)),
            }
        }
        Ok((n, RUN_DONE, None))
    }

    /// Refuse further pushes; `discard` also forgets what is queued.
    fn close(&self, discard: bool) {
        if discard {
            self.stopped.store(true, Ordering::Release);
        }
        let dropped_items = {
            let mut q = locked(&self.inner);
            let items = if discard { q.take() } else { Vec::new() };
            q.close(discard);
            items
        };
        drop(dropped_items);
    }

    /// True while the queue holds more than its bound (block policy).
    fn over(&self) -> bool {
        locked(&self.inner).over()
    }

    #[getter]
    fn dropped(&self) -> u64 {
        locked(&self.inner).dropped()
    }

    fn __len__(&self) -> usize {
        locked(&self.inner).len()
    }
}

/// A handler's exception for the caller to report; anything that is not an
/// `Exception` (cancellation, `KeyboardInterrupt`) propagates instead.
fn raised(py: Python<'_>, i: usize, err: PyErr) -> PyResult<(usize, u8, Option<Py<PyAny>>)> {
    if !err.is_instance_of::<PyException>(py) {
        return Err(err);
    }
    Ok((i, RUN_RAISED, Some(err.into_value(py).into_any())))
}

/// `target(arg)` by vectorcall, keeping the result.
fn call_returning<'py>(
    py: Python<'py>,
    target: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut args = [std::ptr::null_mut(), arg.as_ptr()];
    // SAFETY: as in `call_one`; the result is a new reference owned by the Bound.
    unsafe {
        let result = pyo3::ffi::PyObject_Vectorcall(
            target.as_ptr(),
            args.as_mut_ptr().add(1),
            1 | pyo3::ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            std::ptr::null_mut(),
        );
        if result.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, result))
    }
}

fn as_subject<'a, 'py>(subject: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyString>> {
    subject.cast::<PyString>().map_err(|_| {
        Error::InvalidTopic(format!(
            "topic must be a str, got {}",
            subject
                .get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string())
        ))
        .into()
    })
}

/// `target(arg)` through the vectorcall protocol: no argument tuple is built,
/// which is most of what a call costs on a fan-out to many handlers.
fn call_one(py: Python<'_>, target: &Py<PyAny>, arg: &Bound<'_, PyAny>) -> PyResult<()> {
    // The slot before the argument is scratch space the callee may use
    // (PY_VECTORCALL_ARGUMENTS_OFFSET), so bound methods avoid a copy.
    let mut args = [std::ptr::null_mut(), arg.as_ptr()];
    // SAFETY: the GIL is held (`py`); `target` and `arg` are live references for
    // the duration of the call; `args` has the offset slot plus one argument, as
    // the flag declares; the result is a new reference we own and release.
    unsafe {
        let result = pyo3::ffi::PyObject_Vectorcall(
            target.as_ptr(),
            args.as_mut_ptr().add(1),
            1 | pyo3::ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            std::ptr::null_mut(),
        );
        if result.is_null() {
            return Err(PyErr::fetch(py));
        }
        pyo3::ffi::Py_DECREF(result);
    }
    Ok(())
}

impl RustBroker {
    /// Match `subject` (through the cache), pick queue-group members, then hand
    /// `message` to each target with the router unlocked, so a handler may
    /// subscribe or publish.
    ///
    /// Returns the owners of the queues left past their bound (block policy),
    /// usually none: the empty tuple, which Python shares, so a publish that
    /// overfills nothing allocates nothing for the answer.
    fn fan_out<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyString>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        // Python caches a str's hash in the object: the cache key costs nothing.
        let hash = subject.hash()? as u64;
        let text = subject.to_str()?;
        let (matched, picked) = {
            let mut router = locked(&self.router);
            let matched = router.lookup_hashed(hash, text)?;
            let picked: Vec<Arc<Entry>> = matched
                .groups
                .iter()
                .filter_map(|p| p.pick().cloned())
                .collect();
            (matched, picked)
        };
        let mut over: Vec<&Py<PyAny>> = Vec::new();
        for entry in matched.plain.iter().chain(picked.iter()) {
            if !entry.active.load(Ordering::Acquire) {
                continue;
            }
            let outcome = match &entry.queue {
                Some(queue) => queue.get().push_inner(py, message),
                None => call_one(py, &entry.target, message).map(|()| false),
            };
            match outcome {
                Ok(true) => over.push(&entry.owner),
                Ok(false) => {}
                Err(err) => self.report(py, &err, &entry.owner),
            }
        }
        if over.is_empty() {
            return Ok(PyTuple::empty(py));
        }
        PyTuple::new(py, over)
    }

    fn report(&self, py: Python<'_>, err: &PyErr, owner: &Py<PyAny>) {
        let hook = locked(&self.on_error).as_ref().map(|h| h.clone_ref(py));
        let outcome = match hook {
            Some(hook) => hook.bind(py).call1((err.value(py), owner)).map(|_| ()),
            None => Err(err.clone_ref(py)),
        };
        if let Err(unreported) = outcome {
            unreported.write_unraisable(py, Some(owner.bind(py)));
        }
    }
}

/// Raise `InvalidTopic` unless `subject` is a concrete publish subject.
#[pyfunction]
pub fn validate_subject(subject: &str) -> PyResult<()> {
    subjects::validate_subject(subject).map_err(PyErr::from)
}

/// Raise `InvalidTopic` unless `pattern` is a valid subscription pattern.
#[pyfunction]
pub fn validate_pattern(pattern: &str) -> PyResult<()> {
    subjects::validate_pattern(pattern).map_err(PyErr::from)
}

/// True if the concrete `subject` matches `pattern` (both validated first).
#[pyfunction]
pub fn subject_matches(pattern: &str, subject: &str) -> PyResult<bool> {
    subjects::validate_pattern(pattern)?;
    subjects::validate_subject(subject)?;
    Ok(subjects::matches(pattern, subject))
}
