"""`microstd.client`: the RPC client's former home, kept importable.

The client lives beside the server now, in `microstd.rpc.client`; use
`microstd.Client` (or `microstd.rpc.Client`). Every name of that module is
reachable here too.
"""

from __future__ import annotations

from typing import Any

from microstd.rpc import client as _client
from microstd.rpc.client import Call, CallNext, Client, ClientMiddleware

__all__ = ["Call", "CallNext", "Client", "ClientMiddleware"]


def __getattr__(name: str) -> Any:
    return getattr(_client, name)
