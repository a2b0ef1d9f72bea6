"""The etcd registry's deregister tombstones and compared writes, on one etcd server.

A deregister replaces the node's key with a tombstone (on a lease of
`tombstone_ttl` seconds) instead of deleting it, and every put is a
transaction compared on the key's revision the client last saw: so a put sent
before a later write of the same node does nothing when it arrives (the
cluster tests in tests/faults/cluster/test_etcd_late_puts.py make one arrive
late). Readers never see a tombstone: lookup, list_services and watch skip
it, and it goes away by itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import microstd.registry
from microstd._engines import etcd as engine
from microstd.errors import InvalidArgument, NotFound
from microstd.registry import Event, Node, ServiceRecord
from microstd.registry.etcd import TOMBSTONE, EtcdRegistry


def greeter(node: str = "n1", address: str = "127.0.0.1:8000") -> ServiceRecord:
    return ServiceRecord("greeter", "1", [Node(node, address)], ["Greeter.Hello"])


@pytest.fixture
async def registry(etcd_url: str) -> AsyncIterator[EtcdRegistry]:
    reg = microstd.registry.open(f"{etcd_url}?prefix=/{uuid.uuid4().hex[:8]}/&tombstone_ttl=2")
    assert isinstance(reg, EtcdRegistry)
    async with reg:
        yield reg


async def _stored(registry: EtcdRegistry) -> dict[str, dict[str, Any]]:
    """Every key under the registry's prefix (its name after the prefix) and its entry."""
    client = await registry._etcd()
    answer = await client.call(
        "kv/range",
        {"key": engine.b64(registry.prefix), "range_end": engine.prefix_end(registry.prefix)},
        "test read",
        idempotent=True,
    )
    return {engine.unb64(kv["key"])[len(registry.prefix) :]: kv for kv in engine.kvs_of(answer)}


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 20
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within 20 s"
        await asyncio.sleep(0.1)


async def test_deregister_leaves_a_tombstone_that_readers_skip(registry: EtcdRegistry) -> None:
    await registry.register(greeter("n1"), ttl=30)
    await registry.register(greeter("n2"), ttl=None)
    await registry.deregister(greeter("n1"))
    stored = await _stored(registry)
    assert engine.unb64_bytes(stored["greeter/n1"]["value"]) == TOMBSTONE
    assert [n.id for s in await registry.lookup("greeter") for n in s.nodes] == ["n2"]
    assert [n.id for s in await registry.list_services() for n in s.nodes] == ["n2"]
    await registry.deregister(greeter("n2"))
    with pytest.raises(NotFound):
        await registry.lookup("greeter")
    assert await registry.list_services() == []
    assert {engine.unb64_bytes(kv["value"]) for kv in (await _stored(registry)).values()} == {
        TOMBSTONE
    }


async def test_a_watch_reports_a_tombstone_as_a_delete_and_nothing_else(
    registry: EtcdRegistry,
) -> None:
    events = registry.watch("greeter")
    got: list[Event] = []

    async def follow() -> None:
        async for event in events:
            got.append(event)

    task = asyncio.create_task(follow())
    try:
        # The watch has read its starting view once it reports a node registered
        # after it (a fixed sleep was not always enough on a loaded machine).
        port = 9000
        while not got:  # a new address each time: a register of the same is no change
            port += 1
            await registry.register(greeter("probe", f"127.0.0.1:{port}"), ttl=None)
            await asyncio.sleep(0.1)
        await registry.deregister(greeter("probe"))
        await registry.register(greeter("n1"), ttl=None)
        await _eventually(lambda: _true(_count(got, "n1") >= 1), "the create")
        await registry.deregister(greeter("n1"))
        await _eventually(lambda: _true(_count(got, "n1") >= 2), "the delete")
        # The tombstone runs out (a change the watch is told of): no event.
        await _eventually(lambda: _no_key(registry, "greeter/n1"), "the tombstone gone")
        await registry.register(greeter("n1", "10.0.0.2:9000"), ttl=None)
        await _eventually(lambda: _true(_count(got, "n1") >= 3), "the create again")
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]
    n1 = [e for e in got if [n.id for n in e.service.nodes] == ["n1"]]
    assert [(e.kind, [n.address for n in e.service.nodes]) for e in n1] == [
        ("create", ["127.0.0.1:8000"]),
        ("delete", ["127.0.0.1:8000"]),
        ("create", ["10.0.0.2:9000"]),
    ]


def _count(events: list[Event], node: str) -> int:
    return sum(1 for e in events if [n.id for n in e.service.nodes] == [node])


async def _true(value: bool) -> bool:
    return value


async def _no_key(registry: EtcdRegistry, name: str) -> bool:
    return name not in await _stored(registry)


async def test_tombstones_expire(registry: EtcdRegistry) -> None:
    await registry.register(greeter("n1"), ttl=None)
    await registry.deregister(greeter("n1"))
    tombstone = (await _stored(registry))["greeter/n1"]
    client = await registry._etcd()
    lease = await client.call(
        "lease/timetolive", {"ID": tombstone["lease"]}, "test lease", idempotent=True
    )
    assert 0 < engine.int_field(lease, "grantedTTL") <= 2
    await _eventually(lambda: _no_key(registry, "greeter/n1"), "the tombstone gone")


async def test_a_register_after_a_deregister_registers(registry: EtcdRegistry) -> None:
    for ttl in (None, 30.0, None):
        await registry.register(greeter("n1"), ttl=ttl)
        assert [n.id for s in await registry.lookup("greeter") for n in s.nodes] == ["n1"]
        await registry.deregister(greeter("n1"))
        with pytest.raises(NotFound):
            await registry.lookup("greeter")


async def test_two_registries_on_one_node_last_writer_wins(
    registry: EtcdRegistry, etcd_url: str
) -> None:
    """As with a plain put: each register replaces the record, whoever wrote last,
    and a register after another registry's deregister registers again."""
    other = EtcdRegistry(etcd_url, prefix=registry.prefix)
    async with other:
        for reg, address in ((registry, "a:1"), (other, "b:2"), (registry, "a:1")):
            await reg.register(greeter("n1", address), ttl=30)
            (found,) = await registry.lookup("greeter")
            assert [n.address for n in found.nodes] == [address]
        await other.deregister(greeter("n1"))
        with pytest.raises(NotFound):
            await registry.lookup("greeter")
        await registry.register(greeter("n1", "a:1"), ttl=30)
        assert [n.address for s in await other.lookup("greeter") for n in s.nodes] == ["a:1"]


async def test_a_replayed_put_from_before_a_deregister_does_nothing(
    registry: EtcdRegistry,
) -> None:
    """The exact request of a register, sent again after a deregister (as a member
    that held it would apply it): its compare fails, the node stays away. The
    same for a register's request replayed after a newer record."""
    sent: list[tuple[str, dict[str, Any]]] = []
    call = registry._call

    async def recording(path: str, body: dict[str, Any], what: str, **kw: Any) -> dict[str, Any]:
        sent.append((path, body))
        return await call(path, body, what, **kw)

    registry._call = recording  # type: ignore[method-assign]
    client = await registry._etcd()
    for ttl in (None, 30.0):
        sent.clear()
        await registry.register(greeter("n1"), ttl=ttl)
        (first_put,) = [body for path, body in sent if path == "kv/txn"]
        await registry.register(greeter("n1", "10.0.0.2:9000"), ttl=ttl)
        again = await client.call("kv/txn", first_put, "test replay", idempotent=True)
        assert not again.get("succeeded")
        (found,) = await registry.lookup("greeter")
        assert [n.address for n in found.nodes] == ["10.0.0.2:9000"]
        await registry.deregister(greeter("n1"))
        again = await client.call("kv/txn", first_put, "test replay", idempotent=True)
        assert not again.get("succeeded")
        with pytest.raises(NotFound):
            await registry.lookup("greeter")


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf"])
def test_a_bad_tombstone_ttl_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="tombstone_ttl"):
        microstd.registry.open(f"etcd://127.0.0.1:1?tombstone_ttl={bad}")


async def test_a_second_deregister_leaves_a_fresh_tombstone(
    registry: EtcdRegistry, etcd_url: str
) -> None:
    """A deregister that finds an older tombstone (another process's deregister, or
    its own earlier one) replaces it with one on its own lease: a late put must be
    refused for `tombstone_ttl` after this deregister, not only until the older
    tombstone's lease runs out (it did, when another process deregistered)."""
    other = EtcdRegistry(etcd_url, prefix=registry.prefix, tombstone_ttl=2)
    async with other:
        await registry.register(greeter("n1"), ttl=None)
        leases = []
        for reg in (registry, registry, other):
            await reg.deregister(greeter("n1"))
            tombstone = (await _stored(registry))["greeter/n1"]
            assert engine.unb64_bytes(tombstone["value"]) == TOMBSTONE
            leases.append(tombstone["lease"])
        assert len(set(leases)) == 3, leases


async def _lease_ttl(registry: EtcdRegistry, lease: str) -> int:
    """A lease's remaining seconds (-1: revoked or run out)."""
    client = await registry._etcd()
    answer = await client.call("lease/timetolive", {"ID": lease}, "test lease", idempotent=True)
    return engine.int_field(answer, "TTL", default=-1)


async def test_leases_a_write_moved_the_key_off_are_revoked(registry: EtcdRegistry) -> None:
    """A register after a deregister revokes the tombstone's lease; a deregister
    after a deregister, the earlier tombstone's; a register without a TTL after
    one with, the node's old lease: none is left to hold nothing until it runs out."""
    registry.tombstone_ttl = 300.0
    await registry.register(greeter("n1"), ttl=30)
    node_lease = (await _stored(registry))["greeter/n1"]["lease"]
    await registry.register(greeter("n1"), ttl=None)
    assert await _lease_ttl(registry, node_lease) == -1
    await registry.deregister(greeter("n1"))
    first = (await _stored(registry))["greeter/n1"]["lease"]
    assert await _lease_ttl(registry, first) > 0
    await registry.deregister(greeter("n1"))
    second = (await _stored(registry))["greeter/n1"]["lease"]
    assert second != first
    assert await _lease_ttl(registry, first) == -1
    await registry.register(greeter("n1"), ttl=None)
    assert await _lease_ttl(registry, second) == -1
    assert [n.id for s in await registry.lookup("greeter") for n in s.nodes] == ["n1"]


async def test_a_deregister_while_a_register_is_answered_keeps_its_tombstone(
    registry: EtcdRegistry,
) -> None:
    """A register whose write landed but whose answer comes back only after a
    deregister of the same node (run meanwhile) wrote its tombstone must not
    revoke that tombstone's lease: the tombstone is the key's latest write."""
    call = registry._call
    held = asyncio.Event()
    go = asyncio.Event()

    async def slow_register(path: str, body: dict[str, Any], what: str, **kw: Any) -> Any:
        answer = await call(path, body, what, **kw)
        if path == "kv/txn" and what == "register" and not held.is_set():
            held.set()
            await go.wait()
        return answer

    await registry.register(greeter("n1"), ttl=None)
    await registry.deregister(greeter("n1"))  # a tombstone this client left
    registry._call = slow_register  # type: ignore[method-assign]
    register = asyncio.create_task(registry.register(greeter("n1"), ttl=None))
    await held.wait()  # the register's write landed; its answer is held
    await registry.deregister(greeter("n1"))
    tombstone = (await _stored(registry))["greeter/n1"]
    assert engine.unb64_bytes(tombstone["value"]) == TOMBSTONE
    go.set()
    await register
    assert await _lease_ttl(registry, tombstone["lease"]) > 0
    assert (await _stored(registry))["greeter/n1"]["lease"] == tombstone["lease"]
    with pytest.raises(NotFound):
        await registry.lookup("greeter")
