//! The Rust core of microstd, exposed to Python as `microstd._core`.
//!
//! Only module declarations and the `#[pymodule]` live here; each area
//! registers its own functions and classes.

pub mod broker;
pub mod codec;
pub mod errors;
pub mod store;
pub mod sync;

use pyo3::prelude::*;

// The codecs' ffi fast paths (PyDict_Next, borrowed list items) rely on the GIL:
// on a free-threaded build the interpreter must keep it enabled for this module.
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    codec::register(m)?;
    store::register(m)?;
    broker::register(m)?;
    sync::register(m)?;
    Ok(())
}
