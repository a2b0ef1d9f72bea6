//! The store core. Pure logic lives in files without PyO3; `py.rs` binds it.

use pyo3::prelude::*;

/// Adds this area's classes and functions to `microstd._core`.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
