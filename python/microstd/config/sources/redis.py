"""Redis: a hash (one field per key) or a key holding a JSON / YAML / TOML document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from microstd.config.sources._formats import parse_document
from microstd.config.sources._kv import decode_value
from microstd.config.sources.base import Source, nest, poll_changes
from microstd.errors import ConfigError

__all__ = ["RedisSource", "redis"]


class RedisSource(Source):
    """One Redis key: a hash (`db.host` fields, dots nest) or a string holding a document.

    Watching: with `channel=`, a publish on that channel signals a change;
    otherwise keyspace notifications for the key when the server has them
    enabled (`notify-keyspace-events` with `K` and the key's type), else
    polling every `poll_interval` seconds with jitter.
    """

    textual = True

    def __init__(
        self,
        url: str,
        key: str,
        *,
        kind: Literal["auto", "hash", "document"] = "auto",
        format: str = "json",
        separator: str = ".",
        channel: str | None = None,
        poll_interval: float = 5.0,
        optional: bool = False,
        name: str | None = None,
    ) -> None:
        if kind not in ("auto", "hash", "document"):
            raise ValueError(f"kind must be 'auto', 'hash' or 'document', not {kind!r}")
        self.url = url
        self.key = key
        self.kind = kind
        self.format = format
        self.separator = separator
        self.channel = channel
        self.poll_interval = poll_interval
        super().__init__(name or f"redis:{key}", optional=optional)

    def _client(self) -> Any:
        from redis import asyncio as aioredis

        return aioredis.Redis.from_url(self.url, socket_connect_timeout=5.0)

    async def fetch(self) -> dict[str, Any]:
        from redis.exceptions import RedisError

        try:
            client = self._client()
            try:
                return await self._read(client)
            finally:
                await client.aclose()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"{self.name}: cannot read from Redis: {exc}") from None

    async def _read(self, client: Any) -> dict[str, Any]:
        kind = self.kind
        if kind == "auto":
            found = (await client.type(self.key)).decode()
            if found == "none":
                raise ConfigError(f"{self.name}: key {self.key!r} does not exist")
            kind = "hash" if found == "hash" else "document"
        if kind == "hash":
            raw = await client.hgetall(self.key)
            flat = {
                k.decode("utf-8", "replace"): decode_value(v, self.name) for k, v in raw.items()
            }
            return nest(flat, self.separator, self.name)
        raw_doc = await client.get(self.key)
        if raw_doc is None:
            raise ConfigError(f"{self.name}: key {self.key!r} does not exist")
        try:
            text = decode_value(raw_doc, self.name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return parse_document(text, self.format, self.name)

    async def changes(self) -> AsyncIterator[None]:
        from redis.exceptions import RedisError

        try:
            client = self._client()
            try:
                channel = self.channel or await self._keyspace_channel(client)
                if channel is None:
                    async for _ in poll_changes(self, self.poll_interval):
                        yield None
                    return
                pubsub = client.pubsub()
                await pubsub.subscribe(channel)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            yield None
                finally:
                    await pubsub.aclose()
            finally:
                await client.aclose()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"{self.name}: Redis watch failed: {exc}") from None

    async def _keyspace_channel(self, client: Any) -> str | None:
        from redis.exceptions import RedisError

        try:
            setting = (await client.config_get("notify-keyspace-events")).get(
                "notify-keyspace-events", ""
            )
        except RedisError:
            return None  # CONFIG may be disabled on managed servers
        if isinstance(setting, bytes):
            setting = setting.decode()
        if "K" not in setting or not ({"A", "g", "h", "$"} & set(setting)):
            return None
        db = client.connection_pool.connection_kwargs.get("db", 0)
        return f"__keyspace@{db}__:{self.key}"


def redis(
    url: str,
    key: str,
    *,
    kind: Literal["auto", "hash", "document"] = "auto",
    format: str = "json",
    separator: str = ".",
    channel: str | None = None,
    poll_interval: float = 5.0,
    optional: bool = False,
    name: str | None = None,
) -> RedisSource:
    """The Redis key `key` at `url`: a hash of dotted fields, or a string holding a document."""
    return RedisSource(
        url,
        key,
        kind=kind,
        format=format,
        separator=separator,
        channel=channel,
        poll_interval=poll_interval,
        optional=optional,
        name=name,
    )
