//! The store core: `memory` (the ordered store) and `watch` (event queues)
//! are pure Rust, unit-tested by `cargo test`; `py` binds them to Python.

mod convert;
mod entry;
mod instance;
pub mod key;
pub mod memory;
mod py;
mod strings;
pub mod watch;

use pyo3::prelude::*;

/// Adds this area's classes to `microstd._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::RustMemoryStore>()?;
    m.add_class::<py::RustWatch>()?;
    Ok(())
}
