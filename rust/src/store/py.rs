//! `RustMemoryStore` and `RustWatch`: the Python binding of `MemoryStore`.
//!
//! Values are encoded before the store's lock is taken and decoded after it
//! is released, so no Python code ever runs under the lock; that is what lets
//! bulk operations release the GIL while they hold it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors::{Closed, Error};
use crate::quote::quote;
use crate::store::convert::{self, Clock, Parts, ValueCodec};
use crate::store::memory::{Limits, Listing, MemoryStore, Write, SWEEP_BUDGET};
use crate::store::strings::{key_object, KeyStrings};
use crate::store::watch::{Drained, WatchQueue};

/// The ordered in-memory store with TTLs, revisions, bounds and watch.
/// Thread-safe; methods take microseconds, bulk ones release the GIL.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustMemoryStore {
    inner: Mutex<MemoryStore>,
    clock: Clock,
    codec: ValueCodec,
    /// Watcher id -> the callable that wakes its consumer (see `RustWatch.set_waker`).
    wakers: Mutex<HashMap<u64, Py<PyAny>>>,
    /// Recently listed keys' `str` objects.
    key_strings: Mutex<KeyStrings>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation of `MemoryStore` completes before a panic could unwind
    // past it, so a poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RustMemoryStore {
    /// Runs `f` on the store: at once if the lock is free, else with the GIL
    /// released while waiting, so one busy thread never stalls the others.
    /// Then wakes the watchers the operation fed.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut MemoryStore, u64) -> R + Send,
    ) -> R {
        let run = |store: &mut MemoryStore| {
            let result = f(store, self.clock.now());
            (result, store.take_woken())
        };
        let (result, woken) = match self.inner.try_lock() {
            Ok(mut guard) => run(&mut guard),
            Err(TryLockError::Poisoned(p)) => run(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => py.detach(|| run(&mut lock(&self.inner))),
        };
        self.wake(py, &woken);
        result
    }

    /// Like `with`, always releasing the GIL: for bulk work.
    fn with_detached<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut MemoryStore, u64) -> R + Send,
    ) -> R {
        let (result, woken) = py.detach(|| {
            let mut store = lock(&self.inner);
            let result = f(&mut store, self.clock.now());
            (result, store.take_woken())
        });
        self.wake(py, &woken);
        result
    }

    fn wake(&self, py: Python<'_>, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let wakers: Vec<Py<PyAny>> = {
            let map = lock(&self.wakers);
            ids.iter()
                .filter_map(|id| map.get(id).map(|w| w.clone_ref(py)))
                .collect()
        };
        for waker in wakers {
            // A waker must not break the write that triggered it.
            if let Err(err) = waker.bind(py).call0() {
                err.write_unraisable(py, Some(waker.bind(py)));
            }
        }
    }

    fn encode_write(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<u64>,
        metadata: Vec<(String, String)>,
    ) -> PyResult<Write> {
        let key = convert::key_str(key)?.to_owned();
        let value = self.codec.encode(value)?;
        Ok(Write {
            key,
            value,
            metadata,
            ttl,
        })
    }
}

#[pymethods]
impl RustMemoryStore {
    #[new]
    #[pyo3(signature = (*, max_entries=None, max_bytes=None, dumps=None, loads=None))]
    fn new(
        max_entries: Option<usize>,
        max_bytes: Option<usize>,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let codec = match (dumps, loads) {
            (None, None) => ValueCodec::Msgpack,
            (Some(dumps), Some(loads)) => ValueCodec::Python { dumps, loads },
            _ => {
                return Err(PyTypeError::new_err(
                    "pass both dumps and loads, or neither",
                ))
            }
        };
        Ok(Self {
            inner: Mutex::new(MemoryStore::new(Limits {
                max_entries,
                max_bytes,
            })),
            clock: Clock::new(),
            codec,
            wakers: Mutex::new(HashMap::new()),
            key_strings: Mutex::new(KeyStrings::default()),
        })
    }

    /// Stores `value` under `key`; returns the new revision (an int).
    // The arguments are the Python signature's, one for one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, value, *, ttl=None, metadata=None, if_revision=None, if_absent=false))]
    fn write(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        if_revision: Option<&Bound<'_, PyAny>>,
        if_absent: bool,
    ) -> PyResult<u64> {
        let cond = convert::condition(if_revision, if_absent)?;
        let write = self.encode_write(
            key,
            value,
            convert::ttl_nanos(ttl)?,
            convert::metadata_pairs(metadata)?,
        )?;
        Ok(self.with(py, |s, now| s.write(write, cond, now))?)
    }

    /// The live record for `key`; `NotFound` if missing or expired.
    fn read<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let k = convert::key_str(key)?;
        match self.with(py, |s, now| s.read(k, now)) {
            Some(entry) => convert::record(
                py,
                &self.codec,
                &self.clock,
                key.clone(),
                Parts::packed(entry.packed()),
            ),
            None => Err(Error::NotFound(format!("no record for key {}", quote(k))).into()),
        }
    }

    /// The live records among `keys`; missing keys are absent from the result.
    fn read_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let objs: Vec<Bound<'py, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let strs: Vec<&str> = objs
            .iter()
            .map(|k| convert::key_str(k))
            .collect::<PyResult<_>>()?;
        let found = self.with_detached(py, |s, now| s.read_many(strs.iter().copied(), now));
        let out = PyDict::new(py);
        for (i, packed) in found.iter() {
            let key = &objs[i];
            let record = convert::record(
                py,
                &self.codec,
                &self.clock,
                key.clone(),
                Parts::packed(packed),
            )?;
            out.set_item(key, record)?;
        }
        Ok(out)
    }

    /// Writes every item unconditionally, all or nothing; returns each key's revision.
    #[pyo3(signature = (items, *, ttl=None))]
    fn write_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ttl = convert::ttl_nanos(ttl)?;
        let pairs = match items.cast::<PyDict>() {
            Ok(d) => d.items().into_any(),
            Err(_) => items.call_method0("items")?,
        };
        let mut keys = Vec::new();
        let mut writes = Vec::new();
        for item in pairs.try_iter()? {
            let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
            writes.push(self.encode_write(&key, &value, ttl, Vec::new())?);
            keys.push(key);
        }
        let revisions = self.with_detached(py, |s, now| s.write_many(writes, now))?;
        let out = PyDict::new(py);
        for (key, rev) in keys.iter().zip(revisions) {
            out.set_item(key, rev)?;
        }
        Ok(out)
    }

    /// Deletes `key`; True if a live record was deleted.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = convert::key_str(key)?;
        Ok(self.with(py, |s, now| s.delete(k, now)))
    }

    /// Deletes every key; returns how many live records were deleted.
    fn delete_many(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let objs: Vec<Bound<'_, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let strs: Vec<&str> = objs
            .iter()
            .map(|k| convert::key_str(k))
            .collect::<PyResult<_>>()?;
        Ok(self.with_detached(py, |s, now| s.delete_many(strs.iter().copied(), now)))
    }

    /// Live keys, sorted; filtered by prefix and suffix first, then paged.
    #[pyo3(signature = (prefix="", suffix="", limit=None, offset=0))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        suffix: &str,
        limit: Option<i64>,
        offset: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        if limit.is_some_and(|l| l < 0) || offset < 0 {
            return Err(PyValueError::new_err(
                "limit and offset must not be negative",
            ));
        }
        let limit = limit.map(|l| l as usize);
        let offset = offset as usize;
        // Uncontended, the keys go straight from the tree into Python strings
        // (making those is most of the work, and needs the GIL anyway).
        // Deadlock-free: every other thread takes this lock with try_lock while
        // holding the GIL, and waits for it only with the GIL released. Only
        // str objects are made (or, evicted from the key cache, freed) under
        // the lock: they are not GC-tracked and have no finalizer, so no
        // collection (and no code calling back into this store) can start
        // while it is held. The list is made after unlocking.
        if let Ok(mut store) = self.inner.try_lock() {
            let now = self.clock.now();
            // A page is usually small; the first regrowths are cheap anyway.
            let mut keys = Vec::with_capacity(limit.unwrap_or(usize::MAX).min(128));
            let listing = Listing {
                prefix,
                suffix,
                limit,
                offset,
            };
            // Another thread listing at the same moment just goes uncached.
            let mut cache = self.key_strings.try_lock().ok();
            store.list_each(&listing, now, |k| {
                keys.push(match cache.as_deref_mut() {
                    Some(cache) => cache.get(py, k),
                    None => key_object(py, k),
                });
            });
            drop(cache);
            let woken = store.take_woken();
            drop(store);
            self.wake(py, &woken);
            PyList::new(py, keys)
        } else {
            let keys = self.with_detached(py, |s, now| s.list(prefix, suffix, limit, offset, now));
            PyList::new(py, keys)
        }
    }

    /// True if a live record exists for `key`.
    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = convert::key_str(key)?;
        Ok(self.with(py, |s, now| s.exists(k, now)))
    }

    /// `{"entries": live records, "bytes": their keys + values + metadata}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.with_detached(py, MemoryStore::stats);
        let out = PyDict::new(py);
        out.set_item("entries", stats.entries)?;
        out.set_item("bytes", stats.bytes)?;
        Ok(out)
    }

    /// Reclaims every expired record now (emitting "expire"); returns how many.
    fn sweep(&self, py: Python<'_>) -> usize {
        self.with_detached(py, |s, now| s.sweep(now, usize::MAX))
    }

    /// Seconds until the soonest record expires (0.0 if one is already due), or None.
    fn next_expiry(&self, py: Python<'_>) -> Option<f64> {
        self.with(py, |s, now| {
            s.sweep(now, SWEEP_BUDGET);
            s.next_deadline()
                .map(|d| d.saturating_sub(now) as f64 / 1e9)
        })
    }

    /// A watcher of keys under `prefix` holding at most `capacity` unread events.
    // The default, 10,000 unread events, is spelled out for the stub's sake.
    #[pyo3(signature = (prefix="", capacity=10_000))]
    fn watch(slf: &Bound<'_, Self>, prefix: &str, capacity: usize) -> RustWatch {
        let prefix = prefix.to_owned();
        let queue = slf.get().with(slf.py(), |s, _| s.watch(prefix, capacity));
        RustWatch {
            queue,
            store: slf.clone().unbind(),
        }
    }
}

/// One watcher's queue of events, in the store's order.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustWatch {
    queue: Arc<WatchQueue>,
    store: Py<RustMemoryStore>,
}

#[pymethods]
impl RustWatch {
    /// Up to `max` queued events (all if None), oldest first; None once the
    /// watch is closed. Raises `Closed` if the consumer fell `capacity` behind.
    #[pyo3(signature = (max=None))]
    fn drain<'py>(
        &self,
        py: Python<'py>,
        max: Option<usize>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        match self.queue.drain(max) {
            Drained::Events(events) => {
                let store = self.store.get();
                let out = PyList::empty(py);
                for ev in &events {
                    out.append(convert::event(py, &store.codec, &store.clock, ev)?)?;
                }
                Ok(Some(out))
            }
            Drained::Closed => Ok(None),
            Drained::Overflowed(n) => Err(Closed::new_err(format!(
                "watch ended: its consumer fell more than {n} events behind"
            ))),
        }
    }

    /// Blocks (without the GIL) until an event is queued, the watch closes, or
    /// `timeout` seconds pass; True if `drain` has something to report.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = match timeout {
            Some(t) if !t.is_finite() || t < 0.0 => {
                return Err(PyValueError::new_err(
                    "timeout must be a non-negative number",
                ));
            }
            Some(t) => Some(Duration::from_secs_f64(t.min(1e9))),
            None => None,
        };
        Ok(py.detach(|| self.queue.wait(timeout)))
    }

    /// `waker()` is called (from the writing thread) whenever the queue goes
    /// from empty to non-empty; None removes it.
    fn set_waker(&self, waker: Option<Py<PyAny>>) {
        let mut wakers = lock(&self.store.get().wakers);
        match waker {
            Some(w) => wakers.insert(self.queue.id, w),
            None => wakers.remove(&self.queue.id),
        };
    }

    /// Ends the watch; queued events are dropped and a waiting consumer is woken.
    fn close(&self, py: Python<'_>) {
        let waker = self.forget();
        if let Some(waker) = waker {
            if let Err(err) = waker.bind(py).call0() {
                err.write_unraisable(py, Some(waker.bind(py)));
            }
        }
    }

    /// True once the watch has ended.
    #[getter]
    fn closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// The prefix this watcher follows.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, &self.queue.prefix)
    }
}

impl RustWatch {
    /// Closes the queue and unregisters the waker, returning it.
    fn forget(&self) -> Option<Py<PyAny>> {
        self.queue.close();
        lock(&self.store.get().wakers).remove(&self.queue.id)
    }
}

impl Drop for RustWatch {
    fn drop(&mut self) {
        drop(self.forget());
    }
}
