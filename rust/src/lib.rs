//! The Rust core of microstd, exposed to Python as `microstd._core`.
//!
//! Only module declarations and the `#[pymodule]` live here; each area
//! registers its own functions and classes.
//!
//! Without the `python` feature the crate is the pure-Rust core (store,
//! router, lock manager, wire formats): it builds and tests with no PyO3 and
//! no libpython. Each area's `mod.rs` gates its binding modules on that feature.

pub mod broker;
pub mod codec;
pub mod errors;
pub mod quote;
pub mod store;
pub mod sync;
#[cfg(feature = "python")]
pub mod validate;

#[cfg(feature = "python")]
use pyo3::prelude::*;

// The codecs' ffi fast paths (PyDict_Next, borrowed list items) rely on the GIL:
// on a free-threaded build the interpreter must keep it enabled for this module.
#[cfg(feature = "python")]
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // `microstd bench` warns when timing a debug build (`maturin develop` without
    // --release), whose Rust runs several times slower than the twins.
    m.add("DEBUG_BUILD", cfg!(debug_assertions))?;
    codec::register(m)?;
    store::register(m)?;
    broker::register(m)?;
    sync::register(m)?;
    Ok(())
}
