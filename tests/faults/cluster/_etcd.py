"""What the etcd cluster tests share: URLs that put a client on a chosen member,
and which member a client is on now (the workloads are in `_workload`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from faults.cluster._clusters import EtcdCluster
from microstd._engines import etcd as engine

__all__ = [
    "OPTIONS",
    "TTL",
    "Member",
    "kill_member",
    "leader_of",
    "member_url",
]

#: The clients' engine options: a request may take up to 4 s in all, which covers
#: a Raft election (one to two seconds on a default member) after the leader died,
#: with room to spare on a loaded machine.
OPTIONS = "connect_timeout=1&timeout=3&ping_interval=1"
#: Lease length of the lock and election tests (etcd's floor is about 2 s).
TTL = 2.0


def member_url(
    cluster: EtcdCluster, first: int, query: str = "", via: dict[int, int] | None = None
) -> str:
    """The cluster's URL listing its members from member `first` on, so the client
    starts on `first`; each `first` is another endpoint, so another engine client.
    `via` (member index -> port) reaches those members through other ports (a proxy)."""
    size = len(cluster.nodes)
    chosen = [(first + k) % size for k in range(size)]
    via = via or {}
    hosts = ",".join(f"127.0.0.1:{via.get(i, cluster.nodes[i].port)}" for i in chosen)
    options = f"{OPTIONS}&randomize=0"
    return f"etcd://{hosts}?{options}&{query}" if query else f"etcd://{hosts}?{options}"


def leader_of(cluster: EtcdCluster) -> int:
    leader = cluster.leader()
    assert leader is not None, "the members do not agree on a leader"
    return leader


class Member:
    """Which member the engine client behind `url` sends to now (the client that
    a lock set, registry or config source opened with that URL shares)."""

    def __init__(
        self, cluster: EtcdCluster, client: engine.EtcdClient, via: dict[int, int] | None = None
    ) -> None:
        self.cluster = cluster
        self.client = client
        #: Ports that stand for a member (a proxy in front of it): port -> index.
        self.via = via or {}

    @classmethod
    @contextlib.asynccontextmanager
    async def of(
        cls, cluster: EtcdCluster, url: str, via: dict[int, int] | None = None
    ) -> AsyncIterator[Member]:
        client = await engine.acquire(engine.EtcdEndpoint.from_url(url)[0])
        try:
            yield cls(cluster, client, via)
        finally:
            await engine.release(client)

    def index(self) -> int:
        port = int(self.client.member.rsplit(":", 1)[1])
        return self.via[port] if port in self.via else self.cluster.ports.index(port)

    def kill(self) -> int:
        """SIGKILL the member this client is on; its index."""
        i = self.index()
        self.cluster.kill(i)
        return i


def kill_member(cluster: EtcdCluster, member: Member) -> str:
    """Kill the member `member`'s client is on; whether it led the cluster, for the
    failover record."""
    leader = cluster.leader()
    return "the leader" if member.kill() == leader else "a follower"
