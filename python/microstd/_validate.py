"""The one set of argument rules every area shares: ttl, wait, keys and names, `impl=`.

Store, broker, sync and registry, their pure twins and their Rust cores all
check these arguments here, so the same bad value raises the same class with
the same message whichever backend gets it. The Rust cores accept the plainly
valid values on a fast path of their own (an exact `float`/`int`, a non-empty
`str`) and call these functions for everything else, so the rules and the
messages are written once, in this module.

Rules (each chosen where the areas used to disagree):

- A ttl is an `int` or `float` (not `bool`), finite and > 0. `None` means "no
  expiry" where the area allows it (store, registry); a lock lease always
  expires. `inf` is refused everywhere: `None` is the one way to say "never".
- A wait is `None` (forever) or an `int`/`float` (not `bool`), finite and >= 0
  (0: try once).
- A key or name (store key, lock or election name) is a non-empty `str`
  without lone surrogates; service names and node ids also follow a pattern.
  A bad one raises `InvalidKey` (a `ValueError`) in every area.
- `impl` is "rust" or "python"; `None` picks the Rust core when it is built.
  "rust" without the extension raises `NotSupported` (no silent fallback).
- A bad ttl, wait or option raises `InvalidArgument`, which is both a
  `TypeError` and a `ValueError`, so code written against either builtin
  keeps working.

Values are quoted with `repr()`; the Rust cores quote keys the same way.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from microstd import _accel
from microstd.errors import InvalidArgument, InvalidKey, NotSupported

__all__ = [
    "IMPLS",
    "Impl",
    "impl_choice",
    "key",
    "node_id",
    "service_name",
    "ttl",
    "ttl_or_none",
    "wait",
]

Impl = Literal["rust", "python"]
IMPLS: tuple[Impl, ...] = ("rust", "python")

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_NODE_ID = re.compile(r"[A-Za-z0-9_-]+")
_MAX_NAME = 200


def _seconds(value: object) -> float | None:
    """`value` as float if it is an int or float (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf


def ttl(value: object) -> float:
    """A lease or record lifetime: finite float seconds > 0, else `InvalidArgument`."""
    seconds = _seconds(value)
    if seconds is None:
        raise InvalidArgument(f"ttl must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidArgument(f"ttl must be a finite number of seconds > 0, got {value!r}")
    return seconds


def ttl_or_none(value: object) -> float | None:
    """`ttl(value)`, with `None` (no expiry) allowed."""
    return None if value is None else ttl(value)


def wait(value: object) -> float | None:
    """How long to wait: `None` (forever) or finite float seconds >= 0 (0: try once)."""
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is None:
        raise InvalidArgument(
            f"wait must be None or a number of seconds, got {type(value).__name__}"
        )
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidArgument(
            f"wait must be None or a finite number of seconds >= 0, got {value!r}"
        )
    return seconds


def key(value: object, what: str = "store keys") -> str:
    """`value` if it is a non-empty str without lone surrogates, else `InvalidKey`.

    `what` names the kind in the message, plural: "store keys", "lock names".
    """
    if not isinstance(value, str):
        raise InvalidKey(f"{what} are str, got {type(value).__name__}")
    if not value:
        raise InvalidKey(f"{what} must not be empty")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidKey(f"{what} must be valid Unicode (no lone surrogates)") from None
    return value


def service_name(value: object) -> str:
    """A service name: dot-separated tokens of letters, digits, `_` and `-`."""
    name = key(value, "service names")
    if len(name) > _MAX_NAME or not _SERVICE_NAME.fullmatch(name):
        raise InvalidKey(
            "service names are dot-separated tokens of [A-Za-z0-9_-]"
            f" (at most {_MAX_NAME} characters), got {name!r}"
        )
    return name


def node_id(value: object) -> str:
    """A node id: letters, digits, `_` and `-`."""
    node = key(value, "node ids")
    if len(node) > _MAX_NAME or not _NODE_ID.fullmatch(node):
        raise InvalidKey(
            f"node ids are [A-Za-z0-9_-]+ (at most {_MAX_NAME} characters), got {node!r}"
        )
    return node


def impl_choice(value: object) -> Impl:
    """Which in-process core to use: "rust" or "python"; None picks Rust when it is built."""
    if value is None:
        return "rust" if _accel.AVAILABLE else "python"
    if value == "python":
        return "python"
    if value == "rust":
        if not _accel.AVAILABLE:
            raise NotSupported(
                "impl='rust' needs microstd's Rust core, which this installation does not have"
                " (install a wheel, or build it with a Rust toolchain); impl='python' selects"
                " the pure-Python twin"
            )
        return "rust"
    raise InvalidArgument(f"impl must be 'rust' or 'python', got {value!r}")
