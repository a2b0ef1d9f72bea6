"""`BlockingBroker`: the blocking twin of an async network broker, on a private loop thread.

Handlers run on that loop thread (the delivery thread), one subscription at
a time in publish order, with no extra call from the user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from microstd._loopthread import LoopThread
from microstd.broker._durable import StreamInfo
from microstd.broker.base import (
    Broker,
    ErrorHook,
    Handler,
    Subscription,
    SyncBroker,
    SyncSubscription,
)

__all__ = ["BlockingBroker"]


class _BlockingSubscription(SyncSubscription):
    def __init__(self, runner: LoopThread, sub: Subscription) -> None:
        self._runner = runner
        self._sub = sub
        self.pattern = sub.pattern
        self.queue = sub.queue

    def __repr__(self) -> str:
        return f"SyncSubscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def unsubscribe(self, timeout: float | None = None) -> None:
        self._runner.run(self._sub.unsubscribe(timeout))


class BlockingBroker(SyncBroker):
    """Runs an async broker on its own event-loop thread and blocks for each call."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._runner = LoopThread(f"microstd-broker-{type(broker).__name__}")

    def __repr__(self) -> str:
        return f"BlockingBroker({self._broker!r})"

    def connect(self) -> None:
        self._runner.run(self._broker.connect())

    def close(self) -> None:
        try:
            self._runner.run(self._broker.close())
        finally:
            self._runner.stop()

    def on_error(self, hook: ErrorHook | None) -> None:
        self._broker.on_error(hook)

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> SyncSubscription:
        sub = self._runner.run(
            self._broker.subscribe(pattern, handler, queue, durable=durable, **options)
        )
        return _BlockingSubscription(self._runner, sub)

    def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        return self._runner.run(
            self._broker.add_stream(
                name, subjects, max_age=max_age, max_count=max_count, max_bytes=max_bytes
            )
        )

    def streams(self) -> list[StreamInfo]:
        return self._runner.run(self._broker.streams())

    def delete_stream(self, name: str) -> None:
        self._runner.run(self._broker.delete_stream(name))

    def delete_durable(self, stream: str, name: str) -> None:
        self._runner.run(self._broker.delete_durable(stream, name))

    def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self._runner.run(self._broker.publish(topic, body, headers, content_type))
