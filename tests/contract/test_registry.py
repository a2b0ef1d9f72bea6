"""Registry behaviour specific to this project's backends: named memory instances,
unknown schemes, unreachable servers. The registry contract itself is
microstd.testing's suite (test_registry_suite.py), run on every backend."""

from __future__ import annotations

import uuid

import pytest

import microstd.registry
from microstd.errors import UnknownBackend
from microstd.registry import Node, ServiceRecord


def svc(name: str = "greeter", *nodes: str, version: str = "1.0") -> ServiceRecord:
    return ServiceRecord(
        name,
        version,
        [Node(n, f"127.0.0.1:{9000 + i}", {"zone": "a"}) for i, n in enumerate(nodes or ("n1",))],
        ["Greeter.Hello"],
    )


async def test_named_memory_is_shared_and_plain_is_private() -> None:
    name = f"memory://t{uuid.uuid4().hex[:8]}"
    async with microstd.registry.open(name) as a, microstd.registry.open(name) as b:
        await a.register(svc("greeter", "n1"), ttl=10)
        assert [s.name for s in await b.list_services()] == ["greeter"]
    async with microstd.registry.open("memory://") as private:
        assert await private.list_services() == []


def test_unknown_scheme() -> None:
    with pytest.raises(UnknownBackend, match="redis"):
        microstd.registry.open("rediss-typo://x")


@pytest.mark.parametrize("scheme", ["redis", "etcd", "nats"])
async def test_unreachable_server_is_connection_failed(scheme: str) -> None:
    from _servers import free_port
    from microstd.errors import ConnectionFailed

    registry = microstd.registry.open(f"{scheme}://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionFailed):
        await registry.connect()
    await registry.close()
