"""A small client of etcd v3's JSON gateway (`/v3/...`) over aiohttp.

Why the gateway and not a gRPC client: the maintained Python etcd v3 clients
(python-etcd3, aetcd) are either unmaintained or pin old protobuf / grpcio
releases; the JSON gateway ships in every etcd v3 server and aiohttp is
already the `etcd` extra's only dependency. Keys and values travel base64
encoded; int64 fields come back as strings.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

from microstd.errors import ConnectionFailed

__all__ = ["DEFAULT_TIMEOUT", "EtcdAPI", "b64", "field", "int_field", "kvs_of", "unb64"]

# A watch stream's undecoded text is capped: a server (or something posing as
# one) sending bytes that never parse must not grow it without end.
_MAX_WATCH_BUFFER = 16 * 1024 * 1024


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(data: object) -> str:
    """The text of a base64 field; `ConnectionFailed` when it is not base64."""
    if not isinstance(data, str):
        raise ConnectionFailed("etcd answered a non-text base64 field")
    try:
        return base64.b64decode(data, validate=True).decode(errors="replace")
    except ValueError:
        raise ConnectionFailed("etcd answered a field that is not base64") from None


# The gateway's JSON is not trusted to have the shape etcd documents (a proxy,
# another version, or a hostile endpoint may answer): these read it defensively
# and report a missing or mistyped field as `ConnectionFailed`, never KeyError.


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


def prefix_end(prefix: str) -> str:
    """The `range_end` that makes a range cover every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes here end in "/", so no byte overflows
    return base64.b64encode(bytes(raw)).decode()


#: Seconds an etcd request may take before it fails with `ConnectionFailed`
#: (a frozen server otherwise holds a request for aiohttp's default 5 minutes).
DEFAULT_TIMEOUT = 5.0


class EtcdAPI:
    """POSTs JSON to one etcd server; network failures become `ConnectionFailed`.

    Every request is bounded by `timeout` seconds (or the `timeout` given to
    that call); a request that runs past it fails with `ConnectionFailed`.
    """

    def __init__(self, base: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base = base.rstrip("/")
        self._timeout = timeout
        self._session: Any = None

    async def _ensure(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, path: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        import aiohttp

        session = await self._ensure()
        total = self._timeout if timeout is None else timeout
        bound = aiohttp.ClientTimeout(total=max(0.001, total))
        try:
            async with session.post(f"{self._base}/v3/{path}", json=body, timeout=bound) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    message = data.get("message") if isinstance(data, dict) else None
                    raise ConnectionFailed(
                        f"etcd {path}: HTTP {resp.status}: {str(message or data)[:200]}"
                    )
                if not isinstance(data, dict):
                    raise ConnectionFailed(f"etcd {path}: the answer is not a JSON object")
                return data
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ConnectionFailed(f"etcd {path}: {type(exc).__name__}: {exc}") from exc

    async def watch(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The `result` objects of a streaming watch, as they arrive."""
        import aiohttp

        session = await self._ensure()
        decoder = json.JSONDecoder()
        # Incremental: a chunk may end inside a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            async with session.post(
                f"{self._base}/v3/watch",
                json={"create_request": body},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as resp:
                buffer = ""
                async for chunk in resp.content.iter_any():
                    buffer += text.decode(chunk)
                    if len(buffer) > _MAX_WATCH_BUFFER:
                        raise ConnectionFailed("etcd watch: the stream is not JSON")
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
                            raise ConnectionFailed(f"etcd watch: {str(item['error'])[:200]}")
                        result = item.get("result", {})
                        if isinstance(result, dict):
                            yield result
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"etcd watch: {type(exc).__name__}: {exc}") from exc
