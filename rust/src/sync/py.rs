//! Python bindings of the lock manager.
//!
//! Threads block in Rust with the GIL released (in slices, so Ctrl-C still
//! lands); asyncio waiters hand the core a callback, which the core calls
//! with the lease when it grants the lock (the Python side passes
//! `loop.call_soon_threadsafe`-based delivery, so nothing polls).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::manager::{timeout, Attempt, Grant, LockManager, Notify, Ticket};
use crate::errors::Error;
use crate::quote::quote;
use crate::validate::{self, duration};

/// How long a blocked thread stays detached before checking for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// A lock name, checked by the shared rules (`microstd._validate.key`).
fn lock_name(name: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(validate::key(name, "lock names")?.to_owned())
}

/// The lease object handed to Python.
fn lease(core: &Arc<LockManager>, name: String, owner: String, ttl: f64, g: Grant) -> RustLease {
    RustLease {
        core: Arc::clone(core),
        name,
        owner,
        token: g.token,
        times: Mutex::new((ttl, g.expires_at)),
    }
}

/// Blocks (GIL released) until granted, `LockTimeout`, or a signal's exception.
fn acquire_blocking(
    py: Python<'_>,
    core: &Arc<LockManager>,
    name: &str,
    owner: &str,
    ttl: Duration,
    wait: Option<f64>,
) -> PyResult<Grant> {
    // The common case first: no waiter slot to allocate when the lock is free.
    if let Some(g) = core.try_acquire(name, owner, ttl)? {
        return Ok(g);
    }
    let deadline = wait.map(|w| Instant::now() + duration(w));
    loop {
        let ticket = match core.acquire_or_ticket(name, owner, ttl)? {
            Ok(g) => return Ok(g),
            Err(ticket) => ticket,
        };
        let Some(g) = wait_ticket(py, core, &ticket, deadline)? else {
            return Err(timeout(name, wait.unwrap_or(0.0)).into());
        };
        // Claimed with the GIL back, right before Python sees the lease: a
        // grant that ran out while this thread waited for the GIL is no grant.
        if let Some(g) = core.claim(name, g, ttl) {
            return Ok(g);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timeout(name, wait.unwrap_or(0.0)).into());
        }
    }
}

/// Waits on a ticket in slices (GIL released): the grant, None once
/// `deadline` passes, or the exception of a signal or of a closed manager.
fn wait_ticket(
    py: Python<'_>,
    core: &Arc<LockManager>,
    ticket: &Ticket,
    deadline: Option<Instant>,
) -> PyResult<Option<Grant>> {
    loop {
        let slice = deadline.map_or(SIGNAL_SLICE, |d| {
            d.saturating_duration_since(Instant::now())
                .min(SIGNAL_SLICE)
        });
        if let Some(outcome) = py.detach(|| ticket.wait(Some(slice))) {
            return Ok(Some(outcome?));
        }
        // cancel_ticket may wait for a grant already decided; detached, because
        // the granter (the reaper) may first be handing another name to an
        // asyncio waiter, which needs the GIL.
        if let Err(e) = py.check_signals() {
            if let Some(Ok(g)) = py.detach(|| core.cancel_ticket(ticket)) {
                let _ = core.release(&ticket.name, g.token);
            }
            return Err(e);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return match py.detach(|| core.cancel_ticket(ticket)) {
                Some(outcome) => Ok(Some(outcome?)),
                None => Ok(None),
            };
        }
    }
}

/// The Rust lock manager: named locks with leases, fencing tokens, FIFO waiters.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustLockManager {
    core: Arc<LockManager>,
}

#[pymethods]
impl RustLockManager {
    #[new]
    fn new() -> Self {
        Self {
            core: Arc::new(LockManager::new()),
        }
    }

    /// The lock now if it is free, else None.
    fn try_acquire(
        &self,
        name: &Bound<'_, PyAny>,
        owner: String,
        ttl: &Bound<'_, PyAny>,
    ) -> PyResult<Option<RustLease>> {
        let name = lock_name(name)?;
        let ttl = validate::ttl(ttl)?;
        Ok(self
            .core
            .try_acquire(&name, &owner, duration(ttl))?
            .map(|g| lease(&self.core, name, owner, ttl, g)))
    }

    /// Blocks with the GIL released until granted; `LockTimeout` after `wait`.
    #[pyo3(signature = (name, owner, ttl, wait=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        owner: String,
        ttl: &Bound<'_, PyAny>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RustLease> {
        let name = lock_name(name)?;
        let ttl = validate::ttl(ttl)?;
        let wait = validate::wait(wait)?;
        let g = acquire_blocking(py, &self.core, &name, &owner, duration(ttl), wait)?;
        Ok(lease(&self.core, name, owner, ttl, g))
    }

    /// A lease now, or a waiter id; `callback(lease_or_exception)` is called
    /// later, from whichever thread grants the lock, unless `cancel` wins.
    fn acquire_async<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        owner: String,
        ttl: &Bound<'py, PyAny>,
        callback: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = lock_name(name)?;
        let ttl = validate::ttl(ttl)?;
        let d = duration(ttl);
        let core = Arc::clone(&self.core);
        let (n2, o2) = (name.clone(), owner.clone());
        let notify: Notify = Box::new(move |outcome| {
            Python::attach(|py| {
                let granted = outcome.as_ref().ok().map(|g| g.token);
                let arg: PyResult<Py<PyAny>> = match outcome {
                    Ok(g) => Py::new(py, lease(&core, n2.clone(), o2, ttl, g)).map(Py::into_any),
                    Err(e) => Ok(PyErr::from(e).into_value(py).into_any()),
                };
                if let Err(e) = arg.and_then(|a| callback.call1(py, (a,))) {
                    // The waiter is gone (its loop closed): free the lock for the next one.
                    if let Some(token) = granted {
                        let _ = core.release(&n2, token);
                    }
                    e.write_unraisable(py, None);
                }
            });
        });
        match self.core.acquire_or_queue(&name, &owner, d, notify)? {
            Attempt::Granted(g) => {
                Ok(Bound::new(py, lease(&self.core, name, owner, ttl, g))?.into_any())
            }
            Attempt::Queued(id) => Ok(id.into_pyobject(py)?.into_any()),
        }
    }

    /// Leaves the queue: True if still queued, False if the grant is on its way.
    fn cancel(&self, name: &str, waiter: u64) -> bool {
        self.core.cancel(name, waiter)
    }

    /// `(owner, token, remaining_seconds)` of the live holder, or None.
    fn holder(&self, name: &str) -> Option<(String, u64, f64)> {
        self.core
            .holder(name)
            .map(|h| (h.owner, h.token, h.remaining.as_secs_f64()))
    }

    /// Number of waiters queued for `name`.
    fn waiting(&self, name: &str) -> usize {
        self.core.waiting(name)
    }

    /// A context manager that acquires on enter and releases on exit.
    #[pyo3(signature = (name, owner, ttl, wait=None))]
    fn lock(
        &self,
        name: &Bound<'_, PyAny>,
        owner: String,
        ttl: &Bound<'_, PyAny>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RustLockGuard> {
        let name = lock_name(name)?;
        let ttl = validate::ttl(ttl)?;
        Ok(RustLockGuard {
            core: Arc::clone(&self.core),
            wait: validate::wait(wait)?,
            name,
            owner,
            held: Mutex::new((ttl, 0, 0.0)),
            active: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Fails every waiter with `Closed`; later calls raise `Closed`.
    fn close(&self) {
        self.core.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }
}

/// A held lock: its fencing token and lease.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustLease {
    core: Arc<LockManager>,
    name: String,
    owner: String,
    token: u64,
    /// (ttl, expires_at): both change on refresh.
    times: Mutex<(f64, f64)>,
}

impl RustLease {
    fn times(&self) -> (f64, f64) {
        *self.times.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl RustLease {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn owner(&self) -> &str {
        &self.owner
    }

    #[getter]
    fn token(&self) -> u64 {
        self.token
    }

    #[getter]
    fn ttl(&self) -> f64 {
        self.times().0
    }

    #[getter]
    fn expires_at(&self) -> f64 {
        self.times().1
    }

    /// Extends the lease to `ttl` (default: its current ttl) from now; `LockLost` if gone.
    #[pyo3(signature = (ttl=None))]
    fn refresh(&self, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let ttl = validate::ttl_or_none(ttl)?.unwrap_or_else(|| self.times().0);
        let g = self.core.refresh(&self.name, self.token, duration(ttl))?;
        *self.times.lock().unwrap_or_else(PoisonError::into_inner) = (ttl, g.expires_at);
        Ok(())
    }

    /// Gives the lock up; `LockLost` if it was no longer held.
    fn release(&self) -> PyResult<()> {
        Ok(self.core.release(&self.name, self.token)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "RustLease(name={:?}, owner={:?}, token={}, ttl={})",
            self.name,
            self.owner,
            self.token,
            self.times().0
        )
    }
}

/// `with manager.lock(name, owner, ttl, wait) as lease:` on the blocking surface.
///
/// The guard is its own lease once entered (one object per holding, not two):
/// `token`, `refresh()` and `release()` act on the current holding.
#[pyclass(frozen, module = "microstd._core")]
pub struct RustLockGuard {
    core: Arc<LockManager>,
    name: String,
    owner: String,
    wait: Option<f64>,
    /// (ttl, token, expires_at) of the current or last holding; token 0 before the first.
    held: Mutex<(f64, u64, f64)>,
    /// Whether a holding is current (entered and not yet exited or released).
    active: std::sync::atomic::AtomicBool,
}

impl RustLockGuard {
    fn state(&self) -> (f64, u64, f64) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lost(&self, token: u64) -> PyErr {
        Error::LockLost(format!(
            "lock {} (token {token}) is not held",
            quote(&self.name)
        ))
        .into()
    }
}

#[pymethods]
impl RustLockGuard {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let me = slf.get();
        let (ttl, _, _) = me.state();
        let g = acquire_blocking(
            slf.py(),
            &me.core,
            &me.name,
            &me.owner,
            duration(ttl),
            me.wait,
        )?;
        let previous = std::mem::replace(
            &mut *me.held.lock().unwrap_or_else(PoisonError::into_inner),
            (ttl, g.token, g.expires_at),
        );
        if me.active.swap(true, Ordering::AcqRel) {
            // Entered twice without exiting: the first holding is given up, not leaked.
            let _ = me.core.release(&me.name, previous.1);
        }
        Ok(slf)
    }

    /// Releases; a lost lease raises `LockLost` unless an exception is already propagating.
    fn __exit__(
        &self,
        exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if self.active.swap(false, Ordering::AcqRel) {
            let token = self.state().1;
            let outcome = self.core.release(&self.name, token);
            if exc_type.is_none() {
                outcome?;
            }
        }
        Ok(false)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn owner(&self) -> &str {
        &self.owner
    }

    #[getter]
    fn token(&self) -> u64 {
        self.state().1
    }

    #[getter]
    fn ttl(&self) -> f64 {
        self.state().0
    }

    #[getter]
    fn expires_at(&self) -> f64 {
        self.state().2
    }

    /// Extends the current holding to `ttl` (default: its ttl) from now; `LockLost` if gone.
    #[pyo3(signature = (ttl=None))]
    fn refresh(&self, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let (old_ttl, token, _) = self.state();
        let ttl = validate::ttl_or_none(ttl)?.unwrap_or(old_ttl);
        if !self.active.load(Ordering::Acquire) {
            return Err(self.lost(token));
        }
        let g = self.core.refresh(&self.name, token, duration(ttl))?;
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = (ttl, token, g.expires_at);
        Ok(())
    }

    /// Gives the lock up before the block ends; `LockLost` if it was no longer held.
    fn release(&self) -> PyResult<()> {
        let token = self.state().1;
        if !self.active.swap(false, Ordering::AcqRel) {
            return Err(self.lost(token));
        }
        Ok(self.core.release(&self.name, token)?)
    }

    fn __repr__(&self) -> String {
        let (ttl, token, _) = self.state();
        format!(
            "RustLockGuard(name={:?}, owner={:?}, token={token}, ttl={ttl})",
            self.name, self.owner
        )
    }
}
