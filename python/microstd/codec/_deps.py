"""The packages the pure codecs stand on, imported with a clear error.

`msgpack` and `cbor2` are dependencies of microstd (the pure twins run on
them when the Rust core is missing, with `MICROSTD_PURE=1` or `impl="python"`).
An install that lost one gets an ImportError naming the package and the fix,
instead of whatever a caller would make of a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(name: str) -> ModuleType:
    """Import `name` (`"msgpack"` or `"cbor2"`), or raise an ImportError saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"microstd's pure-Python codecs need the {name!r} package, which is missing: "
            f"`pip install {name}` (it is a dependency of microstd; reinstalling microstd "
            "brings it back)",
            name=name,
        ) from exc
