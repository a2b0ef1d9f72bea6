"""Redis: a hash (one field per key) or a key holding a JSON / YAML / TOML document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from microstd import _deps
from microstd.config.sources._formats import parse_document
from microstd.config.sources._kv import decode_value
from microstd.config.sources.base import Source, nest, poll_changes
from microstd.errors import ConfigError, ConnectionFailed, InvalidArgument, MicrostdError

__all__ = ["RedisSource", "redis"]


class RedisSource(Source):
    """One Redis key: a hash (`db.host` fields, dots nest) or a string holding a document.

    Watching: with `channel=`, a publish on that channel signals a change;
    otherwise keyspace notifications for the key when the server has them
    enabled (`notify-keyspace-events` with `K` and the key's type), else
    polling every `poll_interval` seconds with jitter.

    Connection, timeouts and errors are `microstd._engines.redis`'s: options
    ``connect_timeout``, ``timeout`` (5 s each) and ``ping_interval`` (10 s), in
    the URL or as keywords. A read that fails raises `ConfigError`; a watch whose
    connection is lost (or fails its liveness PING) raises `ConfigError` too,
    and the reload machinery starts it again and reloads.
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
        **connection: Any,
    ) -> None:
        with _deps.needed_by("config.redis()"):
            from microstd._engines import redis as engine

        if kind not in ("auto", "hash", "document"):
            raise ValueError(f"kind must be 'auto', 'hash' or 'document', not {kind!r}")
        self.endpoint, rest = engine.RedisEndpoint.from_url(url, connection)
        if rest:
            raise InvalidArgument(f"unknown redis config options: {sorted(rest)}")
        self.endpoint.refuse_cluster(
            "config sources",
            "its watch uses keyspace notifications, which a cluster node sends only for"
            " its own slots; it was not adapted to that",
        )
        self.url = url
        self.key = key
        self.kind = kind
        self.format = format
        self.separator = separator
        self.channel = channel
        self.poll_interval = poll_interval
        super().__init__(name or f"redis:{key}", optional=optional)

    async def fetch(self) -> dict[str, Any]:
        from microstd._engines import redis as engine

        try:
            conn = await engine.acquire(self.endpoint)
            try:
                return await conn.read(f"{self.name} read", lambda: self._read(conn.client))
            finally:
                await engine.release(conn)
        except ConnectionFailed as exc:
            raise ConfigError(f"{self.name}: cannot read from Redis: {exc}") from None
        except MicrostdError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{self.name}: Redis refused the read: {exc}") from None

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
        from microstd._engines import redis as engine

        try:
            conn = await engine.acquire(self.endpoint)
            try:
                with conn.errors(f"{self.name} watch"):
                    channel = self.channel or await self._keyspace_channel(conn.client)
                if channel is None:
                    async for _ in poll_changes(self, self.poll_interval):
                        yield None
                    return
                subscriber = conn.subscriber()
                try:
                    await subscriber.subscribe(channel)
                    while True:
                        if await subscriber.get(timeout=60.0) is not None:
                            yield None
                finally:
                    await subscriber.aclose()
            finally:
                await engine.release(conn)
        except ConnectionFailed as exc:
            raise ConfigError(f"{self.name}: Redis watch failed: {exc}") from None

    async def _keyspace_channel(self, client: Any) -> str | None:
        from redis.exceptions import ResponseError

        try:
            setting = (await client.config_get("notify-keyspace-events")).get(
                "notify-keyspace-events", ""
            )
        except ResponseError:
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
    **connection: Any,
) -> RedisSource:
    """The Redis key `key` at `url`: a hash of dotted fields, or a string holding a document.

    `connection` takes the engine's options (`connect_timeout`, `timeout`,
    `ping_interval`), which the URL's query may also give."""
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
        **connection,
    )
