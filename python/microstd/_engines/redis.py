"""Redis: the one client setup every area uses (redis-py's asyncio client).

    endpoint, rest = RedisEndpoint.from_url(parsed, options, area=("prefix",))
    conn = await acquire(endpoint)          # shared per URL and settings, per event loop
    with errors(endpoint, "store read"):
        value = await conn.client.get(b"k")
    await release(conn)

What it owns:

- **URL**: ``redis://[[user]:password@]host[:port][/db][?options]``
  (``rediss://`` for TLS, ``unix:///path?db=N`` for a socket;
  ``redis+sentinel://`` in `microstd._engines.redis_sentinel`,
  ``redis+cluster://`` in `microstd._engines.redis_cluster`). The password
  never appears in a repr, a log line or an error message (`endpoint.redacted`).
  Query options other than the engine's and the area's are redis-py's own
  (``?ssl_cert_reqs=none``) and are passed through to it.
- **Timeouts** (seconds; a query option or a keyword option overrides them):
  ``connect_timeout=5`` to open a connection (TCP, TLS, AUTH, HELLO);
  ``timeout=5`` for any one command, from sending it to its reply
  (``socket_timeout`` is accepted as another name for it);
  ``ping_interval=10``: a pub/sub connection silent for that long is sent a
  PING, and one that does not answer within ``timeout`` is declared lost.
  redis-py 5 has no timeouts by default, so a frozen server would hang every
  caller for ever; here nothing waits longer than these.
- **No automatic retry of writes.** redis-py retries a failed command by
  default; a retried write may be applied twice (a conditional write would then
  report a `Conflict` for its own first attempt), so a failed write is reported
  once, as `ConnectionFailed`, and the *next* call opens a new connection. A
  read (`RedisConnection.read`) found on a connection the network reset is
  tried once more on a new one, so the first read after a cut succeeds.
- **Error mapping** (`errors`): connection refused or lost, a timeout, an
  unreachable host, a server still loading its data or a read-only replica ->
  `ConnectionFailed`; refused credentials -> `ConnectionFailed` saying so; any
  other error reply -> `MicrostdError` naming the operation. Callers that
  expect a particular reply (WRONGTYPE) catch `redis.exceptions.ResponseError`
  inside the block first.
- **Shared connections**: one `redis.asyncio.Redis` (one pool) per endpoint
  per event loop, reference counted by `acquire` / `release`.
- **Pub/sub with liveness** (`Subscriber`): subscriptions are confirmed
  before `subscribe` returns, and a silent connection is noticed (above).
  After a lost connection the next `get` reconnects and redis-py subscribes
  again to everything; messages published meanwhile are lost (pub/sub is
  at most once). On a cluster the next `get` subscribes again on a node of
  the current slot map (the lost node may be gone for good).

Ambiguity: a command that raised `ConnectionFailed` after it was sent (a
timeout, a connection lost while waiting for the reply) may have been
executed by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from microstd._backends import ParsedURL, parse_url, redact, redact_text
from microstd._engines import redis_cluster
from microstd._engines._common import Shared, Timeouts, split_options
from microstd._engines.redis_cluster import ClusterTarget
from microstd._engines.redis_sentinel import SCHEMES as SENTINEL_SCHEMES
from microstd._engines.redis_sentinel import SentinelTarget
from microstd._engines.redis_sentinel import aclose as close_client
from microstd._engines.redis_sentinel import describe as describe_sentinel
from microstd.errors import ConnectionFailed, InvalidArgument, MicrostdError, NotSupported

__all__ = [
    "RedisConnection",
    "RedisEndpoint",
    "Subscriber",
    "acquire",
    "errors",
    "release",
]

T = TypeVar("T")

#: The engine's own options, taken out of the URL before redis-py sees it.
ENGINE_OPTIONS = (*Timeouts.OPTIONS, "socket_timeout")

# Replies that mean "this server cannot serve you right now", not "your request is wrong".
_UNAVAILABLE_REPLIES = ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
# The same, as redis-py raises them (its parser strips the code from the text);
# `ClusterError` is also "TTL exhausted" (redirected too many times).
_UNAVAILABLE_ERRORS = (
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.SlotNotCoveredError,
    rexc.ClusterError,
)


@dataclass(frozen=True)
class RedisEndpoint:
    """Where a Redis server is and how long to wait for it.

    `url` is what redis-py gets (the engine's and the area's options removed);
    `redacted` is safe to show. Equal endpoints share one connection pool.
    """

    url: str
    redacted: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    decode_responses: bool = False
    #: Set for ``redis+sentinel://``: the master is found through these Sentinels,
    #: and `url` holds only the data nodes' credentials, database and options.
    sentinel: SentinelTarget | None = None
    #: Set for ``redis+cluster://`` (microstd._engines.redis_cluster): the nodes to
    #: ask for the slot map; `url` holds only the credentials and options.
    cluster: ClusterTarget | None = None

    @classmethod
    def from_url(
        cls,
        url: ParsedURL | str,
        options: Mapping[str, Any] | None = None,
        *,
        area: Iterable[str] = (),
        decode_responses: bool = False,
    ) -> tuple[RedisEndpoint, dict[str, Any]]:
        """The endpoint a URL names, and the area's options.

        The engine options (`connect_timeout`, `timeout` / `socket_timeout`,
        `ping_interval`) come from the query or `options` (keywords win). The
        options named in `area` are taken out of the query and returned, with
        every keyword option that is not the engine's, for the area to use or
        refuse; the rest of the query stays in the URL for redis-py.
        """
        parsed = url if isinstance(url, ParsedURL) else parse_url(url)
        options = dict(options or {})
        sentinel: SentinelTarget | None = None
        cluster: ClusterTarget | None = None
        shown = ""
        if parsed.scheme in SENTINEL_SCHEMES:
            shown = redact(parsed.raw.split("?", 1)[0])
            sentinel, parsed = SentinelTarget.from_url(parsed, options)
        elif parsed.scheme in redis_cluster.SCHEMES:
            shown = redact(parsed.raw.split("?", 1)[0])
            cluster, parsed = ClusterTarget.from_url(parsed)
        else:
            parsed.single_server(
                "redis://",
                "for Redis Sentinel use redis+sentinel://host1,host2/SERVICE/DB,"
                " for Redis Cluster redis+cluster://host1,host2",
            )
        engine, query = split_options(parsed.query, options, ENGINE_OPTIONS)
        if engine.get("timeout") is None and engine.get("socket_timeout") is not None:
            engine["timeout"] = engine["socket_timeout"]
        timeouts = Timeouts.from_options(engine)
        area_names = set(area)
        mine, query = split_options(query, {}, area_names)
        _check_client_options(query, (*ENGINE_OPTIONS, *area_names), cluster=cluster is not None)
        for name in ENGINE_OPTIONS:
            options.pop(name, None)
        mine.update(options)
        base = parsed.raw.split("?", 1)[0]
        if query:
            base += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        endpoint = cls(base, shown or redact(base), timeouts, decode_responses, sentinel, cluster)
        return endpoint, mine

    def __repr__(self) -> str:
        return f"RedisEndpoint({self.redacted!r})"

    def refuse_cluster(self, area: str, why: str) -> None:
        """Raise `NotSupported` if this endpoint is a Redis Cluster, which `area` does
        not support (`why` says which of its operations spans hash slots)."""
        if self.cluster is not None:
            raise NotSupported(
                f"redis+cluster:// (Redis Cluster) is not supported for {area}: {why}."
                " Use redis:// or redis+sentinel:// for it (docs/clusters.md)"
            )

    def client(self) -> aioredis.Redis:
        """A new, unshared redis-py client for this endpoint (most callers want `acquire`)."""
        t = self.timeouts
        common: dict[str, Any] = {
            "socket_connect_timeout": t.connect,
            "socket_timeout": t.request,
            # One attempt: see the module docstring on why nothing is retried.
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "decode_responses": self.decode_responses,
        }
        if self.sentinel is not None:
            client: aioredis.Redis = self.sentinel.client(self.url, common)
            return client
        if self.cluster is not None:
            # A RedisCluster: the same commands, routed by hash slot.
            cluster_client: aioredis.Redis = self.cluster.client(self.url, common)
            return cluster_client
        return aioredis.Redis.from_url(self.url, **common)


@functools.cache
def _client_options() -> frozenset[str]:
    """The query options redis-py's URL parser hands on to its connections and pool."""
    from redis.asyncio import connection as rconn

    names = set(getattr(rconn, "URL_QUERY_ARGUMENT_PARSERS", {}))
    for cls in (
        rconn.AbstractConnection,
        rconn.Connection,
        rconn.SSLConnection,
        rconn.UnixDomainSocketConnection,
        rconn.ConnectionPool,
    ):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                names.add(name)
    return frozenset(names)


def _check_client_options(
    query: Mapping[str, str], ours: Iterable[str], *, cluster: bool = False
) -> None:
    """Refuse a query option that is neither microstd's nor redis-py's (its
    `RedisCluster`'s for a `cluster` URL).

    redis-py passes unknown URL options on to its connection class, so a typo
    (`?tiemout=1`) would only fail at the first command, as a TypeError from
    redis-py's internals; here it is an `InvalidArgument` when the URL is opened.
    """
    theirs = redis_cluster.client_options() if cluster else _client_options()
    unknown = sorted(set(query) - theirs)
    if unknown:
        known = sorted({*ours, *theirs})
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        scheme, whose = (
            ("redis+cluster", "redis-py's RedisCluster's") if cluster else ("redis", "redis-py's")
        )
        raise InvalidArgument(
            f"unknown {scheme}:// option(s): {', '.join(unknown)}"
            f" (neither microstd's nor {whose}).{hint}"
        )


def _broken(exc: BaseException | None) -> bool:
    """True for a connection found reset or closed (worth one more try for a read);
    false for a timeout (one more would wait as long again) or refused credentials."""
    if isinstance(exc, (rexc.TimeoutError, rexc.AuthenticationError, rexc.AuthorizationError)):
        return False
    return isinstance(exc, (rexc.ConnectionError, ConnectionError))


def _fail(endpoint: RedisEndpoint, what: str, exc: BaseException, why: str) -> NoReturn:
    detail = describe_sentinel(exc) or redact_text(str(exc)) or type(exc).__name__
    raise ConnectionFailed(f"{what}: Redis at {endpoint.redacted} {why}: {detail}") from exc


@contextlib.contextmanager
def errors(endpoint: RedisEndpoint, what: str) -> Iterator[None]:
    """Translate redis-py's exceptions raised in the block into `microstd.errors`.

    `what` names the operation ("store write") so the message says what failed.
    """
    try:
        yield
    except MicrostdError:
        # Already ours (ConnectionFailed is also an OSError): never wrapped twice.
        raise
    except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
        _fail(endpoint, what, exc, "refused the credentials")
    except (rexc.ConnectionError, rexc.TimeoutError, asyncio.TimeoutError, OSError) as exc:
        _fail(endpoint, what, exc, "unreachable")
    except _UNAVAILABLE_ERRORS as exc:
        # A cluster without a master for the slot (yet), a slot being migrated, a
        # replica that no longer takes writes, too many redirections.
        _fail(endpoint, what, exc, "cannot serve now")
    except rexc.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            _fail(endpoint, what, exc, "cannot serve now")
        raise MicrostdError(f"{what}: Redis answered an error: {redact_text(str(exc))}") from exc
    except rexc.RedisClusterException as exc:
        # "Redis Cluster cannot be connected": no node of the slot map (or of the
        # URL) answered, raised from the connection error. Unreachable, as for one
        # server, so callers that retry on ConnectionFailed retry this too.
        if isinstance(exc.__cause__, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
            _fail(endpoint, what, exc, "unreachable")
        raise MicrostdError(f"{what}: Redis client error: {redact_text(str(exc))}") from exc
    except rexc.RedisError as exc:
        raise MicrostdError(f"{what}: Redis client error: {redact_text(str(exc))}") from exc


class RedisConnection:
    """A shared redis-py client for one endpoint: `client` and the endpoint's `errors`."""

    def __init__(self, endpoint: RedisEndpoint) -> None:
        self.endpoint = endpoint
        self.client = endpoint.client()
        #: Set once the last user released it and its client was closed.
        self.closed = False

    def __repr__(self) -> str:
        return f"RedisConnection({self.endpoint.redacted!r})"

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """`errors(self.endpoint, what)`."""
        return errors(self.endpoint, what)

    async def ping(self, what: str = "connect") -> None:
        """Check the server answers; `ConnectionFailed` within the timeouts if not."""
        await self.read(what, self.client.ping)

    async def read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()` for a read (a call with no effect), under `errors`.

        A pooled connection the network reset while it sat idle fails on its
        next use; a read that fails that way (reset or closed, not a timeout) is
        tried once more on a new connection, so the first read after a cut
        succeeds. Writes are never tried twice (see the module docstring).
        """
        try:
            with self.errors(what):
                return await call()
        except ConnectionFailed as exc:
            if not _broken(exc.__cause__):
                raise
        # The idle connections went through the same network: drop them all, so
        # the second try opens a new one. (A cluster client has a pool per node and
        # has already dropped the failed node's, and reloads the slot map.)
        if self.endpoint.cluster is None:
            with contextlib.suppress(Exception):
                await self.client.connection_pool.disconnect(inuse_connections=False)
        with self.errors(what):
            return await call()

    def subscriber(self) -> Subscriber:
        """A new pub/sub connection (its own socket, not from the shared pool's idle set)."""
        return Subscriber(self)


_shared: Shared[RedisConnection] = Shared()


async def acquire(endpoint: RedisEndpoint) -> RedisConnection:
    """The shared connection for `endpoint` on the running loop (no I/O yet: the first
    command connects). Pair every call with `release`."""

    async def open() -> RedisConnection:
        return RedisConnection(endpoint)

    return await _shared.acquire(endpoint, open)


async def release(conn: RedisConnection) -> None:
    """Give back a connection from `acquire`; the last user closes the pool. Idempotent
    per connection object only in the sense that each `acquire` needs one `release`."""

    async def close(c: RedisConnection) -> None:
        c.closed = True
        await close_client(c.client)

    await _shared.release(conn.endpoint, close)


class Subscriber:
    """One pub/sub connection that notices a lost or silent server.

    `subscribe` / `psubscribe` return once Redis has confirmed every channel;
    `get(timeout)` returns the next "message" / "pmessage" (redis-py's dict) or
    None when none came within `timeout`; it raises `ConnectionFailed` when the
    connection is lost, or stays silent for `ping_interval` and then does not
    answer a PING within the request timeout. The next `get` after a failure
    reconnects, and redis-py subscribes again to every channel and pattern.
    """

    def __init__(self, conn: RedisConnection) -> None:
        self._endpoint = conn.endpoint
        self._conn = conn
        self._client: Any = conn.client
        # On a cluster: redis-py's ClusterPubSub, which connects to the master of
        # the first channel's hash slot (a store's channel carries the store's
        # hash tag: its keyspace notifications come from that master). Classic
        # PUBLISH reaches every node of a cluster, so any node would do for the rest.
        self._pubsub: Any = conn.client.pubsub()
        # Cluster only: the channels and patterns to subscribe again on another
        # node, after the connection to this one was lost (redis-py would only
        # ever reconnect to the same node, which may be gone for good).
        self._move: tuple[list[Any], list[Any]] | None = None
        self._backlog: deque[dict[str, Any]] = deque()
        self._heard = time.monotonic()
        self._ping_sent: float | None = None
        self._confirmations: dict[bytes, int] = {}
        #: Times the connection was found lost (a reader may report each one).
        self.failures = 0

    @property
    def subscribed(self) -> bool:
        """True while subscribed to at least one channel or pattern."""
        if self._move is not None and any(self._move):
            return True
        return bool(self._pubsub.subscribed)

    def _check_open(self, what: str) -> None:
        """`ConnectionFailed` once the shared connection was closed. Nothing may be
        sent then: on a cluster, redis-py's pub/sub opens the closed client again
        for any command it sends (a PING, say), and that client then stays open
        (a subscription's reader still at work when its owner closed)."""
        if self._conn.closed:
            raise ConnectionFailed(
                f"{what}: the connection to Redis at {self._endpoint.redacted} was closed"
            )

    async def subscribe(self, *channels: str | bytes, confirm: bool = True) -> None:
        """Subscribe to `channels`; with `confirm`, return once Redis has confirmed each
        one (leave it false when a reader task of its own consumes the confirmations)."""
        self._check_open("subscribe")
        with errors(self._endpoint, "subscribe"):
            await self._pubsub.subscribe(*channels)
        if confirm:
            await self._confirmed("subscribe", channels)

    async def psubscribe(self, *patterns: str | bytes, confirm: bool = True) -> None:
        """Subscribe to glob `patterns`; `confirm` as for `subscribe`."""
        self._check_open("subscribe")
        with errors(self._endpoint, "subscribe"):
            await self._pubsub.psubscribe(*patterns)
        if confirm:
            await self._confirmed("psubscribe", patterns)

    async def unsubscribe(self, *channels: str | bytes) -> None:
        self._check_open("unsubscribe")
        with errors(self._endpoint, "unsubscribe"):
            await self._pubsub.unsubscribe(*channels)

    async def punsubscribe(self, *patterns: str | bytes) -> None:
        self._check_open("unsubscribe")
        with errors(self._endpoint, "unsubscribe"):
            await self._pubsub.punsubscribe(*patterns)

    async def ping(self, message: str | None = None) -> None:
        """Send a PING on the pub/sub connection; its answer arrives as a "pong" message
        (`read`) after everything the server sent before it."""
        self._check_open("subscription")
        with errors(self._endpoint, "subscription"):
            await self._pubsub.ping(message)

    async def _confirmed(self, kind: str, names: tuple[str | bytes, ...]) -> None:
        wanted = {n.encode() if isinstance(n, str) else n for n in names}
        deadline = time.monotonic() + self._endpoint.timeouts.request
        while wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionFailed(
                    f"subscribe: Redis at {self._endpoint.redacted} did not confirm in time"
                )
            msg = await self.read(left)
            if msg is None:
                continue
            if msg.get("type") == kind:
                channel = msg.get("channel")
                if isinstance(channel, str):
                    channel = channel.encode()
                wanted.discard(channel)
            elif msg.get("type") in ("message", "pmessage"):
                self._backlog.append(msg)

    async def read(self, timeout: float) -> dict[str, Any] | None:
        """The next raw message of any kind ("message", "pmessage", "subscribe",
        "pong", ...) within `timeout`, or None; `ConnectionFailed` when the
        connection is lost or fails the liveness check. Only one task may read."""
        self._check_open("subscription")
        if self._move is not None:
            try:
                await self._moved()
            except ConnectionFailed:
                self._lost()
                raise
        try:
            with errors(self._endpoint, "subscription"):
                msg = await self._pubsub.get_message(
                    ignore_subscribe_messages=False, timeout=max(0.0, timeout)
                )
        except ConnectionFailed:
            self._lost()
            raise
        now = time.monotonic()
        if msg is not None:
            self._heard, self._ping_sent = now, None
            return dict(msg)
        t = self._endpoint.timeouts
        if self._ping_sent is not None and now - self._ping_sent > t.request:
            self._lost()
            await self._drop()
            raise ConnectionFailed(
                f"subscription: Redis at {self._endpoint.redacted} did not answer a PING"
                f" within {t.request:g}s"
            )
        if self._ping_sent is None and now - self._heard >= t.ping_interval:
            self._check_open("subscription")  # closed while the read waited
            try:
                with errors(self._endpoint, "subscription"):
                    await self._pubsub.ping()
            except ConnectionFailed:
                self._lost()
                raise
            self._ping_sent = now
        return None

    def _lost(self) -> None:
        self.failures += 1
        self._ping_sent = None
        self._heard = time.monotonic()
        if self._endpoint.cluster is not None and self._move is None:
            old = self._pubsub
            self._move = (list(old.channels), list(old.patterns))

    async def _moved(self) -> None:
        """Cluster: subscribe again, on a node of the current slot map, to what the
        lost connection was subscribed to (`ConnectionFailed` if not yet possible)."""
        assert self._move is not None
        channels, patterns = self._move
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._pubsub = self._client.pubsub()
        with errors(self._endpoint, "subscription"):
            # The node may be gone for good: ask the cluster where the slots are now.
            await self._client.nodes_manager.initialize()
            if channels:
                await self._pubsub.subscribe(*channels)
            if patterns:
                await self._pubsub.psubscribe(*patterns)
        self._move = None

    async def _drop(self) -> None:
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next published message within `timeout` seconds, or None."""
        if self._backlog:
            return self._backlog.popleft()
        deadline = time.monotonic() + timeout
        t = self._endpoint.timeouts
        while True:
            if not self.subscribed:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                return None
            left = deadline - time.monotonic()
            # Wake at least often enough to send (and time out) the liveness PING.
            step = min(max(0.0, left), t.ping_interval, t.request)
            msg = await self.read(step)
            if msg is not None and msg.get("type") in ("message", "pmessage"):
                return msg
            if deadline - time.monotonic() <= 0:
                return None

    async def aclose(self) -> None:
        """Close the pub/sub connection; idempotent, never raises."""
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
