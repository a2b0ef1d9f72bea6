"""Listing the keys of a JetStream key-value bucket without a consumer.

nats-py's ``kv.keys()`` (and ``kv.watchall()`` used to read every entry) make
an ephemeral consumer on each call. On a cluster with one server down, the
server may place that consumer on the dead one and never answer: about one
listing in three timed out, for as long as the server stayed down (the
replicated bucket itself was readable and writable throughout). These
helpers ask the stream instead, with requests its leader answers alone:

- `kv_names`: the names (keys) that have a message, from ``STREAM.INFO`` with
  ``subjects_filter`` (its per-subject counts), every page of it. A deleted
  or purged key still has one: its last message is the DEL/PURGE marker.
- `kv_live`: which of some names are live, in their order: the last message
  of each (``STREAM.MSG.GET`` by subject, several in flight at once) is not a
  DEL/PURGE marker (and passes the caller's own test, such as an expiry);
  it can stop once it has found enough.
- `in_batches`: one request per item, a batch at a time; the first failure
  cancels the rest of its batch, so no read goes on after the call has raised.

Errors are nats-py's (`nats.js.errors.NotFoundError` for a missing bucket);
run them inside `errors(endpoint, what)` like any other request.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import nats.errors as nerr
import nats.js.errors as jerr
from nats.aio.client import Client

__all__ = ["DELETED_OPS", "in_batches", "kv_live", "kv_names"]

#: ``KV-Operation`` values of the markers a delete or purge leaves as a key's last message.
DELETED_OPS = frozenset({"DEL", "PURGE"})

_OP = "KV-Operation"
_API = "$JS.API"
#: Last-message reads `kv_live` keeps in flight at once.
IN_FLIGHT = 32

_T = TypeVar("_T")
_R = TypeVar("_R")


async def in_batches(
    fn: Callable[[_T], Awaitable[_R]], items: Sequence[_T], batch: int = IN_FLIGHT
) -> list[_R]:
    """`fn(item)` for each item, in their order, with up to `batch` in flight (one
    batch after another). When one raises, the others of its batch are cancelled
    and awaited before the error propagates, and no later batch starts: nothing
    goes on in the background after the call has failed (as `asyncio.gather`
    would leave it; no `TaskGroup` before Python 3.11)."""
    out: list[_R] = []
    step = max(1, batch)
    for start in range(0, len(items), step):
        tasks = [asyncio.ensure_future(fn(x)) for x in items[start : start + step]]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            # On a failure (or our own cancellation) the rest of the batch stops too.
            if not all(t.done() for t in tasks):
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                t.result()  # raises the first failure, in the items' order
        out.extend(t.result() for t in tasks)
    return out


#: `kv_live`'s test of one entry: (name, stream sequence, headers) -> live.
Liveness = Callable[[str, int, Mapping[str, str]], bool]


async def kv_names(
    nc: Client, bucket: str, filter: str = ">", *, timeout: float, api: str = _API
) -> list[str]:
    """The names in `bucket` matching the subject `filter` (``>``, ``NAME.>``) that have a
    message, sorted: live keys and deleted ones alike (see `kv_live`).

    Each request waits up to `timeout`. The server returns at most a page of
    subjects per request (100 000 on nats-server 2.9): the next pages are
    asked for with ``offset``.
    """
    pre = f"$KV.{bucket}."
    names: list[str] = []
    offset = 0
    while True:
        request = {"subjects_filter": pre + filter, "offset": offset}
        try:
            msg = await nc.request(
                f"{api}.STREAM.INFO.KV_{bucket}", json.dumps(request).encode(), timeout=timeout
            )
        except nerr.NoRespondersError:
            raise jerr.ServiceUnavailableError from None
        resp = json.loads(msg.data)
        if "error" in resp:
            jerr.APIError.from_error(resp["error"])  # raises
        subjects = (resp.get("state") or {}).get("subjects") or {}
        names.extend(s[len(pre) :] for s in subjects if s.startswith(pre))
        offset += len(subjects)
        total = resp.get("total")
        if not subjects or not isinstance(total, int) or offset >= total:
            break
    names.sort()
    return names


async def kv_live(
    nc: Client,
    bucket: str,
    names: Sequence[str],
    *,
    timeout: float,
    live: Liveness | None = None,
    want: int | None = None,
    in_flight: int = IN_FLIGHT,
    api: str = _API,
) -> list[str]:
    """The names of `names`, in their order, whose last message is not a delete or purge
    marker (nor gone meanwhile) and, with `live`, passes ``live(name, seq, headers)``.

    Each request waits up to `timeout`. Reads `in_flight` names at once, a batch
    after another, and stops after the batch in which it found `want` live
    names (then it may return more).
    """
    subject = f"{api}.STREAM.MSG.GET.KV_{bucket}"
    pre = f"$KV.{bucket}."

    async def one(name: str) -> bool:
        # STREAM.MSG.GET by hand: js.get_msg parses headers with the email
        # package, which made a listing of 100 keys three times slower.
        request = json.dumps({"last_by_subj": pre + name}).encode()
        try:
            msg = await nc.request(subject, request, timeout=timeout)
        except nerr.NoRespondersError:
            raise jerr.ServiceUnavailableError from None
        resp = json.loads(msg.data)
        if "error" in resp:
            if resp["error"].get("code") == 404:
                return False  # purged (or removed by max_age) since it was listed
            jerr.APIError.from_error(resp["error"])  # raises
        stored = resp["message"]
        headers = _headers(stored.get("hdrs"))
        if headers.get(_OP) in DELETED_OPS:
            return False
        return live is None or live(name, int(stored["seq"]), headers)

    out: list[str] = []
    step = max(1, in_flight)
    for start in range(0, len(names), step):
        if want is not None and len(out) >= want:
            break
        batch = names[start : start + step]
        found = await in_batches(one, batch, step)
        out.extend(n for n, ok in zip(batch, found, strict=True) if ok)
    return out


def _headers(encoded: str | None) -> dict[str, str]:
    """The headers of a stored message (base64 of ``NATS/1.0`` and ``Name: value`` lines)."""
    if not encoded:
        return {}
    lines = base64.b64decode(encoded).decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name:
            out.setdefault(name.strip(), value.strip())
    return out
