//! The CBOR encoder: walks Python objects and writes straight into one
//! growing buffer (no intermediate tree).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyByteArray, PyBytes, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyFloat,
    PyFloatMethods, PyInt, PyList, PyString, PyTimeAccess, PyTuple,
};

use super::canonical::{sort_entries, DuplicateKey, Span};
use super::float::{self, Wire};
use super::head::{write_head, ARRAY, BYTES, MAP, NINT, TAG, TEXT, UINT};
use super::rfc3339::days_from_civil;
use super::tags;
use crate::codec::types::{self, Kind};
use crate::codec::{fast, text, MAX_DEPTH};
use crate::errors::{Error, Result};

/// Encodes one object tree; `canonical` selects RFC 8949 section 4.2.1.
pub struct Encoder<'a, 'py> {
    buf: &'a mut Vec<u8>,
    canonical: bool,
    default: Option<&'a Bound<'py, PyAny>>,
}

impl<'a, 'py> Encoder<'a, 'py> {
    /// An encoder appending to `buf`.
    pub fn new(
        buf: &'a mut Vec<u8>,
        canonical: bool,
        default: Option<&'a Bound<'py, PyAny>>,
    ) -> Self {
        Self {
            buf,
            canonical,
            default,
        }
    }

    /// Appends `obj`; `depth` counts the containers and tags around it.
    pub fn encode(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> Result<()> {
        // Also bounds a `default=` that keeps returning unencodable objects.
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if self.scalar(obj)? {
            return Ok(());
        }
        let ty = fast::type_ptr(obj);
        if ty == fast::dict_type() {
            return self.dict(obj.cast_exact::<PyDict>().map_err(PyErr::from)?, depth);
        }
        if ty == fast::list_type() {
            return self.list(obj.cast_exact::<PyList>().map_err(PyErr::from)?, depth);
        }
        self.encode_slow(obj, depth)
    }

    /// Writes `obj` and returns true if it is an exact str, int, float, bool
    /// or None: the whole cost of plain data, dispatched by type pointer.
    /// These writers run no Python code, which is what lets the container
    /// loops hand them borrowed references.
    #[allow(clippy::inline_always)] // measured: it is the body of every container loop
    #[inline(always)]
    fn scalar(&mut self, obj: &Bound<'py, PyAny>) -> Result<bool> {
        let ty = fast::type_ptr(obj);
        if ty == fast::str_type() {
            self.text(obj.cast_exact::<PyString>().map_err(PyErr::from)?)?;
        } else if ty == fast::int_type() {
            self.int(obj)?;
        } else if ty == fast::float_type() {
            let f = obj.cast_exact::<PyFloat>().map_err(PyErr::from)?;
            self.float(f.value());
        } else if ty == fast::bool_type() {
            self.buf.push(if fast::is_true(obj) { 0xf5 } else { 0xf4 });
        } else if obj.is_none() {
            self.buf.push(0xf6);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    #[inline(never)]
    fn encode_slow(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> Result<()> {
        match types::classify(obj)? {
            Kind::Str => self.text(obj.cast::<PyString>().map_err(PyErr::from)?),
            Kind::Int => self.int(obj),
            Kind::Dict => self.dict(obj.cast::<PyDict>().map_err(PyErr::from)?, depth),
            Kind::List => self.list(obj.cast::<PyList>().map_err(PyErr::from)?, depth),
            Kind::Tuple => {
                let tuple = obj.cast::<PyTuple>().map_err(PyErr::from)?;
                self.array(tuple.len(), tuple.iter(), depth)
            }
            Kind::Float => {
                let x = obj.cast::<PyFloat>().map_err(PyErr::from)?.value();
                self.float(x);
                Ok(())
            }
            Kind::None => {
                self.buf.push(0xf6);
                Ok(())
            }
            Kind::Bool => {
                self.buf.push(if obj.is_truthy()? { 0xf5 } else { 0xf4 });
                Ok(())
            }
            Kind::Bytes => {
                let b = obj.cast::<PyBytes>().map_err(PyErr::from)?.as_bytes();
                self.bytes(b);
                Ok(())
            }
            Kind::ByteArray => {
                let b = obj.cast::<PyByteArray>().map_err(PyErr::from)?.to_vec();
                self.bytes(&b);
                Ok(())
            }
            Kind::MemoryView => {
                self.bytes(types::memoryview_bytes(obj)?.as_bytes());
                Ok(())
            }
            Kind::DateTime => self.datetime(obj),
            Kind::Date => {
                let ordinal: i64 = obj
                    .call_method0(intern!(obj.py(), "toordinal"))?
                    .extract()?;
                write_head(self.buf, TAG, tags::DATE_DAYS);
                self.i64(ordinal - tags::ORDINAL_OF_EPOCH);
                Ok(())
            }
            Kind::Uuid => {
                let b = obj.getattr(intern!(obj.py(), "bytes"))?;
                write_head(self.buf, TAG, tags::UUID);
                self.bytes(b.cast::<PyBytes>().map_err(PyErr::from)?.as_bytes());
                Ok(())
            }
            Kind::Decimal => self.decimal(obj),
            Kind::Enum => {
                let value = obj.getattr(intern!(obj.py(), "value"))?;
                self.encode(&value, depth + 1)
            }
            Kind::Dataclass => self.dataclass(obj, depth),
            Kind::Set | Kind::FrozenSet => self.set(obj, depth),
            Kind::Tag => {
                let py = obj.py();
                nest(depth)?;
                let number: u64 = obj.getattr(intern!(py, "tag"))?.extract()?;
                write_head(self.buf, TAG, number);
                self.encode(&obj.getattr(intern!(py, "value"))?, depth + 1)
            }
            Kind::Timestamp => {
                let (seconds, nanos) = types::timestamp_parts(obj)?;
                write_head(self.buf, TAG, tags::EPOCH);
                if nanos == 0 {
                    self.i64(seconds);
                } else {
                    // CBOR's epoch time has no nanoseconds: the nearest double.
                    self.float(seconds as f64 + f64::from(nanos) / 1e9);
                }
                Ok(())
            }
            Kind::Ext | Kind::Other => self.other(obj, depth),
        }
    }

    // Inlined into the container loops, as msgpack's `write_str` (measured).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn text(&mut self, s: &Bound<'py, PyString>) -> Result<()> {
        let Some(s) = text::str_utf8(s) else {
            return Err(lone_surrogate());
        };
        write_head(self.buf, TEXT, s.len() as u64);
        self.buf.extend_from_slice(s);
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) {
        write_head(self.buf, BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    #[inline]
    fn i64(&mut self, v: i64) {
        if v >= 0 {
            write_head(self.buf, UINT, v as u64);
        } else {
            // -1 - v cannot overflow for a negative v.
            write_head(self.buf, NINT, (-1 - v) as u64);
        }
    }

    #[inline]
    fn int(&mut self, obj: &Bound<'py, PyAny>) -> Result<()> {
        if let Some(v) = obj.cast::<PyInt>().ok().and_then(fast::int_as_i64) {
            self.i64(v);
            return Ok(());
        }
        self.big_int(obj)
    }

    /// An int beyond i64: a u64, or a bignum.
    #[inline(never)]
    fn big_int(&mut self, obj: &Bound<'py, PyAny>) -> Result<()> {
        let py = obj.py();
        let negative = obj.lt(0)?;
        // For a negative n CBOR carries -1 - n, which is Python's ~n.
        let magnitude = if negative {
            obj.call_method0(intern!(py, "__invert__"))?
        } else {
            obj.clone()
        };
        let major = if negative { NINT } else { UINT };
        if let Ok(v) = magnitude.extract::<u64>() {
            write_head(self.buf, major, v);
            return Ok(());
        }
        // Beyond 64 bits: a bignum, tag 2 or 3 around the big-endian magnitude.
        let bits: usize = magnitude
            .call_method0(intern!(py, "bit_length"))?
            .extract()?;
        let raw = magnitude.call_method1(intern!(py, "to_bytes"), (bits.div_ceil(8), "big"))?;
        write_head(self.buf, TAG, if negative { 3 } else { 2 });
        self.bytes(raw.cast::<PyBytes>().map_err(PyErr::from)?.as_bytes());
        Ok(())
    }

    fn float(&mut self, x: f64) {
        let wire = if self.canonical {
            float::shortest(x)
        } else {
            float::special(x).unwrap_or(Wire::Double(x.to_bits()))
        };
        match wire {
            Wire::Half(h) => {
                self.buf.push(0xf9);
                self.buf.extend_from_slice(&h.to_be_bytes());
            }
            Wire::Single(s) => {
                self.buf.push(0xfa);
                self.buf.extend_from_slice(&s.to_be_bytes());
            }
            Wire::Double(d) => {
                self.buf.push(0xfb);
                self.buf.extend_from_slice(&d.to_be_bytes());
            }
        }
    }

    fn array<I>(&mut self, len: usize, items: I, depth: usize) -> Result<()>
    where
        I: Iterator<Item = Bound<'py, PyAny>>,
    {
        nest(depth)?;
        write_head(self.buf, ARRAY, len as u64);
        let mut count = 0;
        for (i, item) in items.enumerate() {
            self.encode(&item, depth + 1)
                .map_err(|e| types::at_index(e, i))?;
            count += 1;
        }
        if count != len {
            return Err(Error::encode("list changed size while being encoded", "$"));
        }
        Ok(())
    }

    /// A key and its value; a plain `str` key skips the type dispatch.
    fn entry(
        &mut self,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        depth: usize,
        spans: &mut Vec<Span>,
    ) -> Result<()> {
        let start = self.buf.len();
        self.encode(key, depth + 1)
            .map_err(|e| types::at_key(e, key))?;
        let mid = self.buf.len();
        self.encode(value, depth + 1)
            .map_err(|e| types::at_key(e, key))?;
        if self.canonical {
            spans.push(Span {
                start,
                mid,
                end: self.buf.len(),
            });
        }
        Ok(())
    }

    fn list(&mut self, list: &Bound<'py, PyList>, depth: usize) -> Result<()> {
        nest(depth)?;
        let len = list.len();
        write_head(self.buf, ARRAY, len as u64);
        for i in 0..len {
            // SAFETY: the borrowed item goes only to `scalar`, which runs no
            // Python code; anything else is owned before it is encoded.
            let Some(item) = (unsafe { fast::list_item_borrowed(list, i) }) else {
                return Err(list_changed());
            };
            if !self.scalar(&item).map_err(|e| types::at_index(e, i))? {
                let item = item.to_owned();
                self.encode(&item, depth + 1)
                    .map_err(|e| types::at_index(e, i))?;
            }
        }
        if list.len() != len {
            return Err(list_changed());
        }
        Ok(())
    }

    fn dict(&mut self, dict: &Bound<'py, PyDict>, depth: usize) -> Result<()> {
        nest(depth)?;
        let len = dict.len();
        write_head(self.buf, MAP, len as u64);
        let mut spans = Vec::new();
        // SAFETY: the borrowed key and value go only to `scalar`, which runs
        // no Python code; a pair needing anything else is owned before it is
        // encoded.
        let count = unsafe {
            fast::for_each_item(dict, |key, value| {
                let start = self.buf.len();
                if !self.scalar(key).map_err(|e| types::at_key(e, key))? {
                    let (key, value) = (key.to_owned(), value.to_owned());
                    return self.entry(&key, &value, depth, &mut spans);
                }
                let mid = self.buf.len();
                if !self.scalar(value).map_err(|e| types::at_key(e, key))? {
                    let (key, value) = (key.to_owned(), value.to_owned());
                    self.encode(&value, depth + 1)
                        .map_err(|e| types::at_key(e, &key))?;
                }
                if self.canonical {
                    spans.push(Span {
                        start,
                        mid,
                        end: self.buf.len(),
                    });
                }
                Ok(())
            })
        }?;
        if count != len {
            return Err(Error::encode("dict changed size while being encoded", "$"));
        }
        sorted(self.buf, &mut spans)
    }

    fn dataclass(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> Result<()> {
        nest(depth)?;
        let fields = types::dataclass_fields(obj)?;
        write_head(self.buf, MAP, fields.len() as u64);
        let mut spans = Vec::new();
        for (name, value) in &fields {
            self.entry(name.as_any(), value, depth, &mut spans)?;
        }
        sorted(self.buf, &mut spans)
    }

    fn set(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> Result<()> {
        // The tag and the array are two levels of nesting.
        nest(depth + 1)?;
        let len = obj.len()?;
        write_head(self.buf, TAG, tags::SET);
        write_head(self.buf, ARRAY, len as u64);
        let mut spans = Vec::new();
        let mut count = 0;
        for (i, item) in obj.try_iter()?.enumerate() {
            let item = item?;
            let start = self.buf.len();
            self.encode(&item, depth + 2)
                .map_err(|e| types::at_index(e, i))?;
            if self.canonical {
                let end = self.buf.len();
                spans.push(Span {
                    start,
                    mid: end,
                    end,
                });
            }
            count += 1;
        }
        if count != len {
            return Err(Error::encode("set changed size while being encoded", "$"));
        }
        sorted(self.buf, &mut spans)
    }

    fn datetime(&mut self, obj: &Bound<'py, PyAny>) -> Result<()> {
        let py = obj.py();
        let offset = obj.call_method0(intern!(py, "utcoffset"))?;
        if offset.is_none() {
            return Err(Error::encode(
                format!(
                    "cannot encode a naive {}: attach a tzinfo (for example datetime.timezone.utc)",
                    types::type_name(obj)
                ),
                "$",
            ));
        }
        let offset = offset.cast::<PyDelta>().map_err(PyErr::from)?;
        let offset = i64::from(offset.get_days()) * 86_400 + i64::from(offset.get_seconds());
        let dt = obj.cast::<PyDateTime>().map_err(PyErr::from)?;
        let secs = days_from_civil(dt.get_year(), dt.get_month(), dt.get_day()) * 86_400
            + i64::from(dt.get_hour()) * 3600
            + i64::from(dt.get_minute()) * 60
            + i64::from(dt.get_second())
            - offset;
        write_head(self.buf, TAG, tags::EPOCH);
        let micros = dt.get_microsecond();
        if micros == 0 {
            self.i64(secs);
        } else {
            // cbor2 writes `datetime.timestamp()`: total microseconds divided by
            // 10^6, correctly rounded. Below 2^53 both operands are exact
            // doubles, so one IEEE division gives the same bits.
            let total = i128::from(secs) * 1_000_000 + i128::from(micros);
            let x = if total.unsigned_abs() < 1 << 53 {
                total as f64 / 1_000_000.0
            } else {
                obj.call_method0(intern!(py, "timestamp"))?
                    .extract::<f64>()?
            };
            if x.fract() == 0.0 {
                // Far from the epoch the fraction rounds away; cbor2 then
                // writes the integer, and so do we.
                self.i64(x as i64);
            } else {
                self.float(x);
            }
        }
        Ok(())
    }

    fn decimal(&mut self, obj: &Bound<'py, PyAny>) -> Result<()> {
        let py = obj.py();
        let parts = obj.call_method0(intern!(py, "as_tuple"))?;
        let exponent = parts.getattr(intern!(py, "exponent"))?;
        let negative = parts.getattr(intern!(py, "sign"))?.extract::<i64>()? == 1;
        if !exponent.is_instance_of::<pyo3::types::PyInt>() {
            // NaN ("n", "N") and infinity ("F") go out as float specials, as cbor2 does.
            let inf = exponent.extract::<String>()? == "F";
            let x = match (inf, negative) {
                (false, _) => f64::NAN,
                (true, false) => f64::INFINITY,
                (true, true) => f64::NEG_INFINITY,
            };
            self.float(x);
            return Ok(());
        }
        // Tag 4: [exponent, mantissa], the mantissa exact from the digits.
        let digits = parts.getattr(intern!(py, "digits"))?;
        let digits = digits.cast::<PyTuple>().map_err(PyErr::from)?;
        // What the decoder refuses is refused here too, so nothing written is unreadable.
        let within = exponent
            .extract::<i64>()
            .is_ok_and(|e| e.unsigned_abs() <= tags::MAX_EXPONENT.unsigned_abs());
        // 10^d < 2^(3.33 d): the mantissa fits in MAX_MANTISSA_BITS when d digits do.
        let max_digits = (tags::MAX_MANTISSA_BITS as f64 * std::f64::consts::LOG10_2) as usize;
        if !within || digits.len() > max_digits {
            return Err(Error::encode(
                format!(
                    "cannot encode {}: a CBOR decimal fraction is limited to exponents within \
                     +-{} and {} digits",
                    types::type_name(obj),
                    tags::MAX_EXPONENT,
                    max_digits
                ),
                "$",
            ));
        }
        write_head(self.buf, TAG, tags::DECIMAL);
        write_head(self.buf, ARRAY, 2);
        self.int(&exponent)?;
        if digits.len() <= 18 {
            let mut m: i64 = 0;
            for d in digits.iter() {
                m = m * 10 + d.extract::<i64>()?;
            }
            self.i64(if negative { -m } else { m });
        } else {
            let sign = i64::from(negative);
            let whole = types::decimal_type(py)?.call1(((sign, digits, 0),))?;
            let mantissa = py.get_type::<pyo3::types::PyInt>().call1((whole,))?;
            self.int(&mantissa)?;
        }
        Ok(())
    }

    fn other(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> Result<()> {
        let py = obj.py();
        if obj.get_type().is(tags::simple_type(py)?) {
            let v: u8 = obj.getattr(intern!(py, "value"))?.extract()?;
            if v < 24 {
                self.buf.push(0xe0 | v);
            } else {
                self.buf.extend_from_slice(&[0xf8, v]);
            }
            return Ok(());
        }
        match self.default {
            Some(hook) => {
                let replacement = hook.call1((obj,))?;
                self.encode(&replacement, depth + 1)
            }
            None => Err(Error::encode(
                format!(
                    "cannot encode object of type {} as CBOR; pass default= to convert it",
                    types::type_name(obj)
                ),
                "$",
            )),
        }
    }
}

#[cold]
fn lone_surrogate() -> Error {
    Error::encode(
        "cannot encode a str holding a lone surrogate: UTF-8 cannot carry it",
        "$",
    )
}

#[cold]
fn list_changed() -> Error {
    Error::encode("list changed size while being encoded", "$")
}

fn too_deep() -> Error {
    Error::encode(format!("nesting deeper than {MAX_DEPTH} levels"), "$")
}

/// Refuses a container or tag at `depth` when it would nest past `MAX_DEPTH`
/// (the decoder's limit, so whatever encodes also decodes).
fn nest(depth: usize) -> Result<()> {
    if depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    Ok(())
}

/// `sort_entries`, with duplicate keys reported as an encode error.
fn sorted(buf: &mut Vec<u8>, spans: &mut [Span]) -> Result<()> {
    sort_entries(buf, spans).map_err(|DuplicateKey| {
        Error::encode(
            "two keys (or set members) encode to the same bytes: canonical CBOR forbids \
             duplicates",
            "$",
        )
    })
}
