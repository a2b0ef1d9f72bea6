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

__all__ = ["STREAM_TRANSPORTS", "TRANSPORTS", "Rig", "make_rig"]

#: http: over loopback HTTP (WebSocket for streams); local: a client calling a
#: server of its own process directly (no network, the same semantics); nats:
#: through the test's own nats-server (request/reply; streams on inboxes).
TRANSPORTS = ["http", "local", "nats"]
#: The transports that carry streaming calls (all of them).
STREAM_TRANSPORTS = TRANSPORTS


class Rig:
    """Services and clients on one transport, sharing a private registry."""

    def __init__(self, transport: str, nats_url: str | None = None) -> None:
        self.transport = transport
        self.registry = f"memory://rpc-contract-{uuid.uuid4().hex[:8]}"
        self.nats_url = nats_url
        # Service names are global on a NATS server shared by the session's tests.
        self.prefix = f"t{uuid.uuid4().hex[:6]}-" if transport == "nats" else ""

    def name(self, service: str) -> str:
        """The name a test's service really has (unique per test on NATS)."""
        return self.prefix + service

    def service(self, name: str, **kw: Any) -> microstd.Service:
        if self.transport == "nats":
            kw.setdefault("transport", self.nats_url)
        return microstd.Service(self.name(name), registry=self.registry, **kw)

    def client(self, **kw: Any) -> Client:
        kw.setdefault("local", self.transport == "local")
        if self.transport == "nats":
            kw.setdefault("transport", self.nats_url)
        return Client(self.registry, **kw)


def make_rig(request: Any) -> Rig:
    """The `Rig` of a parametrized fixture's transport (starting NATS if needed)."""
    transport: str = request.param
    nats_url = request.getfixturevalue("nats_url") if transport == "nats" else None
    return Rig(transport, nats_url)
