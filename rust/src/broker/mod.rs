//! The broker core: subject matching, queue groups, the match cache and fan-out.
//! Pure logic lives in `subjects`, `groups`, `router` and `queue` (no PyO3); `py` binds it.

pub mod durable;
pub mod groups;
pub mod hashing;
#[cfg(feature = "python")]
pub mod message;
#[cfg(feature = "python")]
pub mod py;
pub mod queue;
pub mod router;
pub mod subjects;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// Adds this area's classes and functions to `microstd._core`.
#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::RustBroker>()?;
    m.add_class::<py::RustQueue>()?;
    m.add("RUN_DONE", py::RUN_DONE)?;
    m.add("RUN_RAISED", py::RUN_RAISED)?;
    m.add("RUN_AWAIT", py::RUN_AWAIT)?;
    m.add("RUN_STOPPED", py::RUN_STOPPED)?;
    m.add("RUN_OVER_DELIVERED", py::RUN_OVER_DELIVERED)?;
    m.add_class::<message::RustMessage>()?;
    m.add_class::<durable::py::RustStreams>()?;
    m.add_class::<durable::py::RustDurableMessage>()?;
    m.add_function(wrap_pyfunction!(py::validate_subject, m)?)?;
    m.add_function(wrap_pyfunction!(py::validate_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(py::subject_matches, m)?)?;
    Ok(())
}
