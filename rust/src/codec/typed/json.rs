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
use pyo3::types::{PyBool, PyBytes, PyDict, PyTuple};

use super::build::{
    finish_dataclass, new_instance, new_named_tuple, typeddict_from, FieldSink, Seen,
};
use super::convert::Run;
use super::into_py;
use super::plan::{Dataclass, Leaf, LeafKind, Node, TypedDictField};
use crate::codec::fast;
use crate::codec::gc::GcPause;
use crate::codec::keys::same_key;
use crate::codec::values::{with_values, ValueCache};

/// Deeper than this, the canonical path decides (orjson's own limit applies there).
pub(super) const MAX_JSON_DEPTH: usize = 250;

static UNTYPED_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(super) struct GiveUp;

impl From<PyErr> for GiveUp {
    fn from(_: PyErr) -> Self {
        Self
    }
}

pub(super) type Read<'py> = Result<Bound<'py, PyAny>, GiveUp>;

/// Decodes a JSON document into the plan's type.
pub fn decode<'py>(run: &Run<'_>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        let _pause = GcPause::new(py);
        let fast = with_values(|values| {
            let mut reader = Reader {
                py,
                data: bytes.as_bytes(),
                pos: 0,
                run,
                scratch: Vec::new(),
                items: Vec::new(),
                values,
            };
            reader.document()
        });
        if let Ok(value) = fast {
            return Ok(value);
        }
    }
    let loads = UNTYPED_LOADS.import(py, "microstd.codec.json", "_untyped_loads")?;
    let value = loads.call1((data,))?;
    into_py(run.conv(0, &value, 0))
}

pub(super) struct Reader<'r, 'a, 'py> {
    pub(super) py: Python<'py>,
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) run: &'r Run<'r>,
    /// Reused for strings with escapes.
    pub(super) scratch: Vec<u8>,
    /// The items of the arrays being read, innermost last: one buffer for
    /// the whole document instead of a vector per array (its allocation
    /// and growth were most of building a short list).
    pub(super) items: Vec<Bound<'py, PyAny>>,
    /// The cache of short str leaves (None while another decode holds it).
    pub(super) values: Option<&'r mut ValueCache>,
}

impl<'py> Reader<'_, '_, 'py> {
    fn document(&mut self) -> Read<'py> {
        let value = self.typed(0, 0)?;
        self.ws();
        if self.pos != self.data.len() {
            return Err(GiveUp);
        }
        Ok(value)
    }

    fn generic(&mut self, node: usize, depth: usize) -> Read<'py> {
        let value = self.value(depth)?;
        self.run.conv(node, &value, depth).map_err(|_| GiveUp)
    }

    /// Reads the items of an array, each with `node_for(i)`, onto the
    /// `items` stack; returns where they start there (the caller takes them).
    fn array(
        &mut self,
        depth: usize,
        mut node_for: impl FnMut(usize) -> Option<usize>,
    ) -> Result<usize, GiveUp> {
        if depth >= MAX_JSON_DEPTH {
            return Err(GiveUp);
        }
        self.expect(b'[')?;
        let base = self.items.len();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(base);
        }
        loop {
            let node = node_for(self.items.len() - base).ok_or(GiveUp)?;
            let item = self.typed(node, depth + 1)?;
            self.items.push(item);
            if !self.more(b']')? {
                return Ok(base);
            }
        }
    }

    /// The common leaves (str, int, float, bool, None), when `node` is one
    /// and `b` (the next byte) starts its token; None for anything else.
    /// Inlined into `typed`: measured on twitter, where most list items are
    /// such leaves, the call and its dispatch cost as much as reading the leaf.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn leaf(&mut self, node: usize, b: u8) -> Option<Read<'py>> {
        let leaf = match &self.run.nodes[node] {
            Node::Str => Leaf::Str,
            Node::Int => Leaf::Int,
            Node::Float => Leaf::Float,
            Node::Bool => Leaf::Bool,
            Node::None => Leaf::None,
            _ => return None,
        };
        self.field_leaf(leaf, b)
    }

    /// The value of kind `leaf` when `b` (the next byte) starts its token;
    /// None for anything else (`Leaf::Other`, another token: `typed` decides).
    /// The dataclass field loop calls it with the field's own `Leaf` (see
    /// `plan::Leaf`): no lookup of its node, and an `Optional` leaf read here
    /// rather than through its union.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn field_leaf(&mut self, leaf: Leaf, b: u8) -> Option<Read<'py>> {
        let py = self.py;
        let kind = match leaf {
            Leaf::Str => LeafKind::Str,
            Leaf::Int => LeafKind::Int,
            Leaf::Float => LeafKind::Float,
            Leaf::Bool => LeafKind::Bool,
            Leaf::None | Leaf::Optional(_) if b == b'n' => {
                return Some(self.literal(b"null").map(|()| py.None().into_bound(py)));
            }
            Leaf::Other | Leaf::None => return None,
            Leaf::Optional(kind) => kind,
        };
        Some(match kind {
            LeafKind::Str if b == b'"' => self.str_leaf(),
            LeafKind::Int if b == b'-' || b.is_ascii_digit() => self.int_leaf(),
            LeafKind::Float if b == b'-' || b.is_ascii_digit() => {
                self.number().and_then(|n| self.float_value(&n))
            }
            LeafKind::Bool if b == b't' => self
                .literal(b"true")
                .map(|()| PyBool::new(py, true).to_owned().into_any()),
            LeafKind::Bool if b == b'f' => self
                .literal(b"false")
                .map(|()| PyBool::new(py, false).to_owned().into_any()),
            _ => return None,
        })
    }

    #[allow(clippy::too_many_lines)] // one arm per node kind
    fn typed(&mut self, node: usize, depth: usize) -> Read<'py> {
        let b = self.peek()?;
        if let Some(read) = self.leaf(node, b) {
            return read;
        }
        let py = self.py;
        match &self.run.nodes[node] {
            Node::Str | Node::Int | Node::Float | Node::Bool | Node::None => Err(GiveUp),
            Node::List(item) => {
                let base = self.array(depth, |_| Some(*item))?;
                Ok(fast::list_from_iter(py, self.items.drain(base..))?)
            }
            Node::VarTuple(item) => {
                let base = self.array(depth, |_| Some(*item))?;
                Ok(PyTuple::new(py, self.items.drain(base..))?.into_any())
            }
            Node::Tuple(nodes) => {
                let base = self.array(depth, |i| nodes.get(i).copied())?;
                if self.items.len() - base != nodes.len() {
                    return Err(GiveUp);
                }
                Ok(PyTuple::new(py, self.items.drain(base..))?.into_any())
            }
            Node::NamedTuple {
                cls,
                nodes,
                defaults,
                ..
            } => {
                let base = self.array(depth, |i| nodes.get(i).copied())?;
                let mut items: Vec<_> = self.items.drain(base..).collect();
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
        let t = self.string_bytes()?;
        let key = if t.escaped {
            &self.scratch[t.start..t.end]
        } else {
            &self.data[t.start..t.end]
        };
        if hint < count && same_key(names(hint), key) {
            return Ok(Some(hint));
        }
        if let Some(i) = (0..count).find(|&i| same_key(names(i), key)) {
            return Ok(Some(i));
        }
        // Not a field: it must still be valid UTF-8 for the document to be valid.
        if !t.ascii && std::str::from_utf8(key).is_err() {
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
        let sink = FieldSink::new(&obj, dc)?;
        let mut seen = Seen::new(dc.fields.len());
        let mut hint = 0;
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                let found = self.field(|i| &dc.fields[i].utf8, dc.fields.len(), hint)?;
                self.expect(b':')?;
                match found {
                    Some(i) => {
                        if !seen.mark(i) {
                            return Err(GiveUp); // repeated: orjson keeps the last
                        }
                        hint = i + 1;
                        let field = &dc.fields[i];
                        let b = self.peek()?;
                        let value = match self.field_leaf(field.leaf, b) {
                            Some(read) => read?,
                            None => self.typed(field.node, depth + 1)?,
                        };
                        sink.set(&obj, field, &value)?;
                    }
                    None => self.skip_value(depth)?,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        if !finish_dataclass(&obj, dc, &sink, &seen)? {
            return Err(GiveUp);
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
        typeddict_from(py, fields, values)?.ok_or(GiveUp)
    }
}
