"""The registry contract (DESIGN.md, "registry"), on the async and the blocking surface.

Fixtures: `reg`, `sync_reg`, `registry_target` (microstd.testing.fixtures);
each target starts empty, and every handle of it sees the same services.
microstd runs it on each of its own backends (tests/contract), a plugin
author on theirs (`pytest --microstd-registry=URL`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

import microstd.registry
from microstd.errors import Closed, NotFound
from microstd.registry import Event, Node, Registry, ServiceRecord
from microstd.testing._marks import mark_async_tests
from microstd.testing.suites.registry._watch_readiness import next_change, watch_started
from microstd.testing.tables import BAD_SERVICE_NAMES, BAD_TTLS, ids, raises
from microstd.testing.targets import RegistryTarget


def svc(name: str = "greeter", *nodes: str, version: str = "1.0") -> ServiceRecord:
    return ServiceRecord(
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
    await reg.deregister(ServiceRecord("greeter", "1.0", [Node("n1", "127.0.0.1:9000")]))
    [found] = await reg.lookup("greeter")
    assert [n.id for n in found.nodes] == ["n2"]
    await reg.deregister(ServiceRecord("greeter", "1.0"))  # no nodes: all of that version
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
    moved = ServiceRecord("greeter", "1.0", [Node("n1", "127.0.0.1:7777")], ["Greeter.Hello"])
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


async def test_watch_create_update_delete_expire(reg: Registry) -> None:
    events = reg.watch("greeter")
    await watch_started(reg, events, "greeter")
    await reg.register(svc("greeter", "n1"), ttl=30)
    created = await next_change(events)
    assert (created.kind, created.service.nodes[0].id) == ("create", "n1")

    await reg.register(svc("greeter", "n1"), ttl=30)  # heartbeat: nothing changed
    moved = ServiceRecord("greeter", "1.0", [Node("n1", "127.0.0.1:1234")], ["Greeter.Hello"])
    await reg.register(moved, ttl=30)
    updated = await next_change(events)
    assert (updated.kind, updated.service.nodes[0].address) == ("update", "127.0.0.1:1234")

    await reg.deregister(moved)
    deleted = await next_change(events)
    assert (deleted.kind, deleted.service.nodes[0].id) == ("delete", "n1")

    await reg.register(svc("greeter", "short"), ttl=0.5)
    assert (await next_change(events)).kind == "create"
    expired = await next_change(events)
    assert (expired.kind, expired.service.nodes[0].id) == ("delete", "short")
    with contextlib.suppress(Exception):
        await events.aclose()  # type: ignore[attr-defined]


async def test_watch_filters_by_name(reg: Registry) -> None:
    events = reg.watch("wanted")
    await watch_started(reg, events, "wanted")
    await reg.register(svc("other", "x"), ttl=30)  # after the start: a change, not told
    await reg.register(svc("wanted", "y"), ttl=30)
    event = await next_change(events)
    assert (event.kind, event.service.name, event.service.nodes[0].id) == ("create", "wanted", "y")
    await events.aclose()  # type: ignore[attr-defined]


async def test_bad_input_is_rejected(reg: Registry) -> None:
    with pytest.raises(ValueError, match="service names"):
        await reg.register(ServiceRecord("bad name*", "1", [Node("n", "h:1")]), ttl=1)
    with pytest.raises(ValueError, match="node ids"):
        await reg.register(ServiceRecord("ok", "1", [Node("a/b", "h:1")]), ttl=1)
    with pytest.raises(ValueError, match="ttl"):
        await reg.register(svc("ok", "n"), ttl=-1)
    with pytest.raises(ValueError, match="no nodes"):
        await reg.register(ServiceRecord("ok"), ttl=1)
    with pytest.raises(ValueError, match="service names"):
        await reg.lookup("")


def test_sync_surface(sync_reg: microstd.registry.SyncRegistry) -> None:
    sync_reg.register(svc("greeter", "n1"), ttl=10)
    assert [s.name for s in sync_reg.list_services()] == ["greeter"]
    sync_reg.deregister(svc("greeter", "n1"))
    with pytest.raises(NotFound):
        sync_reg.lookup("greeter")


# ---- one table of bad arguments (microstd.testing.tables) -----------------------


@pytest.mark.parametrize(("name", "cls", "message"), BAD_SERVICE_NAMES, ids=ids(BAD_SERVICE_NAMES))
async def test_bad_service_names_raise_the_shared_error(
    reg: Registry, name: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await reg.register(ServiceRecord(name, "1.0", [Node("n1", "127.0.0.1:9000")]), ttl=5.0)
    with raises(cls, message):
        await reg.lookup(name)


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=ids(BAD_TTLS))
async def test_bad_ttls_raise_the_shared_error(
    reg: Registry, ttl: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await reg.register(svc("greeter", "n1"), ttl=ttl)


# ---- close() means closed ------------------------------------------------------


async def _first(events: AsyncIterator[Event]) -> Event:
    return await events.__anext__()


async def test_close_means_closed(registry_target: RegistryTarget) -> None:
    registry = registry_target.open()
    async with registry:
        await registry.register(svc("greeter", "n1"), ttl=5.0)
    assert registry.closed
    await registry.close()  # idempotent
    for call in (
        registry.connect,
        lambda: registry.register(svc("greeter", "n1"), ttl=5.0),
        lambda: registry.deregister(svc("greeter", "n1")),
        lambda: registry.lookup("greeter"),
        registry.list_services,
        lambda: _first(registry.watch("greeter")),
    ):
        with pytest.raises(Closed, match="is closed"):
            await call()


def test_sync_close_means_closed(registry_target: RegistryTarget) -> None:
    registry = registry_target.open_sync()
    with registry:
        registry.register(svc("greeter", "n1"), ttl=5.0)
    assert registry.closed
    registry.close()
    for call in (
        registry.connect,
        lambda: registry.register(svc("greeter", "n1"), ttl=5.0),
        lambda: registry.lookup("greeter"),
        registry.list_services,
    ):
        with pytest.raises(Closed, match="is closed"):
            call()


async def test_close_ends_watches(registry_target: RegistryTarget) -> None:
    registry = registry_target.open()
    await registry.connect()
    events = registry.watch("greeter")
    await watch_started(registry, events, "greeter")
    # Past any probe told late: the watch is waiting for a change when it closes.
    pending = asyncio.ensure_future(next_change(events, 10.0))
    await registry.close()
    with pytest.raises(StopAsyncIteration):
        await pending
    # Nothing left open: a client or socket the watch opened again after the
    # close would warn when collected (an error under pytest's warnings filter).
    del events, pending
    gc.collect()


mark_async_tests(globals())
