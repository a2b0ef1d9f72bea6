//! The msgpack decoder: reads bytes straight into Python objects.
//!
//! Every length is checked against the bytes left before anything is
//! allocated, so memory stays a small multiple of the input; every error is
//! a `DecodeError` carrying the offset of the item that failed.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDateTime, PyTuple, PyTzInfo};

use super::timestamp;
use crate::codec::keys::{KeyCache, KEY_CACHE, MAX_KEY_LEN};
use crate::codec::limits::Limits;
use crate::codec::types::{ext_type, timestamp_type, type_name};
use crate::codec::{fast, text};
use crate::errors::{Error, Result};

/// Decodes exactly one msgpack object from `data`; trailing bytes are an error.
pub fn decode<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>> {
    decode_with(py, data, None, Limits::default())
}

/// [`decode`] calling `ext_hook(code, data)` for extension types other than timestamps.
pub fn decode_with<'py>(
    py: Python<'py>,
    data: &[u8],
    ext_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
) -> Result<Bound<'py, PyAny>> {
    with_decoder(py, data, |decoder| {
        decoder.ext_hook = ext_hook;
        decoder.limits = limits;
        let value = decoder.value(0, false)?;
        decoder.finish()?;
        Ok(value)
    })
}

/// Decodes the first object of `data`; returns it and the bytes it took
/// (what follows is left alone: the next object of a stream).
pub fn decode_prefix<'py>(
    py: Python<'py>,
    data: &[u8],
    ext_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
) -> Result<(Bound<'py, PyAny>, usize)> {
    with_decoder(py, data, |decoder| {
        decoder.ext_hook = ext_hook;
        decoder.limits = limits;
        let value = decoder.value(0, false)?;
        Ok((value, decoder.pos))
    })
}

/// Runs `f` with a decoder over `data` that shares the key cache (typed
/// decoding reads the wire with it too).
pub(crate) fn with_decoder<'py, T>(
    py: Python<'py>,
    data: &[u8],
    f: impl FnOnce(&mut Decoder<'_, 'py>) -> T,
) -> T {
    let mut guard = KEY_CACHE.try_lock().ok();
    let keys = guard.as_mut().map(|g| g.get_or_insert_with(KeyCache::new));
    let mut decoder = Decoder {
        py,
        data,
        pos: 0,
        keys,
        ext_hook: None,
        limits: Limits::default(),
    };
    f(&mut decoder)
}

pub(crate) struct Decoder<'a, 'py> {
    pub(crate) py: Python<'py>,
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
    keys: Option<&'a mut KeyCache>,
    /// Called as `ext_hook(code, data)` for extensions other than timestamps.
    ext_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
}

impl<'a, 'py> Decoder<'a, 'py> {
    pub(crate) fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Refuses bytes left after the object.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.data.len() {
            return Err(Error::decode(
                format!(
                    "trailing data after the msgpack object ({} bytes)",
                    self.data.len() - self.pos
                ),
                self.pos,
            ));
        }
        Ok(())
    }

    /// The next `n` bytes; `start` is the item's offset, reported if they are missing.
    #[inline]
    pub(crate) fn take(&mut self, n: usize, start: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(truncated(what, n, self.left(), start));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    #[inline]
    pub(crate) fn fixed<const N: usize>(&mut self, start: usize, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, start, what)?
            .try_into()
            .expect("take returns N bytes"))
    }

    #[inline]
    pub(crate) fn len_field(&mut self, width: usize, start: usize, what: &str) -> Result<usize> {
        Ok(match width {
            1 => usize::from(self.fixed::<1>(start, what)?[0]),
            2 => usize::from(u16::from_be_bytes(self.fixed(start, what)?)),
            _ => u32::from_be_bytes(self.fixed(start, what)?) as usize,
        })
    }

    pub(crate) fn value(&mut self, depth: usize, key: bool) -> Result<Bound<'py, PyAny>> {
        // float64 skips the big dispatch below: float arrays are all float64.
        if let Some((&0xcb, rest)) = self.data[self.pos..].split_first() {
            if let Some(bits) = rest.first_chunk::<8>() {
                self.pos += 9;
                return Ok(fast::new_float(self.py, f64::from_be_bytes(*bits))?);
            }
        }
        let py = self.py;
        let start = self.pos;
        let Some(&b) = self.data.get(start) else {
            return Err(Error::decode("unexpected end of data", start));
        };
        self.pos += 1;
        let obj = match b {
            0x00..=0x7f => int_obj(py, i64::from(b)),
            0x80..=0x8f => return self.map(usize::from(b & 0x0f), start, depth),
            0x90..=0x9f => return self.array(usize::from(b & 0x0f), start, depth, key),
            0xa0..=0xbf => return self.str(usize::from(b & 0x1f), start),
            0xc0 => py.None().into_bound(py),
            0xc1 => return Err(Error::decode("reserved type byte 0xc1", start)),
            0xc2 => pyo3::types::PyBool::new(py, false).to_owned().into_any(),
            0xc3 => pyo3::types::PyBool::new(py, true).to_owned().into_any(),
            0xc4..=0xc6 => {
                let n = self.len_field(1 << (b - 0xc4), start, "bin header")?;
                self.check_str("bytes", n, start)?;
                PyBytes::new(py, self.take(n, start, "bin")?).into_any()
            }
            0xc7..=0xc9 => {
                let n = self.len_field(1 << (b - 0xc7), start, "ext header")?;
                return self.ext(n, start);
            }
            0xca => {
                let v = f32::from_be_bytes(self.fixed(start, "float32")?);
                fast::new_float(py, f64::from(v))?
            }
            0xcb => fast::new_float(py, f64::from_be_bytes(self.fixed(start, "float64")?))?,
            0xcc => int_obj(py, i64::from(self.fixed::<1>(start, "uint8")?[0])),
            0xcd => int_obj(
                py,
                i64::from(u16::from_be_bytes(self.fixed(start, "uint16")?)),
            ),
            0xce => int_obj(
                py,
                i64::from(u32::from_be_bytes(self.fixed(start, "uint32")?)),
            ),
            0xcf => {
                let v = u64::from_be_bytes(self.fixed(start, "uint64")?);
                match v.into_pyobject(py) {
                    Ok(obj) => obj.into_any(),
                    Err(never) => match never {},
                }
            }
            0xd0 => int_obj(py, i64::from(i8::from_be_bytes(self.fixed(start, "int8")?))),
            0xd1 => int_obj(
                py,
                i64::from(i16::from_be_bytes(self.fixed(start, "int16")?)),
            ),
            0xd2 => int_obj(
                py,
                i64::from(i32::from_be_bytes(self.fixed(start, "int32")?)),
            ),
            0xd3 => int_obj(py, i64::from_be_bytes(self.fixed(start, "int64")?)),
            0xd4..=0xd8 => return self.ext(1 << (b - 0xd4), start),
            0xd9..=0xdb => {
                let n = self.len_field(1 << (b - 0xd9), start, "str header")?;
                return self.str(n, start);
            }
            0xdc | 0xdd => {
                let n = self.len_field(if b == 0xdc { 2 } else { 4 }, start, "array header")?;
                return self.array(n, start, depth, key);
            }
            0xde | 0xdf => {
                let n = self.len_field(if b == 0xde { 2 } else { 4 }, start, "map header")?;
                return self.map(n, start, depth);
            }
            0xe0..=0xff => int_obj(py, i64::from(b as i8)),
        };
        Ok(obj)
    }

    fn enter(&self, depth: usize, start: usize) -> Result<()> {
        match self.limits.depth(depth) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(()),
        }
    }

    /// Refuses a str, bytes or ext payload of `n` bytes past `max_str_len`.
    #[inline]
    fn check_str(&self, what: &str, n: usize, start: usize) -> Result<()> {
        match self.limits.string(what, n) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(()),
        }
    }

    /// Refuses a container of `n` items past `max_container_len`.
    #[inline]
    fn check_len(&self, what: &str, n: usize, start: usize) -> Result<()> {
        match self.limits.container(what, n) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(()),
        }
    }

    pub(crate) fn str(&mut self, n: usize, start: usize) -> Result<Bound<'py, PyAny>> {
        self.check_str("str", n, start)?;
        let at = self.pos;
        let bytes = self.take(n, start, "str")?;
        match text::new_str(self.py, bytes)? {
            Some(obj) => Ok(obj),
            None => Err(utf8_error(bytes, at)),
        }
    }

    /// A map key: short strs come from the key cache; arrays become tuples.
    // Inlined into `map` (as it was before typed decoding shared it): a call
    // per key was 6% of decoding the twitter corpus.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn key(&mut self, depth: usize) -> Result<Bound<'py, PyAny>> {
        let start = self.pos;
        let short = match self.data.get(start) {
            Some(&b) if b & 0xe0 == 0xa0 => Some((usize::from(b & 0x1f), 1)),
            Some(&0xd9) => self.data.get(start + 1).map(|&n| (usize::from(n), 2)),
            _ => None,
        };
        if let Some((n, header)) = short {
            if n <= MAX_KEY_LEN && self.keys.is_some() {
                self.check_str("str", n, start)?;
                self.pos += header;
                let at = self.pos;
                let bytes = self.take(n, start, "str")?;
                let cache = self.keys.as_mut().expect("checked above");
                return cache
                    .get(self.py, bytes)?
                    .ok_or_else(|| utf8_error(bytes, at));
            }
        }
        self.value(depth, true)
    }

    fn array(
        &mut self,
        n: usize,
        start: usize,
        depth: usize,
        key: bool,
    ) -> Result<Bound<'py, PyAny>> {
        self.enter(depth, start)?;
        self.check_len("array", n, start)?;
        // Every item takes at least one byte: a larger count is a lie, refused before allocating.
        if n > self.left() {
            return Err(Error::decode(
                format!(
                    "array of {n} items is longer than the {} bytes left",
                    self.left()
                ),
                start,
            ));
        }
        if key {
            // An array used as a map key must be hashable: a tuple, all the way down.
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(self.value(depth + 1, true)?);
            }
            return Ok(PyTuple::new(self.py, items)?.into_any());
        }
        fast::new_list(self.py, n, || self.value(depth + 1, false))
    }

    fn map(&mut self, n: usize, start: usize, depth: usize) -> Result<Bound<'py, PyAny>> {
        self.enter(depth, start)?;
        self.check_len("map", n, start)?;
        if n.saturating_mul(2) > self.left() {
            return Err(Error::decode(
                format!(
                    "map of {n} pairs is longer than the {} bytes left",
                    self.left()
                ),
                start,
            ));
        }
        let dict = fast::new_dict(self.py, n)?;
        for _ in 0..n {
            let key_at = self.pos;
            let key = self.key(depth + 1)?;
            // An unhashable key is refused where it is, before its value is
            // read (as the twin's scanner does: the same error and offset).
            if !is_str_or_int(&key) && key.hash().is_err() {
                return Err(not_hashable(&key, key_at));
            }
            if self.limits.strict_keys && !is_str_or_int(&key) {
                return Err(Error::decode(
                    format!(
                        "map key of type {} is not a str or int (strict_keys)",
                        type_name(&key)
                    ),
                    key_at,
                ));
            }
            let value = self.value(depth + 1, false)?;
            // The size is read only when `unique_keys` needs it.
            let before = if self.limits.unique_keys {
                dict.len()
            } else {
                usize::MAX
            };
            dict.set_item(&key, value)
                .map_err(|_| not_hashable(&key, key_at))?;
            if before != usize::MAX && dict.len() == before {
                return Err(duplicate_key(&key, key_at));
            }
        }
        Ok(dict.into_any())
    }

    fn ext(&mut self, n: usize, start: usize) -> Result<Bound<'py, PyAny>> {
        self.check_str("ext", n, start)?;
        let code = self.fixed::<1>(start, "ext type")?[0] as i8;
        let data = self.take(n, start, "ext")?;
        if code == timestamp::EXT_CODE {
            let (seconds, nanos) =
                timestamp::decode(data).map_err(|msg| Error::decode(msg, start))?;
            // A datetime when it holds the instant exactly, else a Timestamp
            // (nanoseconds, or years outside 1..9999), which re-encodes the same.
            if nanos % 1000 == 0 {
                if let Some(dt) = datetime_from(self.py, seconds, nanos) {
                    return Ok(dt);
                }
            }
            return Ok(timestamp_type(self.py)?.call1((seconds, nanos))?);
        }
        let data = PyBytes::new(self.py, data);
        match &self.ext_hook {
            Some(hook) => Ok(hook.call1((code, data))?),
            None => Ok(ext_type(self.py)?.call1((code, data))?),
        }
    }
}

#[cold]
#[inline(never)]
fn truncated(what: &str, n: usize, left: usize, start: usize) -> Error {
    Error::decode(
        format!("truncated {what}: needs {n} bytes, {left} left"),
        start,
    )
}

/// True for an exact str or int (not a bool): what `strict_keys` allows.
fn is_str_or_int(key: &Bound<'_, PyAny>) -> bool {
    let ty = fast::type_ptr(key);
    ty == fast::str_type() || ty == fast::int_type()
}

#[cold]
fn not_hashable(key: &Bound<'_, PyAny>, at: usize) -> Error {
    Error::decode(
        format!("map key of type {} is not hashable", type_name(key)),
        at,
    )
}

#[cold]
pub(crate) fn duplicate_key(key: &Bound<'_, PyAny>, at: usize) -> Error {
    let shown = key.repr().map_or_else(|_| "?".into(), |r| r.to_string());
    Error::decode(format!("duplicate map key {shown} (unique_keys)"), at)
}

/// The DecodeError for invalid UTF-8 starting at `at`, pointing at the first bad byte.
fn utf8_error(bytes: &[u8], at: usize) -> Error {
    Error::decode("invalid UTF-8 in str", at + text::invalid_at(bytes))
}

fn int_obj(py: Python<'_>, v: i64) -> Bound<'_, PyAny> {
    match v.into_pyobject(py) {
        Ok(obj) => obj.into_any(),
        Err(never) => match never {},
    }
}

/// An aware UTC datetime, or None outside years 1..=9999 (callers pass
/// whole microseconds).
fn datetime_from(py: Python<'_>, seconds: i64, nanos: u32) -> Option<Bound<'_, PyAny>> {
    let civil = timestamp::civil_from_seconds(seconds);
    if !(1..=9999).contains(&civil.year) {
        return None;
    }
    let utc = PyTzInfo::utc(py).ok()?;
    PyDateTime::new(
        py,
        civil.year as i32,
        civil.month as u8,
        civil.day as u8,
        civil.hour as u8,
        civil.minute as u8,
        civil.second as u8,
        nanos / 1000,
        Some(&utc),
    )
    .ok()
    .map(Bound::into_any)
}
