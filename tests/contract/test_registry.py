"""The registry contract, run on every backend: memory, redis, etcd, nats."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

import microstd.registry
from microstd.errors import NotFound, UnknownBackend
from microstd.registry import Event, Node, Registry, Service

BACKENDS = ["memory", "redis", "etcd", "nats", "postgres"]


def _url(kind: str, request: pytest.FixtureRequest) -> str:
    tag = uuid.uuid4().hex[:10]
    if kind == "memory":
        return "memory://"
    if kind == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix=t{tag}:"
    if kind == "etcd":
        return f"{request.getfixturevalue('etcd_url')}?prefix=/t{tag}/"
    if kind == "postgres":
        return f"{request.getfixturevalue('postgres_url')}?table=t{tag}"
    return f"{request.getfixturevalue('nats_url')}?bucket=t{tag}"


@pytest.fixture(params=BACKENDS)
async def reg(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    registry = microstd.registry.open(_url(request.param, request))
    async with registry:
        yield registry


def svc(name: str = "greeter", *nodes: str, version: str = "1.0") -> Service:
    return Service(
        name,
        version,
        [Node(n, f"127.0.0.1:{9000 + i}", {"zone": "a"}) for i, n in enumerate(nodes or ("n1",))],
        ["Greeter.Hello"],
    )


async def test_register_then_lookup(reg: Registry) -> None:
    await reg.register(svc("greeter", "n1", "n2"), ttl=30)
    [found] = await reg.lookup("greeter")
    assert found.name == "greeter"
    assert found.version == "1.0"
    assert found.endpoints == ["Greeter.Hello"]
    assert [(n.id, n.address, n.metadata) for n in found.nodes] == [
        ("n1", "127.0.0.1:9000", {"zone": "a"}),
        ("n2", "127.0.0.1:9001", {"zone": "a"}),
    ]


async def test_lookup_unknown_is_not_found(reg: Registry) -> None:
    with pytest.raises(NotFound, match="nobody"):
        await reg.lookup("nobody")


async def test_versions_are_separate_entries(reg: Registry) -> None:
    await reg.register(svc("greeter", "a", version="1"), ttl=30)
    await reg.register(svc("greeter", "b", version="2"), ttl=30)
    found = await reg.lookup("greeter")
    assert [(s.version, [n.id for n in s.nodes]) for s in found] == [("1", ["a"]), ("2", ["b"])]


async def test_deregister_removes_only_listed_nodes(reg: Registry) -> None:
    await reg.register(svc("greeter", "n1", "n2"), ttl=30)
    await reg.deregister(Service("greeter", "1.0", [Node("n1", "127.0.0.1:9000")]))
    [found] = await reg.lookup("greeter")
    assert [n.id for n in found.nodes] == ["n2"]
    await reg.deregister(Service("greeter", "1.0"))  # no nodes: all of that version
    with pytest.raises(NotFound):
        await reg.lookup("greeter")
    await reg.deregister(svc("greeter", "n1"))  # already gone: not an error


async def test_list_services(reg: Registry) -> None:
    await reg.register(svc("alpha", "n1"), ttl=30)
    await reg.register(svc("beta", "n1", "n2"), ttl=None)
    listed = await reg.list_services()
    assert [(s.name, len(s.nodes)) for s in listed] == [("alpha", 1), ("beta", 2)]


async def test_reregister_replaces_record(reg: Registry) -> None:
    await reg.register(svc("greeter", "n1"), ttl=30)
    moved = Service("greeter", "1.0", [Node("n1", "127.0.0.1:7777")], ["Greeter.Hello"])
    await reg.register(moved, ttl=30)
    [found] = await reg.lookup("greeter")
    assert [n.address for n in found.nodes] == ["127.0.0.1:7777"]


async def test_node_expires_after_ttl(reg: Registry) -> None:
    await reg.register(svc("greeter", "dies"), ttl=0.5)
    await reg.register(svc("greeter", "lives"), ttl=30)
    [found] = await reg.lookup("greeter")
    assert {n.id for n in found.nodes} == {"dies", "lives"}
    await asyncio.sleep(0.7)
    [found] = await reg.lookup("greeter")
    assert [n.id for n in found.nodes] == ["lives"]


async def test_heartbeat_keeps_node_alive(reg: Registry) -> None:
    for _ in range(4):
        await reg.register(svc("greeter", "n1"), ttl=0.6)
        await asyncio.sleep(0.25)
    [found] = await reg.lookup("greeter")
    assert [n.id for n in found.nodes] == ["n1"]


async def _next(events: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(events.__anext__(), timeout)


async def test_watch_create_update_delete_expire(reg: Registry) -> None:
    events = reg.watch("greeter")
    started = asyncio.ensure_future(_next(events))
    await asyncio.sleep(0.2)  # let the watch take its starting view
    await reg.register(svc("greeter", "n1"), ttl=30)
    created = await started
    assert (created.kind, created.service.nodes[0].id) == ("create", "n1")

    await reg.register(svc("greeter", "n1"), ttl=30)  # heartbeat: nothing changed
    moved = Service("greeter", "1.0", [Node("n1", "127.0.0.1:1234")], ["Greeter.Hello"])
    await reg.register(moved, ttl=30)
    updated = await _next(events)
    assert (updated.kind, updated.service.nodes[0].address) == ("update", "127.0.0.1:1234")

    await reg.deregister(moved)
    deleted = await _next(events)
    assert (deleted.kind, deleted.service.nodes[0].id) == ("delete", "n1")

    await reg.register(svc("greeter", "short"), ttl=0.5)
    assert (await _next(events)).kind == "create"
    expired = await _next(events)
    assert (expired.kind, expired.service.nodes[0].id) == ("delete", "short")
    with contextlib.suppress(Exception):
        await events.aclose()  # type: ignore[attr-defined]


async def test_watch_filters_by_name(reg: Registry) -> None:
    events = reg.watch("wanted")
    started = asyncio.ensure_future(_next(events))
    await asyncio.sleep(0.2)
    await reg.register(svc("other", "x"), ttl=30)
    await reg.register(svc("wanted", "y"), ttl=30)
    event = await started
    assert (event.kind, event.service.name) == ("create", "wanted")
    await events.aclose()  # type: ignore[attr-defined]


async def test_bad_input_is_rejected(reg: Registry) -> None:
    with pytest.raises(ValueError, match="service names"):
        await reg.register(Service("bad name*", "1", [Node("n", "h:1")]), ttl=1)
    with pytest.raises(ValueError, match="node ids"):
        await reg.register(Service("ok", "1", [Node("a/b", "h:1")]), ttl=1)
    with pytest.raises(ValueError, match="ttl"):
        await reg.register(svc("ok", "n"), ttl=-1)
    with pytest.raises(ValueError, match="no nodes"):
        await reg.register(Service("ok"), ttl=1)
    with pytest.raises(ValueError, match="service names"):
        await reg.lookup("")


def test_sync_twin_memory() -> None:
    with microstd.registry.open_sync("memory://") as reg:
        reg.register(svc("greeter", "n1"), ttl=10)
        assert [s.name for s in reg.list_services()] == ["greeter"]
        reg.deregister(svc("greeter", "n1"))
        with pytest.raises(NotFound):
            reg.lookup("greeter")


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
