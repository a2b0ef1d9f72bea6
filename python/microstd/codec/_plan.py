"""Compiling a Python type into a decoder plan: a flat list of nodes that the
Rust core (`rust/src/codec/typed/`) and the pure twin (`_convert.py`) execute.

Introspecting `typing` is much easier here than in Rust, so the type is
walked once, in Python, into small tuples; each child is referred to by its
index in the list, which is what makes recursive types (a tree of `Node`s)
cost nothing special. Plans are cached per type.

Node layouts (the first item is the kind; must match `plan.rs`):

    (ANY,)  (NONE,)  (BOOL,)  (INT,)  (FLOAT,)  (STR,)  (BYTES,)
    (DATETIME,)  (DATE,)  (UUID,)  (DECIMAL,)  (TIMESTAMP,)
    (LIST, item)  (SET, item)  (FROZENSET, item)  (VARTUPLE, item)
    (TUPLE, (item, ...))  (DICT, key, value)
    (UNION, name, ((value kind, node), ...))
    (LITERAL, name, (value, ...))
    (ENUM, name, cls, {value: member})
    (DATACLASS, name, cls, ((field, node, default kind, default), ...), post_init, slots)
    (TYPEDDICT, name, ((key, node, required), ...))
    (NAMEDTUPLE, name, cls, (node, ...), (default, ...))
    (CONSTRAINED, node, ge, le, min_length, max_length, pattern)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import decimal
import enum
import re
import sys
import threading
import types
import typing
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from microstd.codec._timestamp import Timestamp

__all__ = ["Plan", "compile_type", "plan_for"]

# Node kinds.
ANY, NONE, BOOL, INT, FLOAT, STR, BYTES = 0, 1, 2, 3, 4, 5, 6
DATETIME, DATE, UUID, DECIMAL = 7, 8, 9, 10
LIST, SET, FROZENSET, VARTUPLE, TUPLE, DICT = 11, 12, 13, 14, 15, 16
UNION, LITERAL, ENUM, DATACLASS, TYPEDDICT, NAMEDTUPLE, CONSTRAINED = 17, 18, 19, 20, 21, 22, 23
TIMESTAMP = 24

# Default kinds of a dataclass field.
REQUIRED, DEFAULT, FACTORY = 0, 1, 2

# Value kinds a union dispatches on (what the decoded value is).
V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_ARRAY, V_MAP = 0, 1, 2, 3, 4, 5, 6, 7
V_DATETIME, V_DATE, V_UUID, V_DECIMAL, V_TIMESTAMP = 8, 9, 10, 11, 12
_KIND_NAMES = {
    V_NONE: "None",
    V_BOOL: "bool",
    V_INT: "int",
    V_FLOAT: "float",
    V_STR: "str",
    V_BYTES: "bytes",
    V_ARRAY: "array",
    V_MAP: "map",
    V_DATETIME: "datetime",
    V_DATE: "date",
    V_UUID: "UUID",
    V_DECIMAL: "Decimal",
    V_TIMESTAMP: "Timestamp",
}

_SCALARS: dict[Any, tuple[int, tuple[int, ...]]] = {
    # type: (node kind, value kinds it accepts in a union)
    type(None): (NONE, (V_NONE,)),
    None: (NONE, (V_NONE,)),
    bool: (BOOL, (V_BOOL,)),
    int: (INT, (V_INT,)),
    float: (FLOAT, (V_FLOAT, V_INT)),
    str: (STR, (V_STR,)),
    bytes: (BYTES, (V_BYTES,)),
    bytearray: (BYTES, (V_BYTES,)),
    _dt.datetime: (DATETIME, (V_DATETIME, V_STR)),
    _dt.date: (DATE, (V_DATE, V_STR)),
    uuid.UUID: (UUID, (V_UUID, V_STR)),
    decimal.Decimal: (DECIMAL, (V_DECIMAL, V_STR)),
    Timestamp: (TIMESTAMP, (V_TIMESTAMP, V_DATETIME, V_STR)),
}


class Plan:
    """A compiled type: `nodes[0]` is the root. `core` is the Rust plan, when
    the core is there."""

    __slots__ = ("__weakref__", "core", "name", "nodes")

    def __init__(self, nodes: list[tuple[Any, ...]], name: str) -> None:
        self.nodes = nodes
        self.name = name
        self.core: Any = None

    def __repr__(self) -> str:
        return f"<Plan for {self.name}: {len(self.nodes)} nodes>"


def type_name(tp: Any) -> str:
    """A readable name for a type, for error messages."""
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, type) and not isinstance(tp, types.GenericAlias):
        return tp.__qualname__ if tp.__module__ != "builtins" else tp.__name__
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    text = repr(tp).replace("typing.", "")
    return re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Za-z_])", r"\1", text)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def _is_namedtuple(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module is not None else {}
    return typing.get_type_hints(
        cls, globalns=globalns, localns={cls.__name__: cls}, include_extras=True
    )


_REQUIRED: set[Any] = {
    form
    for form in (getattr(typing, "Required", None), getattr(typing, "NotRequired", None))
    if form
}
try:  # typing_extensions forms, when a user's TypedDict uses them
    import typing_extensions as _tx

    _REQUIRED |= {_tx.Required, _tx.NotRequired}
except ImportError:  # pragma: no cover
    pass


class _Compiler:
    def __init__(self) -> None:
        self.nodes: list[tuple[Any, ...]] = []
        self.seen: dict[Any, int] = {}

    def add(self, tp: Any) -> int:
        try:
            known = self.seen.get(tp)
        except TypeError:  # an unhashable annotation (Annotated with a list)
            known = None
        if known is not None:
            return known
        index = len(self.nodes)
        self.nodes.append((ANY,))  # placeholder: a recursive reference finds this index
        with contextlib.suppress(TypeError):  # unhashable: compiled again where it recurs
            self.seen[tp] = index
        self.nodes[index] = self.build(tp)
        return index

    def build(self, tp: Any) -> tuple[Any, ...]:
        if tp is Any or tp is object:
            return (ANY,)
        if isinstance(tp, str):
            raise TypeError(f"cannot decode into the unresolved forward reference {tp!r}")
        if isinstance(tp, typing.ForwardRef):
            raise TypeError(f"cannot decode into the unresolved forward reference {tp!r}")
        if _is_scalar(tp):
            return (_SCALARS[tp][0],)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.annotated(args[0], args[1:])
        if origin in _REQUIRED:
            return self.build(args[0])
        if origin is typing.Union or origin is types.UnionType:
            return self.union(tp, args)
        if origin is typing.Literal:
            for v in args:
                if not isinstance(v, (str, int, bytes, type(None), enum.Enum)):
                    raise TypeError(f"unsupported Literal value {v!r}")
            return (LITERAL, type_name(tp), tuple(args))
        if origin in (list, typing.List) or tp in (list, typing.List):  # noqa: UP006
            return (LIST, self.add(args[0] if args else Any))
        if origin in (set, typing.Set) or tp in (set, typing.Set):  # noqa: UP006
            return (SET, self.add(args[0] if args else Any))
        if origin in (frozenset, typing.FrozenSet) or tp in (frozenset, typing.FrozenSet):  # noqa: UP006
            return (FROZENSET, self.add(args[0] if args else Any))
        if origin in (tuple, typing.Tuple) or tp in (tuple, typing.Tuple):  # noqa: UP006
            if not args:
                return (VARTUPLE, self.add(Any))
            if len(args) == 2 and args[1] is Ellipsis:
                return (VARTUPLE, self.add(args[0]))
            if args == ((),):
                return (TUPLE, ())
            return (TUPLE, tuple(self.add(a) for a in args))
        if origin in (dict, typing.Dict, Mapping) or tp in (dict, typing.Dict):  # noqa: UP006
            key, value = args if args else (Any, Any)
            return (DICT, self.add(key), self.add(value))
        if isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                members = {m.value: m for m in tp}
                return (ENUM, type_name(tp), tp, members)
            if dataclasses.is_dataclass(tp):
                return self.dataclass(tp)
            if _is_typeddict(tp):
                return self.typeddict(tp)
            if _is_namedtuple(tp):
                return self.namedtuple(tp)
        if isinstance(tp, typing.TypeVar):
            raise TypeError(f"cannot decode into the type variable {tp!r}: parametrize the type")
        raise TypeError(f"cannot decode into {type_name(tp)}: not a supported type")

    def annotated(self, base: Any, metadata: tuple[Any, ...]) -> tuple[Any, ...]:
        bounds: dict[str, Any] = {}
        for meta in metadata:
            for name in ("ge", "le", "min_length", "max_length", "pattern"):
                value = getattr(meta, name, None)
                if value is not None:
                    bounds[name] = value
            if isinstance(meta, Mapping):
                bounds.update({k: v for k, v in meta.items() if k in _BOUND_NAMES})
        inner = self.add(base)
        if not bounds:
            return self.nodes[inner]
        pattern = bounds.get("pattern")
        return (
            CONSTRAINED,
            inner,
            bounds.get("ge"),
            bounds.get("le"),
            bounds.get("min_length"),
            bounds.get("max_length"),
            re.compile(pattern) if isinstance(pattern, str) else pattern,
        )

    def union(self, tp: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        by_kind: dict[int, int] = {}
        owners: dict[int, Any] = {}
        for option in args:
            index = self.add(option)
            for kind in self.value_kinds(option):
                if kind in by_kind:
                    if kind == V_INT and owners[kind] is float:
                        by_kind[kind], owners[kind] = index, option  # int beats float for ints
                        continue
                    if kind == V_INT and option is float:
                        continue
                    raise TypeError(
                        f"ambiguous union {type_name(tp)}: both {type_name(owners[kind])} and "
                        f"{type_name(option)} decode from a {_KIND_NAMES[kind]}"
                    )
                by_kind[kind] = index
                owners[kind] = option
        return (UNION, type_name(tp), tuple(sorted(by_kind.items())))

    def value_kinds(self, tp: Any) -> tuple[int, ...]:
        """The kinds of decoded value an option of a union takes."""
        if _is_scalar(tp):
            return _SCALARS[tp][1]
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.value_kinds(args[0])
        if origin is typing.Union or origin is types.UnionType:
            return tuple(k for a in args for k in self.value_kinds(a))
        if origin is typing.Literal:
            return tuple(sorted({_literal_kind(v) for v in args}))
        if tp is Any or tp is object:
            raise TypeError("Any cannot be one option of a union: every value would match it")
        if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
            return (V_ARRAY,)
        if origin in (dict, Mapping) or tp is dict:
            return (V_MAP,)
        if isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                return tuple(sorted({_literal_kind(m.value) for m in tp}))
            if _is_namedtuple(tp):
                return (V_ARRAY,)
            if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
                return (V_MAP,)
        raise TypeError(f"cannot decode into {type_name(tp)}: not a supported type")

    def dataclass(self, cls: type) -> tuple[Any, ...]:
        hints = _hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            node = self.add(hints.get(f.name, Any))
            if f.default is not dataclasses.MISSING:
                fields.append((f.name, node, DEFAULT, f.default))
            elif f.default_factory is not dataclasses.MISSING:
                fields.append((f.name, node, FACTORY, f.default_factory))
            else:
                fields.append((f.name, node, REQUIRED, None))
        post_init = hasattr(cls, "__post_init__")
        # Frozen or slotted classes refuse plain attribute assignment through
        # __setattr__; both paths use object.__setattr__ or the instance dict.
        slots = "__dict__" not in dir(cls) or hasattr(cls, "__slots__")
        return (DATACLASS, type_name(cls), cls, tuple(fields), post_init, slots)

    def typeddict(self, cls: type) -> tuple[Any, ...]:
        hints = _hints(cls)
        required = set(getattr(cls, "__required_keys__", hints))
        for name, tp in hints.items():
            # With string annotations the class cannot see Required/NotRequired
            # itself (its __required_keys__ are wrong): the resolved hints can.
            form = typing.get_origin(tp)
            if form in _REQUIRED:
                if getattr(form, "_name", "") == "Required":
                    required.add(name)
                else:
                    required.discard(name)
        fields = tuple((name, self.add(tp), name in required) for name, tp in hints.items())
        return (TYPEDDICT, type_name(cls), fields)

    def namedtuple(self, cls: type) -> tuple[Any, ...]:
        hints = _hints(cls) if getattr(cls, "__annotations__", None) else {}
        names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
        nodes = tuple(self.add(hints.get(n, Any)) for n in names)
        defaults = getattr(cls, "_field_defaults", {})
        tail = tuple(defaults[n] for n in names if n in defaults)
        return (NAMEDTUPLE, type_name(cls), cls, nodes, tail)


_BOUND_NAMES = frozenset({"ge", "le", "min_length", "max_length", "pattern"})


def _is_scalar(tp: Any) -> bool:
    try:
        return tp in _SCALARS
    except TypeError:  # unhashable (Annotated with a dict)
        return False


def _literal_kind(value: object) -> int:
    if value is None:
        return V_NONE
    if isinstance(value, bool):
        return V_BOOL
    if isinstance(value, int):
        return V_INT
    if isinstance(value, str):
        return V_STR
    if isinstance(value, bytes):
        return V_BYTES
    if isinstance(value, float):
        return V_FLOAT
    raise TypeError(f"unsupported literal value {value!r}")


def compile_type(tp: Any) -> Plan:
    """Compile `tp` into a new plan (uncached); TypeError for unsupported types."""
    compiler = _Compiler()
    compiler.add(tp)
    return Plan(compiler.nodes, type_name(tp))


_lock = threading.Lock()
# Classes are held weakly (a plan dies with its class); typing forms such as
# list[Item] cannot be weakly referenced and go into a bounded dict.
_by_class: weakref.WeakKeyDictionary[Any, Plan] = weakref.WeakKeyDictionary()
_by_form: dict[Any, Plan] = {}
_MAX_FORMS = 1024


def plan_for(tp: Any) -> Plan:
    """The cached plan for `tp`, compiled on first use."""
    try:
        plan = _by_class.get(tp)
    except TypeError:
        plan = None
    if plan is None:
        try:
            plan = _by_form.get(tp)
        except TypeError:  # unhashable (Annotated with a list): compile every time
            return _with_core(compile_type(tp))
    if plan is not None:
        return plan
    plan = _with_core(compile_type(tp))
    with _lock:
        try:
            _by_class[tp] = plan
        except TypeError:
            if len(_by_form) >= _MAX_FORMS:
                _by_form.pop(next(iter(_by_form)))
            _by_form[tp] = plan
    return plan


def _with_core(plan: Plan) -> Plan:
    from microstd import _accel

    core = _accel.core
    if core is not None and hasattr(core, "TypedPlan"):
        plan.core = core.TypedPlan(plan.nodes)
    return plan
