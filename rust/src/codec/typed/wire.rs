//! The one-pass typed reader of the binary formats (msgpack, CBOR): the wire
//! is read straight into the plan's types (dataclass fields are matched by
//! their UTF-8 bytes and set on a fresh instance), with no intermediate dicts.
//!
//! Why one piece of code: the msgpack and CBOR readers were the same loops
//! (the type dispatch, the dataclass and TypedDict field loops with their
//! hint, repeated-key and default rules, the leaf fast path) around a few
//! different byte tests. Those differences are the `Wire` trait, implemented
//! by each format's untyped decoder (`typed::msgpack`, `typed::cbor`); the
//! loops here are generic over it, so each format gets its own monomorphized
//! copy, as fast as the hand-written one was (callgrind instruction counts,
//! in the issue note 13_typeddedup).
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
use pyo3::types::{PyBool, PyTuple};

use super::build::{
    finish_dataclass, new_instance, new_named_tuple, typeddict_from, FieldSink, Seen,
};
use super::convert::Run;
use super::plan::{Dataclass, Node, TypedDictField};
use crate::codec::keys::same_key;
use crate::codec::values::{str_value, ValueCache};
use crate::codec::{fast, MAX_DEPTH};

/// The one-pass reader stopped; the canonical path decides.
pub(super) struct GiveUp;

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

pub(super) type Read<'py> = Result<Bound<'py, PyAny>, GiveUp>;

/// What the one-pass reader needs from a format: its byte tests (`b` is an
/// item's first byte), its headers, and its untyped decoder (the fallback).
pub(super) trait Wire<'a, 'py> {
    /// Whether a node the reader reads itself (a leaf, a container) meeting
    /// an item of another kind gives up (msgpack: nothing else can fit), or
    /// is decoded untyped and converted (CBOR: a tag or an indefinite
    /// length may still fit).
    const MISMATCH_GIVES_UP: bool;

    fn py(&self) -> Python<'py>;
    fn data(&self) -> &'a [u8];
    fn pos(&self) -> usize;
    fn set_pos(&mut self, pos: usize);

    /// A str the reader reads itself (`str_bytes`).
    fn is_str(b: u8) -> bool;
    fn is_int(b: u8) -> bool;
    fn is_float(b: u8) -> bool;
    /// The value of a one-byte bool.
    fn bool_of(b: u8) -> Option<bool>;
    /// A one-byte null (None).
    fn is_null(b: u8) -> bool;
    /// The value of a one-byte int.
    fn tiny_int(b: u8) -> Option<i64>;
    /// An array / a map the reader reads itself (`array_len` / `map_len`).
    fn is_array(b: u8) -> bool;
    fn is_map(b: u8) -> bool;
    /// The union dispatch kind (`_plan.V_*`); None for the items decoded,
    /// then dispatched (extensions, tags, other simple values).
    fn union_kind(b: u8) -> Option<usize>;

    /// An array header's item count (consumed), refused when longer than
    /// the bytes left.
    fn array_len(&mut self) -> Result<usize, GiveUp>;
    /// A map header's entry count (consumed), refused when longer than the
    /// bytes left.
    fn map_len(&mut self) -> Result<usize, GiveUp>;
    /// The raw bytes of a str item (not yet checked as UTF-8), consumed; None
    /// when the next item is no str the reader reads (nothing consumed).
    fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, GiveUp>;
    /// The next item, decoded untyped.
    fn value(&mut self, depth: usize) -> Read<'py>;
    /// The next map key, decoded untyped (as the untyped decoder reads keys).
    fn key(&mut self, depth: usize) -> Read<'py>;
}

/// `Wire`'s cursor methods for a decoder with `py`, `data` and `pos` fields
/// (both untyped decoders have them).
macro_rules! cursor_fields {
    () => {
        #[inline]
        fn py(&self) -> Python<'py> {
            self.py
        }

        #[inline]
        fn data(&self) -> &'a [u8] {
            self.data
        }

        #[inline]
        fn pos(&self) -> usize {
            self.pos
        }

        #[inline]
        fn set_pos(&mut self, pos: usize) {
            self.pos = pos;
        }
    };
}
pub(super) use cursor_fields;

/// Reads the next item of `d` into the plan's root type, in one pass.
pub(super) fn read<'a, 'py, W: Wire<'a, 'py>>(
    d: &mut W,
    run: &Run<'_>,
    values: Option<&mut ValueCache>,
) -> Read<'py> {
    Reader {
        d,
        run,
        values,
        marker: std::marker::PhantomData,
    }
    .typed(0, 0)
}

struct Reader<'r, 'a, 'py, W: Wire<'a, 'py>> {
    d: &'r mut W,
    run: &'r Run<'r>,
    /// The cache of short str leaves (None while another decode holds it).
    values: Option<&'r mut ValueCache>,
    marker: std::marker::PhantomData<(&'a [u8], Python<'py>)>,
}

impl<'a, 'py, W: Wire<'a, 'py>> Reader<'_, 'a, 'py, W> {
    fn peek(&self) -> Result<u8, GiveUp> {
        self.d.data().get(self.d.pos()).copied().ok_or(GiveUp)
    }

    /// A str leaf (the next item is a str), short ones from the value cache.
    #[inline]
    fn str_leaf(&mut self) -> Read<'py> {
        let raw = self.d.str_bytes()?.ok_or(GiveUp)?;
        str_value(self.values.as_deref_mut(), self.d.py(), raw)?.ok_or(GiveUp)
    }

    /// Decodes the next item untyped and converts it with `node`.
    fn generic(&mut self, node: usize, depth: usize) -> Read<'py> {
        let value = self.d.value(depth)?;
        self.run.conv(node, &value, depth).map_err(|_| GiveUp)
    }

    fn typed(&mut self, node: usize, depth: usize) -> Read<'py> {
        let b = self.peek()?;
        match &self.run.nodes[node] {
            Node::Str if W::is_str(b) => self.str_leaf(),
            Node::Int if W::is_int(b) => self.d.value(depth),
            Node::Float if W::is_float(b) => self.d.value(depth),
            Node::Float if W::is_int(b) => {
                let v: f64 = self.d.value(depth)?.extract()?;
                Ok(fast::new_float(self.d.py(), v)?)
            }
            Node::Bool if W::bool_of(b).is_some() => self.d.value(depth),
            Node::None if W::is_null(b) => self.d.value(depth),
            Node::List(item) if Self::reads(b, W::is_array) => {
                let n = self.container(depth, W::array_len)?;
                let py = self.d.py();
                Ok(fast::new_list(py, n, || self.typed(*item, depth + 1))?)
            }
            Node::VarTuple(item) if Self::reads(b, W::is_array) => {
                let n = self.container(depth, W::array_len)?;
                let items = self.items(&vec![*item; n], depth)?;
                Ok(PyTuple::new(self.d.py(), items)?.into_any())
            }
            Node::Tuple(nodes) if Self::reads(b, W::is_array) => {
                let n = self.container(depth, W::array_len)?;
                if n != nodes.len() {
                    return Err(GiveUp);
                }
                let items = self.items(nodes, depth)?;
                Ok(PyTuple::new(self.d.py(), items)?.into_any())
            }
            Node::NamedTuple {
                cls,
                nodes,
                defaults,
                ..
            } if Self::reads(b, W::is_array) => {
                let n = self.container(depth, W::array_len)?;
                if n > nodes.len() || n + defaults.len() < nodes.len() {
                    return Err(GiveUp);
                }
                let mut items = self.items(&nodes[..n], depth)?;
                let py = self.d.py();
                for d in &defaults[defaults.len() - (nodes.len() - n)..] {
                    items.push(d.bind(py).clone());
                }
                Ok(new_named_tuple(cls.bind(py), items)?)
            }
            Node::Dict(key_node, value_node) if Self::reads(b, W::is_map) => {
                let n = self.container(depth, W::map_len)?;
                let dict = fast::new_dict(self.d.py(), n)?;
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
            Node::Dataclass(dc) if Self::reads(b, W::is_map) => self.dataclass(dc, depth),
            Node::TypedDict { fields, .. } if Self::reads(b, W::is_map) => {
                self.typeddict(fields, depth)
            }
            Node::Str
            | Node::Int
            | Node::Float
            | Node::Bool
            | Node::None
            | Node::List(_)
            | Node::VarTuple(_)
            | Node::Tuple(_)
            | Node::NamedTuple { .. }
            | Node::Dict(..)
            | Node::Dataclass(_)
            | Node::TypedDict { .. }
                if W::MISMATCH_GIVES_UP =>
            {
                Err(GiveUp)
            }
            Node::Union { table, .. } => match W::union_kind(b) {
                Some(kind) => match table[kind] {
                    Some(option) => self.typed(option, depth),
                    None => Err(GiveUp),
                },
                None => self.generic(node, depth),
            },
            _ => self.generic(node, depth),
        }
    }

    /// Whether a container node reads the item starting with `b` (`is`: the
    /// item is that container) itself. Always when a mismatch gives up: the
    /// header reader then refuses any other item, and the test is saved
    /// (callgrind: 1% of decoding citm_catalog from msgpack).
    #[inline]
    fn reads(b: u8, is: fn(u8) -> bool) -> bool {
        W::MISMATCH_GIVES_UP || is(b)
    }

    /// A container's length, refused past the nesting limit (the canonical
    /// path then reports it).
    fn container(
        &mut self,
        depth: usize,
        header: fn(&mut W) -> Result<usize, GiveUp>,
    ) -> Result<usize, GiveUp> {
        if depth >= MAX_DEPTH {
            return Err(GiveUp);
        }
        header(self.d)
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
        self.d.value(depth + 1)?;
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
        let start = self.d.pos();
        let Some(key) = self.d.str_bytes()? else {
            return Ok(None);
        };
        if hint < count && same_key(names(hint), key) {
            return Ok(Some(hint));
        }
        if let Some(i) = (0..count).find(|&i| same_key(names(i), key)) {
            return Ok(Some(i));
        }
        self.d.set_pos(start);
        Ok(None)
    }

    /// A field's value: the common leaves (a str, an int, a bool, None) read
    /// right here, anything else through `typed`. Measured on the twitter
    /// corpus (msgpack), where most fields are such leaves: the call into
    /// `typed` and its dispatch were a tenth of the decode.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn field_value(&mut self, node: usize, depth: usize) -> Read<'py> {
        let py = self.d.py();
        if let Some(&b) = self.d.data().get(self.d.pos()) {
            match &self.run.nodes[node] {
                Node::Str if W::is_str(b) => return self.str_leaf(),
                Node::Int => {
                    if let Some(v) = W::tiny_int(b) {
                        self.d.set_pos(self.d.pos() + 1);
                        let Ok(v) = v.into_pyobject(py);
                        return Ok(v.into_any());
                    }
                    if W::is_int(b) {
                        return self.d.value(depth);
                    }
                }
                Node::Bool => {
                    if let Some(v) = W::bool_of(b) {
                        self.d.set_pos(self.d.pos() + 1);
                        return Ok(PyBool::new(py, v).to_owned().into_any());
                    }
                }
                Node::None if W::is_null(b) => {
                    self.d.set_pos(self.d.pos() + 1);
                    return Ok(py.None().into_bound(py));
                }
                _ => {}
            }
        }
        self.typed(node, depth)
    }

    fn dataclass(&mut self, dc: &Dataclass, depth: usize) -> Read<'py> {
        let n = self.container(depth, W::map_len)?;
        let py = self.d.py();
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
        if !finish_dataclass(&obj, dc, &sink, &seen)? {
            return Err(GiveUp);
        }
        Ok(obj)
    }

    fn typeddict(&mut self, fields: &[TypedDictField], depth: usize) -> Read<'py> {
        let n = self.container(depth, W::map_len)?;
        let py = self.d.py();
        let mut values: Vec<Option<Bound<'py, PyAny>>> = vec![None; fields.len()];
        let mut hint = 0;
        for _ in 0..n {
            let Some(i) = self.field_index(|i| &fields[i].utf8, fields.len(), hint)? else {
                self.skip_entry(depth)?;
                continue;
            };
            if values[i].is_some() {
                return Err(GiveUp); // a repeated key: the canonical path keeps the last
            }
            hint = i + 1;
            values[i] = Some(self.typed(fields[i].node, depth + 1)?);
        }
        typeddict_from(py, fields, values)?.ok_or(GiveUp)
    }
}
