//! The semantic tags of the type model: their numbers, and the Python values
//! the decoder builds from them. Each builder returns `Err(message)` for a
//! tag content it cannot accept; the decoder adds the byte offset.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBytes, PyDate, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType,
    PyTzInfo,
};

use super::{epoch, rfc3339};
use crate::codec::types;

/// RFC 3339 date-time string.
pub const DATETIME_STRING: u64 = 0;
/// Epoch-based date-time (seconds, integer or float).
pub const EPOCH: u64 = 1;
pub const POSITIVE_BIGNUM: u64 = 2;
pub const NEGATIVE_BIGNUM: u64 = 3;
/// Decimal fraction `[exponent, mantissa]`: mantissa * 10^exponent.
pub const DECIMAL: u64 = 4;
/// Bigfloat `[exponent, mantissa]`: mantissa * 2^exponent.
pub const BIGFLOAT: u64 = 5;
pub const UUID: u64 = 37;
/// RFC 8943 days since 1970-01-01.
pub const DATE_DAYS: u64 = 100;
/// Finite set, as an array.
pub const SET: u64 = 258;
/// RFC 8943 full-date string.
pub const DATE_STRING: u64 = 1004;

/// `date(1970, 1, 1).toordinal()`.
pub const ORDINAL_OF_EPOCH: i64 = 719_163;
/// Largest exponent magnitude decoded in tags 4 and 5. An exact Decimal of
/// mantissa * 2^exponent has about 0.7 digits per unit of exponent, and
/// `int()` of a Decimal of 10^exponent builds an int that large (35 s for
/// 10^999999), so a 9-byte input must not be able to ask for either.
pub const MAX_EXPONENT: i64 = 4096;
/// Largest mantissa of tags 4 and 5, in bits (about 4932 decimal digits, just
/// above CPython's default `int_max_str_digits`). Turning an int into a
/// Decimal is quadratic in its size: a 100 KB mantissa took a second.
pub const MAX_MANTISSA_BITS: u64 = 16384;

type Built<'py> = std::result::Result<Bound<'py, PyAny>, String>;

static SIMPLE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `microstd.codec._cbor_simple.Simple`, imported once.
pub fn simple_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    SIMPLE_TYPE.import(py, "microstd.codec._cbor_simple", "Simple")
}

fn py_err(what: &str, err: &PyErr, py: Python<'_>) -> String {
    format!("{what}: {}", err.value(py))
}

fn utc(py: Python<'_>) -> PyResult<Bound<'_, PyTzInfo>> {
    Ok(PyTzInfo::utc(py)?.to_owned())
}

/// Tag 0: an RFC 3339 string to an aware datetime (UTC for a zero offset).
pub fn datetime_from_string<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let text = value
        .cast::<PyString>()
        .map_err(|_| "tag 0 (date-time string) must hold a text string".to_owned())?;
    let text = text.to_str().map_err(|e| py_err("tag 0", &e, py))?;
    let p = rfc3339::parse_datetime(text)
        .ok_or_else(|| format!("tag 0 holds {text:?}, not an RFC 3339 date-time"))?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        let tz = if p.offset == 0 {
            utc(py)?
        } else {
            let delta = pyo3::types::PyDelta::new(py, 0, p.offset, 0, true)?;
            PyTzInfo::fixed_offset(py, delta)?
        };
        Ok(PyDateTime::new(
            py,
            p.year,
            p.month,
            p.day,
            p.hour,
            p.minute,
            p.second,
            p.microsecond,
            Some(&tz),
        )?
        .into_any())
    };
    build().map_err(|e| py_err("tag 0 holds an invalid date-time", &e, py))
}

/// Tag 1: seconds since the epoch to an aware datetime in UTC.
pub fn datetime_from_epoch<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let secs = if value.is_instance_of::<PyInt>() {
        let whole = value
            .extract::<i64>()
            .map_err(|_| "tag 1 (epoch date-time) is out of range".to_owned())?;
        // Whole seconds outside datetime's years: a Timestamp holds them exactly.
        if !(-62_135_596_800..253_402_300_800).contains(&whole) {
            return types::timestamp_type(py)
                .and_then(|t| t.call1((whole, 0)))
                .map_err(|e| py_err("tag 1 (epoch date-time)", &e, py));
        }
        whole as f64
    } else if let Ok(f) = value.cast::<PyFloat>() {
        let secs = f.value();
        // Nanoseconds a datetime would round away: a Timestamp holds them.
        if let Some((whole, nanos)) = epoch::sub_microsecond(secs) {
            return types::timestamp_type(py)
                .and_then(|t| t.call1((whole, nanos)))
                .map_err(|e| py_err("tag 1 (epoch date-time)", &e, py));
        }
        secs
    } else {
        return Err("tag 1 (epoch date-time) must hold an integer or a float".to_owned());
    };
    if !secs.is_finite() {
        return Err("tag 1 (epoch date-time) must be finite".to_owned());
    }
    let build = || -> PyResult<Bound<'py, PyAny>> {
        Ok(PyDateTime::from_timestamp(py, secs, Some(&utc(py)?))?.into_any())
    };
    build().map_err(|e| py_err("tag 1 (epoch date-time) is out of range", &e, py))
}

/// Tags 2 and 3: a big-endian magnitude to an int. Not capped: `int.from_bytes`
/// is linear (a 1 MB bignum decodes in milliseconds), the length is bounded by
/// the input, and CPython itself refuses the quadratic int -> str conversion
/// past `int_max_str_digits`. The cap applies where a bignum becomes a
/// Decimal's mantissa (tags 4 and 5), which is quadratic.
pub fn bignum<'py>(value: &Bound<'py, PyAny>, negative: bool) -> Built<'py> {
    let py = value.py();
    let raw = value
        .cast::<PyBytes>()
        .map_err(|_| "a bignum (tag 2 or 3) must hold a byte string".to_owned())?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        let n = py
            .get_type::<PyInt>()
            .call_method1(intern!(py, "from_bytes"), (raw, "big"))?;
        if negative {
            n.call_method0(intern!(py, "__invert__"))
        } else {
            Ok(n)
        }
    };
    build().map_err(|e| py_err("invalid bignum", &e, py))
}

fn tag_name(tag: u64) -> &'static str {
    if tag == DECIMAL {
        "decimal fraction (tag 4)"
    } else {
        "bigfloat (tag 5)"
    }
}

/// The `[exponent, mantissa]` pair of tags 4 and 5, within the caps.
fn exponent_mantissa<'py>(
    value: &Bound<'py, PyAny>,
    tag: u64,
) -> std::result::Result<(i64, Bound<'py, PyAny>), String> {
    let shape = || format!("tag {tag} must hold [exponent, mantissa] integers");
    let (exponent, mantissa) = if let Ok(t) = value.cast::<PyTuple>() {
        if t.len() != 2 {
            return Err(shape());
        }
        (
            t.get_item(0).map_err(|_| shape())?,
            t.get_item(1).map_err(|_| shape())?,
        )
    } else if let Ok(l) = value.cast::<PyList>() {
        if l.len() != 2 {
            return Err(shape());
        }
        (
            l.get_item(0).map_err(|_| shape())?,
            l.get_item(1).map_err(|_| shape())?,
        )
    } else {
        return Err(shape());
    };
    if !exponent.is_instance_of::<PyInt>() || !mantissa.is_instance_of::<PyInt>() {
        return Err(shape());
    }
    let exponent = exponent
        .extract::<i64>()
        .ok()
        .filter(|e| e.unsigned_abs() <= MAX_EXPONENT.unsigned_abs())
        .ok_or_else(|| format!("{} exponent is beyond +-{MAX_EXPONENT}", tag_name(tag)))?;
    let bits = mantissa
        .call_method0(intern!(value.py(), "bit_length"))
        .and_then(|b| b.extract::<u64>())
        .map_err(|e| py_err(tag_name(tag), &e, value.py()))?;
    if bits > MAX_MANTISSA_BITS {
        return Err(format!(
            "{} mantissa of {bits} bits is beyond {MAX_MANTISSA_BITS} bits",
            tag_name(tag)
        ));
    }
    Ok((exponent, mantissa))
}

/// `Decimal((sign, digits of |magnitude|, exponent))`: exact, no context rounding.
fn decimal_from<'py>(
    magnitude: &Bound<'py, PyAny>,
    negative: bool,
    exponent: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let py = magnitude.py();
    let decimal = types::decimal_type(py)?;
    let digits = decimal
        .call1((magnitude,))?
        .call_method0(intern!(py, "as_tuple"))?
        .getattr(intern!(py, "digits"))?;
    decimal.call1(((i64::from(negative), digits, exponent),))
}

/// Tag 4: a decimal fraction to a Decimal.
pub fn decimal_fraction<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let (exponent, mantissa) = exponent_mantissa(value, DECIMAL)?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        let negative = mantissa.lt(0)?;
        decimal_from(&mantissa.abs()?, negative, exponent)
    };
    build().map_err(|e| py_err("invalid decimal fraction", &e, py))
}

/// Tag 5: a bigfloat to the Decimal of exactly the same value.
pub fn bigfloat<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let (exponent, mantissa) = exponent_mantissa(value, BIGFLOAT)?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        let negative = mantissa.lt(0)?;
        let magnitude = mantissa.abs()?;
        if exponent >= 0 {
            decimal_from(&magnitude.lshift(exponent)?, negative, 0)
        } else {
            // m * 2^-k == m * 5^k * 10^-k exactly.
            let five = 5i64.into_pyobject(py)?;
            let scaled = magnitude.mul(five.pow(-exponent, py.None())?)?;
            decimal_from(&scaled, negative, exponent)
        }
    };
    build().map_err(|e| py_err("invalid bigfloat", &e, py))
}

/// Tag 37: 16 bytes to a UUID.
pub fn uuid<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let raw = value
        .cast::<PyBytes>()
        .ok()
        .filter(|b| b.as_bytes().len() == 16)
        .ok_or_else(|| "tag 37 (UUID) must hold a 16-byte string".to_owned())?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "bytes"), raw)?;
        types::uuid_type(py)?.call((), Some(&kwargs))
    };
    build().map_err(|e| py_err("invalid UUID", &e, py))
}

/// Tag 100: days since 1970-01-01 to a date.
pub fn date_from_days<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    if !value.is_instance_of::<PyInt>() {
        return Err("tag 100 (date) must hold an integer".to_owned());
    }
    let days = value
        .extract::<i64>()
        .map_err(|_| "tag 100 (date) is out of range".to_owned())?;
    let ordinal = days
        .checked_add(ORDINAL_OF_EPOCH)
        .ok_or_else(|| "tag 100 (date) is out of range".to_owned())?;
    let build = || -> PyResult<Bound<'py, PyAny>> {
        py.get_type::<PyDate>()
            .call_method1(intern!(py, "fromordinal"), (ordinal,))
    };
    build().map_err(|e| py_err("tag 100 (date) is out of range", &e, py))
}

/// Tag 1004: a `YYYY-MM-DD` string to a date.
pub fn date_from_string<'py>(value: &Bound<'py, PyAny>) -> Built<'py> {
    let py = value.py();
    let text = value
        .cast::<PyString>()
        .map_err(|_| "tag 1004 (date string) must hold a text string".to_owned())?;
    let text = text.to_str().map_err(|e| py_err("tag 1004", &e, py))?;
    let (y, m, d) = rfc3339::parse_date(text)
        .ok_or_else(|| format!("tag 1004 holds {text:?}, not a YYYY-MM-DD date"))?;
    PyDate::new(py, y, m, d)
        .map(Bound::into_any)
        .map_err(|e| py_err("tag 1004 holds an invalid date", &e, py))
}
