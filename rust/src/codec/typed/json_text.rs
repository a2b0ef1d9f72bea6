//! JSON text for the one-pass reader (`typed::json`): whitespace, literals,
//! numbers by JSON's grammar, strings with their escapes, and untyped values
//! built as orjson builds them. Anything it does not handle gives up (the
//! canonical path then decides).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};

use super::json::{GiveUp, Read, Reader, MAX_JSON_DEPTH};
use crate::codec::values::{ascii_value, str_value, MAX_VALUE_LEN};
use crate::codec::{fast, json_scan, text};

/// A string's bytes: `data[start..end]`, or `scratch[start..end]` once its
/// escapes are resolved; `ascii` (unescaped strings only) when every byte is.
pub(super) struct Text {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) escaped: bool,
    pub(super) ascii: bool,
}

/// A number token: its text, and whether it is an integer (no fraction or exponent).
pub(super) struct Number<'a> {
    pub(super) text: &'a [u8],
    pub(super) integer: bool,
}

impl<'a, 'py> Reader<'_, 'a, 'py> {
    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(&b) = self.data.get(self.pos) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next non-space byte (not consumed).
    #[inline]
    pub(super) fn peek(&mut self) -> Result<u8, GiveUp> {
        // Compact JSON has no whitespace, and every whitespace byte is at
        // most b' ': one compare settles the common case.
        match self.data.get(self.pos) {
            Some(&b) if b > b' ' => Ok(b),
            _ => {
                self.ws();
                self.data.get(self.pos).copied().ok_or(GiveUp)
            }
        }
    }

    pub(super) fn expect(&mut self, byte: u8) -> Result<(), GiveUp> {
        if self.peek()? != byte {
            return Err(GiveUp);
        }
        self.pos += 1;
        Ok(())
    }

    /// `true`, `false` or `null` here. Inlined with the word's length
    /// known, the compare is one or two loads: measured on twitter, the
    /// call and its `memcmp` were 3% of the decode.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(super) fn literal<const N: usize>(&mut self, word: &[u8; N]) -> Result<(), GiveUp> {
        let end = self.pos + N;
        if self.data.get(self.pos..end) == Some(&word[..]) {
            self.pos = end;
            return Ok(());
        }
        Err(GiveUp)
    }

    /// The number starting here, by JSON's grammar (anything else gives up).
    pub(super) fn number(&mut self) -> Result<Number<'a>, GiveUp> {
        let data = self.data;
        let start = self.pos;
        let mut i = start;
        if data.get(i) == Some(&b'-') {
            i += 1;
        }
        match data.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while data.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(GiveUp),
        }
        let mut integer = true;
        if data.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            if !data.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(GiveUp);
            }
            while data.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(data.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(data.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !data.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(GiveUp);
            }
            while data.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(Number {
            text: &data[start..i],
            integer,
        })
    }

    pub(super) fn int_value(&self, n: &Number<'_>) -> Read<'py> {
        // Measured on citm_catalog (ids everywhere): `str::parse` after a UTF-8
        // check was a twentieth of the decode; the token holds only a sign and
        // digits, so accumulate them directly.
        let (negative, digits) = match n.text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, n.text),
        };
        let mut magnitude: u64 = 0;
        for &d in digits {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
                .ok_or(GiveUp)?; // beyond 64 bits: orjson's rule (a float) is the canonical path's
        }
        self.signed_int(magnitude, negative)
    }

    /// An int leaf, its token scanned and its value accumulated in one
    /// pass: measured on twitter (18-digit ids), scanning the token and
    /// then parsing it with checked arithmetic was 3% of the decode. Up to
    /// 19 digits always fit 64 bits; longer tokens take `number` and
    /// `int_value`, as do leading zeros and fractions (which give up).
    pub(super) fn int_leaf(&mut self) -> Read<'py> {
        let data = self.data;
        let negative = data.get(self.pos) == Some(&b'-');
        let start = self.pos + usize::from(negative);
        let mut i = start;
        let mut magnitude: u64 = 0;
        while let Some(digit) = data
            .get(i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|d| *d < 10)
        {
            if i - start == 19 {
                return match self.number() {
                    Ok(n) if n.integer => self.int_value(&n),
                    _ => Err(GiveUp),
                };
            }
            magnitude = magnitude * 10 + u64::from(digit);
            i += 1;
        }
        let digits = i - start;
        if digits == 0
            || (digits > 1 && data[start] == b'0')
            || matches!(data.get(i), Some(b'.' | b'e' | b'E'))
        {
            return Err(GiveUp);
        }
        self.pos = i;
        self.signed_int(magnitude, negative)
    }

    /// The Python int of a sign and a magnitude; beyond i64 when negative: the
    /// canonical path's.
    #[allow(clippy::inline_always)] // the tail of both int readers, inlined into each as it was
    #[inline(always)]
    fn signed_int(&self, magnitude: u64, negative: bool) -> Read<'py> {
        if negative {
            if magnitude > 1 << 63 {
                return Err(GiveUp);
            }
            let v = (magnitude as i64).wrapping_neg();
            let Ok(obj) = v.into_pyobject(self.py);
            return Ok(obj.into_any());
        }
        let Ok(obj) = magnitude.into_pyobject(self.py);
        Ok(obj.into_any())
    }

    pub(super) fn float_value(&self, n: &Number<'_>) -> Read<'py> {
        // (Integer tokens are read as ints first, as the canonical path
        // does: "-0" is 0.0 there, not -0.0.)
        if !n.integer {
            if let Some(v) = json_scan::exact_float(n.text) {
                return Ok(fast::new_float(self.py, v)?);
            }
        }
        let text = std::str::from_utf8(n.text).map_err(|_| GiveUp)?;
        let v: f64 = if n.integer {
            // An int converted to float, as `float(int)` does (round half to even).
            if let Ok(i) = text.parse::<i64>() {
                i as f64
            } else if let Ok(u) = text.parse::<u64>() {
                u as f64
            } else {
                return Err(GiveUp);
            }
        } else {
            text.parse().map_err(|_| GiveUp)?
        };
        if !v.is_finite() {
            return Err(GiveUp);
        }
        Ok(fast::new_float(self.py, v)?)
    }

    pub(super) fn number_value(&mut self) -> Read<'py> {
        let n = self.number()?;
        if n.integer {
            self.int_value(&n)
        } else {
            self.float_value(&n)
        }
    }

    /// The raw UTF-8 of a string (escapes resolved into `scratch` when there
    /// are any); the opening quote is next. Inlined, with the escapes out of
    /// line: measured on twitter, the call's own set-up and return were a
    /// sixth of this function's time, and most strings have no escape.
    /// Always: with a plain `#[inline]` the str leaves still called it
    /// (and took its result through memory), 3% of decoding twitter.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(super) fn string_bytes(&mut self) -> Result<Text, GiveUp> {
        self.expect(b'"')?;
        let start = self.pos;
        let (i, high) = json_scan::scan(self.data, start);
        match self.data.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                Ok(Text {
                    start,
                    end: i,
                    escaped: false,
                    ascii: !high,
                })
            }
            Some(b'\\') => self.escaped_string(start, i),
            _ => Err(GiveUp), // the end of the data, or a control byte
        }
    }

    /// The rest of a string that has an escape at `i` (it started at `start`).
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize, mut i: usize) -> Result<Text, GiveUp> {
        let data = self.data;
        // Copy what came before the escape, then resolve them one by one.
        self.scratch.clear();
        self.scratch.extend_from_slice(&data[start..i]);
        loop {
            match data.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Text {
                        start: 0,
                        end: self.scratch.len(),
                        escaped: true,
                        ascii: false,
                    });
                }
                Some(b'\\') => {
                    let (c, next) = escape(data, i)?;
                    let mut utf8 = [0; 4];
                    self.scratch
                        .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    i = next;
                }
                _ => return Err(GiveUp),
            }
            let (stop, _) = json_scan::scan(data, i);
            self.scratch.extend_from_slice(&data[i..stop]);
            i = stop;
        }
    }

    pub(super) fn string(&mut self) -> Read<'py> {
        let t = self.string_bytes()?;
        self.text_str(&t)
    }

    /// A new str of the string `t` just read.
    fn text_str(&self, t: &Text) -> Read<'py> {
        if t.ascii {
            return Ok(text::new_ascii(self.py, &self.data[t.start..t.end])?);
        }
        let bytes = if t.escaped {
            &self.scratch[t.start..t.end]
        } else {
            &self.data[t.start..t.end]
        };
        text::new_str(self.py, bytes)?.ok_or(GiveUp)
    }

    /// A str leaf of the plan: short ones from the value cache.
    pub(super) fn str_leaf(&mut self) -> Read<'py> {
        let t = self.string_bytes()?;
        if t.end - t.start > MAX_VALUE_LEN || self.values.is_none() {
            return self.text_str(&t);
        }
        if t.ascii {
            let bytes = &self.data[t.start..t.end];
            return Ok(ascii_value(self.values.as_deref_mut(), self.py, bytes)?);
        }
        let bytes = if t.escaped {
            &self.scratch[t.start..t.end]
        } else {
            &self.data[t.start..t.end]
        };
        str_value(self.values.as_deref_mut(), self.py, bytes)?.ok_or(GiveUp)
    }

    /// An untyped value, as orjson builds it.
    pub(super) fn value(&mut self, depth: usize) -> Read<'py> {
        if depth >= MAX_JSON_DEPTH {
            return Err(GiveUp);
        }
        let py = self.py;
        match self.peek()? {
            b'"' => self.string(),
            b'{' => {
                self.pos += 1;
                let dict = PyDict::new(py);
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Ok(dict.into_any());
                }
                loop {
                    let key = self.string()?;
                    self.expect(b':')?;
                    let value = self.value(depth + 1)?;
                    dict.set_item(key, value)?;
                    if self.more(b'}')? {
                        continue;
                    }
                    return Ok(dict.into_any());
                }
            }
            b'[' => {
                self.pos += 1;
                let list = PyList::empty(py);
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Ok(list.into_any());
                }
                loop {
                    list.append(self.value(depth + 1)?)?;
                    if self.more(b']')? {
                        continue;
                    }
                    return Ok(list.into_any());
                }
            }
            b't' => {
                self.literal(b"true")?;
                Ok(PyBool::new(py, true).to_owned().into_any())
            }
            b'f' => {
                self.literal(b"false")?;
                Ok(PyBool::new(py, false).to_owned().into_any())
            }
            b'n' => {
                self.literal(b"null")?;
                Ok(py.None().into_bound(py))
            }
            _ => self.number_value(),
        }
    }

    /// After an item: true for a comma (another item follows), false for the closing byte.
    pub(super) fn more(&mut self, close: u8) -> Result<bool, GiveUp> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(true)
            }
            b if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(GiveUp),
        }
    }
}

/// The character of the escape at `data[i]` (a backslash) and where the next
/// byte is; surrogate pairs are joined, a lone surrogate gives up (orjson
/// refuses it).
fn escape(data: &[u8], i: usize) -> Result<(char, usize), GiveUp> {
    let c = match data.get(i + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let high = hex4(data, i + 2)?;
            if (0xD800..0xDC00).contains(&high) {
                if data.get(i + 6) != Some(&b'\\') || data.get(i + 7) != Some(&b'u') {
                    return Err(GiveUp);
                }
                let low = hex4(data, i + 8)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return Err(GiveUp);
                }
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok((char::from_u32(code).ok_or(GiveUp)?, i + 12));
            }
            return Ok((char::from_u32(high).ok_or(GiveUp)?, i + 6));
        }
        _ => return Err(GiveUp),
    };
    Ok((c, i + 2))
}

fn hex4(data: &[u8], at: usize) -> Result<u32, GiveUp> {
    let digits = data.get(at..at + 4).ok_or(GiveUp)?;
    let text = std::str::from_utf8(digits).map_err(|_| GiveUp)?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GiveUp);
    }
    u32::from_str_radix(text, 16).map_err(|_| GiveUp)
}
