"""`SyncClient`: the blocking twin of `Client`, for code without an event loop.

    with microstd.SyncClient() as client:          # a script, a Flask or Django view
        reply = client.call("greeter", "Greeter.Hello", {"name": "a"})

It takes the same options as `Client` (registry, selector, timeout, retries,
backoff, content type, middleware, cache) and runs one `Client` on a private
event loop on a daemon thread (`microstd._loopthread`). Every method may be
called from any number of threads at once: each call is handed to that loop,
where the calls run concurrently, and the calling thread blocks until its
own finishes. Errors are the `Client`'s (`ServiceError`, `NotFound`,
`DeadlineExceeded`, `ConnectionFailed`).

Do not call it from a coroutine: it blocks the caller's event loop for the
whole call (use `Client` there).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from microstd._loopthread import LoopThread, iterate_blocking
from microstd.errors import Closed
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.registry import Registry
from microstd.rpc.client import Client

__all__ = ["SyncClient"]

T = TypeVar("T")

#: Tracing switch (`microstd.observe`): one attribute read per call when off.
_observe = _observe_state.state


class SyncClient:
    """Calls services by name, blocking; thread-safe. Close it (or use `with`)."""

    def __init__(self, registry: str | None = None, **options: Any) -> None:
        if isinstance(registry, Registry):
            # An open registry belongs to the event loop that opened it.
            raise TypeError("SyncClient takes a registry URL, not an open Registry")
        self._runner = LoopThread(name="microstd-sync-client")
        # Built on its loop, so whatever it opens belongs to that loop.
        try:
            self._client: Client = self._runner.run(_build(registry, options))
        except BaseException:
            self._runner.stop()
            raise
        self._closed = False
        self._finalizer = weakref.finalize(self, self._runner.stop)

    def __repr__(self) -> str:
        return f"SyncClient({self._client.registry!r})"

    @property
    def client(self) -> Client:
        """The async `Client` underneath (use it only on its own loop)."""
        return self._client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise Closed("the SyncClient is closed")
        if _observe.tracer is not None:  # the calling thread's span is the call's parent
            coro = _observed.carried(coro)
        future: Future[T] = self._runner.submit(coro)
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C in the calling thread): stop the call as well.
            future.cancel()
            raise

    def call(
        self,
        service: str,
        endpoint: str,
        body: object = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotent: bool = False,
        response_type: type[Any] | None = None,
        type: Any = None,
    ) -> Any:
        """`Client.call`, blocking until the reply (or its error) arrives.

        `body` may be an iterator (a generator, say) of requests, for a
        client-streaming endpoint; data such as a list is one request.
        """
        return self._run(
            self._client.call(
                service,
                endpoint,
                _as_async(body),
                timeout=timeout,
                metadata=metadata,
                idempotent=idempotent,
                response_type=response_type,
                type=type,
            )
        )

    def stream(
        self,
        service: str,
        endpoint: str,
        body: object = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        response_type: type[Any] | None = None,
    ) -> Iterator[Any]:
        """`Client.stream` as a blocking iterator: each reply as it arrives.

        `body` may be an iterator (a generator, say) of requests, for a bidi
        stream: it is read on the client's thread as the server takes them.
        Leaving the loop early (`break`, an exception) closes the stream.
        """
        if self._closed:
            raise Closed("the SyncClient is closed")
        stream = self._client.stream(
            service,
            endpoint,
            _as_async(body),
            timeout=timeout,
            metadata=metadata,
            response_type=response_type,
        )
        return iterate_blocking(self._runner, stream)

    def close(self) -> None:
        """Close the client's connections and stop its thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._finalizer()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _build(registry: str | None, options: dict[str, Any]) -> Client:
    return Client(registry, **options)


def _as_async(body: object) -> object:
    """A plain iterator of requests (a generator: not data such as a list or a
    string) as an async iterator, for streaming calls; anything else unchanged."""
    if isinstance(body, Iterator):
        return _iterate(body)
    return body


async def _iterate(items: Iterator[Any]) -> AsyncIterator[Any]:
    # Pulled on the client's loop thread, one item per send: a source that
    # blocks for long stalls that thread's other calls meanwhile.
    for item in items:
        yield item
