"""Real servers for the tests: started on free loopback ports, never shared.

Each `ServerProcess` runs one binary in its own temporary directory. Tests
that need the server to go away and come back call `stop()` / `start()`;
the port stays the same so clients can reconnect. `pause()` / `resume()`
freeze and thaw the process (SIGSTOP / SIGCONT): its sockets stay open but
nothing answers, as with a server stuck in a long pause.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

__all__ = [
    "ServerProcess",
    "free_port",
    "postgres_server",
    "redis_argv",
    "require_binary",
    "serving",
]


class _Startable(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=_Startable)


def serving(server: S) -> Iterator[S]:
    """Start `server` (a process or a cluster), yield it, close it: the body of a
    session fixture (`yield from serving(NatsCluster(3))`)."""
    try:
        server.start()
        yield server
    finally:
        server.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services_required() -> bool:
    return os.environ.get("MICROSTD_REQUIRE_SERVICES", "") not in {"", "0", "false"}


def require_binary(name: str, *, hint: str) -> str:
    """The path of `name`, or skip the test (fail under MICROSTD_REQUIRE_SERVICES=1)."""
    found = shutil.which(name)
    if found is None:
        # Debian's postgresql package keeps initdb and postgres in a versioned dir.
        versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        extras = ["/usr/sbin", "/usr/local/sbin", str(Path(sys.executable).parent)]
        for extra in [*extras, *map(str, versioned)]:
            candidate = Path(extra) / name
            if candidate.exists():
                found = str(candidate)
                break
    if found is None:
        reason = f"{name} not installed ({hint})"
        if services_required():
            pytest.fail(f"MICROSTD_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return found


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:  # loopback only
            return 200 <= resp.status < 500
    except OSError:
        return False


class ServerProcess:
    """One server binary on one loopback port, restartable."""

    def __init__(
        self,
        name: str,
        argv_for: Callable[[int, Path], list[str]],
        *,
        ready: Callable[[int], bool] | None = None,
        extra_ports: int = 0,
        setup: Callable[[Path], None] | None = None,
        stop_signal: int = signal.SIGTERM,
        group: bool = False,
        env_for: Callable[[int, Path], dict[str, str]] | None = None,
        session: bool = False,
        after_stop: Callable[[ServerProcess], None] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        """`env_for` gives the server's environment; `session` runs it in a session
        of its own and signals the whole process group (a launcher script whose
        server is a child); `after_stop` cleans up what outlives the server
        (RabbitMQ's epmd); `start_timeout` is how long `start()` waits."""
        self.name = name
        self.port = free_port()
        self.extra = [free_port() for _ in range(extra_ports)]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"microstd-{name}-"))
        self._argv_for = argv_for
        self._ready = ready or _port_open
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        # Run once, before the first start (PostgreSQL's initdb).
        self._setup = setup
        self._stop_signal = stop_signal
        # A server of several processes (PostgreSQL: one per connection, each in a
        # session of its own): pause / resume / kill reach the server's children too.
        self._group = group
        self._env_for = env_for
        self._session = session
        self._after_stop = after_stop
        self.start_timeout = start_timeout

    def start(self, timeout: float | None = None) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        if self._setup is not None:
            setup, self._setup = self._setup, None
            setup(self.workdir)
        env = self._env_for(self.port, self.workdir) if self._env_for is not None else None
        # The child keeps its own descriptor; ours is closed at once.
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self._argv_for(self.port, self.workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=self._session,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self._ready(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but stops answering."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGSTOP)
            self.paused = True
            # kill() returns before the signal has stopped every thread: a server
            # thread already running on the other core can still answer a request
            # sent right after (seen with nats-server, about 1 pause in 3). A
            # paused server is one whose threads are all in the stopped state.
            pids = [self.proc.pid]
            if self._group or self._session:
                pids += _children(self.proc.pid)
            _wait_stopped(pids)

    def resume(self) -> None:
        """SIGCONT: a paused server carries on where it stopped."""
        if self.proc is not None and self.paused:
            self._signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        if self.proc is not None and self.proc.poll() is None:
            if self._session:
                self._signal(self._stop_signal)
            else:
                self.proc.send_signal(self._stop_signal)
            try:
                self.proc.wait(30 if self._session else 5)
            except subprocess.TimeoutExpired:
                if self._session:
                    self._signal(signal.SIGKILL)
                else:
                    self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self._session:
            self._signal(signal.SIGKILL)  # whatever of the session is left
        self.proc = None
        if self._after_stop is not None:
            self._after_stop(self)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a clean shutdown."""
        if self.proc is not None:
            children = _children(self.proc.pid) if self._group else []
            self._signal(signal.SIGKILL)
            self.proc.wait(5)
            if self._session:
                # The launcher is gone, but the server it ran (RabbitMQ's Erlang VM)
                # may still hold the port for a moment: a start() then would find
                # the port open and return before the new server is up.
                _wait_group_gone(self.proc.pid)
            # Its children too must be gone before a restart (PostgreSQL refuses to
            # start while a process of the old server holds its shared memory).
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() for pid in children):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        self.proc = None
        self.paused = False
        if self._after_stop is not None:
            self._after_stop(self)

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        if self._session:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
            return
        targets = [self.proc.pid]
        if self._group:
            targets += _children(self.proc.pid)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no process of process group `pgid` is left (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.02)


def _wait_stopped(pids: list[int], timeout: float = 10.0) -> None:
    """Return once every thread of `pids` is stopped (state T in /proc), dead, or gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_stopped(pid) for pid in pids):
            return
        time.sleep(0.001)
    raise RuntimeError(f"processes {pids} did not stop within {timeout}s of SIGSTOP")


def _stopped(pid: int) -> bool:
    tasks = Path(f"/proc/{pid}/task")
    try:
        stats = [(task / "stat").read_text() for task in tasks.iterdir()]
    except OSError:  # gone, or no /proc (then there is nothing to wait for)
        return True
    # The state is the first field after the parenthesised command name.
    return all(stat.rsplit(")", 1)[1].split()[0] in "tTZX" for stat in stats)


def _children(parent: int) -> list[int]:
    """The pids whose parent is `parent` (from /proc; empty where there is none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(entry.name))
    return found


def redis_server(*, appendonly: bool = False) -> ServerProcess:
    """Redis without persistence, or with an append-only file synced on every write
    (`appendonly=True`: every acknowledged write survives a kill of the process)."""
    binary = require_binary("redis-server", hint="apt-get install redis-server")
    return ServerProcess(
        "redis",
        lambda port, d: redis_argv(
            binary,
            port,
            d,
            appendonly=appendonly,
            # "always": each write is on disk before its reply. The default
            # "everysec" may hold a write back while a background fsync runs,
            # and a kill then loses up to two seconds of acknowledged writes.
            more=["--appendfsync", "always" if appendonly else "everysec"],
        ),
    )


def redis_argv(
    binary: str, port: int, d: Path, *, appendonly: bool = False, more: list[str] | None = None
) -> list[str]:
    """redis-server on loopback port `port` with directory `d`, no RDB snapshots, an
    append-only file only if `appendonly`; then the `more` options."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        str(d),
        *(more or []),
    ]


def nats_server() -> ServerProcess:
    binary = require_binary("nats-server", hint="apt-get install nats-server")
    return ServerProcess(
        "nats",
        lambda port, d: [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(d / "js")],
    )


def etcd_server() -> ServerProcess:
    binary = require_binary("etcd", hint="apt-get install etcd-server")

    def argv(port: int, d: Path) -> list[str]:
        peer = f"http://127.0.0.1:{server.extra[0]}"
        client = f"http://127.0.0.1:{port}"
        return [
            binary,
            "--name",
            "test",
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
            f"test={peer}",
            "--log-level",
            "warn",
        ]

    server = ServerProcess(
        "etcd",
        argv,
        extra_ports=1,
        ready=lambda port: _http_ok(f"http://127.0.0.1:{port}/health"),
    )
    return server


def s3_server() -> ServerProcess:
    require_binary("moto_server", hint="pip install 'moto[server]'")
    # moto's server, wrapped so conditional writes are atomic as on S3 (see _s3_server.py).
    launcher = str(Path(__file__).with_name("_s3_server.py"))
    return ServerProcess(
        "moto-s3",
        lambda port, d: [sys.executable, launcher, "-H", "127.0.0.1", "-p", str(port)],
        ready=lambda port: _http_ok(f"http://127.0.0.1:{port}/moto-api/"),
    )


def rabbitmq_server() -> ServerProcess:
    """A private RabbitMQ node: its own node name, ports, data, logs, cookie and epmd.

    The Debian launcher at /usr/sbin switches to the rabbitmq user; the script
    behind it runs the node as us. Everything the node reads comes from the
    environment and files in its workdir, so it shares nothing with a system
    RabbitMQ (or another test run) on this machine. Slow to start (~15 s):
    one per test session.
    """
    binary = require_binary("rabbitmq-server", hint="apt-get install rabbitmq-server")
    direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    launcher = str(direct) if direct.exists() else binary

    def argv(port: int, d: Path) -> list[str]:
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{port}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 10MB\n"
            "vm_memory_high_watermark.absolute = 1GB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (d / "enabled_plugins").write_text("[].\n")
        cookie = d / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(os.urandom(16).hex())
            cookie.chmod(0o400)
        return [launcher]

    def env(port: int, d: Path) -> dict[str, str]:
        dist, epmd = server.extra
        return {
            **os.environ,
            "HOME": str(d),
            "RABBITMQ_NODENAME": f"microstd{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist),
            "ERL_EPMD_PORT": str(epmd),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
        }

    def stop_epmd(proc: ServerProcess) -> None:
        # The node starts an epmd daemon on its private port; it outlives the node.
        epmd = shutil.which("epmd")
        if epmd is not None:
            subprocess.run(
                [epmd, "-kill"],
                env={**os.environ, "ERL_EPMD_PORT": str(proc.extra[1])},
                capture_output=True,
                timeout=10,
                check=False,
            )

    server = ServerProcess(
        "rabbitmq",
        argv,
        extra_ports=2,
        env_for=env,
        session=True,
        after_stop=stop_epmd,
        start_timeout=120.0,
    )
    return server


#: The unprivileged user PostgreSQL runs as when the tests run as root (it refuses root).
POSTGRES_USER = os.environ.get("MICROSTD_POSTGRES_USER", "nobody")


def _as_postgres_user(argv: list[str]) -> list[str]:
    """`argv` run as `POSTGRES_USER` when we are root (setpriv execs: no extra process,
    so a signal to the child reaches the server itself)."""
    if os.geteuid() != 0:
        return argv
    import pwd

    entry = pwd.getpwnam(POSTGRES_USER)
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def _give_to_postgres_user(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(POSTGRES_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def postgres_server() -> ServerProcess:
    """A private PostgreSQL cluster (initdb in the server's temp dir, trust auth for the
    `postgres` user on loopback; fsync off: a killed server keeps every commit, only an
    OS crash would lose some), as an unprivileged user when run as root.
    SIGINT is its fast shutdown: SIGTERM would wait for every client to leave."""
    initdb = require_binary("initdb", hint="apt-get install postgresql")
    postgres = require_binary("postgres", hint="apt-get install postgresql")

    def setup(d: Path) -> None:
        _give_to_postgres_user(d)
        (d / "sock").mkdir()
        _give_to_postgres_user(d / "sock")
        subprocess.run(
            _as_postgres_user(
                [
                    initdb,
                    "-D",
                    str(d / "data"),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
            cwd=d,
        )

    def argv(port: int, d: Path) -> list[str]:
        return _as_postgres_user(
            [
                postgres,
                "-D",
                str(d / "data"),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(d / "sock"),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ]
        )

    return ServerProcess(
        "postgres",
        argv,
        ready=_postgres_ready,
        setup=setup,
        stop_signal=signal.SIGINT,
        group=True,
    )


def _postgres_ready(port: int) -> bool:
    """True once the server accepts a startup message (the port opens before that)."""
    if not _port_open(port):
        return False
    import struct

    # A startup packet for user postgres: the server answers 'R' (auth) once it is
    # ready, and an 'E' error ("the database system is starting up") before.
    body = struct.pack("!i", 196608) + b"user\x00postgres\x00\x00"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(struct.pack("!i", len(body) + 4) + body)
            return s.recv(1)[:1] == b"R"
    except OSError:
        return False
