"""Registry writes that reach an etcd member late, after the client gave up on them.

The client's member goes silent with a registry put on its way: frozen
(SIGSTOP), or behind a network that holds the request's bytes (the loopback
proxy of `faults._proxy`, stalled). The client gives up on it after
`attempt_timeout` and sends the put to the next member, where it lands; the
test then writes the node again (a deregister, or a newer record) and lets the
silent member go:

- **held**: the network delivers the held request and holds back the
  client's close (`resume(hold_closes=True)`), as a network that delivers
  held packets late or a proxy that keeps its own connection to the member
  would: the member carries the request out. Before the registry's writes
  were compared transactions, this brought a deregistered node back (for
  good, with no TTL) and overwrote a newer record with the stale one.
- **frozen**: the member, thawed, finds the request and the client's close
  together, and may drop the request (its context is canceled with the
  connection) or carry it out: this form checks the same outcome without
  forcing the late landing (before the writes were compared, the newer-record
  case failed in two runs of four, the deregister case in none).

The registry's puts are transactions compared on the node key's last revision
the client saw (or "absent"), and a deregister leaves a tombstone, so a late
put finds the key changed and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

import microstd.registry
from faults._proxy import FaultProxy
from faults.cluster._clusters import EtcdCluster
from faults.cluster._etcd import Member, leader_of, member_url
from faults.cluster._workload import greeter, unique
from microstd._engines import etcd as engine
from microstd.errors import NotFound
from microstd.registry import Node, Registry, ServiceRecord

#: The client's per-attempt deadline (seconds): a put held by the silent member is
#: sent to the next one after it.
ATTEMPT = 1.0
#: Once the member is let go, how long it gets to apply what it held (seconds). Not
#: a timing assertion: the checks hold however long it takes (a late put that
#: lands after it is simply not caught).
SETTLE = 3.0
#: (how, ttl): the frozen member holds whatever request comes first, with a TTL
#: the lease's keepalive, not the put: that form runs without one.
CASES = pytest.mark.parametrize(
    ("how", "ttl"),
    [("held", None), ("held", 30.0), ("frozen", None)],
    ids=["held-no-ttl", "held-ttl", "frozen-no-ttl"],
)
#: The registry's writes (a put before, a transaction now): the proxy stalls on one.
WRITES = (b"POST /v3/kv/put", b"POST /v3/kv/txn")


@dataclass
class _Silent:
    """A registry whose client is on a follower, and how to silence it and let go."""

    registry: Registry
    member: Member
    prefix: str
    silence: Callable[[], None]
    let_go: Callable[[], None]
    victim: int


@contextlib.asynccontextmanager
async def _registry_on_a_follower(cluster: EtcdCluster, how: str) -> AsyncIterator[_Silent]:
    victim = (leader_of(cluster) + 1) % len(cluster.nodes)
    prefix = f"/{unique('late')}/"
    with FaultProxy(cluster.nodes[victim].port) as proxy:
        via = {victim: proxy.port} if how == "held" else None
        url = member_url(cluster, victim, f"attempt_timeout={ATTEMPT:g}&prefix={prefix}", via)
        ports = {proxy.port: victim} if via else None
        async with (
            microstd.registry.open(url) as registry,
            Member.of(cluster, url, ports) as member,
        ):
            await registry.connect()
            assert member.index() == victim, "the client is not on the member to silence"
            if how == "held":
                silent = _Silent(
                    registry,
                    member,
                    prefix,
                    lambda: proxy.stall_at(*WRITES),
                    lambda: proxy.resume(hold_closes=True),
                    victim,
                )
            else:
                silent = _Silent(
                    registry, member, prefix, lambda: cluster.pause(victim), cluster.heal, victim
                )
            yield silent


async def _let_go_and_settle(cluster: EtcdCluster, silent: _Silent) -> None:
    """Let the silent member go; give it time to apply what it held: a write sent
    to it directly afterwards is applied, then `SETTLE` more seconds."""
    await asyncio.to_thread(silent.let_go)
    body = {"key": engine.b64(unique("/settle/")), "value": engine.b64("x")}
    async with Member.of(cluster, member_url(cluster, silent.victim)) as direct:
        await direct.client.call("kv/put", body, "test put", idempotent=True)
    await asyncio.sleep(SETTLE)


async def _records_stored(silent: _Silent) -> list[bytes]:
    values, _ = await silent.member.client.range_prefix(silent.prefix.encode(), "test read")
    return [v for v in values.values() if b'"address"' in v]


@CASES
async def test_a_late_put_does_not_bring_a_deregistered_node_back(
    etcd_cluster: EtcdCluster, how: str, ttl: float | None
) -> None:
    """Silence the client's member at the registry's next write, register (the
    put reaches the member late; the client sends it on to the next member),
    deregister, let the member go: the node stays deregistered (`NotFound`; no
    record under the prefix), with or without a TTL."""
    async with _registry_on_a_follower(etcd_cluster, how) as silent:
        silent.silence()
        await silent.registry.register(greeter("n1"), ttl=ttl)
        assert silent.member.index() != silent.victim, "the put was not sent on"
        await silent.registry.deregister(greeter("n1"))
        await _let_go_and_settle(etcd_cluster, silent)
        with pytest.raises(NotFound):
            await silent.registry.lookup("greeter")
        assert await _records_stored(silent) == []


@CASES
async def test_a_late_put_does_not_overwrite_a_newer_record(
    etcd_cluster: EtcdCluster, how: str, ttl: float | None
) -> None:
    """Silence the client's member at the registry's next write, register a
    record (it reaches the member late; the client sends it on), register the
    node again with a new address, let the member go: lookup shows the new
    address, not the late one."""
    async with _registry_on_a_follower(etcd_cluster, how) as silent:
        silent.silence()
        await silent.registry.register(greeter("n1"), ttl=ttl)
        assert silent.member.index() != silent.victim, "the put was not sent on"
        newer = ServiceRecord("greeter", "1", [Node("n1", "10.0.0.2:9000")], ["Greeter.Hello"])
        await silent.registry.register(newer, ttl=ttl)
        await _let_go_and_settle(etcd_cluster, silent)
        (found,) = await silent.registry.lookup("greeter")
        assert [n.address for n in found.nodes] == ["10.0.0.2:9000"]
        await silent.registry.deregister(newer)
