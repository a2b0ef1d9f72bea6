"""The transports the RPC contract suites run on, in ONE place.

Each suite parametrizes its `rig` fixture over `TRANSPORTS`: each `Rig`
gives services and clients that talk over that transport, on a registry
private to the test.
"""

from __future__ import annotations

import uuid
from typing import Any

import microstd
from microstd.client import Client

__all__ = ["TRANSPORTS", "Rig"]

#: http: over loopback HTTP (WebSocket for streams); local: a client calling a
#: server of its own process directly (no network, the same semantics).
TRANSPORTS = ["http", "local"]


class Rig:
    """Services and clients on one transport, sharing a private registry."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.registry = f"memory://rpc-contract-{uuid.uuid4().hex[:8]}"

    def service(self, name: str, **kw: Any) -> microstd.Service:
        return microstd.Service(name, registry=self.registry, **kw)

    def client(self, **kw: Any) -> Client:
        kw.setdefault("local", self.transport == "local")
        return Client(self.registry, **kw)
