//! Typed CBOR decoding in one pass, as `typed::msgpack` does for msgpack:
//! the wire is read straight into the plan's types (dataclass fields
//! matched by their UTF-8 bytes), with no intermediate dicts.
//!
//! The reader only has to be right when the data fits: at the first thing
//! it does not handle, or anything that does not fit, it gives up, and the
//! canonical path (decode untyped, then `convert`, the twin's algorithm)
//! decides, returning the same value or raising the same error. Tags,
//! indefinite-length items and leaf types it does not read itself (`Any`,
//! enums, datetimes, ...) are decoded untyped and converted on the spot.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyTuple};

use super::build::{new_instance, new_named_tuple, FieldSink, Seen};
use super::convert::Run;
use super::into_py;
use super::plan::{Dataclass, Default, Node, TypedDictField};
use crate::codec::cbor::decode::{with_decoder, Decoder};
use crate::codec::cbor::head::{ARRAY, MAP, NINT, TEXT, UINT};
use crate::codec::gc::GcPause;
use crate::codec::keys::same_key;
use crate::codec::limits::Limits;
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

/// Decodes CBOR `data` (bytes in one pass; anything else, or anything the
/// reader gives up on, through `cbor.loads` and `convert`) into the plan's type.
pub fn decode<'py>(run: &Run<'_>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let _pause = GcPause::new(py);
        let fast = with_values(|values| {
            with_decoder(py, bytes.as_bytes(), |d| {
                let mut reader = Reader { d, run, values };
                let value = reader.typed(0, 0)?;
                if reader.d.pos != reader.d.data.len() {
                    return Err(GiveUp);
                }
                Ok::<_, GiveUp>(value)
            })
        });
        if let Ok(value) = fast {
            return Ok(value);
        }
    }
    let value = crate::codec::cbor::untyped(py, data, None, Limits::default())?;
    into_py(run.conv(0, &value, 0))
}

struct Reader<'r, 'a, 'py> {
    d: &'r mut Decoder<'a, 'py>,
    run: &'r Run<'r>,
    /// The cache of short str leaves (None while another decode holds it).
    values: Option<&'r mut ValueCache>,
}

/// The union dispatch kind (`_plan.V_*`) of the item whose initial byte is
/// `ib`; None for tags and other simple values (decoded, then dispatched).
fn wire_kind(ib: u8) -> Option<usize> {
    Some(match ib >> 5 {
        UINT | NINT => 2,
        2 => 5,
        TEXT => 4,
        ARRAY => 6,
        MAP => 7,
        _ => match ib {
            0xf4 | 0xf5 => 1,
            0xf6 | 0xf7 => 0,
            0xf9..=0xfb => 3,
            _ => return None,
        },
    })
}

/// A definite length: the argument of a head with additional information
/// 0..=27 (indefinite lengths, 31, give None).
fn definite_len(data: &[u8], at: usize) -> Option<(u64, usize)> {
    let ib = *data.get(at)?;
    let ai = ib & 0x1f;
    let be = |n: usize| -> Option<u64> {
        let bytes = data.get(at + 1..at + 1 + n)?;
        Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    Some(match ai {
        0..=23 => (u64::from(ai), 1),
        24 => (be(1)?, 2),
        25 => (be(2)?, 3),
        26 => (be(4)?, 5),
        27 => (be(8)?, 9),
        _ => return None,
    })
}

impl<'a, 'py> Reader<'_, 'a, 'py> {
    fn peek(&self) -> Result<u8, GiveUp> {
        self.d.data.get(self.d.pos).copied().ok_or(GiveUp)
    }

    /// The item count of the definite-length container of major type
    /// `major` starting here (consumed), refused past the nesting limit or
    /// when longer than the bytes left (`per_item` bytes at least each).
    fn container(&mut self, major: u8, depth: usize, per_item: u64) -> Result<usize, GiveUp> {
        if depth >= MAX_DEPTH || self.peek()? >> 5 != major {
            return Err(GiveUp);
        }
        let (n, header) = definite_len(self.d.data, self.d.pos).ok_or(GiveUp)?;
        self.d.pos += header;
        let left = (self.d.data.len() - self.d.pos) as u64;
        if n.saturating_mul(per_item) > left {
            return Err(GiveUp);
        }
        Ok(n as usize)
    }

    /// The raw bytes of a definite text string (not yet checked as UTF-8),
    /// consumed; None when the next item is no text string (nothing consumed).
    /// A chunked one gives up: it may spell a field name.
    fn text_bytes(&mut self) -> Result<Option<&'a [u8]>, GiveUp> {
        let start = self.d.pos;
        if self.peek()? >> 5 != TEXT {
            return Ok(None);
        }
        let (n, header) = definite_len(self.d.data, start).ok_or(GiveUp)?;
        let begin = start + header;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| begin.checked_add(n))
            .filter(|&end| end <= self.d.data.len())
            .ok_or(GiveUp)?;
        self.d.pos = end;
        let data: &'a [u8] = self.d.data;
        Ok(Some(&data[begin..end]))
    }

    /// A definite text string leaf, short ones from the value cache.
    #[inline]
    fn str_leaf(&mut self) -> Read<'py> {
        let raw = self.text_bytes()?.ok_or(GiveUp)?;
        str_value(self.values.as_deref_mut(), self.d.py, raw)?.ok_or(GiveUp)
    }

    /// Decodes the next item untyped and converts it with `node`.
    fn generic(&mut self, node: usize, depth: usize) -> Read<'py> {
        let value = self.d.item(depth, false)?;
        self.run.conv(node, &value, depth).map_err(|_| GiveUp)
    }

    fn typed(&mut self, node: usize, depth: usize) -> Read<'py> {
        let ib = self.peek()?;
        let major = ib >> 5;
        match &self.run.nodes[node] {
            Node::Str if major == TEXT && ib & 0x1f != 31 => self.str_leaf(),
            Node::Int if major == UINT || major == NINT => Ok(self.d.item(depth, false)?),
            Node::Float if (0xf9..=0xfb).contains(&ib) => Ok(self.d.item(depth, false)?),
            Node::Float if major == UINT || major == NINT => {
                let v: f64 = self.d.item(depth, false)?.extract()?;
                Ok(fast::new_float(self.d.py, v)?)
            }
            Node::Bool if ib == 0xf4 || ib == 0xf5 => Ok(self.d.item(depth, false)?),
            Node::None if ib == 0xf6 || ib == 0xf7 => Ok(self.d.item(depth, false)?),
            Node::List(item) if major == ARRAY && ib & 0x1f != 31 => {
                let n = self.container(ARRAY, depth, 1)?;
                let py = self.d.py;
                Ok(fast::new_list(py, n, || self.typed(*item, depth + 1))?)
            }
            Node::VarTuple(item) if major == ARRAY && ib & 0x1f != 31 => {
                let n = self.container(ARRAY, depth, 1)?;
                let items = self.items(&vec![*item; n], depth)?;
                Ok(PyTuple::new(self.d.py, items)?.into_any())
            }
            Node::Tuple(nodes) if major == ARRAY && ib & 0x1f != 31 => {
                let n = self.container(ARRAY, depth, 1)?;
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
            } if major == ARRAY && ib & 0x1f != 31 => {
                let n = self.container(ARRAY, depth, 1)?;
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
            Node::Dict(key_node, value_node) if major == MAP && ib & 0x1f != 31 => {
                let n = self.container(MAP, depth, 2)?;
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
            Node::Dataclass(dc) if major == MAP && ib & 0x1f != 31 => self.dataclass(dc, depth),
            Node::TypedDict { fields, .. } if major == MAP && ib & 0x1f != 31 => {
                self.typeddict(fields, depth)
            }
            Node::Union { table, .. } => match wire_kind(ib) {
                Some(kind) => match table[kind] {
                    Some(option) => self.typed(option, depth),
                    None => Err(GiveUp),
                },
                None => self.generic(node, depth),
            },
            // Tags, indefinite lengths, mismatches and the other leaf types.
            _ => self.generic(node, depth),
        }
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
        self.d.item(depth + 1, false)?;
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
        let Some(key) = self.text_bytes()? else {
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

    /// A field's value: the common leaves (a definite str, an int, a bool,
    /// null) read right here, anything else through `typed` (as in
    /// `typed::msgpack`, where the call and dispatch were a tenth of the
    /// twitter decode).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn field_value(&mut self, node: usize, depth: usize) -> Read<'py> {
        let py = self.d.py;
        if let Some(&ib) = self.d.data.get(self.d.pos) {
            let major = ib >> 5;
            match &self.run.nodes[node] {
                Node::Str if major == TEXT && ib & 0x1f != 31 => return self.str_leaf(),
                Node::Int if major == UINT || major == NINT => {
                    return Ok(self.d.item(depth, false)?);
                }
                Node::Bool if ib == 0xf4 || ib == 0xf5 => {
                    self.d.pos += 1;
                    return Ok(PyBool::new(py, ib == 0xf5).to_owned().into_any());
                }
                Node::None if ib == 0xf6 || ib == 0xf7 => {
                    self.d.pos += 1;
                    return Ok(py.None().into_bound(py));
                }
                _ => {}
            }
        }
        self.typed(node, depth)
    }

    fn dataclass(&mut self, dc: &Dataclass, depth: usize) -> Read<'py> {
        let n = self.container(MAP, depth, 2)?;
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
        let n = self.container(MAP, depth, 2)?;
        let py = self.d.py;
        let mut values: Vec<Option<Bound<'py, PyAny>>> = vec![None; fields.len()];
        let mut hint = 0;
        for _ in 0..n {
            let Some(i) = self.field_index(|i| &fields[i].utf8, fields.len(), hint)? else {
                self.skip_entry(depth)?;
                continue;
            };
            if values[i].is_some() {
                return Err(GiveUp);
            }
            hint = i + 1;
            values[i] = Some(self.typed(fields[i].node, depth + 1)?);
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
