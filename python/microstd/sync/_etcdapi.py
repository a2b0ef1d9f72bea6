"""A small client of etcd v3's JSON gateway (`/v3/...`) over aiohttp.

Why the gateway and not a gRPC client: the maintained Python etcd v3 clients
(python-etcd3, aetcd) are either unmaintained or pin old protobuf / grpcio
releases; the JSON gateway ships in every etcd v3 server and aiohttp is
already the `etcd` extra's only dependency. Keys and values travel base64
encoded; int64 fields come back as strings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from microstd.errors import ConnectionFailed

__all__ = ["EtcdAPI", "b64", "unb64"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(data: str) -> str:
    return base64.b64decode(data).decode(errors="replace")


def prefix_end(prefix: str) -> str:
    """The `range_end` that makes a range cover every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes here end in "/", so no byte overflows
    return base64.b64encode(bytes(raw)).decode()


class EtcdAPI:
    """POSTs JSON to one etcd server; network failures become `ConnectionFailed`."""

    def __init__(self, base: str) -> None:
        self._base = base.rstrip("/")
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

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        session = await self._ensure()
        try:
            async with session.post(f"{self._base}/v3/{path}", json=body) as resp:
                data: dict[str, Any] = await resp.json(content_type=None)
                if resp.status != 200:
                    raise ConnectionFailed(
                        f"etcd {path}: HTTP {resp.status}: {data.get('message') or data}"
                    )
                return data
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ConnectionFailed(f"etcd {path}: {type(exc).__name__}: {exc}") from exc

    async def watch(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The `result` objects of a streaming watch, as they arrive."""
        import aiohttp

        session = await self._ensure()
        decoder = json.JSONDecoder()
        try:
            async with session.post(
                f"{self._base}/v3/watch",
                json={"create_request": body},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as resp:
                buffer = ""
                async for chunk in resp.content.iter_any():
                    buffer += chunk.decode()
                    while True:
                        buffer = buffer.lstrip()
                        if not buffer:
                            break
                        try:
                            item, end = decoder.raw_decode(buffer)
                        except ValueError:
                            break  # incomplete: wait for more bytes
                        buffer = buffer[end:]
                        if "error" in item:
                            raise ConnectionFailed(f"etcd watch: {item['error']}")
                        yield item.get("result", {})
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"etcd watch: {type(exc).__name__}: {exc}") from exc
