"""Redis Cluster: the URL, a redis-py cluster client, and hash tags.

    redis+cluster://[[user]:password@]host1[:6379][,host2[:6379]...][/0][?options]

The hosts are some of the cluster's nodes (port 6379 unless given): the client
asks the first that answers for the slot map (``CLUSTER SLOTS``) and then talks
to every master directly. ``rediss+cluster://`` uses TLS; ``redis-cluster://``
means the same as ``redis+cluster://``. A cluster has only database 0, so the
path is empty or ``/0``. The query takes the engine's options (timeouts) and
redis-py's `RedisCluster` keyword options (``?require_full_coverage=false``).

What the client does (redis-py's `redis.asyncio.cluster.RedisCluster`): each
command goes to the master of its keys' hash slot. A ``MOVED`` or ``ASK``
redirection (a slot migrated, or a replica promoted) is followed at once: the
command was not executed by the node that redirected it, so following it is
safe for a write too. A connection error or timeout is *not* retried (the
write may have been applied; `microstd._engines.redis` says why): the call
raises `ConnectionFailed` and the next one reloads the slot map, so once the
cluster has promoted a replica of a dead master the next call succeeds.
``CLUSTERDOWN`` and ``TRYAGAIN`` replies are `ConnectionFailed` too.

Keys of one operation must hash to one slot (a Lua script, MULTI, a multi-key
command). The areas that support the cluster put every key of one namespace
under one hash tag (`hash_tag`): one store, or one broker, lives in one slot,
so its multi-key operations stay atomic, at the price of living on one shard.

Replication is asynchronous, as with Sentinel: a write the master acknowledged
but had not yet sent to the replica that is promoted is lost. See
docs/guarantees.md ("Clusters").
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines._common import rebuilt_url
from microstd.errors import InvalidArgument

__all__ = ["SCHEMES", "ClusterTarget", "hash_tag"]

#: URL schemes that name a Redis Cluster (TLS: the `rediss` one).
SCHEMES = frozenset({"redis+cluster", "rediss+cluster", "redis-cluster"})
_TLS = frozenset({"rediss+cluster"})
DEFAULT_PORT = 6379


def hash_tag(prefix: str) -> str:
    """`prefix` with a hash tag, so every key that starts with it hashes to one slot.

    A prefix that already holds a non-empty tag (``app:{orders}:``) is kept as
    it is; any other is wrapped whole (``microstd:store:`` ->
    ``{microstd:store:}``). Redis hashes only what lies between the first
    ``{`` and the first ``}`` after it, when that is not empty.
    """
    start = prefix.find("{")
    if start >= 0:
        end = prefix.find("}", start + 1)
        if end > start + 1:
            return prefix
    return "{" + prefix + "}"


@functools.cache
def client_options() -> frozenset[str]:
    """The keyword options redis-py's `RedisCluster` takes (and its URL parser's)."""
    from redis.asyncio import connection as rconn
    from redis.asyncio.cluster import RedisCluster

    names = set(getattr(rconn, "URL_QUERY_ARGUMENT_PARSERS", {}))
    for name, param in inspect.signature(RedisCluster.__init__).parameters.items():
        if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            names.add(name)
    # Ours to set: where the nodes are, and no retries.
    return frozenset(names - {"host", "port", "startup_nodes", "retry", "db", "path"})


@dataclass(frozen=True)
class ClusterTarget:
    """The nodes to ask for the slot map."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False

    @classmethod
    def from_url(cls, parsed: ParsedURL) -> tuple[ClusterTarget, ParsedURL]:
        """The cluster target of a ``redis+cluster://`` URL, and the URL of the data
        nodes (``redis://[user:password@]cluster/0?rest``: the credentials and
        redis-py options every connection uses)."""
        if parsed.path not in ("", "/", "/0"):
            raise InvalidArgument(
                f"a Redis Cluster has only database 0: the path of {parsed.scheme}:// is"
                f" empty or /0, got {parsed.path!r}"
            )
        query = dict(parsed.query)
        if str(query.pop("db", "0")) != "0":
            raise InvalidArgument("a Redis Cluster has only database 0")
        nodes = tuple((host or "127.0.0.1", port or DEFAULT_PORT) for host, port in parsed.hosts)
        tls = parsed.scheme in _TLS
        return cls(nodes, tls), rebuilt_url(
            "rediss" if tls else "redis", parsed, "cluster/0", query
        )

    def client(self, data_url: str, common: Mapping[str, Any]) -> Any:
        """A redis-py cluster client: `data_url` from `from_url`, `common` the
        connection options (timeouts, decoding) every node connection uses."""
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        from redis.asyncio.connection import parse_url as redis_url_options
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = dict(redis_url_options(data_url))
        for name in ("host", "port", "connection_class", "path", "db"):
            options.pop(name, None)
        for name, value in options.items():
            if isinstance(value, str):
                options[name] = _typed(name, value)
        if self.tls:
            options["ssl"] = True
        common = {k: v for k, v in common.items() if k not in ("retry", "retry_on_timeout")}
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            # No retries of a command after a connection error or timeout (it may
            # have been applied); redirections (MOVED, ASK) are still followed.
            retry=Retry(NoBackoff(), 0),
            **{**options, **common},
        )


def _typed(name: str, value: str) -> Any:
    """A query option's text as the type of `RedisCluster`'s default for it
    (``require_full_coverage=false`` is False, not a non-empty string)."""
    from redis.asyncio.cluster import RedisCluster

    param = inspect.signature(RedisCluster.__init__).parameters.get(name)
    default = None if param is None else param.default
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise InvalidArgument(f"redis+cluster:// option {name}={value!r} is not valid") from None
    return value
