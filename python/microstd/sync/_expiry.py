"""When a holder must consider its lease lost: at its local expiry minus a margin.

A server (Redis, etcd) ends a lease `ttl` seconds after it *executed* the
request that granted or extended it, on the server's clock. The holder cannot
see that clock. It counts instead on its own monotonic clock from the moment
it *sent* the request, which is never later than the server executing it: a
slow network or a slow server can only make the holder give up early, never
late. It gives up `margin(ttl)` before that local expiry, whether or not any
reply came, so a rival (granted only after the server's expiry) never finds
the old holder still believing it holds the lease.

The margin is a tenth of the ttl. It covers a difference in clock *rate*
between holder and server (assumed at most 1%, far above real quartz drift
and NTP slewing) with room to spare for the lateness of the holder's own
timer. What it cannot cover: a clock that is *stepped* (the Redis server's
wall clock drives its key expiry), or a holder process paused between its
check and its action (a stop-the-world pause, SIGSTOP, a swapped-out VM);
fencing tokens are for that. docs/guarantees.md states the assumptions.
"""

from __future__ import annotations

import math

from microstd.errors import InvalidArgument

__all__ = ["DEFAULT_TIMEOUT", "MARGIN_FRACTION", "give_up_at", "margin", "timeout_option"]

#: The fraction of a lease's ttl a holder gives up before its local expiry.
MARGIN_FRACTION = 0.1

#: Seconds one request to a lock server may take before it fails with
#: `ConnectionFailed` (the `timeout` option of redis:// and etcd:// locks).
DEFAULT_TIMEOUT = 5.0


def margin(ttl: float) -> float:
    """How long before its local expiry a lease of `ttl` seconds counts as lost."""
    return ttl * MARGIN_FRACTION


def give_up_at(sent_at: float, ttl: float) -> float:
    """The monotonic time at which a lease whose grant (or last extension) was
    sent at `sent_at` must be considered lost."""
    return sent_at + ttl - margin(ttl)


def timeout_option(value: object) -> float:
    """The `timeout` option (text when it comes from a URL) as seconds > 0."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"timeout must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"timeout must be a finite number of seconds > 0, got {value!r}")
    return seconds
