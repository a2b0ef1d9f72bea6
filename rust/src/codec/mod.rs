//! Codecs: msgpack and CBOR, encoding straight from Python objects into one
//! output buffer and decoding straight from bytes into Python objects.
//!
//! `types` is the Python-type dispatch both formats share, so the two
//! formats accept exactly the same type model. The wire formats (`utf8`,
//! `msgpack::wire`, `cbor::head`, ...) are pure Rust; the modules that touch
//! Python objects are gated on the `python` feature.

pub mod cbor;
#[cfg(feature = "python")]
mod entry;
#[cfg(feature = "python")]
mod fast;
#[cfg(feature = "python")]
mod gc;
#[cfg(feature = "python")]
mod json;
#[cfg(feature = "python")]
mod json_guard;
pub mod json_limits;
pub mod json_scan;
#[cfg(feature = "python")]
mod keys;
pub mod limits;
pub mod msgpack;
#[cfg(feature = "python")]
mod output;
#[cfg(feature = "python")]
mod plans;
#[cfg(feature = "python")]
mod text;
#[cfg(feature = "python")]
pub mod typed;
#[cfg(feature = "python")]
pub mod types;
pub mod utf8;
#[cfg(feature = "python")]
mod values;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// Deepest nesting of containers either codec accepts, encoding or decoding.
/// Deep enough for any real document, shallow enough that recursion stays far
/// from the smallest thread stack CPython hands out.
pub const MAX_DEPTH: usize = 256;

/// True for a decode error that more input could cure: the data ended inside
/// an item (the decoders' messages for that, and only that, say so).
#[cfg(feature = "python")]
pub(crate) fn is_incomplete(err: &crate::errors::Error) -> bool {
    match err {
        crate::errors::Error::Decode { message, .. } => {
            message.starts_with("truncated")
                || message.starts_with("unexpected end of data")
                || message.contains("longer than the")
                || message.contains("is more than the")
        }
        _ => false,
    }
}

/// A decode error's offset moved by `start` (an item decoded from the middle of a buffer).
#[cfg(feature = "python")]
pub(crate) fn shifted(err: crate::errors::Error, start: usize) -> crate::errors::Error {
    match err {
        crate::errors::Error::Decode { message, offset } => crate::errors::Error::Decode {
            message,
            offset: offset + start,
        },
        other => other,
    }
}

/// Adds the codec functions to `microstd._core`.
#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_DEPTH", MAX_DEPTH)?;
    fast::init(m.py())?;
    msgpack::register(m)?;
    cbor::register(m)?;
    json_guard::register(m)?;
    json::register(m)?;
    typed::register(m)?;
    Ok(())
}
