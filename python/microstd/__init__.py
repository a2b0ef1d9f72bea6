"""microstd: a standard library for Python microservices, with a Rust core.

Areas, each behind one small interface with pluggable backends:
`codec`, `store`, `broker`, `sync`, `config`, `registry`, and the RPC
`Client` / `Service`. Submodules load on first use, so importing microstd
does not import any network client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from microstd import errors
from microstd._accel import AVAILABLE as RUST_CORE_AVAILABLE

__version__ = "0.1.0"

__all__ = [
    "RUST_CORE_AVAILABLE",
    "Client",
    "Service",
    "SyncClient",
    "__version__",
    "broker",
    "codec",
    "config",
    "errors",
    "registry",
    "store",
    "sync",
]

_SUBMODULES = {"broker", "codec", "config", "registry", "store", "sync"}
_ATTRIBUTES = {
    "Client": "microstd.rpc.client",
    "Service": "microstd.service",
    "SyncClient": "microstd.rpc.blocking",
}

# Each area adds its import here once it exists, so type checkers see the lazy attributes.
if TYPE_CHECKING:
    from microstd import broker, codec, config, registry, store, sync
    from microstd.rpc.blocking import SyncClient
    from microstd.rpc.client import Client
    from microstd.service import Service


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"microstd.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'microstd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
