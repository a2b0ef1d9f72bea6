//! The CBOR decoder: reads one data item and builds Python objects directly
//! (no intermediate tree). Every length is checked against the bytes left
//! before anything is allocated, so memory stays a small multiple of the input.

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyList, PySet, PyString, PyTuple,
};

use super::float::half_to_f64;
use super::head::{
    read_head, Head, HeadError, ARRAY, BREAK, BYTES, INDEFINITE, MAP, NINT, SIMPLE, TAG, TEXT, UINT,
};
use super::tags;
use crate::codec::types;
use crate::codec::MAX_DEPTH;
use crate::errors::{Error, Result};

/// Decodes exactly one data item from `data`; trailing bytes are an error.
pub fn decode<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>> {
    let mut d = Decoder {
        py,
        data,
        pos: 0,
        keys: Vec::new(),
    };
    let value = d.item(0, false)?;
    if d.pos != data.len() {
        return Err(Error::decode(
            format!("{} trailing bytes after the data item", data.len() - d.pos),
            d.pos,
        ));
    }
    Ok(value)
}

/// Slots of the map-key cache (a power of two).
const KEY_SLOTS: usize = 128;

struct Decoder<'a, 'py> {
    py: Python<'py>,
    data: &'a [u8],
    pos: usize,
    /// Short text keys already made into `str` during this call, by hash:
    /// records in a list repeat the same keys, and a hit saves a new string.
    keys: Vec<Option<(&'a [u8], Bound<'py, PyString>)>>,
}

/// FNV-1a: short keys, cheap and well spread.
fn key_slot(raw: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in raw {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize & (KEY_SLOTS - 1)
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

    fn nest(depth: usize, start: usize) -> Result<usize> {
        if depth >= MAX_DEPTH {
            return Err(Error::decode(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                start,
            ));
        }
        Ok(depth + 1)
    }

    /// Decodes one item; `immutable` is set inside map keys and set members,
    /// where arrays become tuples and sets frozensets so they can be hashed.
    fn item(&mut self, depth: usize, immutable: bool) -> Result<Bound<'py, PyAny>> {
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
                    Ok(PyBytes::new(py, &joined).into_any())
                } else {
                    Ok(PyBytes::new(py, self.take(h.arg, start)?).into_any())
                }
            }
            TEXT => {
                if h.ai == INDEFINITE {
                    let joined = self.chunks(TEXT)?;
                    // Each chunk was validated on its own, so the whole is UTF-8.
                    let s = std::str::from_utf8(&joined)
                        .map_err(|_| Error::decode("invalid UTF-8 in text string", start))?;
                    Ok(PyString::new(py, s).into_any())
                } else {
                    let raw = self.take(h.arg, start)?;
                    let s = utf8(raw, self.pos - raw.len())?;
                    Ok(PyString::new(py, s).into_any())
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
            if major == TEXT {
                utf8(chunk, self.pos - chunk.len())?;
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
        let inner = Self::nest(depth, start)?;
        let mut items = Vec::new();
        if h.ai == INDEFINITE {
            while !self.at_break()? {
                items.push(self.item(inner, immutable)?);
            }
        } else {
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
            items.reserve_exact(h.arg as usize);
            for _ in 0..h.arg {
                items.push(self.item(inner, immutable)?);
            }
        }
        Ok(if immutable {
            PyTuple::new(self.py, items)?.into_any()
        } else {
            PyList::new(self.py, items)?.into_any()
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
        let inner = Self::nest(depth, start)?;
        let dict = PyDict::new(self.py);
        if h.ai == INDEFINITE {
            while !self.at_break()? {
                self.entry(&dict, inner)?;
            }
        } else {
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
            for _ in 0..h.arg {
                self.entry(&dict, inner)?;
            }
        }
        Ok(dict.into_any())
    }

    fn entry(&mut self, dict: &Bound<'py, PyDict>, depth: usize) -> Result<()> {
        let key_at = self.pos;
        let key = self.key(depth)?;
        let value = self.item(depth, false)?;
        dict.set_item(&key, value)
            .map_err(|e| Error::decode(format!("unusable map key: {}", e.value(self.py)), key_at))
    }

    /// A map key: short definite text strings skip the generic path.
    fn key(&mut self, depth: usize) -> Result<Bound<'py, PyAny>> {
        if let Some(&ib) = self.data.get(self.pos) {
            if ib >> 5 == TEXT && ib & 0x1f < 24 {
                let start = self.pos;
                self.pos += 1;
                let raw = self.take(u64::from(ib & 0x1f), start)?;
                return self.cached_key(raw, start + 1);
            }
        }
        self.item(depth, true)
    }

    fn cached_key(&mut self, raw: &'a [u8], at: usize) -> Result<Bound<'py, PyAny>> {
        if self.keys.is_empty() {
            self.keys.resize_with(KEY_SLOTS, || None);
        }
        let slot = key_slot(raw);
        if let Some((bytes, s)) = &self.keys[slot] {
            if *bytes == raw {
                return Ok(s.clone().into_any());
            }
        }
        let s = PyString::new(self.py, utf8(raw, at)?);
        self.keys[slot] = Some((raw, s.clone()));
        Ok(s.into_any())
    }

    fn tag(
        &mut self,
        number: u64,
        start: usize,
        depth: usize,
        immutable: bool,
    ) -> Result<Bound<'py, PyAny>> {
        let inner = Self::nest(depth, start)?;
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
                return Ok(types::tag_type(py)?.call1((number, content))?);
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
            25 => PyFloat::new(py, half_to_f64(h.arg as u16)).into_any(),
            26 => PyFloat::new(py, f64::from(f32::from_bits(h.arg as u32))).into_any(),
            27 => PyFloat::new(py, f64::from_bits(h.arg)).into_any(),
            _ => {
                return Err(Error::decode(
                    "break stop code outside an indefinite-length item",
                    start,
                ))
            }
        })
    }
}

/// `raw` as UTF-8; an error points at the first bad byte (`at` is where `raw` starts).
fn utf8(raw: &[u8], at: usize) -> Result<&str> {
    std::str::from_utf8(raw)
        .map_err(|e| Error::decode("invalid UTF-8 in text string", at + e.valid_up_to()))
}
