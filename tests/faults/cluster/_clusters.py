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
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from _servers import ServerProcess, free_port, redis_argv, require_binary

__all__ = ["EtcdCluster", "NatsCluster", "RedisCluster", "SentinelCluster"]

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


def _start_stopped(nodes: list[ServerProcess]) -> None:
    """Start again every member that was stopped or killed."""
    for node in nodes:
        if node.proc is None:
            node.start()


def _close_all(nodes: list[ServerProcess]) -> None:
    """Close every member, going on past one that fails to close."""
    for node in nodes:
        with contextlib.suppress(Exception):
            node.close()


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
        _start_stopped(self.nodes)
        self.wait_healthy()

    def close(self) -> None:
        _close_all(self.nodes)


class EtcdCluster:
    """`size` etcd members forming one cluster (client and peer ports on loopback)."""

    def __init__(self, size: int = 3) -> None:
        binary = require_binary("etcd", hint="apt-get install etcd-server")
        self.token = f"microstd{free_port()}"
        self.nodes: list[ServerProcess] = []
        for i in range(size):
            # extra[0]: the peer port.
            self.nodes.append(
                ServerProcess(
                    f"etcd-{i}",
                    self._argv(binary, i),
                    extra_ports=1,
                    ready=lambda port: True,  # the cluster is waited for as a whole
                )
            )

    def _argv(self, binary: str, i: int) -> Callable[[int, Path], list[str]]:
        def argv(port: int, d: Path) -> list[str]:
            me = self.nodes[i]
            peers = ",".join(
                f"e{j}=http://127.0.0.1:{n.extra[0]}" for j, n in enumerate(self.nodes)
            )
            client = f"http://127.0.0.1:{port}"
            peer = f"http://127.0.0.1:{me.extra[0]}"
            return [
                binary,
                "--name",
                f"e{i}",
                "--data-dir",
                str(d / "data"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                peers,
                "--initial-cluster-token",
                self.token,
                "--initial-cluster-state",
                "new",
                "--log-level",
                "warn",
            ]

        return argv

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def url(self, query: str = "", members: Iterable[int] | None = None) -> str:
        """``etcd://127.0.0.1:a,127.0.0.1:b,...`` (all members, or the ones given)."""
        chosen = range(len(self.nodes)) if members is None else members
        hosts = ",".join(f"127.0.0.1:{self.nodes[i].port}" for i in chosen)
        return f"etcd://{hosts}?{query}" if query else f"etcd://{hosts}"

    def _status(self, i: int) -> dict[str, object] | None:
        node = self.nodes[i]
        if node.proc is None:
            return None
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{node.port}/v3/maintenance/status", data=b"{}", method="POST"
            )
            with urllib.request.urlopen(req, timeout=1.0) as resp:  # loopback only
                found = json.loads(resp.read())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def leader(self) -> int | None:
        """The member that leads now, by every live member's account (None if they
        do not agree or there is none)."""
        ids: dict[str, int] = {}
        leaders = set()
        for i in range(len(self.nodes)):
            status = self._status(i)
            if status is None:
                continue
            header = status.get("header")
            if isinstance(header, dict):
                ids[str(header.get("member_id"))] = i
            leaders.add(str(status.get("leader")))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def _healthy(self) -> bool:
        if any(self._status(i) is None for i in range(len(self.nodes))):
            return False
        return self.leader() is not None and _get_json_ok(self.nodes)

    def start(self, attempts: int = 3) -> None:
        # The members start without waiting for each other (a new member waits for
        # its peers before it serves), so a port taken meanwhile shows as an exit.
        for attempt in range(attempts):
            _start_all(self.nodes)
            try:
                self.wait_healthy()
                return
            except RuntimeError as exc:
                logs = "".join(n.log_tail() for n in self.nodes)
                for node in self.nodes:
                    node.stop()
                if "address already in use" not in logs or attempt == attempts - 1:
                    raise RuntimeError(f"{exc}:\n{logs}") from None
                for node in self.nodes:
                    node.port = free_port()
                    node.extra = [free_port() for _ in node.extra]
                    shutil.rmtree(node.workdir / "data", ignore_errors=True)

    def wait_healthy(self, seconds: float = HEALTHY) -> None:
        """Return once every member is up and they agree on a leader."""

        def healthy() -> bool:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited")
            return self._healthy()

        _wait(healthy, "a healthy etcd cluster", seconds)

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def pause(self, i: int) -> None:
        """SIGSTOP member `i`: its connections stay open, nothing answers."""
        self.nodes[i].pause()

    def heal(self) -> None:
        """Thaw every frozen member, start every dead one; return once healthy."""
        for node in self.nodes:
            if node.paused:
                node.resume()
            if node.proc is None:
                node.start()
        self.wait_healthy()

    def close(self) -> None:
        _close_all(self.nodes)


def _get_json_ok(nodes: list[ServerProcess]) -> bool:
    """Every etcd member answers /health with health "true"."""
    for node in nodes:
        found = _get_json(f"http://127.0.0.1:{node.port}/health")
        if not (isinstance(found, dict) and found.get("health") == "true"):
            return False
    return True


def _redis_info(port: int, section: str = "replication") -> dict[str, str]:
    """`INFO section` of the Redis (or Sentinel) on `port`, as a dict; {} if it is down."""
    try:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, _, _ = data.partition(b"\r\n")
                if head.startswith(b"$"):
                    size = int(head[1:])
                    if len(data) >= len(head) + 2 + size + 2:
                        break
                elif head.startswith(b"-"):
                    return {}
    except (OSError, ValueError):
        return {}
    text = data.partition(b"\r\n")[2].decode(errors="replace")
    out = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            out[name] = value
    return out


class SentinelCluster:
    """One Redis master, `replicas` replicas, and `sentinels` Sentinels watching them.

    The master's name in Sentinel is `service`. Data nodes keep no files (no
    persistence: Sentinel's copies are the replicas), so a killed node comes back
    empty and Sentinel makes it a replica of the current master.
    """

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, service: str = "mymaster") -> None:
        binary = require_binary("redis-server", hint="apt-get install redis-server")
        self.service = service
        self.data: list[ServerProcess] = []
        for i in range(1 + replicas):
            self.data.append(ServerProcess(f"redis-{i}", self._data_argv(binary, i)))
        self.sentinels: list[ServerProcess] = [
            ServerProcess(f"sentinel-{i}", self._sentinel_argv(binary)) for i in range(sentinels)
        ]
        self._started = False

    def _data_argv(self, binary: str, i: int) -> Callable[[int, Path], list[str]]:
        def argv(port: int, d: Path) -> list[str]:
            args = redis_argv(binary, port, d)
            # At first the first node is the master; a node restarted later joins
            # as a replica of the master the Sentinels name now (as an operator
            # would restart it; Sentinel would get there too, in about 10 s).
            master = 0 if not self._started else self.master()
            if master is not None and master != i:
                args += ["--replicaof", "127.0.0.1", str(self.data[master].port)]
            return args

        return argv

    def _sentinel_argv(self, binary: str) -> Callable[[int, Path], list[str]]:
        def argv(port: int, d: Path) -> list[str]:
            conf = d / "sentinel.conf"
            if not conf.exists():  # Sentinel rewrites its file: a restart keeps what it knows
                conf.write_text(
                    f"port {port}\n"
                    "bind 127.0.0.1\n"
                    f"dir {d}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.data[0].port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
            return [binary, str(conf), "--sentinel"]

        return argv

    def url(self, path: str = "", query: str = "", scheme: str = "redis+sentinel") -> str:
        """``redis+sentinel://127.0.0.1:s1,...,127.0.0.1:s3/SERVICE/0`` (`path`
        replaces ``SERVICE/0``)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        url = f"{scheme}://{hosts}/{path or self.service + '/0'}"
        return f"{url}?{query}" if query else url

    def master(self) -> int | None:
        """The data node every live Sentinel names as the master, if they agree and it
        says it is one."""
        named = set()
        for s in self.sentinels:
            if s.proc is None:
                continue
            info = _redis_info(s.port, "sentinel")
            entry = info.get("master0", "")
            fields = dict(f.split("=", 1) for f in entry.split(",") if "=" in f)
            if fields.get("status") != "ok":
                return None
            named.add(fields.get("address"))
        if len(named) != 1:
            return None
        address = named.pop() or ""
        port = int(address.rpartition(":")[2] or 0)
        for i, node in enumerate(self.data):
            if node.port == port and node.proc is not None:
                return i if _redis_info(node.port).get("role") == "master" else None
        return None

    def _healthy(self) -> bool:
        master = self.master()
        if master is None:
            return False
        info = _redis_info(self.data[master].port)
        if int(info.get("connected_slaves", "0")) != len(self.data) - 1:
            return False
        for i, node in enumerate(self.data):
            if i == master:
                continue
            rinfo = _redis_info(node.port)
            if rinfo.get("role") != "slave" or rinfo.get("master_link_status") != "up":
                return False
            if rinfo.get("master_port") != str(self.data[master].port):
                return False
        # Every Sentinel knows every replica and the other Sentinels.
        for s in self.sentinels:
            info = _redis_info(s.port, "sentinel")
            entry = info.get("master0", "")
            fields = dict(f.split("=", 1) for f in entry.split(",") if "=" in f)
            if fields.get("slaves") != str(len(self.data) - 1):
                return False
            if fields.get("sentinels") != str(len(self.sentinels)):
                return False
        return True

    def start(self) -> None:
        _start_all([*self.data, *self.sentinels])
        self._started = True
        self.wait_healthy()

    def wait_healthy(self, seconds: float = HEALTHY) -> None:
        """Return once Sentinels agree on a master that every other node replicates."""
        _wait(self._healthy, "a healthy Redis Sentinel group", seconds)

    def kill_master(self) -> int:
        """SIGKILL the current master; its index."""
        master = self.master()
        assert master is not None, "no agreed master"
        self.data[master].kill()
        return master

    def heal(self) -> None:
        _start_stopped([*self.data, *self.sentinels])
        self.wait_healthy()

    def close(self) -> None:
        _close_all([*self.sentinels, *self.data])


def _redis_cli(port: int, *args: str, timeout: float = 5.0) -> str:
    """`redis-cli -p port args...`'s output; "" if the node does not answer."""
    import subprocess

    cli = shutil.which("redis-cli") or "redis-cli"
    try:
        done = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.decode(errors="replace") if done.returncode == 0 else ""


class RedisCluster:
    """A Redis Cluster: `masters` masters with `replicas` replicas each (cluster-enabled
    redis-server processes joined by ``redis-cli --cluster create``).

    Nodes keep no data files (no persistence: a master's copy is its replica), but
    keep their ``nodes.conf`` across a kill, so a restarted node rejoins the
    cluster and becomes a replica of the node promoted in its place. The node
    timeout is short (1 s) so a dead master's replica is promoted within seconds.
    """

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        binary = require_binary("redis-server", hint="apt-get install redis-server")
        require_binary("redis-cli", hint="apt-get install redis-tools")
        self.masters = masters
        self.replicas = replicas
        # extra[0]: the cluster bus port (port + 10000, Redis's default, may be past 65535).
        self.nodes = [
            ServerProcess(f"rcluster-{i}", self._argv(binary, i), extra_ports=1)
            for i in range(masters * (1 + replicas))
        ]

    def _argv(self, binary: str, i: int) -> Callable[[int, Path], list[str]]:
        def argv(port: int, d: Path) -> list[str]:
            cluster = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(d / "nodes.conf"),
                "--cluster-port",
                str(self.nodes[i].extra[0]),
                "--cluster-node-timeout",
                "1000",
                # Any replica may be promoted, however long it was cut off.
                "--cluster-replica-validity-factor",
                "0",
            ]
            return redis_argv(binary, port, d, more=cluster)

        return argv

    def url(self, query: str = "", scheme: str = "redis+cluster") -> str:
        """``redis+cluster://127.0.0.1:p1,...`` naming every node."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"{scheme}://{hosts}/" + (f"?{query}" if query else "")

    def start(self) -> None:
        _start_all(self.nodes)
        out = _redis_cli(
            self.nodes[0].port,
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            timeout=60.0,
        )
        if "All 16384 slots covered" not in out:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out[-2000:]}")
        self.wait_healthy()

    def _view(self, port: int) -> list[list[str]]:
        """`CLUSTER NODES` as seen by the node on `port`, one split line per node."""
        return [line.split() for line in _redis_cli(port, "cluster", "nodes").splitlines()]

    def _healthy(self) -> bool:
        for node in self.nodes:
            if node.proc is None:
                return False
            if "cluster_state:ok" not in _redis_cli(node.port, "cluster", "info"):
                return False
        view = self._view(self.nodes[0].port)
        if len(view) != len(self.nodes):
            return False
        masters = [n for n in view if "master" in n[2]]
        if len(masters) != self.masters:
            return False
        for line in view:
            flags = line[2]
            if "fail" in flags or "handshake" in flags or line[7] != "connected":
                return False
        # Every master has its replicas, each with its link up.
        for master in masters:
            mine = [n for n in view if n[3] == master[0]]
            if len(mine) != self.replicas:
                return False
        for node in self.nodes:
            info = _redis_info(node.port)
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, seconds: float = HEALTHY) -> None:
        """Return once every node is up, in a cluster whose every master has its replicas."""
        _wait(self._healthy, "a healthy Redis Cluster", seconds)

    def master_of(self, key: str) -> int:
        """The index of the node that is the master of `key`'s hash slot now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())  # computed here: node 0 may be the one killed
        for node in self.nodes:
            if node.proc is None:
                continue
            for line in self._view(node.port):
                if "master" not in line[2] or "fail" in line[2]:
                    continue
                for part in line[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        port = int(line[1].split("@")[0].rpartition(":")[2])
                        return next(i for i, n in enumerate(self.nodes) if n.port == port)
            break
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, i: int) -> None:
        """SIGKILL node `i`."""
        self.nodes[i].kill()

    def wait_replicated(self, key: str, seconds: float = HEALTHY) -> None:
        """Return once the replicas of `key`'s slot master hold everything it has
        written so far. Replication is asynchronous: what a test sets up just
        before it kills that master is otherwise lost with it now and then."""
        port = self.nodes[self.master_of(key)].port
        target = int(_redis_info(port)["master_repl_offset"])

        def caught_up() -> bool:
            offsets = [
                int(dict(kv.split("=", 1) for kv in value.split(","))["offset"])
                for name, value in _redis_info(port).items()
                if name.startswith("slave") and name[5:].isdigit()
            ]
            return len(offsets) >= self.replicas and min(offsets) >= target

        _wait(caught_up, "the replicas of the slot's master caught up", seconds)

    def heal(self) -> None:
        """Restart the killed nodes (each rejoins as a replica) and wait until healthy."""
        _start_stopped(self.nodes)
        self.wait_healthy()

    def close(self) -> None:
        _close_all(self.nodes)
