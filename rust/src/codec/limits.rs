//! Per-call limits on untrusted input: the decoders check them as they read,
//! so a hostile message is refused before it costs memory or time.

use crate::codec::MAX_DEPTH;
#[cfg(feature = "python")]
use pyo3::prelude::*;

/// What one decode accepts. The default accepts everything the format can
/// carry (nesting up to `MAX_DEPTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most items in one array or pairs in one map.
    pub max_container_len: usize,
    /// Most bytes in one str or bytes item.
    pub max_str_len: usize,
    /// Deepest nesting of containers (at most `MAX_DEPTH`).
    pub max_depth: usize,
    /// Map keys must be str or int.
    pub strict_keys: bool,
    /// A map key may not appear twice in one map.
    pub unique_keys: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_container_len: usize::MAX,
            max_str_len: usize::MAX,
            max_depth: MAX_DEPTH,
            strict_keys: false,
            unique_keys: false,
        }
    }
}

impl Limits {
    /// Limits from optional per-call values; `max_depth` is capped at `MAX_DEPTH`.
    pub fn new(
        max_container_len: Option<usize>,
        max_str_len: Option<usize>,
        max_depth: Option<usize>,
        strict_keys: bool,
        unique_keys: bool,
    ) -> Self {
        Self {
            max_container_len: max_container_len.unwrap_or(usize::MAX),
            max_str_len: max_str_len.unwrap_or(usize::MAX),
            max_depth: max_depth.map_or(MAX_DEPTH, |d| d.min(MAX_DEPTH)),
            strict_keys,
            unique_keys,
        }
    }

    /// Limits from the keyword arguments of a public `loads`, checked as the
    /// pure twin checks them (`_limits.Limits`): each bound is None or a
    /// non-negative int, else a ValueError with the same message.
    #[cfg(feature = "python")]
    pub fn from_py(
        max_container_len: Option<&Bound<'_, PyAny>>,
        max_str_len: Option<&Bound<'_, PyAny>>,
        max_depth: Option<&Bound<'_, PyAny>>,
        strict_keys: bool,
        unique_keys: bool,
    ) -> PyResult<Self> {
        if max_container_len.is_none() && max_str_len.is_none() && max_depth.is_none() {
            return Ok(Self::new(None, None, None, strict_keys, unique_keys));
        }
        Ok(Self::new(
            bound("max_container_len", max_container_len)?,
            bound("max_str_len", max_str_len)?,
            bound("max_depth", max_depth)?,
            strict_keys,
            unique_keys,
        ))
    }

    /// JSON's limits from the keywords of `codec.json.loads`, checked as
    /// `from_py` checks them; None when none is given. `max_depth` is not
    /// capped at `MAX_DEPTH`: JSON's own bound is orjson's (1024 levels), and
    /// unset it adds no check.
    #[cfg(feature = "python")]
    pub fn json_from_py(
        max_container_len: Option<&Bound<'_, PyAny>>,
        max_str_len: Option<&Bound<'_, PyAny>>,
        max_depth: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Self>> {
        if max_container_len.is_none() && max_str_len.is_none() && max_depth.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            max_container_len: bound("max_container_len", max_container_len)?.unwrap_or(usize::MAX),
            max_str_len: bound("max_str_len", max_str_len)?.unwrap_or(usize::MAX),
            max_depth: bound("max_depth", max_depth)?.unwrap_or(usize::MAX),
            strict_keys: false,
            unique_keys: false,
        }))
    }

    /// The error message when a container of `n` items is too long, if it is.
    pub fn container(&self, what: &str, n: usize) -> Option<String> {
        (n > self.max_container_len).then(|| {
            format!(
                "{what} of {n} items is longer than max_container_len ({})",
                self.max_container_len
            )
        })
    }

    /// The error message when a str or bytes item of `n` bytes is too long, if it is.
    pub fn string(&self, what: &str, n: usize) -> Option<String> {
        (n > self.max_str_len).then(|| {
            format!(
                "{what} of {n} bytes is longer than max_str_len ({})",
                self.max_str_len
            )
        })
    }

    /// The error message for a container at `depth`, if that is too deep.
    pub fn depth(&self, depth: usize) -> Option<String> {
        (depth >= self.max_depth).then(|| format!("nesting deeper than {} levels", self.max_depth))
    }
}

/// One bound given to a public `loads`: an int past `usize` is no bound at all.
#[cfg(feature = "python")]
fn bound(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_instance_of::<pyo3::types::PyInt>() {
        if let Ok(n) = value.extract::<usize>() {
            return Ok(Some(n));
        }
        if value.ge(0)? {
            return Ok(Some(usize::MAX));
        }
    }
    Err(pyo3::exceptions::PyValueError::new_err(format!(
        "{name} must be a non-negative int or None, got {}",
        value.repr()?
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_accept_everything_but_depth() {
        let l = Limits::default();
        assert!(l.container("array", usize::MAX).is_none());
        assert!(l.string("str", usize::MAX).is_none());
        assert!(l.depth(MAX_DEPTH - 1).is_none());
        assert_eq!(
            l.depth(MAX_DEPTH).as_deref(),
            Some("nesting deeper than 256 levels")
        );
    }

    #[test]
    fn limits_name_themselves() {
        let l = Limits::new(Some(2), Some(3), Some(1000), true, false);
        assert_eq!(l.max_depth, MAX_DEPTH);
        assert_eq!(
            l.container("map", 3).as_deref(),
            Some("map of 3 items is longer than max_container_len (2)")
        );
        assert!(l.container("map", 2).is_none());
        assert_eq!(
            l.string("str", 4).as_deref(),
            Some("str of 4 bytes is longer than max_str_len (3)")
        );
    }
}
