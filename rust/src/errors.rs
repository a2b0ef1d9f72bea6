//! One error enum for the whole core, converted to Python exceptions once,
//! at the boundary. The exception classes are defined in Python
//! (`microstd.errors`) and imported here, so both sides raise the same types.

use std::fmt;

#[cfg(feature = "python")]
pub use self::python::*;

/// Every failure the core can report.
#[derive(Debug)]
pub enum Error {
    /// An object could not be encoded; `path` is a JSONPath-like location (`$.items[3]`).
    Encode {
        message: String,
        path: String,
    },
    /// Input bytes could not be decoded; `offset` is the byte where decoding failed.
    Decode {
        message: String,
        offset: usize,
    },
    /// Decoded data did not match the type it was decoded into (a DecodeError in Python).
    Validation {
        message: String,
        path: String,
        expected: String,
        found: String,
    },
    NotFound(String),
    Conflict(String),
    InvalidKey(String),
    InvalidTopic(String),
    LockTimeout(String),
    LockLost(String),
    NotSupported(String),
    Closed(String),
    /// An allocation the input asked for was refused.
    Memory(String),
    /// An argument's value is unusable (a plain `ValueError`).
    Invalid(String),
    /// A Python exception raised by user code (a `default=` hook, a handler): passed through.
    #[cfg(feature = "python")]
    Python(pyo3::PyErr),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn encode(message: impl Into<String>, path: impl Into<String>) -> Self {
        Self::Encode {
            message: message.into(),
            path: path.into(),
        }
    }

    pub fn decode(message: impl Into<String>, offset: usize) -> Self {
        Self::Decode {
            message: message.into(),
            offset,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode { message, path } => write!(f, "{message} at {path}"),
            Self::Decode { message, offset } => write!(f, "{message} at byte {offset}"),
            Self::Validation { message, path, .. } => write!(f, "{message} at {path}"),
            Self::NotFound(m)
            | Self::Conflict(m)
            | Self::InvalidKey(m)
            | Self::InvalidTopic(m)
            | Self::LockTimeout(m)
            | Self::LockLost(m)
            | Self::NotSupported(m)
            | Self::Closed(m)
            | Self::Memory(m)
            | Self::Invalid(m) => f.write_str(m),
            #[cfg(feature = "python")]
            Self::Python(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The Python side of the errors: the exception classes, imported from
/// `microstd.errors`, and the one conversion at the boundary.
#[cfg(feature = "python")]
mod python {
    use pyo3::exceptions::{PyMemoryError, PyValueError};
    use pyo3::prelude::*;

    use super::Error;

    pyo3::import_exception!(microstd.errors, EncodeError);
    pyo3::import_exception!(microstd.errors, DecodeError);
    pyo3::import_exception!(microstd.errors, ValidationError);
    pyo3::import_exception!(microstd.errors, NotFound);
    pyo3::import_exception!(microstd.errors, Conflict);
    pyo3::import_exception!(microstd.errors, InvalidKey);
    pyo3::import_exception!(microstd.errors, InvalidTopic);
    pyo3::import_exception!(microstd.errors, LockTimeout);
    pyo3::import_exception!(microstd.errors, LockLost);
    pyo3::import_exception!(microstd.errors, NotSupported);
    pyo3::import_exception!(microstd.errors, Closed);

    impl From<PyErr> for Error {
        fn from(err: PyErr) -> Self {
            Self::Python(err)
        }
    }

    impl From<Error> for PyErr {
        fn from(err: Error) -> PyErr {
            match err {
                // The Python classes take structured arguments so callers can read
                // `.path` / `.offset` without parsing the message.
                Error::Encode { message, path } => EncodeError::new_err((message, path)),
                Error::Decode { message, offset } => DecodeError::new_err((message, offset)),
                Error::Validation {
                    message,
                    path,
                    expected,
                    found,
                } => ValidationError::new_err((message, path, expected, found)),
                Error::NotFound(m) => NotFound::new_err(m),
                Error::Conflict(m) => Conflict::new_err(m),
                Error::InvalidKey(m) => InvalidKey::new_err(m),
                Error::InvalidTopic(m) => InvalidTopic::new_err(m),
                Error::LockTimeout(m) => LockTimeout::new_err(m),
                Error::LockLost(m) => LockLost::new_err(m),
                Error::NotSupported(m) => NotSupported::new_err(m),
                Error::Closed(m) => Closed::new_err(m),
                Error::Memory(m) => PyMemoryError::new_err(m),
                Error::Invalid(m) => PyValueError::new_err(m),
                Error::Python(e) => e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_location() {
        assert_eq!(
            Error::decode("truncated", 7).to_string(),
            "truncated at byte 7"
        );
        assert_eq!(
            Error::encode("cannot encode set", "$.a[1]").to_string(),
            "cannot encode set at $.a[1]"
        );
    }
}
