"""Guards around orjson, which crashes the interpreter on two inputs:

- tuples nested a few thousand deep (orjson does not count tuples against its
  recursion limit and overflows the C stack);
- a `default=` hook that mutates a container orjson is iterating (orjson
  reads items it borrowed before the hook freed them).

`check(obj)` refuses nesting past `MAX_DEPTH` before orjson sees the object.
`snapshot(obj)` copies every container into a fresh dict or list that no user
code can reach; `dumps` uses it only when a `default=` hook is given, since
only then does user code run in the middle of an encode.

Both run in the Rust core (`json_check`, `json_snapshot`); the functions
below are the same walks for when the core is missing.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from microstd import _accel
from microstd.codec._depth import MAX_DEPTH, TOO_DEEP, children, deep_path, nesting
from microstd.errors import EncodeError

__all__ = ["check", "snapshot"]

_SCALARS = (str, int, float, bool, type(None))


def _py_check(obj: object) -> None:
    if nesting(obj) is None:
        raise EncodeError(TOO_DEEP, deep_path(obj))


def _py_snapshot(obj: object, depth: int = 0) -> object:
    if type(obj) in _SCALARS:
        return obj
    if depth >= MAX_DEPTH and children(obj) is not None:
        raise EncodeError(TOO_DEEP, "$")
    if isinstance(obj, dict):
        return {k: _py_snapshot(v, depth + 1) for k, v in list(obj.items())}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_py_snapshot(v, depth + 1) for v in list(obj)]
    if isinstance(obj, enum.Enum):
        return _py_snapshot(obj.value, depth + 1)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _py_snapshot(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj)
        }
    return obj


def _pick(name: str, fallback: Callable[[object], Any]) -> Callable[[object], Any]:
    core = _accel.core
    return fallback if core is None else getattr(core, name)


check: Callable[[object], None] = _pick("json_check", _py_check)
snapshot: Callable[[object], object] = _pick("json_snapshot", _py_snapshot)
