//! The CBOR decoder: reads one data item and builds Python objects directly
//! (no intermediate tree). Every length is checked against the bytes left
//! before anything is allocated, so memory stays a small multiple of the input.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFrozenSet, PySet, PyTuple};

use super::float::half_to_f64;
use super::head::{
    read_head, Head, HeadError, ARRAY, BREAK, BYTES, INDEFINITE, MAP, NINT, SIMPLE, TAG, TEXT, UINT,
};
use super::tags;
use crate::codec::keys::{KeyCache, KEY_CACHE, MAX_KEY_LEN};
use crate::codec::limits::Limits;
use crate::codec::types;
use crate::codec::{fast, text};
use crate::errors::{Error, Result};

/// Decodes exactly one data item from `data`; trailing bytes are an error.
pub fn decode<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>> {
    let (value, end) = decode_prefix(py, data, None, Limits::default())?;
    if end != data.len() {
        return Err(Error::decode(
            format!("{} trailing bytes after the data item", data.len() - end),
            end,
        ));
    }
    Ok(value)
}

/// Decodes the first data item of `data` (a CBOR sequence, RFC 8742, holds
/// several): returns it and the bytes it took. `tag_hook(tag, value)` builds
/// the value of tags outside the type model (else they decode to `Tag`).
pub fn decode_prefix<'py>(
    py: Python<'py>,
    data: &[u8],
    tag_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
) -> Result<(Bound<'py, PyAny>, usize)> {
    with_decoder(py, data, |d| {
        d.tag_hook = tag_hook;
        d.limits = limits;
        let value = d.item(0, false)?;
        Ok((value, d.pos))
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
    let mut d = Decoder {
        py,
        data,
        pos: 0,
        keys,
        tag_hook: None,
        limits: Limits::default(),
    };
    f(&mut d)
}

pub(crate) struct Decoder<'a, 'py> {
    pub(crate) py: Python<'py>,
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
    /// The shared cache of map keys (None while another decode holds it).
    keys: Option<&'a mut KeyCache>,
    tag_hook: Option<Bound<'py, PyAny>>,
    limits: Limits,
}

fn major_name(major: u8) -> &'static str {
    match major {
        UINT => "unsigned integer",
        NINT => "negative integer",
        BYTES => "byte string",
        TEXT => "text string",
        ARRAY => "array",
        MAP => "map",
        TAG => "tag",
        _ => "simple value",
    }
}

impl<'a, 'py> Decoder<'a, 'py> {
    // Measured: returned through memory, the head cost a store-forwarding
    // stall per item; inlined, decoding small items is about twice as fast.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn head(&mut self) -> Result<(Head, usize)> {
        let start = self.pos;
        // One-byte heads (small ints, short strings and containers, simple
        // values) are most items: skip the general reader for them.
        if let Some(&ib) = self.data.get(start) {
            let ai = ib & 0x1f;
            if ai < 24 {
                self.pos = start + 1;
                return Ok((
                    Head {
                        major: ib >> 5,
                        ai,
                        arg: u64::from(ai),
                    },
                    start,
                ));
            }
        }
        match read_head(self.data, start) {
            Ok((h, end)) => {
                self.pos = end;
                Ok((h, start))
            }
            Err(HeadError::Truncated(at)) => Err(Error::decode(
                "truncated input: the data item is incomplete",
                at,
            )),
            Err(HeadError::Reserved) => Err(Error::decode(
                format!(
                    "reserved additional information {} in initial byte {:#04x}",
                    self.data[start] & 0x1f,
                    self.data[start]
                ),
                start,
            )),
        }
    }

    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next `n` bytes, refused before any allocation when fewer are left.
    fn take(&mut self, n: u64, start: usize) -> Result<&'a [u8]> {
        let left = self.left();
        if n > left as u64 {
            return Err(Error::decode(
                format!("length {n} is more than the {left} bytes left"),
                start,
            ));
        }
        let begin = self.pos;
        self.pos += n as usize;
        Ok(&self.data[begin..self.pos])
    }

    fn nest(&self, depth: usize, start: usize) -> Result<usize> {
        match self.limits.depth(depth) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(depth + 1),
        }
    }

    /// Refuses a string (or a joined chunked one) of `n` bytes past `max_str_len`.
    #[inline]
    fn check_str(&self, major: u8, n: u64, start: usize) -> Result<()> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let what = if major == TEXT { "str" } else { "bytes" };
        match self.limits.string(what, n) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(()),
        }
    }

    /// Refuses a container of `n` items past `max_container_len`.
    #[inline]
    fn check_len(&self, what: &str, n: u64, start: usize) -> Result<()> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        match self.limits.container(what, n) {
            Some(message) => Err(Error::decode(message, start)),
            None => Ok(()),
        }
    }

    /// Decodes one item; `immutable` is set inside map keys and set members,
    /// where arrays become tuples and sets frozensets so they can be hashed.
    pub(crate) fn item(&mut self, depth: usize, immutable: bool) -> Result<Bound<'py, PyAny>> {
        // Doubles skip the general head reader: float arrays are all doubles.
        if let Some((&0xfb, rest)) = self.data[self.pos..].split_first() {
            if let Some(bits) = rest.first_chunk::<8>() {
                self.pos += 9;
                return Ok(fast::new_float(self.py, f64::from_be_bytes(*bits))?);
            }
        }
        let (h, start) = self.head()?;
        let py = self.py;
        if h.major == SIMPLE && (20..=23).contains(&h.ai) {
            return Ok(match h.ai {
                20 => PyBool::new(py, false).to_owned().into_any(),
                21 => PyBool::new(py, true).to_owned().into_any(),
                _ => py.None().into_bound(py),
            });
        }
        if h.ai == INDEFINITE && matches!(h.major, UINT | NINT | TAG) {
            return Err(Error::decode(
                format!("a {} cannot have an indefinite length", major_name(h.major)),
                start,
            ));
        }
        match h.major {
            UINT => {
                let Ok(n) = h.arg.into_pyobject(py);
                Ok(n.into_any())
            }
            NINT => Ok(if let Ok(v) = i64::try_from(h.arg) {
                let Ok(n) = (-1 - v).into_pyobject(py);
                n.into_any()
            } else {
                let Ok(n) = (-1 - i128::from(h.arg)).into_pyobject(py);
                n.into_any()
            }),
            BYTES => {
                if h.ai == INDEFINITE {
                    let joined = self.chunks(BYTES)?;
                    self.check_str(BYTES, joined.len() as u64, start)?;
                    Ok(PyBytes::new(py, &joined).into_any())
                } else {
                    self.check_str(BYTES, h.arg, start)?;
                    Ok(PyBytes::new(py, self.take(h.arg, start)?).into_any())
                }
            }
            TEXT => {
                if h.ai == INDEFINITE {
                    let joined = self.chunks(TEXT)?;
                    self.check_str(TEXT, joined.len() as u64, start)?;
                    // Each chunk was validated on its own, so the whole is UTF-8.
                    text::new_str(py, &joined)?
                        .ok_or_else(|| Error::decode("invalid UTF-8 in text string", start))
                } else {
                    self.check_str(TEXT, h.arg, start)?;
                    let raw = self.take(h.arg, start)?;
                    let at = self.pos - raw.len();
                    text::new_str(py, raw)?.ok_or_else(|| utf8_error(raw, at))
                }
            }
            ARRAY => self.array(h, start, depth, immutable),
            MAP => self.map(h, start, depth, immutable),
            TAG => self.tag(h.arg, start, depth, immutable),
            _ => self.simple(h, start),
        }
    }

    /// The chunks of an indefinite-length string, joined. Growth is bounded
    /// by the input: every chunk's bytes are in `data`.
    fn chunks(&mut self, major: u8) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.data.get(self.pos) {
                None => {
                    return Err(Error::decode(
                        "truncated input: indefinite-length string has no break",
                        self.pos,
                    ))
                }
                Some(&BREAK) => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {}
            }
            let (h, start) = self.head()?;
            if h.major != major || h.ai == INDEFINITE {
                return Err(Error::decode(
                    format!(
                        "a chunk of an indefinite-length {} must be a definite-length {}",
                        major_name(major),
                        major_name(major)
                    ),
                    start,
                ));
            }
            let chunk = self.take(h.arg, start)?;
            if major == TEXT && crate::codec::utf8::validate(chunk).is_none() {
                return Err(utf8_error(chunk, self.pos - chunk.len()));
            }
            out.extend_from_slice(chunk);
        }
    }

    /// True (and consumes it) when the next byte is a break.
    fn at_break(&mut self) -> Result<bool> {
        match self.data.get(self.pos) {
            None => Err(Error::decode(
                "truncated input: indefinite-length container has no break",
                self.pos,
            )),
            Some(&BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn array(
        &mut self,
        h: Head,
        start: usize,
        depth: usize,
        immutable: bool,
    ) -> Result<Bound<'py, PyAny>> {
        let inner = self.nest(depth, start)?;
        if h.ai != INDEFINITE {
            self.check_len("array", h.arg, start)?;
            // Every item takes at least one byte.
            if h.arg > self.left() as u64 {
                return Err(Error::decode(
                    format!(
                        "array of {} items is longer than the {} bytes left",
                        h.arg,
                        self.left()
                    ),
                    start,
                ));
            }
            if !immutable {
                return fast::new_list(self.py, h.arg as usize, || self.item(inner, false));
            }
        }
        let mut items = Vec::new();
        if h.ai == INDEFINITE {
            while !self.at_break()? {
                self.check_len("array", items.len() as u64 + 1, start)?;
                items.push(self.item(inner, immutable)?);
            }
        } else {
            items.reserve_exact(h.arg as usize);
            for _ in 0..h.arg {
                items.push(self.item(inner, immutable)?);
            }
        }
        Ok(if immutable {
            PyTuple::new(self.py, items)?.into_any()
        } else {
            pyo3::types::PyList::new(self.py, items)?.into_any()
        })
    }

    fn map(
        &mut self,
        h: Head,
        start: usize,
        depth: usize,
        immutable: bool,
    ) -> Result<Bound<'py, PyAny>> {
        if immutable {
            return Err(Error::decode(
                "a map cannot be a map key or a set member: Python has no hashable mapping",
                start,
            ));
        }
        let inner = self.nest(depth, start)?;
        if h.ai == INDEFINITE {
            let dict = PyDict::new(self.py);
            let mut count = 0;
            while !self.at_break()? {
                count += 1;
                self.check_len("map", count, start)?;
                self.entry(&dict, inner)?;
            }
            return Ok(dict.into_any());
        }
        self.check_len("map", h.arg, start)?;
        if h.arg > (self.left() / 2) as u64 {
            return Err(Error::decode(
                format!(
                    "map of {} entries is longer than the {} bytes left",
                    h.arg,
                    self.left()
                ),
                start,
            ));
        }
        let dict = fast::new_dict(self.py, h.arg as usize)?;
        for _ in 0..h.arg {
            self.entry(&dict, inner)?;
        }
        Ok(dict.into_any())
    }

    fn entry(&mut self, dict: &Bound<'py, PyDict>, depth: usize) -> Result<()> {
        let key_at = self.pos;
        let key = self.key(depth)?;
        if self.limits.strict_keys {
            let ty = fast::type_ptr(&key);
            if ty != fast::str_type() && ty != fast::int_type() {
                return Err(Error::decode(
                    format!(
                        "map key of type {} is not a str or int (strict_keys)",
                        types::type_name(&key)
                    ),
                    key_at,
                ));
            }
        }
        let value = self.item(depth, false)?;
        let before = dict.len();
        dict.set_item(&key, value).map_err(|e| {
            Error::decode(format!("unusable map key: {}", e.value(self.py)), key_at)
        })?;
        if self.limits.unique_keys && dict.len() == before {
            let shown = key.repr().map_or_else(|_| "?".into(), |r| r.to_string());
            return Err(Error::decode(
                format!("duplicate map key {shown} (unique_keys)"),
                key_at,
            ));
        }
        Ok(())
    }

    /// A map key: short definite text strings come from the key cache.
    pub(crate) fn key(&mut self, depth: usize) -> Result<Bound<'py, PyAny>> {
        let start = self.pos;
        let short = match self.data.get(start) {
            Some(&ib) if ib >> 5 == TEXT && ib & 0x1f < 24 => Some((usize::from(ib & 0x1f), 1)),
            Some(&ib) if ib == (TEXT << 5 | 0x18) => {
                self.data.get(start + 1).map(|&n| (usize::from(n), 2))
            }
            _ => None,
        };
        if let Some((n, header)) = short {
            if n <= MAX_KEY_LEN && self.keys.is_some() {
                self.check_str(TEXT, n as u64, start)?;
                self.pos += header;
                let at = self.pos;
                let raw = self.take(n as u64, start)?;
                let cache = self.keys.as_mut().expect("checked above");
                return cache.get(self.py, raw)?.ok_or_else(|| utf8_error(raw, at));
            }
        }
        self.item(depth, true)
    }

    fn tag(
        &mut self,
        number: u64,
        start: usize,
        depth: usize,
        immutable: bool,
    ) -> Result<Bound<'py, PyAny>> {
        let inner = self.nest(depth, start)?;
        let py = self.py;
        // A set's members are decoded as hashable values.
        let content = self.item(inner, immutable || number == tags::SET)?;
        let built = match number {
            tags::DATETIME_STRING => tags::datetime_from_string(&content),
            tags::EPOCH => tags::datetime_from_epoch(&content),
            tags::POSITIVE_BIGNUM => tags::bignum(&content, false),
            tags::NEGATIVE_BIGNUM => tags::bignum(&content, true),
            tags::DECIMAL => tags::decimal_fraction(&content),
            tags::BIGFLOAT => tags::bigfloat(&content),
            tags::UUID => tags::uuid(&content),
            tags::DATE_DAYS => tags::date_from_days(&content),
            tags::DATE_STRING => tags::date_from_string(&content),
            tags::SET => {
                let Ok(members) = content.cast::<PyTuple>() else {
                    return Err(Error::decode("tag 258 (set) must hold an array", start));
                };
                let set = if immutable {
                    PyFrozenSet::new(py, members.iter()).map(Bound::into_any)
                } else {
                    PySet::new(py, members.iter()).map(Bound::into_any)
                };
                set.map_err(|e| format!("unusable set member: {}", e.value(py)))
            }
            _ => {
                return Ok(match &self.tag_hook {
                    Some(hook) => hook.call1((number, content))?,
                    None => types::tag_type(py)?.call1((number, content))?,
                });
            }
        };
        built.map_err(|message| Error::decode(message, start))
    }

    fn simple(&mut self, h: Head, start: usize) -> Result<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match h.ai {
            20 => PyBool::new(py, false).to_owned().into_any(),
            21 => PyBool::new(py, true).to_owned().into_any(),
            // undefined has no Python counterpart closer than None.
            22 | 23 => py.None().into_bound(py),
            0..=19 => tags::simple_type(py)?.call1((h.ai,))?,
            24 => {
                if h.arg < 32 {
                    return Err(Error::decode(
                        format!("simple value {} must be encoded in the initial byte", h.arg),
                        start,
                    ));
                }
                tags::simple_type(py)?.call1((h.arg,))?
            }
            25 => fast::new_float(py, half_to_f64(h.arg as u16))?,
            26 => fast::new_float(py, f64::from(f32::from_bits(h.arg as u32)))?,
            27 => fast::new_float(py, f64::from_bits(h.arg))?,
            _ => {
                return Err(Error::decode(
                    "break stop code outside an indefinite-length item",
                    start,
                ))
            }
        })
    }
}

/// The DecodeError for invalid UTF-8 in `raw`, pointing at its first bad
/// byte (`at` is where `raw` starts).
fn utf8_error(raw: &[u8], at: usize) -> Error {
    Error::decode("invalid UTF-8 in text string", at + text::invalid_at(raw))
}
