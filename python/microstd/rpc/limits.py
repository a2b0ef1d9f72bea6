"""`Limits`: what one server lets its clients hold (time, memory, threads, connections).

    svc = microstd.Service("upload", limits=Limits(max_body=64 << 20, max_decoded=2 << 30))

Every limit answers a way a client, careless or hostile, could make a server
hold resources without end:

- `max_body`: a larger request body is refused (413) before it is read.
- `max_timeout`: every request gets a deadline, the caller's `Microstd-Timeout`
  clamped to this (and this when the caller sent none), so no request holds a
  handler, a timer or a thread past it.
- `max_decoded`: decoding multiplies memory (a msgpack body of empty maps
  becomes 72 times its size in Python objects); requests are admitted only
  while the worst case of what they decode fits this budget, FIFO. A request
  that waits longer than `queue_timeout` for room gets 503 (clients retry
  another node); one larger than the whole budget runs alone.
- `handler_threads`: sync handlers run on a pool of this many threads of the
  server's own (never the loop's default executor, so a stuck handler cannot
  starve `asyncio.to_thread` users).
- `body_timeout`: a request body must arrive within this many seconds (408).
- `idle_timeout`: a connection without a request for this long is closed,
  including one still sending its headers.
- `max_stream_timeout`: as `max_timeout`, for streaming calls (which may
  rightly last longer: a watch, an upload).
- `max_streams`: streaming calls open at once; more are refused (503).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["AMPLIFICATION", "Limits"]

#: Worst case of decoded memory per body byte over the built-in codecs, measured
#: with tracemalloc: msgpack and CBOR empty maps 72x (64x empty arrays), JSON 39x,
#: short strings 29x, floats 3.6x. A request is charged its body size times this.
AMPLIFICATION = 72


def _default_threads() -> int:
    # The default executor's size (concurrent.futures): enough for I/O-bound
    # sync handlers without one thread per request.
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one RPC server; see the module docstring for each."""

    max_body: int = 4 * 1024 * 1024
    max_timeout: float = 300.0
    max_decoded: int = 512 * 1024 * 1024
    queue_timeout: float = 5.0
    handler_threads: int = _default_threads()
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    max_stream_timeout: float = 3600.0
    max_streams: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_body", "max_decoded", "handler_threads", "max_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")
        for name in (
            "max_timeout",
            "queue_timeout",
            "body_timeout",
            "idle_timeout",
            "max_stream_timeout",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"Limits.{name} must be a finite number of seconds > 0")

    def charge(self, body_bytes: int) -> int:
        """What a body of `body_bytes` costs against `max_decoded` (at most all of it)."""
        # The fixed part covers the request's own objects (context, headers, reply).
        return min((body_bytes + 64) * AMPLIFICATION, self.max_decoded)
