"""Locating a value inside an object, for the error paths of the pure codecs.

The path syntax is the Rust codec's: `$`, `.key` for str keys, `[i]` for
indexes, `[repr(key)]` for other keys. It is searched for only after an
encode has already failed, so its speed does not matter.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

__all__ = ["RELEASED", "find_path", "is_released"]

_MAX_DEPTH = 600
#: The EncodeError message for a memoryview whose buffer was released, in every codec.
RELEASED = "cannot encode a released memoryview (its buffer is gone)"


def is_released(obj: object) -> bool:
    """True for a memoryview whose `release()` was called: it has no bytes to encode."""
    if not isinstance(obj, memoryview):
        return False
    try:
        obj.nbytes  # noqa: B018  (raises once released)
    except ValueError:
        return True
    return False


def _children(obj: object) -> list[tuple[str, object]]:
    if isinstance(obj, dict):
        out: list[tuple[str, object]] = []
        for k, v in obj.items():
            seg = f".{k}" if isinstance(k, str) else f"[{k!r}]"
            out += [(seg, k), (seg, v)]
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, enum.Enum):
        return [("", obj.value)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(f".{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    return []


def _find(obj: object, pred: Callable[[object], bool], path: str, depth: int) -> str | None:
    if pred(obj):
        return path
    if depth > _MAX_DEPTH:
        return None
    for seg, child in _children(obj):
        found = _find(child, pred, path + seg, depth + 1)
        if found is not None:
            return found
    return None


def find_path(
    root: object, target: object = None, *, pred: Callable[[object], bool] | None = None
) -> str:
    """The path of `target` (by identity), or of the first value `pred` accepts; `$` if none."""
    test = pred if pred is not None else (lambda o: o is target)
    return _find(root, test, "$", 0) or "$"
