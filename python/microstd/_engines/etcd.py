"""etcd v3: the one client every area uses, through etcd's JSON gateway (aiohttp).

    endpoint, rest = EtcdEndpoint.from_url(parsed, options, area=("prefix",))
    client = await acquire(endpoint)         # one HTTP session per URL and settings, per loop
    answer = await client.call("kv/range", {"key": b64("a")}, what="registry lookup")
    async for result in client.watch({"key": b64("a/"), "range_end": prefix_end(b"a/")}): ...
    await release(client)

Why the gateway and not gRPC: the maintained Python etcd v3 clients are either
unmaintained or pin old protobuf / grpcio releases; the JSON gateway ships in
every etcd v3 server and aiohttp is already the `etcd` extra's only dependency.
Keys and values travel base64-encoded; int64 fields come back as strings.

What it owns:

- **URL**: ``etcd://[user:password@]host[:port][?options]`` (port 2379 by
  default); ``etcds://`` or ``?tls=1`` for HTTPS; ``http(s)://host:port`` is
  accepted as it is. A cluster is a host list,
  ``etcd://host1:2379,host2:2379,host3:2379`` (or a list of whole URLs, as
  for NATS); credentials and options apply to every member. With
  credentials the client authenticates (``/v3/auth/authenticate``) and sends
  the token with every request, asking for a new one when etcd says it
  expired. The password never appears in a repr, a log line or an error
  message (`endpoint.redacted`).
- **Timeouts** (seconds; a query option or a keyword option overrides them):
  ``connect_timeout=5`` to open a connection; ``timeout=5`` for any one
  request, from sending it to the end of its answer; ``ping_interval=10``: a
  watch stream silent for that long is checked with a status request on
  another connection, and a failed check ends the watch with `ConnectionFailed`
  (on a cluster: moves it to the next member). On a cluster,
  ``attempt_timeout`` (a third of `timeout` by default) bounds one attempt of
  a request on one member (see Members).
- **Error mapping** (`errors`, applied by `call` and `watch`): refused, lost or
  timed-out connections, an HTTP 5xx answer, gRPC codes "unavailable" and
  "deadline exceeded", an answer that is not a JSON object, a watch stream
  that ends -> `ConnectionFailed`; refused credentials -> `ConnectionFailed`
  saying so; any other error answer -> `EtcdAPIError` (a `MicrostdError`
  with the gRPC `code`), for the area to translate.
- **Shared sessions**: one aiohttp session per endpoint per event loop,
  reference counted by `acquire` / `release`.
- **Defensive reading**: the gateway's JSON is not trusted to have the
  documented shape; `field`, `int_field` and `kvs_of` report a missing or
  mistyped field as `ConnectionFailed`, never `KeyError`.

- **Members** (a URL naming several): the client sends every request to one
  member, picked at random at first (clients spread over the cluster; with
  ``randomize=0`` the first listed, a preferred nearby member say), and stays
  with it while it works. When it fails, the client moves on to the next
  member, and tries the request there too, within the request's time
  (``connect_timeout + timeout``, or the `timeout` given to `call`) when that
  is safe: always when the request certainly was not applied (the connection
  was refused; the member answered "no leader" or "too many requests"), and
  for an `idempotent` request whatever the failure (a timeout, a lost reply,
  "request timed out"); round after round, with a short pause once every
  member failed (a leader election). A request that is not idempotent and
  may have been applied raises `ConnectionFailed` at once (the next call goes
  to the next member). Requests carry etcd's "require leader" flag, so a
  member cut off from the quorum answers "no leader" at once instead of
  hanging.
- **Silent members** (frozen, or behind a partition that drops packets: no
  refusal, no reset, no answer): an `idempotent` request gives up on a member
  after ``attempt_timeout`` seconds, not the request's whole time, and goes
  to the next; the attempt time doubles each round, so a cluster that is
  only slow (a loaded machine, an election) still gets the time it needs,
  within the request's time. A request that is not idempotent gets the
  request's whole time on its member (abandoning it would only turn a slow
  answer into an ambiguous error). Lease grants are made safe to repeat by
  `grant_lease`, which picks the lease ID.
- **Watches** on a cluster resume on the next member when their stream is
  lost, from the revision after the last event delivered (the first stream
  starts from a revision read beforehand when the request names none), so
  no event is missed; at most a write made just before the watch started is
  delivered too. A stream on a silent member moves the same way as soon as
  any request of the client gives up on that member (its streams are closed
  then), or else when its own liveness check fails (``ping_interval``, then an
  attempt's time for the check); opening a stream also gets an attempt's time. A watch ends
  with `ConnectionFailed` once no member took it for as long as a request may
  take (``connect_timeout + timeout``).

Ambiguity: a request that raised `ConnectionFailed` after it was sent may
have been applied (a put, a lease grant, a transaction).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

from microstd import _deps
from microstd._backends import ParsedURL, option_flag, parse_url, redact, redact_text
from microstd._engines._common import Shared, Timeouts, seconds_option, split_options
from microstd.errors import ConnectionFailed, InvalidArgument, MicrostdError

__all__ = [
    "EtcdAPIError",
    "EtcdClient",
    "EtcdEndpoint",
    "EtcdStreamEnded",
    "acquire",
    "b64",
    "errors",
    "field",
    "int_field",
    "kvs_of",
    "prefix_end",
    "release",
    "txn_read",
    "unb64",
]

#: The engine's own options, taken out of the URL and the keyword options.
ENGINE_OPTIONS = (*Timeouts.OPTIONS, "attempt_timeout", "tls", "randomize")

#: The default `attempt_timeout` on a cluster: this fraction of `timeout`, so a
#: request abandoned on a frozen member still has two more tries' time left.
ATTEMPT_FRACTION = 1 / 3

# A watch stream's undecoded text is capped: a server (or something posing as
# one) sending bytes that never parse must not grow it without end.
MAX_WATCH_BUFFER = 16 * 1024 * 1024

# gRPC status codes etcd reports that mean "try again later", not "wrong request".
_UNAVAILABLE_CODES = {4, 8, 14}  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE
_UNAUTHENTICATED = 16
_FAILED_PRECONDITION = 9  # "lease already exists", among others
# Lease IDs are positive int64s.
_MAX_LEASE_ID = 2**63 - 1
# "Unavailable" answers given before the request was applied, so safe to send
# elsewhere even when it is not idempotent ("request timed out" is not one: the
# proposal may still commit).
_NOT_APPLIED = ("no leader", "too many requests", "not capable")
# gRPC metadata through the gateway: a member without a leader refuses at once
# (unary calls) or cancels the watch, instead of waiting for one.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
# After a round in which every member failed: a pause before the next (doubling).
_ROUND_PAUSE = 0.05
_ROUND_PAUSE_MAX = 0.5


class _Unauthenticated(ConnectionFailed):
    """etcd refused the credentials or the token (internal: a token is renewed once)."""


class EtcdStreamEnded(ConnectionFailed):
    """The server closed a watch stream (it does so only when it goes away)."""


class _Unavailable(ConnectionFailed):
    """An "unavailable" answer; `applied` is False when etcd refused the request
    before applying anything ("no leader"), None when it cannot be known."""

    def __init__(self, message: str, applied: bool | None) -> None:
        super().__init__(message)
        self.applied = applied


class _Canceled(ConnectionFailed):
    """The server canceled a watch (a compacted start revision, ...)."""


class EtcdAPIError(MicrostdError):
    """etcd refused a request (an error answer that is not "unavailable").

    `code` is the gRPC status code etcd gave (5: not found, 9: failed
    precondition, ...), or 0 when it gave none; areas translate these.
    """

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def b64(data: str | bytes) -> str:
    """Base64 text of `data` (text is encoded as UTF-8 first)."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(data: object) -> str:
    """The text of a base64 field; `ConnectionFailed` when it is not base64."""
    return unb64_bytes(data).decode(errors="replace")


def unb64_bytes(data: object) -> bytes:
    """The bytes of a base64 field; `ConnectionFailed` when it is not base64."""
    if not isinstance(data, str):
        raise ConnectionFailed("etcd answered a non-text base64 field")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise ConnectionFailed("etcd answered a field that is not base64") from None


def prefix_end(prefix: str | bytes) -> str:
    """The base64 `range_end` that makes a range cover every key starting with `prefix`."""
    end = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return b64(bytes(end))
        end.pop()
    return b64(b"\x00")  # every key: etcd reads "\0" as "to the end"


def field(data: object, *path: str) -> object:
    """`data[path[0]][path[1]]...`; `ConnectionFailed` when a step is missing."""
    for name in path:
        if not isinstance(data, dict) or name not in data:
            raise ConnectionFailed(f"etcd answered without {'.'.join(path)}")
        data = data[name]
    return data


def int_field(data: object, *path: str, default: int | None = None) -> int:
    """An int64 field (etcd sends them as strings); `default` when absent, if given."""
    try:
        value = field(data, *path)
    except ConnectionFailed:
        if default is None:
            raise
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConnectionFailed(f"etcd answered a non-integer {'.'.join(path)}")
    try:
        return int(value)
    except ValueError:
        raise ConnectionFailed(f"etcd answered a non-integer {'.'.join(path)}") from None


def kvs_of(data: object) -> list[dict[str, Any]]:
    """The key-value entries of a range answer; entries that are not objects are skipped."""
    kvs = data.get("kvs") if isinstance(data, dict) else None
    if not isinstance(kvs, list):
        return []
    return [kv for kv in kvs if isinstance(kv, dict)]


def txn_read(data: object) -> dict[str, Any] | None:
    """The first key read by a transaction answer's last response (a
    ``request_range`` closing the branch etcd took), or None when it read none."""
    responses = data.get("responses") if isinstance(data, dict) else None
    last = responses[-1] if isinstance(responses, list) and responses else None
    kvs = kvs_of(last.get("response_range") if isinstance(last, dict) else None)
    return kvs[0] if kvs else None


@dataclass(frozen=True)
class EtcdEndpoint:
    """Where an etcd server (or cluster) is: `base` is ``http(s)://host:port``, the
    first member; `bases` every member, in URL order. Equal endpoints share one
    HTTP session."""

    base: str
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    #: Every member's ``http(s)://host:port``; empty means ``(base,)``.
    bases: tuple[str, ...] = ()
    #: Start on a member picked at random (True) or on the first listed.
    randomize: bool = True
    #: Seconds one attempt of a request that is safe to repeat may take on one
    #: member of a cluster before it is sent to the next; None: `timeout` / 3.
    attempt_timeout: float | None = None

    @classmethod
    def from_url(
        cls,
        url: ParsedURL | str,
        options: Mapping[str, Any] | None = None,
        *,
        area: Iterable[str] = (),
    ) -> tuple[EtcdEndpoint, dict[str, Any]]:
        """The endpoint a URL names, and the area's options (the rest of the query
        and every keyword option that is not the engine's)."""
        del area  # the whole query is the area's
        parsed = url if isinstance(url, ParsedURL) else parse_url(url)
        options = dict(options or {})
        engine, rest = split_options(parsed.query, options, ENGINE_OPTIONS)
        for name in ENGINE_OPTIONS:
            options.pop(name, None)
        rest.update(options)
        tls = parsed.scheme in ("etcds", "https") or option_flag(engine.get("tls", False))
        if parsed.scheme not in ("etcd", "etcds", "http", "https"):
            raise InvalidArgument(f"not an etcd URL: {redact(parsed.raw)!r}")
        bases: list[str] = []
        for host, port in parsed.hosts:
            host = host or "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"  # IPv6 literal
            base = f"{'https' if tls else 'http'}://{host}:{port or 2379}"
            if base not in bases:
                bases.append(base)
        endpoint = cls(
            bases[0],
            Timeouts.from_options(engine),
            parsed.username,
            parsed.password,
            tuple(bases) if len(bases) > 1 else (),
            option_flag(engine.get("randomize", True)),
            None
            if engine.get("attempt_timeout") is None
            else seconds_option("attempt_timeout", engine["attempt_timeout"]),
        )
        return endpoint, rest

    @property
    def attempt(self) -> float:
        """Seconds one attempt on one member may take (see `attempt_timeout`)."""
        t = self.timeouts
        if self.attempt_timeout is not None:
            return min(self.attempt_timeout, t.connect + t.request)
        return t.request * ATTEMPT_FRACTION

    @property
    def members(self) -> tuple[str, ...]:
        """Every member's ``http(s)://host:port`` (one for a single server)."""
        return self.bases or (self.base,)

    def name_of(self, base: str) -> str:
        """`base` for messages: the user name at most, never the password."""
        if self.username is None:
            return base
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{quote(self.username, safe='')}:***@{rest}"

    @property
    def redacted(self) -> str:
        """The endpoint for reprs and logs: the user name at most, never the password."""
        first = self.name_of(self.base)
        more = [b.split("://", 1)[1] for b in self.members[1:]]
        return ",".join([first, *more])

    def __repr__(self) -> str:
        return f"EtcdEndpoint({self.redacted!r})"


def _broken(exc: BaseException | None) -> bool:
    """True for a kept-alive connection found reset or closed by the peer (worth one
    more try); false for a refused connection or a timeout."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError)):
        return False
    return isinstance(
        exc,
        (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError),
    )


def _unsent(exc: ConnectionFailed) -> bool:
    """True when the request certainly was not applied: no connection could be
    opened, or etcd refused it before applying it ("no leader")."""
    import aiohttp

    if isinstance(exc, _Unavailable):
        return exc.applied is False
    # aiohttp >= 3.10 tells a connect timeout (nothing sent) from a read timeout;
    # before it both are a ServerTimeoutError, which may follow an applied request,
    # so there only a refused connection counts as unsent.
    connect_timeout: tuple[type[BaseException], ...] = tuple(
        t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
    )
    return isinstance(exc.__cause__, (aiohttp.ClientConnectorError, *connect_timeout))


def _fail(
    endpoint: EtcdEndpoint, what: str, why: str, exc: BaseException | None, base: str | None = None
) -> NoReturn:
    where = endpoint.redacted if base is None else endpoint.name_of(base)
    raise ConnectionFailed(f"{what}: etcd at {where} {why}") from exc


@contextlib.contextmanager
def errors(endpoint: EtcdEndpoint, what: str, base: str | None = None) -> Iterator[None]:
    """Translate aiohttp's and the network's exceptions into `ConnectionFailed`
    (naming member `base` when given)."""
    import aiohttp

    try:
        yield
    except MicrostdError:
        # Already ours (ConnectionFailed is also an OSError): never wrapped twice.
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        detail = redact_text(str(exc)) or "no answer in time"
        _fail(endpoint, what, f"unreachable: {type(exc).__name__}: {detail}", exc, base)


def _error_answer(
    endpoint: EtcdEndpoint, what: str, status: int, data: object, base: str | None = None
) -> MicrostdError:
    message = data.get("message") or data.get("error") if isinstance(data, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    text = redact_text(str(message or data))[:200]
    where = endpoint.redacted if base is None else endpoint.name_of(base)
    if status >= 500 or code in _UNAVAILABLE_CODES:
        applied = False if any(m in text for m in _NOT_APPLIED) else None
        return _Unavailable(f"{what}: etcd at {where} unavailable: {text}", applied)
    if code == _UNAUTHENTICATED or status == 401:
        return _Unauthenticated(f"{what}: etcd at {where} refused the credentials")
    return EtcdAPIError(f"{what}: etcd answered HTTP {status}: {text}", code)


class EtcdClient:
    """JSON requests and watch streams to an etcd server or cluster (a shared
    aiohttp session); on a cluster, to one member at a time (`member`)."""

    def __init__(self, endpoint: EtcdEndpoint) -> None:
        _deps.require("aiohttp", "the etcd:// client", extra="etcd")
        import aiohttp

        self.endpoint = endpoint
        self._members = endpoint.members
        # A random first member spreads a service's clients over the cluster.
        self._current = random.randrange(len(self._members)) if endpoint.randomize else 0
        t = endpoint.timeouts
        self._timeout = aiohttp.ClientTimeout(
            total=t.connect + t.request, sock_connect=t.connect, sock_read=t.request
        )
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        # For the second try of an idempotent request: a connection of its own,
        # never one of the pooled ones the network may have reset together.
        self._fresh: Any = None
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self._extra = dict(_REQUIRE_LEADER) if len(self._members) > 1 else {}
        # The open watch streams, per member: closed when a request finds the
        # member failing, so they move on at once instead of after their own
        # liveness check (up to ping_interval plus an attempt later).
        self._streams: dict[str, set[Any]] = {}

    def __repr__(self) -> str:
        return f"EtcdClient({self.endpoint.redacted!r})"

    @property
    def member(self) -> str:
        """The ``http(s)://host:port`` of the member requests go to now."""
        return self._members[self._current]

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """`errors(self.endpoint, what)`."""
        return errors(self.endpoint, what)

    def _failed(self, i: int) -> None:
        """Member `i` failed: the next request goes to the next one (unless another
        request already moved on)."""
        if self._current == i:
            self._current = (i + 1) % len(self._members)
        # Its watch streams go too (each resumes on the next member from the
        # revision after its last event): a member that failed a request, a
        # frozen one say, would otherwise keep them silent until their checks.
        for stream in self._streams.pop(self._members[i], set()):
            stream.close()

    async def _headers(self, renew: bool = False) -> dict[str, str]:
        e = self.endpoint
        if e.username is None:
            return {}
        async with self._auth_lock:
            if self._token is None or renew:
                answer = await self._send(
                    "auth/authenticate",
                    {"name": e.username, "password": e.password or ""},
                    "authenticate",
                    {},
                    idempotent=True,
                    timeout=None,
                )
                token = answer.get("token")
                if not isinstance(token, str) or not token:
                    raise ConnectionFailed(f"authenticate: etcd at {e.redacted} sent no token")
                self._token = token
            return {"Authorization": self._token}

    async def _post(
        self,
        base: str,
        path: str,
        body: Mapping[str, Any],
        what: str,
        headers: Mapping[str, str],
        *,
        fresh: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request to member `base`, bounded by `timeout` seconds in all if given."""
        import aiohttp

        url = f"{base}/v3/{path}"
        session = self._session
        bound = self._timeout
        if timeout is not None:
            # Less time left than the request timeout (a lease refresh racing its
            # expiry, the rest of a request's time after a failed member).
            t = self.endpoint.timeouts
            bound = aiohttp.ClientTimeout(
                total=max(0.001, timeout), sock_connect=t.connect, sock_read=t.request
            )
        if fresh:
            if self._fresh is None:
                self._fresh = aiohttp.ClientSession(
                    timeout=self._timeout, connector=aiohttp.TCPConnector(force_close=True)
                )
            session = self._fresh
        with errors(self.endpoint, what, base):
            async with session.post(
                url, json=body, headers={**headers, **self._extra}, timeout=bound
            ) as resp:
                text = await resp.read()
                status = resp.status
        try:
            data = json.loads(text) if text else {}
        except (ValueError, RecursionError):
            data = None
        if status != 200:
            raise _error_answer(self.endpoint, what, status, data, base)
        if not isinstance(data, dict):
            raise ConnectionFailed(f"{what}: etcd {path}: the answer is not a JSON object")
        return data

    async def _send(
        self,
        path: str,
        body: Mapping[str, Any],
        what: str,
        headers: Mapping[str, str],
        *,
        idempotent: bool,
        timeout: float | None,
        only: str | None = None,
    ) -> dict[str, Any]:
        """`_post` to the current member, then to the next ones, round after round,
        while it is safe and time is left (see the module docstring); to member
        `only` alone when given."""
        t = self.endpoint.timeouts
        deadline = time.monotonic() + (t.connect + t.request if timeout is None else timeout)
        members = self._members if only is None else (only,)
        n = len(members)
        i = self._current if only is None else 0
        last: ConnectionFailed | None = None
        pause = _ROUND_PAUSE
        tried = 0
        left = deadline - time.monotonic()
        # A request safe to repeat gives up on a member that does not answer (a
        # frozen process, a partition that drops packets) after its attempt time,
        # not the whole request's, and goes on to the next: doubled each round, so
        # a cluster that is merely slow still gets the time it needs.
        cut = idempotent and n > 1
        while True:
            fresh = False
            while True:
                # The first try has the usual bounds, a later one what is left (a
                # single server's second try on a fresh connection: as ever).
                usual = timeout is None and last is None and not (fresh and n > 1)
                bound = None if usual else left
                if cut:
                    bound = min(self.endpoint.attempt * 2 ** (tried // n), left)
                try:
                    answer = await self._post(
                        members[i], path, body, what, headers, fresh=fresh, timeout=bound
                    )
                except _Unauthenticated:
                    raise
                except ConnectionFailed as exc:
                    if idempotent and not fresh and _broken(exc.__cause__):
                        fresh = True  # a pooled connection was reset: once more, afresh
                        left = deadline - time.monotonic()
                        continue
                    if n == 1:
                        raise
                    self._failed(i)
                    if not (idempotent or _unsent(exc)):
                        raise  # may have been applied: the caller decides
                    last = exc
                    break
                if only is None:
                    self._current = i
                return answer
            tried += 1
            i = (i + 1) % n
            if tried % n == 0:
                # Every member failed (a leader election, say): a pause, then again.
                if deadline - time.monotonic() <= pause:
                    raise last
                await asyncio.sleep(pause)
                pause = min(2 * pause, _ROUND_PAUSE_MAX)
            left = deadline - time.monotonic()
            if left <= 0:
                raise last

    async def call(
        self,
        path: str,
        body: Mapping[str, Any],
        what: str = "",
        *,
        idempotent: bool = False,
        timeout: float | None = None,
        only: str | None = None,
    ) -> dict[str, Any]:
        """POST `body` to ``/v3/<path>``; the answer's JSON object.

        `ConnectionFailed` when the server cannot be reached or does not answer
        within the timeouts; `EtcdAPIError` for an error answer. An `idempotent`
        request (a read, a keepalive, a plain put or delete: doing it twice is
        doing it once) that fails on a pooled connection the network reset is
        sent once more, on a connection of its own, and on a cluster to the next
        members (see the module docstring). `timeout` (seconds) bounds this
        request, every member tried included, instead of the endpoint's timeouts.
        `only` (a member's ``http(s)://host:port``) sends it to that member alone.
        """
        what = what or f"etcd {path}"
        headers = await self._headers()
        send = self._send
        try:
            return await send(
                path, body, what, headers, idempotent=idempotent, timeout=timeout, only=only
            )
        except _Unauthenticated:
            if not headers:
                raise
            # A simple token expires (5 minutes by default): get a new one, once.
            renewed = await self._headers(renew=True)
            return await send(
                path, body, what, renewed, idempotent=idempotent, timeout=timeout, only=only
            )

    async def grant_lease(self, ttl: int, what: str = "") -> tuple[str, int]:
        """Grant a lease of `ttl` seconds: its ID (text, as etcd's JSON has it) and
        the TTL etcd granted (at least its floor).

        Safe to repeat, so sent on to the next member whatever the failure: the
        ID is chosen here (at random, as etcd's own are), so an attempt whose
        reply was lost and a later one grant the same lease, never two. The
        second to arrive, sooner or later (a frozen member that thaws), is
        refused with "lease already exists": a retry that gets that answer
        reads the lease the first one granted; an abandoned attempt that comes
        in late is refused while the lease lives (once it was revoked, a late
        one grants it again: a lease holding nothing, which runs out after `ttl`).
        """
        what = what or "etcd lease grant"
        lease_id = str(random.randrange(1, _MAX_LEASE_ID))
        try:
            granted = await self.call(
                "lease/grant", {"ID": lease_id, "TTL": str(ttl)}, what, idempotent=True
            )
        except EtcdAPIError as exc:
            if exc.code != _FAILED_PRECONDITION or "lease already exists" not in str(exc):
                raise
            # Granted by an earlier attempt of this call (a random ID taken by
            # someone else is a 1 in 2**63 chance).
            found = await self.call("lease/timetolive", {"ID": lease_id}, what, idempotent=True)
            if int_field(found, "TTL", default=-1) < 0:
                raise ConnectionFailed(f"{what}: the lease granted ran out at once") from exc
            return lease_id, int_field(found, "grantedTTL", default=ttl)
        if str(int_field(granted, "ID")) != lease_id:
            raise ConnectionFailed(f"{what}: etcd granted another lease than asked")
        return lease_id, int_field(granted, "TTL", default=ttl)

    async def range_prefix(self, prefix: bytes, what: str = "") -> tuple[dict[bytes, bytes], int]:
        """Every key under `prefix` with its value, and the store revision of the read."""
        answer = await self.call(
            "kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)}, what, idempotent=True
        )
        out: dict[bytes, bytes] = {}
        for kv in kvs_of(answer):
            out[unb64_bytes(kv.get("key"))] = unb64_bytes(kv.get("value", ""))
        return out, int_field(answer, "header", "revision", default=0)

    async def watch(
        self, create_request: Mapping[str, Any], what: str = "watch"
    ) -> AsyncIterator[dict[str, Any]]:
        """The `result` objects of a watch stream, as they arrive.

        Never ends quietly: a stream that closes, a canceled watch, an error
        answer or a server that fails the liveness check (see the module
        docstring) raise `ConnectionFailed`. On a cluster a lost stream is
        opened again on the next member, from the revision after the last
        event delivered; `ConnectionFailed` once none took it for
        ``connect_timeout + timeout`` seconds.
        """
        n = len(self._members)
        if n == 1:
            async for result in self._watch_member(self._members[0], create_request, what):
                yield result
            return
        request = dict(create_request)
        if not int(request.get("start_revision") or 0):
            # Resuming needs a revision to resume from even before the first event.
            status = await self.call("maintenance/status", {}, what, idempotent=True)
            request["start_revision"] = str(int_field(status, "header", "revision") + 1)
        t = self.endpoint.timeouts
        failed_since: float | None = None
        failures = 0
        pause = _ROUND_PAUSE
        while True:
            i = self._current
            opened = time.monotonic()
            # A member that takes longer than an attempt to open the stream or to
            # answer its liveness check is left for the next (doubling each round).
            bound = min(self.endpoint.attempt * 2 ** (failures // n), t.connect + t.request)
            try:
                async for result in self._watch_member(self._members[i], request, what, bound):
                    events = result.get("events")
                    if events:
                        # Only a stream that delivers counts as recovered: a member
                        # that answers `created` and drops the stream at once must
                        # not keep the loop re-creating it with no pause, for ever.
                        failed_since, failures, pause = None, 0, _ROUND_PAUSE
                    for event in events if isinstance(events, list) else ():
                        rev = int_field(event, "kv", "mod_revision", default=0)
                        if rev >= int(request["start_revision"]):
                            request["start_revision"] = str(rev + 1)
                    yield result
            except (_Canceled, _Unauthenticated, EtcdAPIError):
                raise
            except ConnectionFailed:
                self._failed(i)
                now = time.monotonic()
                if now - opened > t.connect + t.request:
                    # The stream stayed up a while (a quiet one): a new failure.
                    failed_since, failures, pause = None, 0, _ROUND_PAUSE
                failed_since = now if failed_since is None else failed_since
                # As long as a request may take (a leader election, say), then give up.
                if now - failed_since > t.connect + t.request:
                    raise
                failures += 1
                if failures % n == 0:
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, _ROUND_PAUSE_MAX)

    async def _watch_member(
        self, base: str, create_request: Mapping[str, Any], what: str, bound: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """One watch stream on member `base` (see `watch`); `bound` seconds (a
        cluster's attempt time) for its answer to start and for each liveness
        check, instead of the request's time."""
        import aiohttp

        t = self.endpoint.timeouts
        headers = {**(await self._headers()), **self._extra}
        decoder = json.JSONDecoder()
        # Incremental: a chunk may end inside a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=t.connect, sock_read=None, connect=t.connect
        )
        with errors(self.endpoint, what, base):
            # The stream itself has no read timeout (the liveness check covers a
            # silent one), but its answer must start within the request timeout.
            opening = self._session.post(
                f"{base}/v3/watch",
                json={"create_request": dict(create_request)},
                headers=headers,
                timeout=stream_timeout,
            )
            resp = await asyncio.wait_for(opening, bound or t.connect + t.request)
            streams = self._streams.setdefault(base, set())
            streams.add(resp)
            try:
                async with resp:
                    if resp.status != 200:
                        try:
                            data = json.loads(await resp.read())
                        except (ValueError, RecursionError):
                            data = None
                        raise _error_answer(self.endpoint, what, resp.status, data, base)
                    buffer = ""
                    while True:
                        try:
                            chunk = await asyncio.wait_for(resp.content.readany(), t.ping_interval)
                        except asyncio.TimeoutError:
                            # Silent for a while: is this member still there?
                            await self.call(
                                "maintenance/status",
                                {},
                                f"{what} (liveness check)",
                                idempotent=True,
                                only=base,
                                timeout=bound,
                            )
                            continue
                        if not chunk:
                            where = self.endpoint.name_of(base)
                            raise EtcdStreamEnded(f"{what}: etcd at {where} ended the watch stream")
                        buffer += text.decode(chunk)
                        if len(buffer) > MAX_WATCH_BUFFER:
                            raise ConnectionFailed(f"{what}: the etcd watch stream is not JSON")
                        while True:
                            buffer = buffer.lstrip()
                            if not buffer:
                                break
                            try:
                                item, end = decoder.raw_decode(buffer)
                            except (ValueError, RecursionError):
                                break  # incomplete: wait for more bytes
                            buffer = buffer[end:]
                            if not isinstance(item, dict):
                                continue  # not a watch response: skipped
                            if "error" in item:
                                raise ConnectionFailed(f"{what}: etcd: {str(item['error'])[:200]}")
                            result = item.get("result", {})
                            if not isinstance(result, dict):
                                continue
                            if result.get("canceled"):
                                reason = str(result.get("cancel_reason", ""))[:200]
                                why = f"{what}: etcd at {self.endpoint.name_of(base)} canceled"
                                if any(m in reason for m in _NOT_APPLIED):
                                    raise ConnectionFailed(f"{why} the watch: {reason}")
                                raise _Canceled(f"{why} the watch: {reason}")
                            yield result
            finally:
                streams.discard(resp)

    async def close(self) -> None:
        """Close the HTTP sessions; idempotent."""
        await self._session.close()
        if self._fresh is not None:
            await self._fresh.close()


_shared: Shared[EtcdClient] = Shared()


async def acquire(endpoint: EtcdEndpoint) -> EtcdClient:
    """The shared client for `endpoint` on the running loop (no I/O yet). Pair every
    call with `release`."""

    async def open() -> EtcdClient:
        return EtcdClient(endpoint)

    return await _shared.acquire(endpoint, open)


async def release(client: EtcdClient) -> None:
    """Give back a client from `acquire`; the last user closes its session."""

    async def close(c: EtcdClient) -> None:
        await c.close()

    await _shared.release(client.endpoint, close)
