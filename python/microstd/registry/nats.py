"""`nats://`: the registry in a NATS JetStream key-value bucket.

URL: `nats://host:port?bucket=microstd_registry`. Each node is a key
`NAME.NODE` holding its JSON record with its expiry time; lookups ignore
expired records and delete them, and the bucket's `max_age` (the `max_age`
option, default one hour) bounds what a crashed node can leave behind.
`watch` re-reads on every update the bucket's watcher delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from microstd._backends import ParsedURL, redact
from microstd.errors import ConnectionFailed, DecodeError
from microstd.registry.base import ChangeFeed, NodeRecord, Registry

__all__ = ["NatsRegistry"]


class _NatsFeed(ChangeFeed):
    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        # If the watcher fails for good, the task ends and watch falls back to polling.
        with contextlib.suppress(Exception):
            while True:
                try:
                    await self._watcher.updates(timeout=3600)
                except NatsTimeout:
                    continue
                self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self._watcher.stop()


class NatsRegistry(Registry):
    """Registry on a NATS JetStream KV bucket (nats-py)."""

    def __init__(self, url: str, *, bucket: str = "microstd_registry", max_age: float = 3600.0):
        self._url = url
        self.bucket = bucket
        self.max_age = max_age
        self._nc: Any = None
        self._kv: Any = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> NatsRegistry:
        query = dict(parsed.query)
        bucket = str(options.pop("bucket", query.pop("bucket", "microstd_registry")))
        max_age = float(options.pop("max_age", query.pop("max_age", 3600.0)))
        if options:
            raise TypeError(f"unknown nats registry options: {sorted(options)}")
        return cls(parsed.raw.split("?", 1)[0], bucket=bucket, max_age=max_age)

    def __repr__(self) -> str:
        return f"NatsRegistry({redact(self._url)!r}, bucket={self.bucket!r})"

    async def connect(self) -> None:
        if self._kv is not None:
            return
        import nats
        from nats.js.api import KeyValueConfig
        from nats.js.errors import BucketNotFoundError

        try:
            nc = await nats.connect(
                self._url,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=3,
                reconnect_time_wait=0.5,
            )
        except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
            raise ConnectionFailed(f"cannot reach nats at {redact(self._url)}: {exc}") from exc
        try:
            js = nc.jetstream()
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    KeyValueConfig(bucket=self.bucket, history=1, ttl=self.max_age)
                )
        except Exception as exc:
            await nc.close()
            raise ConnectionFailed(f"nats registry bucket {self.bucket!r}: {exc}") from exc
        self._nc, self._kv = nc, kv

    async def close(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _bucket(self) -> Any:
        if self._kv is None:
            await self.connect()
        return self._kv

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        kv = await self._bucket()
        try:
            await kv.put(f"{record.name}.{record.node_id}", record.encode())
        except Exception as exc:
            raise ConnectionFailed(f"nats registry register failed: {exc}") from exc

    async def _remove(self, name: str, node_id: str) -> None:
        kv = await self._bucket()
        try:
            await kv.delete(f"{name}.{node_id}")
        except Exception as exc:
            raise ConnectionFailed(f"nats registry deregister failed: {exc}") from exc

    async def _load(self, name: str | None) -> list[NodeRecord]:
        from nats.js.errors import KeyNotFoundError, NoKeysError

        kv = await self._bucket()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        except Exception as exc:
            raise ConnectionFailed(f"nats registry lookup failed: {exc}") from exc
        now = time.time()
        out = []
        for key in keys:
            if name is not None and not key.startswith(f"{name}."):
                continue
            try:
                entry = await kv.get(key)
                record = NodeRecord.decode(entry.value or b"")
            except (KeyNotFoundError, DecodeError):
                continue
            except Exception as exc:
                raise ConnectionFailed(f"nats registry lookup failed: {exc}") from exc
            if not record.alive(now):
                # Expired: the node stopped heartbeating. Clean up, unless it re-registered.
                with contextlib.suppress(Exception):
                    await kv.delete(key, last=entry.revision)
            out.append(record)
        return out

    async def _changes(self) -> ChangeFeed:
        kv = await self._bucket()
        try:
            watcher = await kv.watchall(ignore_deletes=False, include_history=False)
        except Exception as exc:
            raise ConnectionFailed(f"nats registry watch failed: {exc}") from exc
        return _NatsFeed(watcher)
