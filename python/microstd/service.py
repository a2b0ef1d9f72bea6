"""`Service`: the runnable service, wiring handlers, subscribers and the areas.

    svc = microstd.Service("greeter")                # memory://default registry and broker
    @svc.handler("Greeter.Hello")
    async def hello(req: dict) -> dict: ...
    svc.run()                                        # blocks; SIGTERM / SIGINT stop it gracefully

Not to be confused with `microstd.registry.ServiceRecord`, the registry's record of
a service (name, version, nodes, endpoints): this class is what runs, and it
registers such a record for itself.

Lifecycle. `start()` connects the registry and the areas given by URL, starts
the HTTP server (`address="127.0.0.1:0"` picks a free port; the registered
node carries the real one), subscribes the subscribers, registers the node
with `ttl` and re-registers it every `ttl / 3` seconds. `stop()` — and
SIGTERM / SIGINT under `run()` — deregisters first (so clients stop picking
this node), then stops taking requests (new ones get 503, which clients retry
on another node) and messages (each subscription unsubscribes), and waits up
to `grace` seconds for in-flight requests and for every message already
received, queued or in a handler, then closes the server and the areas.
Requests still running when `grace` runs out are abandoned (their callers get
503), so `stop()` returns within `grace`; a sync handler already running on
its thread cannot be interrupted and finishes there, its reply dropped.

Health. `/health/live` answers 200 while the process serves HTTP at all.
`/health/ready` (and `/health`) answers 200 only once the service is
registered, while its registry lists this node, its backends answer and every
check added with `health_check` passes; 503 while starting, while any of
those fails, and from the first moment of a stop (before deregistering, with
the listener still open), so a load balancer stops sending first.
`drain_delay` seconds then pass before new requests are refused.

Logs. Each start and stop step is logged at INFO on `microstd.service` (the
listening address, registry, backends, endpoints, subscriptions), backend
URLs with their credentials redacted; `microstd run` shows them.

Metrics. `metrics=True` (or `MICROSTD_METRICS=1`) turns on the metrics of
`microstd.observe` and serves them at `/metrics` in the Prometheus text
format (needs prometheus-client: `pip install 'microstd[prometheus]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from microstd._backends import redact, redact_text
from microstd._lifecycle import AsyncResource
from microstd.broker.base import Broker, message_type
from microstd.errors import InvalidArgument, NotSupported
from microstd.observe import _state as _observe_state
from microstd.observe.health import Check, Health, probe
from microstd.registry import Node, Registry, ServiceRecord
from microstd.registry import open as open_registry
from microstd.registry.base import validate_name
from microstd.rpc.client import Client, ClientMiddleware
from microstd.rpc.limits import Limits
from microstd.rpc.server import Server, ServerMiddleware
from microstd.store.base import Store
from microstd.sync.base import Locks

__all__ = ["Service"]

log = logging.getLogger("microstd.service")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_REGISTRY = "memory://default"
DEFAULT_BROKER = "memory://default"
DEFAULT_STORE = "memory://default"
DEFAULT_LOCKS = "memory://default"

_ENV_METRICS = "MICROSTD_METRICS"


class Service(AsyncResource):
    """A named service: RPC handlers, broker subscribers, and its backends by URL.

    `registry`, `broker`, `store` and `locks` are URLs (or already-open
    objects); omitted ones are the process's embedded `memory://default`.
    An area given by URL is connected by `start()`; an omitted one is opened
    on first use of `svc.broker` / `svc.store` / `svc.locks` (the broker at
    start when there are subscribers). `config` is kept as `svc.config`.
    `limits` (`microstd.rpc.Limits`) bound what requests may hold: body size,
    deadline, decoded memory, handler threads, read and idle timeouts.
    `transport="nats://host:port"` also serves the handlers over NATS
    request/reply in the service's queue group (`microstd.rpc.nats`); HTTP
    stays on (health, streams, HTTP clients), and `svc.client` calls through NATS.
    `metrics=True` records metrics and serves `/metrics` (default: the
    `MICROSTD_METRICS` environment variable). `health_timeout` bounds each
    readiness check; `drain_delay` is how long a stopping service keeps
    taking requests after it stopped answering ready (see the module docstring).
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "",
        address: str = "127.0.0.1:0",
        advertise: str | None = None,
        registry: str | Registry | None = None,
        broker: Broker | str | None = None,
        store: Store | str | None = None,
        locks: Locks | str | None = None,
        config: Any = None,
        ttl: float = 10.0,
        interval: float | None = None,
        grace: float = 10.0,
        metadata: dict[str, str] | None = None,
        middleware: Sequence[ServerMiddleware] = (),
        client_middleware: Sequence[ClientMiddleware] = (),
        limits: Limits | None = None,
        transport: str | None = None,
        metrics: bool | None = None,
        health_timeout: float = 2.0,
        drain_delay: float = 0.0,
    ) -> None:
        self.name = validate_name(name)
        for area, given, kind in (
            ("broker", broker, Broker),
            ("store", store, Store),
            ("locks", locks, Locks),
        ):
            if given is not None and not isinstance(given, (str, kind)):
                raise InvalidArgument(
                    f"{area} must be a URL or an open async {kind.__name__},"
                    f" got {type(given).__name__}"
                )
        self.version = version
        self.address = address
        self.advertise = advertise
        self.ttl = ttl
        self.interval = interval if interval is not None else ttl / 3
        self.grace = grace
        self.metadata = dict(metadata or {})
        self.config = config
        self.server = Server(name, middleware=middleware, limits=limits, transport=transport)
        self.transport = transport
        self.health = Health(health_timeout)
        self.server.readiness = self._readiness
        if (
            not isinstance(drain_delay, (int, float))
            or isinstance(drain_delay, bool)
            or not (0 <= drain_delay < float("inf"))
        ):
            raise InvalidArgument(f"drain_delay must be seconds >= 0, got {drain_delay!r}")
        self.drain_delay = float(drain_delay)
        if metrics is None:
            metrics = os.environ.get(_ENV_METRICS, "").lower() not in ("", "0", "false", "no")
        self.metrics = bool(metrics)
        if self.metrics:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise NotSupported(
                    "Service(metrics=True) serves /metrics with prometheus-client:"
                    " pip install 'microstd[prometheus]'"
                ) from None
            _observe_state.configure(metrics=True)
            self.server.metrics_endpoint = True
        self._client_middleware = list(client_middleware)
        self._registry_given = registry is not None
        self._owns_registry = not isinstance(registry, Registry)
        self._registry_url = registry or DEFAULT_REGISTRY if self._owns_registry else None
        self.registry: Registry = (
            registry
            if isinstance(registry, Registry)
            else open_registry(registry or DEFAULT_REGISTRY)
        )
        # area -> (given URL or object, the opened object once opened)
        self._areas: dict[str, list[Any]] = {
            "broker": [broker, None],
            "store": [store, None],
            "sync": [locks, None],
        }
        self._owned: list[Any] = []
        self._subscribers: list[tuple[str, str | None, Callable[..., Any], dict[str, Any]]] = []
        self._subscriptions: list[Any] = []
        self._client: Client | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._running = False
        self._stopped: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Service({self.name!r}, address={self.server.address or self.address!r})"

    # --- declaring ------------------------------------------------------------

    def handler(self, endpoint: str) -> Callable[[F], F]:
        """Decorator: serve the function as `endpoint` (`"Service.Method"`).

        The handler takes the request (a dict, or a dataclass / pydantic model
        as annotated) and returns the reply; it may be sync (run on a thread)
        or async. Raise `microstd.errors.ServiceError` to answer an error.
        """

        def register(fn: F) -> F:
            self.server.add(endpoint, fn)
            return fn

        return register

    def add_handler(self, endpoint: str, fn: Callable[..., Any]) -> None:
        """Serve `fn` as `endpoint`; the non-decorator form of `handler`."""
        self.server.add(endpoint, fn)

    def subscriber(
        self, topic: str, *, queue: str | None = None, durable: str | None = None, **options: Any
    ) -> Callable[[F], F]:
        """Decorator: subscribe the function to `topic` through `svc.broker` at start.

        With `queue`, the service's instances share the messages (each goes to
        one of them). With `durable=NAME` (and the durable options of
        `Broker.subscribe`, such as `max_deliver` or `dead_letter`) the
        subscription is durable: messages wait for the service while it is
        down. Handlers are drained on stop like requests; a durable
        subscription's unfinished messages are redelivered.
        """
        if durable is not None:
            options["durable"] = durable

        def register(fn: F) -> F:
            self._subscribers.append((topic, queue, fn, options))
            return fn

        return register

    def health_check(self, name: str) -> Callable[[F], F]:
        """Decorator: a readiness check, run for each `/health/ready`.

        The function (sync or async, no arguments) fails by raising or by
        returning False; the service then answers 503 naming the check.
        """

        def register(fn: F) -> F:
            self.health.add(name, fn)
            return fn

        return register

    def add_health_check(self, name: str, check: Check) -> None:
        """Add a readiness check; the non-decorator form of `health_check`."""
        self.health.add(name, check)

    async def _readiness(self) -> tuple[bool, dict[str, object]]:
        builtin: dict[str, Check] = {"registry": self._registered}
        for area, (_given, opened) in self._areas.items():
            if opened is not None:
                builtin[area] = functools.partial(probe, area, opened)
        checks = await self.health.run(builtin)
        ok = all(outcome == "ok" for outcome in checks.values())
        return ok, {"checks": checks}

    async def _registered(self) -> None:
        # Ready only while the registry answers and still lists this node.
        node_id = self.server.node_id
        found = await self.registry.lookup(self.name)
        if not any(n.id == node_id for s in found for n in s.nodes):
            raise LookupError(f"node {node_id} is not registered")

    # --- areas ------------------------------------------------------------------

    def _default_urls(self, *, registry: str | None, broker: str | None) -> list[str]:
        """Give the areas this service was given no URL for these ones (before `start()`).

        For `microstd run --registry/--broker` (and `$MICROSTD_REGISTRY` /
        `$MICROSTD_BROKER`): a `Service("greeter")` written for the embedded
        defaults joins a shared registry and broker when run that way, while a
        URL written in the code still wins. Returns the areas it set.
        """
        if self._running:
            raise InvalidArgument("the registry and broker are chosen before start()")
        changed = []
        if registry and not self._registry_given:
            self.registry = open_registry(registry)
            self._registry_url = registry
            self._registry_given = True
            self._owns_registry = True
            changed.append("registry")
        given, opened = self._areas["broker"]
        if broker and given is None and opened is None:
            self._areas["broker"][0] = broker
            changed.append("broker")
        return changed

    def _area(self, area: str, default: str) -> Any:
        given, opened = self._areas[area]
        if opened is not None:
            return opened
        if given is not None and not isinstance(given, str):
            opened = given
        else:
            import importlib

            module = importlib.import_module(f"microstd.{area}")
            opened = module.open(given or default)
            self._owned.append(opened)
        self._areas[area][1] = opened
        return opened

    @property
    def broker(self) -> Broker:
        """The service's broker (`microstd.broker`), opened on first use."""
        broker: Broker = self._area("broker", DEFAULT_BROKER)
        return broker

    @property
    def store(self) -> Store:
        """The service's store (`microstd.store`), opened on first use."""
        store: Store = self._area("store", DEFAULT_STORE)
        return store

    @property
    def locks(self) -> Locks:
        """The service's locks (`microstd.sync`), opened on first use."""
        locks: Locks = self._area("sync", DEFAULT_LOCKS)
        return locks

    @property
    def client(self) -> Client:
        """A `Client` on this service's registry; calls carry this service as caller."""
        if self._client is None:
            self._client = Client(
                self.registry,
                name=self.name,
                middleware=self._client_middleware,
                transport=self.transport,
            )
        return self._client

    # --- lifecycle ----------------------------------------------------------------

    @property
    def node(self) -> Node:
        """This instance's node as registered (address known once started)."""
        meta = {"pid": str(os.getpid()), "protocol": "http", **self.metadata}
        if self.server.transport_url is not None:
            meta["transport"] = "nats"  # also served in the NATS queue group
        return Node(self.server.node_id, self.advertise or self.server.address, meta)

    def record(self) -> ServiceRecord:
        """The registry record this service registers."""
        return ServiceRecord(self.name, self.version, [self.node], sorted(self.server.endpoints))

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Connect, serve, subscribe and register; see the module docstring.
        `Closed` once the service has been stopped: a stopped service is not restarted."""
        self._check_open()
        if self._running:
            return
        self._stopped = asyncio.Event()
        _observe_state.refresh()
        name = self.name
        try:
            await self.registry.connect()
            log.info("%s: registry %s", name, _describe(self._registry_url or self.registry))
            for area, default in (
                ("broker", DEFAULT_BROKER),
                ("store", DEFAULT_STORE),
                ("sync", DEFAULT_LOCKS),
            ):
                wanted = self._areas[area][0] is not None or self._areas[area][1] is not None
                if wanted or (area == "broker" and self._subscribers):
                    opened = self._area(area, default)
                    await opened.connect()
                    given = self._areas[area][0]
                    shown = given if isinstance(given, str) else opened
                    log.info("%s: %s %s", name, _AREA_NAMES[area], _describe(shown or default))
            await self.server.start(self.address)
            log.info("%s: listening on http://%s", name, self.server.address)
            if self.metrics:
                log.info("%s: metrics at http://%s/metrics", name, self.server.address)
                self._watch_inflight()
            if self.server.endpoints:
                log.info("%s: endpoints %s", name, ", ".join(sorted(self.server.endpoints)))
            for topic, queue, fn, options in self._subscribers:
                sub = await self.broker.subscribe(topic, self._tracked(fn), queue=queue, **options)
                self._subscriptions.append(sub)
                extra = "".join(
                    f", {key} {value}"
                    for key, value in (("queue", queue), ("durable", options.get("durable")))
                    if value
                )
                log.info("%s: subscribed to %s%s", name, topic, extra)
            await self.registry.register(self.record(), self.ttl)
            self._count_heartbeat("ok")
        except BaseException:
            await self._shutdown(deregister=False)
            raise
        self.server.ready = True
        self._running = True
        self._heartbeat = asyncio.create_task(self._beat(), name=f"microstd-heartbeat-{self.name}")
        log.info("%s: registered node %s (ttl %gs); ready", name, self.server.node_id, self.ttl)

    def _tracked(self, fn: Callable[..., Any]) -> Callable[[Any], Any]:
        # Counted with the requests, so stop() drains message handlers too.
        is_async = inspect.iscoroutinefunction(fn)
        wanted = message_type(fn)

        async def handle(msg: Any) -> None:
            self.server._enter()
            try:
                # A handler annotated with a type (not Message) gets the decoded body.
                arg = msg if wanted is None else msg.decode(wanted)
                if is_async:
                    await fn(arg)
                else:
                    result = await self.server.pool.run(fn, arg)
                    if inspect.isawaitable(result):
                        await result
            finally:
                self.server._leave()

        return handle

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.registry.register(self.record(), self.ttl)
            except Exception as exc:
                # Keep serving: the next beat may succeed before the TTL runs out.
                self._count_heartbeat("failed")
                log.warning("%s: re-registering failed: %s", self.name, redact_text(str(exc)))
            else:
                self._count_heartbeat("ok")

    def _count_heartbeat(self, outcome: str) -> None:
        metrics = _observe_state.state.metrics
        if metrics is not None:
            metrics.add("microstd.registry.heartbeats", (self.name, outcome))

    def _watch_inflight(self) -> None:
        metrics = _observe_state.state.metrics
        if metrics is not None:
            metrics.watch_gauge(
                "microstd.rpc.server.inflight",
                self.server,
                lambda server: [((server.name,), float(server.inflight))],
            )

    async def stop(self) -> None:
        """Deregister, stop taking requests, drain within `grace`, then disconnect.
        Idempotent; the service is closed afterwards."""
        self._mark_closed()
        if not self._running:
            return
        self._running = False
        # Not ready from this moment, while requests are still taken: a load
        # balancer polling /health/ready stops sending before anything is refused.
        self.server.ready = False
        self.server.draining = True
        log.info("%s: stopping; not ready from now on", self.name)
        await self._shutdown(deregister=True)
        log.info("%s: stopped", self.name)

    async def _shutdown(self, *, deregister: bool) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if deregister:
            try:
                await self.registry.deregister(self.record())
            except Exception as exc:
                log.warning(
                    "%s: deregistering failed (the TTL will expire it): %s",
                    self.name,
                    redact_text(str(exc)),
                )
            else:
                log.info("%s: deregistered node %s", self.name, self.server.node_id)
            if self.drain_delay:
                log.info("%s: taking requests %gs more (drain_delay)", self.name, self.drain_delay)
                await asyncio.sleep(self.drain_delay)
        self.server.stop_accepting()
        if deregister:
            log.info(
                "%s: refusing new requests; draining %d in flight and %d subscriptions (grace %gs)",
                self.name,
                self.server.inflight,
                len(self._subscriptions),
                self.grace,
            )
        # Subscriptions stop taking messages and handle what they hold, alongside
        # the in-flight requests, all within one grace period; requests still
        # running then are abandoned (see Server.stop).
        subs, self._subscriptions = self._subscriptions, []
        await asyncio.gather(
            self.server.stop(self.grace),
            *(self._drain(sub) for sub in subs),
        )
        if self._client is not None:
            await self._client.close()
            self._client = None
        for opened in reversed(self._owned):
            try:
                await opened.close()
            except Exception as exc:
                log.warning(
                    "%s: closing %s failed: %s", self.name, _describe(opened), redact_text(str(exc))
                )
            else:
                log.info("%s: closed %s", self.name, _describe(opened))
        self._owned.clear()
        for slot in self._areas.values():
            slot[1] = None
        if self._owns_registry:
            with contextlib.suppress(Exception):
                await self.registry.close()
        if self._stopped is not None:
            self._stopped.set()

    async def _drain(self, sub: Any) -> None:
        try:
            await sub.unsubscribe(timeout=self.grace)
        except Exception as exc:
            log.warning("%s: unsubscribing %r failed: %s", self.name, sub, exc)

    async def connect(self) -> None:
        """`start()`, by the name every microstd handle has (`async with svc:` calls it)."""
        await self.start()

    async def close(self) -> None:
        """`stop()`, by the name every microstd handle has."""
        await self.stop()

    async def serve(self) -> None:
        """Start, then run until SIGTERM / SIGINT (or `stop()`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, signalled.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or a platform without signal support
        try:
            await self.start()
            assert self._stopped is not None
            stopped = asyncio.ensure_future(self._stopped.wait())
            signal_wait = asyncio.ensure_future(signalled.wait())
            await asyncio.wait({stopped, signal_wait}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            signal_wait.cancel()
            if signalled.is_set():
                log.info("%s: signal received, stopping", self.name)
            await self.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def run(self) -> None:
        """Block serving until SIGTERM / SIGINT, then stop gracefully."""
        asyncio.run(self.serve())


_AREA_NAMES = {"broker": "broker", "store": "store", "sync": "locks"}


def _describe(backend: object) -> str:
    """A backend for the log: its URL or repr, credentials redacted."""
    if isinstance(backend, str):
        return redact(backend)
    return redact_text(repr(backend))
