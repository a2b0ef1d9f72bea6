"""RPC: the server's dispatch, the client, call context and handler conversion.

Most code uses `microstd.Service` (which owns a `Server`) and `microstd.Client`
(`microstd.rpc.Client`, from `microstd.rpc.client`; it used to be
`microstd.client`, which still works); `current_context()` gives a handler the
incoming call's request id, caller, deadline and metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microstd.rpc.context import Context, current_context
from microstd.rpc.limits import Limits
from microstd.rpc.server import Reply, Server, ServerMiddleware

__all__ = [
    "Call",
    "CallNext",
    "Client",
    "ClientMiddleware",
    "Context",
    "Limits",
    "Reply",
    "Server",
    "ServerMiddleware",
    "current_context",
]

# The client imports aiohttp's client side and the registry: loaded on first use.
_CLIENT_NAMES = frozenset({"Call", "CallNext", "Client", "ClientMiddleware"})

if TYPE_CHECKING:
    from microstd.rpc.client import Call, CallNext, Client, ClientMiddleware


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from microstd.rpc import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
