//! Typed JSON decoding in one pass: the text is parsed straight into the
//! plan's types, with no intermediate dicts.
//!
//! As for msgpack (`typed::msgpack`), the reader only has to be right when
//! the document fits: at the first thing it does not handle (escapes it
//! cannot map, numbers outside 64 bits, deep nesting, anything malformed or
//! not fitting), it gives up and the canonical path decides: orjson decodes
//! (the untyped `codec.json.loads`, whose errors carry the byte offset), then
//! `convert` runs the twin's algorithm. Values it builds are the ones orjson
//! builds: correctly rounded floats, ints within 64 bits, str, dict (the
//! last of repeated keys wins), list, bool, None.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyTuple};

use super::convert::{new_instance, new_named_tuple, FieldSink, Run};
use super::into_py;
use super::plan::{Dataclass, Default, Node, TypedDictField};
use crate::codec::gc::GcPause;
use crate::codec::{fast, text};

/// Deeper than this, the canonical path decides (orjson's own limit applies there).
const MAX_JSON_DEPTH: usize = 250;

static UNTYPED_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

struct GiveUp;

impl From<PyErr> for GiveUp {
    fn from(_: PyErr) -> Self {
        Self
    }
}

type Read<'py> = Result<Bound<'py, PyAny>, GiveUp>;

/// Decodes a JSON document into the plan's type.
pub fn decode<'py>(run: &Run<'_>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let _pause = GcPause::new(py);
        let mut reader = Reader {
            py,
            data: bytes.as_bytes(),
            pos: 0,
            run,
            scratch: Vec::new(),
        };
        if let Ok(value) = reader.document() {
            return Ok(value);
        }
    }
    let loads = UNTYPED_LOADS.import(py, "microstd.codec.json", "_untyped_loads")?;
    let value = loads.call1((data,))?;
    into_py(run.conv(0, &value, 0))
}

struct Reader<'r, 'a, 'py> {
    py: Python<'py>,
    data: &'a [u8],
    pos: usize,
    run: &'r Run<'r>,
    /// Reused for strings with escapes.
    scratch: Vec<u8>,
}

/// A number token: its text, and whether it is an integer (no fraction or exponent).
struct Number<'a> {
    text: &'a [u8],
    integer: bool,
}

impl<'a, 'py> Reader<'_, 'a, 'py> {
    fn document(&mut self) -> Read<'py> {
        let value = self.typed(0, 0)?;
        self.ws();
        if self.pos != self.data.len() {
            return Err(GiveUp);
        }
        Ok(value)
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&b) = self.data.get(self.pos) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next non-space byte (not consumed).
    #[inline]
    fn peek(&mut self) -> Result<u8, GiveUp> {
        self.ws();
        self.data.get(self.pos).copied().ok_or(GiveUp)
    }

    fn expect(&mut self, byte: u8) -> Result<(), GiveUp> {
        if self.peek()? != byte {
            return Err(GiveUp);
        }
        self.pos += 1;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), GiveUp> {
        if self.data[self.pos..].starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        Err(GiveUp)
    }

    /// The number starting here, by JSON's grammar (anything else gives up).
    fn number(&mut self) -> Result<Number<'a>, GiveUp> {
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

    fn int_value(&self, n: &Number<'_>) -> Read<'py> {
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

    fn float_value(&self, n: &Number<'_>) -> Read<'py> {
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

    fn number_value(&mut self) -> Read<'py> {
        let n = self.number()?;
        if n.integer {
            self.int_value(&n)
        } else {
            self.float_value(&n)
        }
    }

    /// The raw UTF-8 of a string (escapes resolved into `scratch` when there
    /// are any); the opening quote is next.
    fn string_bytes(&mut self) -> Result<(usize, usize, bool), GiveUp> {
        self.expect(b'"')?;
        let start = self.pos;
        let data = self.data;
        let mut i = start;
        loop {
            match data.get(i) {
                None => return Err(GiveUp),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok((start, i, false));
                }
                Some(b'\\') => break,
                Some(&b) if b < 0x20 => return Err(GiveUp),
                Some(_) => i += 1,
            }
        }
        // Escapes: copy what came before, then resolve them one by one.
        self.scratch.clear();
        self.scratch.extend_from_slice(&data[start..i]);
        loop {
            match data.get(i) {
                None => return Err(GiveUp),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok((0, self.scratch.len(), true));
                }
                Some(b'\\') => {
                    let (c, next) = escape(data, i)?;
                    let mut utf8 = [0; 4];
                    self.scratch
                        .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    i = next;
                }
                Some(&b) if b < 0x20 => return Err(GiveUp),
                Some(&b) => {
                    self.scratch.push(b);
                    i += 1;
                }
            }
        }
    }

    fn string(&mut self) -> Read<'py> {
        let (start, end, escaped) = self.string_bytes()?;
        let bytes = if escaped {
            &self.scratch[start..end]
        } else {
            &self.data[start..end]
        };
        text::new_str(self.py, bytes)?.ok_or(GiveUp)
    }

    /// An untyped value, as orjson builds it.
    fn value(&mut self, depth: usize) -> Read<'py> {
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
    fn more(&mut self, close: u8) -> Result<bool, GiveUp> {
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

    fn generic(&mut self, node: usize, depth: usize) -> Read<'py> {
        let value = self.value(depth)?;
        self.run.conv(node, &value, depth).map_err(|_| GiveUp)
    }

    /// The items of an array, each read with `node_for(i)`.
    fn array(
        &mut self,
        depth: usize,
        mut node_for: impl FnMut(usize) -> Option<usize>,
    ) -> Result<Vec<Bound<'py, PyAny>>, GiveUp> {
        if depth >= MAX_JSON_DEPTH {
            return Err(GiveUp);
        }
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            let node = node_for(items.len()).ok_or(GiveUp)?;
            items.push(self.typed(node, depth + 1)?);
            if !self.more(b']')? {
                return Ok(items);
            }
        }
    }

    fn typed(&mut self, node: usize, depth: usize) -> Read<'py> {
        let b = self.peek()?;
        let py = self.py;
        match &self.run.nodes[node] {
            Node::Str if b == b'"' => self.string(),
            Node::Int if b == b'-' || b.is_ascii_digit() => {
                let n = self.number()?;
                if !n.integer {
                    return Err(GiveUp);
                }
                self.int_value(&n)
            }
            Node::Float if b == b'-' || b.is_ascii_digit() => {
                let n = self.number()?;
                self.float_value(&n)
            }
            Node::Bool if b == b't' || b == b'f' => self.value(depth),
            Node::None if b == b'n' => self.value(depth),
            Node::Str | Node::Int | Node::Float | Node::Bool | Node::None => Err(GiveUp),
            Node::List(item) => {
                let items = self.array(depth, |_| Some(*item))?;
                Ok(PyList::new(py, items)?.into_any())
            }
            Node::VarTuple(item) => {
                let items = self.array(depth, |_| Some(*item))?;
                Ok(PyTuple::new(py, items)?.into_any())
            }
            Node::Tuple(nodes) => {
                let items = self.array(depth, |i| nodes.get(i).copied())?;
                if items.len() != nodes.len() {
                    return Err(GiveUp);
                }
                Ok(PyTuple::new(py, items)?.into_any())
            }
            Node::NamedTuple {
                cls,
                nodes,
                defaults,
                ..
            } => {
                let mut items = self.array(depth, |i| nodes.get(i).copied())?;
                let n = items.len();
                if n + defaults.len() < nodes.len() {
                    return Err(GiveUp);
                }
                for d in &defaults[defaults.len() - (nodes.len() - n)..] {
                    items.push(d.bind(py).clone());
                }
                Ok(new_named_tuple(cls.bind(py), items)?)
            }
            Node::Dict(key_node, value_node) => {
                if depth >= MAX_JSON_DEPTH {
                    return Err(GiveUp);
                }
                self.expect(b'{')?;
                let dict = PyDict::new(py);
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Ok(dict.into_any());
                }
                loop {
                    let key = self.string()?;
                    let key = self
                        .run
                        .conv(*key_node, &key, depth + 1)
                        .map_err(|_| GiveUp)?;
                    self.expect(b':')?;
                    let value = self.typed(*value_node, depth + 1)?;
                    dict.set_item(key, value)?;
                    if !self.more(b'}')? {
                        return Ok(dict.into_any());
                    }
                }
            }
            Node::Dataclass(dc) => self.dataclass(dc, depth),
            Node::TypedDict { fields, .. } => self.typeddict(fields, depth),
            Node::Union { table, .. } => {
                let kind = match b {
                    b'n' => 0,
                    b't' | b'f' => 1,
                    b'"' => 4,
                    b'[' => 6,
                    b'{' => 7,
                    _ => {
                        // A number: int or float by its token.
                        let save = self.pos;
                        let integer = self.number()?.integer;
                        self.pos = save;
                        if integer {
                            2
                        } else {
                            3
                        }
                    }
                };
                match table[kind] {
                    Some(option) => self.typed(option, depth),
                    None => Err(GiveUp),
                }
            }
            _ => self.generic(node, depth),
        }
    }

    /// Which of the fields the next key names (the key is consumed either
    /// way); None for a key that is no field.
    fn field<'n>(
        &mut self,
        names: impl Fn(usize) -> &'n [u8],
        count: usize,
        hint: usize,
    ) -> Result<Option<usize>, GiveUp> {
        let (start, end, escaped) = self.string_bytes()?;
        let key = if escaped {
            &self.scratch[start..end]
        } else {
            &self.data[start..end]
        };
        if hint < count && names(hint) == key {
            return Ok(Some(hint));
        }
        if let Some(i) = (0..count).find(|&i| names(i) == key) {
            return Ok(Some(i));
        }
        // Not a field: it must still be valid UTF-8 for the document to be valid.
        if std::str::from_utf8(key).is_err() {
            return Err(GiveUp);
        }
        Ok(None)
    }

    /// A member whose key is no field: read (so bad text is still refused) and dropped.
    fn skip_value(&mut self, depth: usize) -> Result<(), GiveUp> {
        if self.run.forbid {
            return Err(GiveUp);
        }
        self.value(depth + 1)?;
        Ok(())
    }

    fn dataclass(&mut self, dc: &Dataclass, depth: usize) -> Read<'py> {
        if depth >= MAX_JSON_DEPTH {
            return Err(GiveUp);
        }
        self.expect(b'{')?;
        let py = self.py;
        let obj = new_instance(dc.cls.bind(py))?;
        let sink = FieldSink::new(&obj, dc.slots)?;
        let mut seen = vec![false; dc.fields.len()];
        let mut hint = 0;
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                let found = self.field(|i| &dc.fields[i].utf8, dc.fields.len(), hint)?;
                self.expect(b':')?;
                match found {
                    Some(i) => {
                        if seen[i] {
                            return Err(GiveUp); // repeated: orjson keeps the last
                        }
                        seen[i] = true;
                        hint = i + 1;
                        let field = &dc.fields[i];
                        let value = self.typed(field.node, depth + 1)?;
                        sink.set(&obj, field.name.bind(py), &value)?;
                    }
                    None => self.skip_value(depth)?,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        for (field, seen) in dc.fields.iter().zip(seen) {
            if seen {
                continue;
            }
            let value = match &field.default {
                Default::Value(v) => v.bind(py).clone(),
                Default::Factory(make) => make.bind(py).call0()?,
                Default::Required => return Err(GiveUp),
            };
            sink.set(&obj, field.name.bind(py), &value)?;
        }
        if dc.post_init {
            obj.call_method0(pyo3::intern!(py, "__post_init__"))?;
        }
        Ok(obj)
    }

    fn typeddict(&mut self, fields: &[TypedDictField], depth: usize) -> Read<'py> {
        if depth >= MAX_JSON_DEPTH {
            return Err(GiveUp);
        }
        self.expect(b'{')?;
        let py = self.py;
        let mut values: Vec<Option<Bound<'py, PyAny>>> = vec![None; fields.len()];
        let mut hint = 0;
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                let found = self.field(|i| &fields[i].utf8, fields.len(), hint)?;
                self.expect(b':')?;
                match found {
                    Some(i) => {
                        if values[i].is_some() {
                            return Err(GiveUp);
                        }
                        hint = i + 1;
                        values[i] = Some(self.typed(fields[i].node, depth + 1)?);
                    }
                    None => self.skip_value(depth)?,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        // Built in the TypedDict's field order, as the twin builds it.
        let out = PyDict::new(py);
        for (field, value) in fields.iter().zip(values) {
            match value {
                Some(v) => out.set_item(field.name.bind(py), v)?,
                None if field.required => return Err(GiveUp),
                None => {}
            }
        }
        Ok(out.into_any())
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
