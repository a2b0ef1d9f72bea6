"""Redis behind Sentinel: the URL, and a redis-py client that follows the master.

    redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]...]/SERVICE[/DB][?options]

The hosts are the Sentinels (port 26379 unless given); ``SERVICE`` is the name
the Sentinels know the master by (``sentinel monitor SERVICE ...``); ``DB`` the
database (0). The credentials are the data nodes' (the master's and its
replicas'); Sentinels that require a password of their own take
``sentinel_password=`` (and ``sentinel_username=``). ``rediss+sentinel://``
uses TLS to the data nodes and the Sentinels alike. The other spellings in use
(``redis-sentinel://``, ``sentinel://``) mean the same; ``service_name=`` and
``db=`` may be given as options instead of in the path.

What the client does (redis-py's `redis.asyncio.sentinel`): each new connection
asks the Sentinels, in turn, for the master's address (the first Sentinel that
answers with a master in good standing is asked first next time) and connects
to it; when the master changes, idle connections to the old one are dropped.
After a failover the connections to the old master fail (it died) or answer
READONLY (it came back as a replica): either way the call raises
`ConnectionFailed` and the next one finds the new master. Nothing is retried
(`microstd._engines.redis` says why).

Sentinel replication is asynchronous: a write the old master acknowledged but
had not yet sent to the replica that Sentinel promotes is lost. See
docs/guarantees.md ("Clusters") for what that means for each area.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines._common import rebuilt_url
from microstd.errors import InvalidArgument

__all__ = ["SCHEMES", "SentinelTarget", "aclose", "describe"]

#: URL schemes that name a master through its Sentinels (TLS: the `rediss` ones).
SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel", "redis-sentinel", "sentinel"})
_TLS = frozenset({"rediss+sentinel"})
#: The Sentinel options, taken out of the URL and the keyword options.
OPTIONS = ("sentinel_password", "sentinel_username", "service_name", "db")
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """The Sentinels to ask and the master they name (`service`)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(
        cls, parsed: ParsedURL, options: dict[str, Any]
    ) -> tuple[SentinelTarget, ParsedURL]:
        """The Sentinel target of a ``redis+sentinel://`` URL, and the URL of the data
        nodes (``redis://[user:password@]sentinel-master/DB?rest``: the credentials,
        database and redis-py options every connection to the master uses).

        The Sentinel options are taken out of `options` (keywords, which win over
        the query) and out of the query.
        """
        query = dict(parsed.query)
        mine = {name: query.pop(name) for name in OPTIONS if name in query}
        mine.update({name: options.pop(name) for name in OPTIONS if name in options})
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) > 2:
            raise InvalidArgument(f"a Sentinel URL's path is /SERVICE[/DB], got {parsed.path!r}")
        service = str(mine.get("service_name") or (parts[0] if parts else ""))
        if not service:
            raise InvalidArgument(
                f"{parsed.scheme}:// names the master after the Sentinels:"
                f" {parsed.scheme}://host:26379/mymaster/0"
            )
        db_text = mine.get("db", parts[1] if len(parts) > 1 else "0")
        try:
            db = int(db_text)
        except (TypeError, ValueError):
            raise InvalidArgument(f"the Redis database must be an int, got {db_text!r}") from None
        if db < 0:
            raise InvalidArgument(f"the Redis database must be >= 0, got {db}")
        sentinels = tuple(
            (host or "127.0.0.1", port or DEFAULT_PORT) for host, port in parsed.hosts
        )
        tls = parsed.scheme in _TLS
        data_url = rebuilt_url("rediss" if tls else "redis", parsed, f"sentinel-master/{db}", query)
        target = cls(
            sentinels,
            service,
            tls,
            _text(mine.get("sentinel_username")),
            _text(mine.get("sentinel_password")),
        )
        return target, data_url

    def client(self, data_url: str, common: Mapping[str, Any]) -> Any:
        """A redis-py client for the master: connections made through the Sentinels.

        `data_url` is the data nodes' URL (from `from_url`); `common` the connection
        options (timeouts, retry, decoding) both the data nodes and the Sentinels use.
        """
        from redis.asyncio.connection import parse_url as redis_url_options
        from redis.asyncio.sentinel import Sentinel

        # `retry` (no retries) says it all; redis-py 6+ warns of `retry_on_timeout`.
        common = {k: v for k, v in common.items() if k != "retry_on_timeout"}
        data = dict(redis_url_options(data_url))
        for name in ("host", "port", "connection_class", "path"):
            data.pop(name, None)
        if self.tls:
            data["ssl"] = True
        sentinel_kwargs: dict[str, Any] = {
            k: v for k, v in common.items() if k != "decode_responses"
        }
        if self.tls:
            sentinel_kwargs["ssl"] = True
        if self.username is not None:
            sentinel_kwargs["username"] = self.username
        if self.password is not None:
            sentinel_kwargs["password"] = self.password
        # Typed through Any: redis-py's Sentinel.__init__ gained annotations in 8.2,
        # so an ignore for the untyped call is an error on newer and needed on older.
        make_manager: Any = Sentinel
        manager = make_manager(
            list(self.sentinels), sentinel_kwargs=sentinel_kwargs, **{**data, **common}
        )
        return manager.master_for(self.service)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def aclose(client: Any) -> None:
    """Close a client from `SentinelTarget.client` (or any redis-py client): its pool,
    and the connections to the Sentinels it asked."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    await client.aclose()
    for sentinel in getattr(manager, "sentinels", ()):
        with contextlib.suppress(Exception):
            await sentinel.aclose()


def describe(exc: BaseException) -> str | None:
    """A short text for redis-py's "no master found" (its own text repeats the repr
    of every Sentinel client it asked); None for any other exception."""
    from redis.asyncio.sentinel import MasterNotFoundError

    if not isinstance(exc, MasterNotFoundError):
        return None
    head, _, errors = str(exc).partition(" : ")
    if not errors:
        return f"{head}: the Sentinels that answered know no master in good standing"
    return f"{head}: {errors.count(' - ') or 1} Sentinel(s) could not be reached"
