//! The store core: `memory` (the ordered store) and `watch` (event queues)
//! are pure Rust, unit-tested by `cargo test`; `py` binds them to Python.

#[cfg(feature = "python")]
mod convert;
mod entry;
#[cfg(feature = "python")]
mod instance;
pub mod key;
pub mod memory;
#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod strings;
pub mod watch;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// Adds this area's classes to `microstd._core`.
#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::RustMemoryStore>()?;
    m.add_class::<py::RustWatch>()?;
    Ok(())
}
