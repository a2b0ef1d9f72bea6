"""Real local clusters for the HA tests, from the Debian binaries, on free loopback ports.

    cluster = NatsCluster(3); cluster.start()      # three nats-server, routes, JetStream
    cluster.url("bucket=x")                        # nats://127.0.0.1:a,nats://127.0.0.1:b,...
    cluster.kill(i); cluster.restart(i)            # SIGKILL one member; bring it back
    cluster.close()

Each member is a `ServerProcess` (tests/_servers.py): its own temporary
directory and ports, kept across a kill so a restarted member rejoins with its
data. `restart` returns once the whole cluster is healthy again, so the next
test that shares the cluster (one per session: clusters are slow to start)
finds every member up.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from _servers import ServerProcess, free_port, require_binary

__all__ = ["NatsCluster"]

#: How long a cluster may take to become healthy (a loaded 2-core machine).
HEALTHY = 90.0


def _get_json(url: str) -> object:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # loopback only
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _wait(check: object, what: str, seconds: float = HEALTHY) -> None:
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {seconds}s")
        time.sleep(0.1)


def _start_all(nodes: list[ServerProcess], attempts: int = 3) -> None:
    """Start every member; on a port taken meanwhile by another process (free ports
    are only free when picked), stop them all and try again on new ports."""
    for attempt in range(attempts):
        try:
            for node in nodes:
                node.start()
            return
        except RuntimeError as exc:
            for node in nodes:
                node.stop()
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
            for node in nodes:
                node.port = free_port()
                node.extra = [free_port() for _ in node.extra]


class NatsCluster:
    """`size` nats-server processes with JetStream, joined by routes (one cluster)."""

    def __init__(self, size: int = 3) -> None:
        binary = require_binary("nats-server", hint="apt-get install nats-server")
        self.name = f"microstd{free_port()}"
        self.nodes: list[ServerProcess] = []
        for i in range(size):
            # extra[0]: the route port, extra[1]: the monitoring port.
            self.nodes.append(ServerProcess(f"nats-{i}", self._argv(binary, i), extra_ports=2))

    def _argv(self, binary: str, i: int):  # type: ignore[no-untyped-def]
        def argv(port: int, d: Path) -> list[str]:
            me = self.nodes[i]
            routes = ",".join(f"nats://127.0.0.1:{n.extra[0]}" for n in self.nodes if n is not me)
            return [
                binary,
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                str(me.extra[1]),
                "-sd",
                str(d / "js"),
                "--server_name",
                f"n{i}",
                "--cluster_name",
                self.name,
                "--cluster",
                f"nats://127.0.0.1:{me.extra[0]}",
                "--routes",
                routes,
            ]

        return argv

    @property
    def ports(self) -> list[int]:
        """The client port of each member, in member order."""
        return [n.port for n in self.nodes]

    def url(self, query: str = "", members: Iterable[int] | None = None) -> str:
        """The cluster as a NATS server list (all members, or the ones given)."""
        chosen = range(len(self.nodes)) if members is None else members
        servers = ",".join(f"nats://127.0.0.1:{self.nodes[i].port}" for i in chosen)
        return f"{servers}?{query}" if query else servers

    def start(self) -> None:
        _start_all(self.nodes)
        self.wait_healthy()

    def _meta(self, i: int) -> dict[str, object] | None:
        """Member `i`'s view of the JetStream meta group, if it is up and healthy."""
        node = self.nodes[i]
        if node.proc is None:
            return None
        found = _get_json(f"http://127.0.0.1:{node.extra[1]}/healthz")
        if not (isinstance(found, dict) and found.get("status") == "ok"):
            return None
        jsz = _get_json(f"http://127.0.0.1:{node.extra[1]}/jsz")
        meta = jsz.get("meta_cluster") if isinstance(jsz, dict) else None
        return meta if isinstance(meta, dict) else None

    def _healthy(self) -> bool:
        metas = [self._meta(i) for i in range(len(self.nodes))]
        if any(m is None or not m.get("leader") for m in metas):
            return False
        leaders = {m.get("leader") for m in metas if m is not None}
        if len(leaders) != 1:
            return False
        # Only the leader lists its peers: every one must be current.
        for m in metas:
            assert m is not None
            if m.get("replicas") is not None:
                peers = m["replicas"]
                assert isinstance(peers, list)
                return len(peers) == len(self.nodes) - 1 and all(
                    isinstance(p, dict) and p.get("current") and not p.get("offline") for p in peers
                )
        return False

    def wait_healthy(self, seconds: float = HEALTHY) -> None:
        """Return once every member is up, routed, and current with the meta leader."""
        _wait(self._healthy, "a healthy NATS cluster", seconds)

    def clients(self, i: int) -> list[dict[str, object]]:
        """The client connections member `i` has now (its /connz), [] when it is down."""
        if self.nodes[i].proc is None:
            return []
        found = _get_json(f"http://127.0.0.1:{self.nodes[i].extra[1]}/connz")
        conns = found.get("connections") if isinstance(found, dict) else None
        return [c for c in conns or [] if isinstance(c, dict)]

    def index_of(self, port: int) -> int:
        """The member listening on client port `port`."""
        return self.ports.index(port)

    def kill(self, i: int) -> None:
        """SIGKILL member `i` (its data directory stays for a restart)."""
        self.nodes[i].kill()

    def restart(self, i: int) -> None:
        """Start member `i` again and wait for the whole cluster to be healthy."""
        if self.nodes[i].proc is None:
            self.nodes[i].start()
        self.wait_healthy()

    def heal(self) -> None:
        """Start every member that is down; return once the cluster is healthy."""
        for node in self.nodes:
            if node.proc is None:
                node.start()
        self.wait_healthy()

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.close()
