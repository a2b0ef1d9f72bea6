"""The only importer of the Rust extension `microstd._core`.

Everything else asks this module for the core, so a missing or broken
extension is detected in one place and the pure-Python twins take over.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

__all__ = ["AVAILABLE", "core", "require_core"]

_log = logging.getLogger("microstd")

core: ModuleType | None
try:
    if os.environ.get("MICROSTD_PURE"):
        # Lets a user (or a test) run everything on the pure twins.
        raise ImportError("MICROSTD_PURE is set")
    from microstd import _core as _imported

    core = _imported
except ImportError as exc:  # pragma: no cover - exercised by installs without the extension
    _log.debug("microstd: Rust core unavailable, using the pure-Python twins: %s", exc)
    core = None

AVAILABLE: bool = core is not None


def require_core() -> ModuleType:
    """The extension module, or an ImportError saying how to get it."""
    if core is None:
        raise ImportError(
            "microstd's Rust core is not available: install a wheel, or build it "
            "with a Rust toolchain (`pip install microstd` from source, or `maturin develop`); "
            "pass impl='python' to use the pure-Python implementation"
        )
    return core
