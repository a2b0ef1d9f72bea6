//! Codecs: msgpack and CBOR, encoding straight from Python objects into one
//! output buffer and decoding straight from bytes into Python objects.
//!
//! `types` is the Python-type dispatch both formats share, so the two
//! formats accept exactly the same type model.

pub mod cbor;
mod fast;
mod gc;
mod json_guard;
mod keys;
pub mod msgpack;
mod output;
mod text;
pub mod types;
pub mod utf8;

use pyo3::prelude::*;

/// Deepest nesting of containers either codec accepts, encoding or decoding.
/// Deep enough for any real document, shallow enough that recursion stays far
/// from the smallest thread stack CPython hands out.
pub const MAX_DEPTH: usize = 256;

/// Adds the codec functions to `microstd._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_DEPTH", MAX_DEPTH)?;
    fast::init(m.py())?;
    msgpack::register(m)?;
    cbor::register(m)?;
    json_guard::register(m)?;
    Ok(())
}
