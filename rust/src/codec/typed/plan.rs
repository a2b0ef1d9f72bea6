//! A decoder plan held in Rust: the node list `microstd.codec._plan` compiles
//! from a Python type, read once into enums so the executor (`convert`)
//! dispatches on a Rust match instead of Python tuples.
//!
//! The node kinds and layouts are `_plan.py`'s (its docstring lists them);
//! the numbers below must equal its constants.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use super::inline_values::SlotHint;

pub const ANY: u8 = 0;
pub const NONE: u8 = 1;
pub const BOOL: u8 = 2;
pub const INT: u8 = 3;
pub const FLOAT: u8 = 4;
pub const STR: u8 = 5;
pub const BYTES: u8 = 6;
pub const DATETIME: u8 = 7;
pub const DATE: u8 = 8;
pub const UUID: u8 = 9;
pub const DECIMAL: u8 = 10;
pub const LIST: u8 = 11;
pub const SET: u8 = 12;
pub const FROZENSET: u8 = 13;
pub const VARTUPLE: u8 = 14;
pub const TUPLE: u8 = 15;
pub const DICT: u8 = 16;
pub const UNION: u8 = 17;
pub const LITERAL: u8 = 18;
pub const ENUM: u8 = 19;
pub const DATACLASS: u8 = 20;
pub const TYPEDDICT: u8 = 21;
pub const NAMEDTUPLE: u8 = 22;
pub const CONSTRAINED: u8 = 23;
pub const TIMESTAMP: u8 = 24;

/// How many value kinds a union dispatches on (`_plan.V_*`).
pub const VALUE_KINDS: usize = 13;

/// A dataclass field's default.
pub enum Default {
    Required,
    Value(Py<PyAny>),
    Factory(Py<PyAny>),
}

pub struct Field {
    /// Interned, so dict lookups reuse its cached hash.
    pub name: Py<PyString>,
    /// The name's UTF-8, matched against map keys on the wire.
    pub utf8: Vec<u8>,
    pub node: usize,
    pub default: Default,
    /// Where the name sits in the class's shared keys (CPython 3.11's
    /// inline-values store, `inline_values`).
    #[cfg_attr(
        not(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API)))),
        allow(dead_code)
    )]
    pub slot: SlotHint,
    /// What `node` is, when the JSON field loop reads it in place (`Leaf`).
    pub leaf: Leaf,
}

/// A field whose node is a str, int, float, bool or None leaf, or a union
/// of exactly None and one of those (`Optional[str]`...): the JSON reader's
/// field loop reads these from the field itself, without looking the node
/// up, matching on it, or (for the unions) a call through the union's table.
/// Measured on twitter: the node's lookup and match were 3% of the decode.
/// For a union the table sends every token the leaf reads to the leaf's own
/// node (float takes int and float tokens) and `null` to None, so reading
/// the leaf in place is what the table would do; tokens the leaf does not
/// start on go the table's way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Leaf {
    Other,
    Str,
    Int,
    Float,
    Bool,
    None,
    /// A union of None and the inner leaf (never `Other` or `None`).
    Optional(LeafKind),
}

/// The leaves an `Optional` can hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LeafKind {
    Str,
    Int,
    Float,
    Bool,
}

impl Leaf {
    /// The leaf node `nodes[i]` is (`Other` when it is none).
    fn of(nodes: &[Node], i: usize) -> Self {
        match &nodes[i] {
            Node::Str => Self::Str,
            Node::Int => Self::Int,
            Node::Float => Self::Float,
            Node::Bool => Self::Bool,
            Node::None => Self::None,
            Node::Union { table, .. } => Self::optional(nodes, table),
            _ => Self::Other,
        }
    }

    /// `Optional(kind)` when `table` sends null to a None node, and every
    /// other entry to one node, of `kind`, exactly at the value kinds that
    /// kind takes (`_plan.py`'s `_SCALARS`); else `Other`.
    fn optional(nodes: &[Node], table: &[Option<usize>; VALUE_KINDS]) -> Self {
        let Some(null) = table[V_NONE] else {
            return Self::Other;
        };
        if !matches!(nodes[null], Node::None) {
            return Self::Other;
        }
        let mut inner = None;
        for node in table.iter().skip(V_NONE + 1).flatten() {
            match inner {
                None => inner = Some(*node),
                Some(seen) if seen == *node => {}
                Some(_) => return Self::Other,
            }
        }
        let Some(node) = inner else {
            return Self::Other;
        };
        let only = |kinds: &[usize]| {
            (V_NONE + 1..VALUE_KINDS).all(|k| (table[k] == Some(node)) == kinds.contains(&k))
        };
        match nodes[node] {
            Node::Str if only(&[V_STR]) => Self::Optional(LeafKind::Str),
            Node::Int if only(&[V_INT]) => Self::Optional(LeafKind::Int),
            Node::Float if only(&[V_INT, V_FLOAT]) => Self::Optional(LeafKind::Float),
            Node::Bool if only(&[V_BOOL]) => Self::Optional(LeafKind::Bool),
            _ => Self::Other,
        }
    }
}

/// The value kinds of a union's table (`_plan.py`'s `V_NONE`...).
const V_NONE: usize = 0;
const V_BOOL: usize = 1;
const V_INT: usize = 2;
const V_FLOAT: usize = 3;
const V_STR: usize = 4;

pub struct Dataclass {
    pub name: String,
    pub cls: Py<PyType>,
    pub fields: Vec<Field>,
    pub post_init: bool,
    /// No instance `__dict__` (slots): fields are set one by one with
    /// `object.__setattr__`; otherwise they go straight into the `__dict__`.
    pub slots: bool,
    /// Whether no field name is a data descriptor on the class, as of which
    /// of its versions (see `PlainAttrs`): while so, `object.__setattr__`
    /// stores exactly what a `__dict__` write would, without making the
    /// `__dict__` (see `build::FieldSink`).
    pub plain_attrs: PlainAttrs,
}

pub struct TypedDictField {
    pub name: Py<PyString>,
    pub utf8: Vec<u8>,
    pub node: usize,
    pub required: bool,
}

pub enum Node {
    Any,
    None,
    Bool,
    Int,
    Float,
    Str,
    /// Bytes, datetime, date, UUID, Decimal, Timestamp: the exact type passes in Rust;
    /// anything else goes to the twin's rules (`_convert.Scalar`) so both
    /// implementations parse strings alike.
    Scalar(u8),
    List(usize),
    Set(usize),
    FrozenSet(usize),
    VarTuple(usize),
    Tuple(Vec<usize>),
    Dict(usize, usize),
    Union {
        name: String,
        table: [Option<usize>; VALUE_KINDS],
    },
    Literal {
        name: String,
        values: Vec<Py<PyAny>>,
    },
    Enum {
        name: String,
        cls: Py<PyType>,
        members: Py<PyDict>,
    },
    Dataclass(Box<Dataclass>),
    TypedDict {
        name: String,
        fields: Vec<TypedDictField>,
    },
    NamedTuple {
        name: String,
        cls: Py<PyType>,
        nodes: Vec<usize>,
        defaults: Vec<Py<PyAny>>,
    },
    /// `Annotated` bounds: checked by the twin's code (`_convert`), after the
    /// inner node has converted the value in Rust. The whole node tuple is
    /// kept for that call.
    Constrained {
        inner: usize,
        node: Py<PyTuple>,
    },
}

fn bad(message: &str) -> PyErr {
    PyValueError::new_err(format!("malformed decoder plan: {message}"))
}

fn index(item: &Bound<'_, PyAny>, count: usize) -> PyResult<usize> {
    let i: usize = item.extract()?;
    if i >= count {
        return Err(bad("node index out of range"));
    }
    Ok(i)
}

fn indexes(item: &Bound<'_, PyAny>, count: usize) -> PyResult<Vec<usize>> {
    item.try_iter()?.map(|i| index(&i?, count)).collect()
}

/// The last check that no field name is a data descriptor on the class: the
/// class's `tp_version_tag` it held for (low 32 bits; 0: never checked) and
/// its answer (bit 32). Checked again when the class's version moved on
/// (an attribute of the class or a base was set, as msgspec and pydantic do
/// on the classes they are given after our decoder was built): without
/// that, one such write sent every later decode through the `__dict__`.
pub struct PlainAttrs(AtomicU64);

impl PlainAttrs {
    fn unchecked() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The class's current version tag if no field name is a data
    /// descriptor on it, else 0; checks again only when the version moved.
    pub fn tag(&self, cls: &Bound<'_, PyType>, fields: &[Field]) -> PyResult<u32> {
        let now = crate::codec::fast::type_version(cls);
        let last = self.0.load(Ordering::Relaxed);
        if now != 0 && now == last as u32 {
            return Ok(if last >> 32 == 1 { now } else { 0 });
        }
        let plain = plain_attrs_tag(cls, fields)?;
        let checked = crate::codec::fast::type_version(cls);
        // A tag of 0 (no valid version) is never taken for a checked one.
        let plain_bit = u64::from(plain != 0 && plain == checked) << 32;
        self.0
            .store(plain_bit | u64::from(checked), Ordering::Relaxed);
        Ok(if plain_bit != 0 { checked } else { 0 })
    }
}

/// The version tag of `cls` if none of `fields` is a data descriptor on it
/// (found along its MRO), else 0. The lookups through the class give it a
/// version tag when it has none yet.
fn plain_attrs_tag(cls: &Bound<'_, PyType>, fields: &[Field]) -> PyResult<u32> {
    let py = cls.py();
    for f in fields {
        let name = f.name.bind(py);
        for base in cls.getattr(pyo3::intern!(py, "__mro__"))?.try_iter()? {
            let attrs = base?.getattr(pyo3::intern!(py, "__dict__"))?;
            let Some(attr) = attrs.get_item(name).ok() else {
                continue;
            };
            let kind = attr.get_type();
            if kind.hasattr(pyo3::intern!(py, "__set__"))?
                || kind.hasattr(pyo3::intern!(py, "__delete__"))?
            {
                return Ok(0);
            }
            break;
        }
        // Through the type's cached lookup: this assigns the version tag.
        cls.hasattr(name)?;
    }
    Ok(crate::codec::fast::type_version(cls))
}

/// Reads `_plan.py`'s node list.
pub fn parse(nodes: &Bound<'_, PyAny>) -> PyResult<Vec<Node>> {
    let list: Vec<Bound<'_, PyTuple>> = nodes
        .try_iter()?
        .map(|n| Ok(n?.cast_into::<PyTuple>()?))
        .collect::<PyResult<_>>()?;
    let count = list.len();
    let mut nodes = list
        .iter()
        .map(|t| parse_node(t, count))
        .collect::<PyResult<Vec<_>>>()?;
    let leaves: Vec<Leaf> = (0..nodes.len()).map(|i| Leaf::of(&nodes, i)).collect();
    for node in &mut nodes {
        if let Node::Dataclass(dc) = node {
            for field in &mut dc.fields {
                field.leaf = leaves[field.node];
            }
        }
    }
    Ok(nodes)
}

#[allow(clippy::too_many_lines)] // one arm per node kind
fn parse_node(t: &Bound<'_, PyTuple>, count: usize) -> PyResult<Node> {
    let py = t.py();
    let kind: u8 = t.get_item(0)?.extract()?;
    let at = |i: usize| t.get_item(i);
    Ok(match kind {
        ANY => Node::Any,
        NONE => Node::None,
        BOOL => Node::Bool,
        INT => Node::Int,
        FLOAT => Node::Float,
        STR => Node::Str,
        BYTES | DATETIME | DATE | UUID | DECIMAL | TIMESTAMP => Node::Scalar(kind),
        LIST => Node::List(index(&at(1)?, count)?),
        SET => Node::Set(index(&at(1)?, count)?),
        FROZENSET => Node::FrozenSet(index(&at(1)?, count)?),
        VARTUPLE => Node::VarTuple(index(&at(1)?, count)?),
        TUPLE => Node::Tuple(indexes(&at(1)?, count)?),
        DICT => Node::Dict(index(&at(1)?, count)?, index(&at(2)?, count)?),
        UNION => {
            let mut table = [None; VALUE_KINDS];
            for pair in at(2)?.try_iter()? {
                let (kind, node): (usize, usize) = pair?.extract()?;
                if kind >= VALUE_KINDS || node >= count {
                    return Err(bad("union entry out of range"));
                }
                table[kind] = Some(node);
            }
            Node::Union {
                name: at(1)?.extract()?,
                table,
            }
        }
        LITERAL => Node::Literal {
            name: at(1)?.extract()?,
            values: at(2)?
                .try_iter()?
                .map(|v| Ok(v?.unbind()))
                .collect::<PyResult<_>>()?,
        },
        ENUM => Node::Enum {
            name: at(1)?.extract()?,
            cls: at(2)?.cast_into::<PyType>()?.unbind(),
            members: at(3)?.cast_into::<PyDict>()?.unbind(),
        },
        DATACLASS => {
            let mut fields = Vec::new();
            for f in at(3)?.try_iter()? {
                let f = f?.cast_into::<PyTuple>()?;
                let name: String = f.get_item(0)?.extract()?;
                let default_kind: u8 = f.get_item(2)?.extract()?;
                let default = f.get_item(3)?.unbind();
                fields.push(Field {
                    utf8: name.as_bytes().to_vec(),
                    name: PyString::intern(py, &name).unbind(),
                    node: index(&f.get_item(1)?, count)?,
                    default: match default_kind {
                        0 => Default::Required,
                        1 => Default::Value(default),
                        _ => Default::Factory(default),
                    },
                    slot: SlotHint::new(),
                    leaf: Leaf::Other, // set once every node is read (`parse`)
                });
            }
            let cls = at(2)?.cast_into::<PyType>()?;
            let slots = at(5)?.is_truthy()?;
            let plain_attrs = PlainAttrs::unchecked();
            if !slots {
                plain_attrs.tag(&cls, &fields)?;
            }
            Node::Dataclass(Box::new(Dataclass {
                name: at(1)?.extract()?,
                cls: cls.unbind(),
                fields,
                post_init: at(4)?.is_truthy()?,
                slots,
                plain_attrs,
            }))
        }
        TYPEDDICT => {
            let mut fields = Vec::new();
            for f in at(2)?.try_iter()? {
                let (name, node, required): (String, Bound<'_, PyAny>, bool) = f?.extract()?;
                fields.push(TypedDictField {
                    utf8: name.as_bytes().to_vec(),
                    name: PyString::intern(py, &name).unbind(),
                    node: index(&node, count)?,
                    required,
                });
            }
            Node::TypedDict {
                name: at(1)?.extract()?,
                fields,
            }
        }
        NAMEDTUPLE => Node::NamedTuple {
            name: at(1)?.extract()?,
            cls: at(2)?.cast_into::<PyType>()?.unbind(),
            nodes: indexes(&at(3)?, count)?,
            defaults: at(4)?
                .try_iter()?
                .map(|v| Ok(v?.unbind()))
                .collect::<PyResult<_>>()?,
        },
        CONSTRAINED => Node::Constrained {
            inner: index(&at(1)?, count)?,
            node: t.clone().unbind(),
        },
        _ => return Err(bad("unknown node kind")),
    })
}
