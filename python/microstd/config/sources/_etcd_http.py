"""A minimal client of etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/watch`) over aiohttp.

Keys and values travel base64-encoded, as the gateway's protobuf-JSON
mapping requires.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["b64", "prefix_end", "range_prefix", "watch_prefix"]

# One watch response larger than this means something is wrong; it is refused, not buffered.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def b64(data: bytes) -> str:
    """Base64 text of `data`."""
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The `range_end` that selects every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


async def range_prefix(session: Any, base: str, prefix: bytes) -> tuple[dict[str, bytes], int]:
    """Every key under `prefix` with its value, and the store revision of the read."""
    body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    async with session.post(f"{base}/v3/kv/range", json=body) as resp:
        if resp.status != 200:
            raise ConnectionError(f"etcd range returned HTTP {resp.status}")
        data = await resp.json(content_type=None)
    out: dict[str, bytes] = {}
    for kv in data.get("kvs", ()):
        key = base64.b64decode(kv["key"]).decode("utf-8")
        out[key] = base64.b64decode(kv.get("value", ""))
    revision = int(data.get("header", {}).get("revision", 0))
    return out, revision


async def watch_prefix(
    session: Any, base: str, prefix: bytes, start_revision: int = 0
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield the events of each watch response under `prefix` (a long-lived stream)."""
    create: dict[str, Any] = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    if start_revision:
        create["start_revision"] = start_revision
    async with session.post(
        f"{base}/v3/watch", json={"create_request": create}, timeout=None
    ) as resp:
        if resp.status != 200:
            raise ConnectionError(f"etcd watch returned HTTP {resp.status}")
        buffer = b""
        # Chunks, not readline(): aiohttp caps a line at 64 KiB, and a watch response
        # carrying large values is longer than that.
        async for chunk in resp.content.iter_any():
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                raise ConnectionError("etcd watch message too large")
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                events = _events(line)
                if events:
                    yield events
        # The gateway ends the stream only when etcd goes away: a broken watch, not the end.
        raise ConnectionError("etcd watch stream ended")


def _events(line: bytes) -> list[dict[str, Any]]:
    if not line.strip():
        return []
    message = json.loads(line)
    if "error" in message:
        raise ConnectionError(f"etcd watch failed: {message['error']}")
    events: list[dict[str, Any]] = message.get("result", {}).get("events") or []
    return events
