//! The sync core: named locks with leases and fencing tokens.
//!
//! `manager` is the pure-Rust lock table (tested by `cargo test`); `py` binds
//! it as `RustLockManager` / `RustLease` / `RustLockGuard`.

pub mod manager;
#[cfg(feature = "python")]
pub mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// Adds this area's classes and functions to `microstd._core`.
#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::RustLockManager>()?;
    m.add_class::<py::RustLease>()?;
    m.add_class::<py::RustLockGuard>()?;
    Ok(())
}
