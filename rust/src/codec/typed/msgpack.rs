//! Typed msgpack decoding in one pass: the wire is read straight into the
//! plan's types (dataclass fields are matched by their UTF-8 bytes and set on
//! a fresh instance), with no intermediate dicts.
//!
//! The reader only has to be right when the data fits: at the first thing it
//! does not handle, or anything that does not fit, it gives up, and the
//! canonical path (decode untyped, then `convert`, exactly the twin's
//! algorithm) decides: it returns the same value, or raises the same
//! `DecodeError` / `ValidationError` the twin raises. The one-pass reader
//! therefore never has to build an error message. The price: on a failure,
//! user code (`__post_init__`, default factories) may have run once already.
//!
//! Leaf types it does not read itself (`Any`, enums, literals, datetimes,
//! bounded values...) are decoded untyped and converted on the spot.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyTuple};

use super::build::{new_instance, new_named_tuple, FieldSink, Seen};
use super::convert::Run;
use super::into_py;
use super::plan::{Dataclass, Default, Node, TypedDictField};
use crate::codec::gc::GcPause;
use crate::codec::keys::same_key;
use crate::codec::msgpack::decode::{with_decoder, Decoder};
use crate::codec::values::{str_value, with_values, ValueCache};
use crate::codec::{fast, MAX_DEPTH};

/// The one-pass reader stopped; the canonical path decides.
struct GiveUp;

impl From<PyErr> for GiveUp {
    fn from(_: PyErr) -> Self {
        Self
    }
}

impl From<crate::errors::Error> for GiveUp {
    fn from(_: crate::errors::Error) -> Self {
        Self
    }
}

type Read<'py> = Result<Bound<'py, PyAny>, GiveUp>;

/// Decodes msgpack `data` into the plan's type.
pub fn decode<'py>(run: &Run<'_>, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let _pause = GcPause::new(py);
    let fast = with_values(|values| {
        with_decoder(py, data, |d| {
            let mut reader = Reader { d, run, values };
            let value = reader.typed(0, 0)?;
            reader.d.finish()?;
            Ok::<_, GiveUp>(value)
        })
    });
    if let Ok(value) = fast {
        return Ok(value);
    }
    let value = crate::codec::msgpack::decode(py, data)?;
    into_py(run.conv(0, &value, 0))
}

struct Reader<'r, 'a, 'py> {
    d: &'r mut Decoder<'a, 'py>,
    run: &'r Run<'r>,
    /// The cache of short str leaves (None while another decode holds it).
    values: Option<&'r mut ValueCache>,
}

fn is_int(b: u8) -> bool {
    matches!(b, 0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff)
}

fn is_str(b: u8) -> bool {
    matches!(b, 0xa0..=0xbf | 0xd9..=0xdb)
}

/// The union dispatch kind (`_plan.V_*`) of the item starting with `b`;
/// None for extensions (a timestamp or an `Ext`: decoded, then dispatched).
fn wire_kind(b: u8) -> Option<usize> {
    Some(match b {
        0xc0 => 0,
        0xc2 | 0xc3 => 1,
        0xca | 0xcb => 3,
        0xc4..=0xc6 => 5,
        0x90..=0x9f | 0xdc | 0xdd => 6,
        0x80..=0x8f | 0xde | 0xdf => 7,
        _ if is_int(b) => 2,
        _ if is_str(b) => 4,
        _ => return None,
    })
}

impl<'a, 'py> Reader<'_, 'a, 'py> {
    fn peek(&self) -> Result<u8, GiveUp> {
        self.d.data.get(self.d.pos).copied().ok_or(GiveUp)
    }

    fn be(&mut self, width: usize) -> Result<usize, GiveUp> {
        let start = self.d.pos;
        Ok(self.d.len_field(width, start, "header")?)
    }

    /// An array header's item count (refused when longer than the bytes left).
    fn array_len(&mut self) -> Result<usize, GiveUp> {
        let b = self.peek()?;
        self.d.pos += 1;
        let n = match b {
            0x90..=0x9f => usize::from(b & 0x0f),
            0xdc => self.be(2)?,
            0xdd => self.be(4)?,
            _ => return Err(GiveUp),
        };
        if n > self.d.left() {
            return Err(GiveUp);
        }
        Ok(n)
    }

    fn map_len(&mut self) -> Result<usize, GiveUp> {
        let b = self.peek()?;
        self.d.pos += 1;
        let n = match b {
            0x80..=0x8f => usize::from(b & 0x0f),
            0xde => self.be(2)?,
            0xdf => self.be(4)?,
            _ => return Err(GiveUp),
        };
        if n.saturating_mul(2) > self.d.left() {
            return Err(GiveUp);
        }
        Ok(n)
    }

    /// The raw bytes of a str item (not yet checked as UTF-8), or None when
    /// the next item is no str (nothing is consumed then).
    fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, GiveUp> {
        let start = self.d.pos;
        let b = self.peek()?;
        let (n, header) = match b {
            0xa0..=0xbf => (usize::from(b & 0x1f), 1),
            0xd9..=0xdb => {
                self.d.pos += 1;
                let n = self.be(1 << (b - 0xd9))?;
                self.d.pos = start;
                (n, 1 + (1 << (b - 0xd9)))
            }
            _ => return Ok(None),
        };
        if header + n > self.d.data.len() - start {
            return Err(GiveUp);
        }
        self.d.pos = start + header + n;
        let data: &'a [u8] = self.d.data;
        Ok(Some(&data[start + header..start + header + n]))
    }

    /// A str leaf (the next item is a str), short ones from the value cache.
    #[inline]
    fn str_leaf(&mut self) -> Read<'py> {
        let raw = self.str_bytes()?.ok_or(GiveUp)?;
        str_value(self.values.as_deref_mut(), self.d.py, raw)?.ok_or(GiveUp)
    }

    /// Decodes the next item untyped and converts it with `node`.
    fn generic(&mut self, node: usize, depth: usize) -> Read<'py> {
        let value = self.d.value(depth, false)?;
        self.run.conv(node, &value, depth).map_err(|_| GiveUp)
    }

    fn typed(&mut self, node: usize, depth: usize) -> Read<'py> {
        let b = self.peek()?;
        match &self.run.nodes[node] {
            Node::Str if is_str(b) => self.str_leaf(),
            Node::Int if is_int(b) => Ok(self.d.value(depth, false)?),
            Node::Float if b == 0xcb || b == 0xca => Ok(self.d.value(depth, false)?),
            Node::Float if is_int(b) => {
                let v: f64 = self.d.value(depth, false)?.extract()?;
                Ok(fast::new_float(self.d.py, v)?)
            }
            Node::Bool if b == 0xc2 || b == 0xc3 => Ok(self.d.value(depth, false)?),
            Node::None if b == 0xc0 => Ok(self.d.value(depth, false)?),
            Node::Str | Node::Int | Node::Float | Node::Bool | Node::None => Err(GiveUp),
            Node::List(item) => {
                let n = self.container(depth, Self::array_len)?;
                let py = self.d.py;
                Ok(fast::new_list(py, n, || self.typed(*item, depth + 1))?)
            }
            Node::VarTuple(item) => {
                let n = self.container(depth, Self::array_len)?;
                let items = self.items(&vec![*item; n], depth)?;
                Ok(PyTuple::new(self.d.py, items)?.into_any())
            }
            Node::Tuple(nodes) => {
                let n = self.container(depth, Self::array_len)?;
                if n != nodes.len() {
                    return Err(GiveUp);
                }
                let items = self.items(nodes, depth)?;
                Ok(PyTuple::new(self.d.py, items)?.into_any())
            }
            Node::NamedTuple {
                cls,
                nodes,
                defaults,
                ..
            } => {
                let n = self.container(depth, Self::array_len)?;
                if n > nodes.len() || n + defaults.len() < nodes.len() {
                    return Err(GiveUp);
                }
                let mut items = self.items(&nodes[..n], depth)?;
                let py = self.d.py;
                for d in &defaults[defaults.len() - (nodes.len() - n)..] {
                    items.push(d.bind(py).clone());
                }
                Ok(new_named_tuple(cls.bind(py), items)?)
            }
            Node::Dict(key_node, value_node) => {
                let n = self.container(depth, Self::map_len)?;
                let dict = fast::new_dict(self.d.py, n)?;
                for _ in 0..n {
                    let key = self.d.key(depth + 1)?;
                    let key = self
                        .run
                        .conv(*key_node, &key, depth + 1)
                        .map_err(|_| GiveUp)?;
                    let value = self.typed(*value_node, depth + 1)?;
                    dict.set_item(key, value)?;
                }
                Ok(dict.into_any())
            }
            Node::Dataclass(dc) => self.dataclass(dc, depth),
            Node::TypedDict { fields, .. } => self.typeddict(fields, depth),
            Node::Union { table, .. } => match wire_kind(b) {
                Some(kind) => match table[kind] {
                    Some(option) => self.typed(option, depth),
                    None => Err(GiveUp),
                },
                None => self.generic(node, depth),
            },
            _ => self.generic(node, depth),
        }
    }

    /// A container's length, refused past the nesting limit (the canonical
    /// path then reports it).
    fn container(
        &mut self,
        depth: usize,
        header: fn(&mut Self) -> Result<usize, GiveUp>,
    ) -> Result<usize, GiveUp> {
        if depth >= MAX_DEPTH {
            return Err(GiveUp);
        }
        header(self)
    }

    fn items(&mut self, nodes: &[usize], depth: usize) -> Result<Vec<Bound<'py, PyAny>>, GiveUp> {
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            out.push(self.typed(*node, depth + 1)?);
        }
        Ok(out)
    }

    /// Skips a map entry whose key is no field: decoded (so bad bytes and
    /// unhashable keys are still refused, as the untyped decoder does) and dropped.
    fn skip_entry(&mut self, depth: usize) -> Result<(), GiveUp> {
        if self.run.forbid {
            return Err(GiveUp);
        }
        let key = self.d.key(depth + 1)?;
        key.hash()?;
        self.d.value(depth + 1, false)?;
        Ok(())
    }

    /// Which of `names` the next map key is (consumed), or None (then nothing
    /// is consumed). `hint` is tried first: fields usually come in order.
    fn field_index<'n>(
        &mut self,
        names: impl Fn(usize) -> &'n [u8],
        count: usize,
        hint: usize,
    ) -> Result<Option<usize>, GiveUp> {
        let start = self.d.pos;
        let Some(key) = self.str_bytes()? else {
            return Ok(None);
        };
        if hint < count && same_key(names(hint), key) {
            return Ok(Some(hint));
        }
        if let Some(i) = (0..count).find(|&i| same_key(names(i), key)) {
            return Ok(Some(i));
        }
        self.d.pos = start;
        Ok(None)
    }

    /// A field's value: the common leaves (a str, a small int, a bool,
    /// None) read right here, anything else through `typed`. Measured on
    /// the twitter corpus, where most fields are such leaves: the call into
    /// `typed` and its dispatch were a tenth of the decode.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn field_value(&mut self, node: usize, depth: usize) -> Read<'py> {
        let py = self.d.py;
        if let Some(&b) = self.d.data.get(self.d.pos) {
            match &self.run.nodes[node] {
                Node::Str if is_str(b) => return self.str_leaf(),
                Node::Int if b <= 0x7f => {
                    self.d.pos += 1;
                    let Ok(v) = i64::from(b).into_pyobject(py);
                    return Ok(v.into_any());
                }
                Node::Int if is_int(b) => return Ok(self.d.value(depth, false)?),
                Node::Bool if b == 0xc2 || b == 0xc3 => {
                    self.d.pos += 1;
                    return Ok(PyBool::new(py, b == 0xc3).to_owned().into_any());
                }
                Node::None if b == 0xc0 => {
                    self.d.pos += 1;
                    return Ok(py.None().into_bound(py));
                }
                _ => {}
            }
        }
        self.typed(node, depth)
    }

    fn dataclass(&mut self, dc: &Dataclass, depth: usize) -> Read<'py> {
        let n = self.container(depth, Self::map_len)?;
        let py = self.d.py;
        let obj = new_instance(dc.cls.bind(py))?;
        let sink = FieldSink::new(&obj, dc)?;
        let mut seen = Seen::new(dc.fields.len());
        let mut hint = 0;
        for _ in 0..n {
            let found = self.field_index(|i| &dc.fields[i].utf8, dc.fields.len(), hint)?;
            let Some(i) = found else {
                self.skip_entry(depth)?;
                continue;
            };
            if !seen.mark(i) {
                return Err(GiveUp); // a repeated key: the canonical path keeps the last
            }
            hint = i + 1;
            let field = &dc.fields[i];
            let value = self.field_value(field.node, depth + 1)?;
            sink.set(&obj, field, &value)?;
        }
        for (i, field) in dc.fields.iter().enumerate() {
            if seen.has(i) {
                continue;
            }
            let value = match &field.default {
                Default::Value(v) => v.bind(py).clone(),
                Default::Factory(make) => make.bind(py).call0()?,
                Default::Required => return Err(GiveUp),
            };
            sink.set(&obj, field, &value)?;
        }
        if dc.post_init {
            obj.call_method0(pyo3::intern!(py, "__post_init__"))?;
        }
        Ok(obj)
    }

    fn typeddict(&mut self, fields: &[TypedDictField], depth: usize) -> Read<'py> {
        let n = self.container(depth, Self::map_len)?;
        let py = self.d.py;
        let out = PyDict::new(py);
        let mut seen = vec![false; fields.len()];
        let mut hint = 0;
        for _ in 0..n {
            let Some(i) = self.field_index(|i| &fields[i].utf8, fields.len(), hint)? else {
                self.skip_entry(depth)?;
                continue;
            };
            if seen[i] {
                return Err(GiveUp);
            }
            seen[i] = true;
            hint = i + 1;
            let value = self.typed(fields[i].node, depth + 1)?;
            out.set_item(fields[i].name.bind(py), value)?;
        }
        if fields.iter().zip(&seen).any(|(f, s)| f.required && !s) {
            return Err(GiveUp);
        }
        // The twin builds the dict in the TypedDict's field order.
        if seen.iter().filter(|s| **s).count() > 1 {
            let ordered = PyDict::new(py);
            for f in fields {
                if let Some(v) = out.get_item(f.name.bind(py))? {
                    ordered.set_item(f.name.bind(py), v)?;
                }
            }
            return Ok(ordered.into_any());
        }
        Ok(out.into_any())
    }
}
