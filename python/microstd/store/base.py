"""The store interface: records with revisions, TTLs, conditional writes and watch.

`Store` is the async interface every backend implements; `SyncStore` is its
blocking twin with the same method names and semantics. Backends raise only
`microstd.errors` exceptions.
"""

from __future__ import annotations

import abc
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from microstd import _validate
from microstd._lifecycle import AsyncResource, SyncResource

__all__ = [
    "Event",
    "EventKind",
    "Record",
    "Revision",
    "Store",
    "SyncStore",
    "typed_record",
    "typed_records",
    "validate_key",
    "validate_metadata",
    "validate_ttl",
]

_log = logging.getLogger("microstd.store")

#: An opaque revision: compare revisions only by equality.
Revision = object

EventKind = Literal["put", "delete", "expire"]


# Slotted: a record is built per key read, and a slotted instance is one
# allocation with its fields at fixed offsets (no per-instance attribute table).
@dataclass(frozen=True, slots=True)
class Record:
    """One stored value as read: a decoded copy, never the writer's object.

    `expires_at` is wall-clock epoch seconds, or None for no TTL.
    """

    key: str
    value: object
    metadata: Mapping[str, str] = field(default_factory=dict)
    revision: Revision = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by `watch`: `record` is the new record for "put", else None
    (or the last known record, where the backend has it)."""

    kind: EventKind
    key: str
    record: Record | None = None


def validate_key(key: object) -> str:
    """`key` if it is a non-empty str without lone surrogates, else `InvalidKey`
    (the shared rules of `microstd._validate`)."""
    return _validate.key(key, "store keys")


def validate_ttl(ttl: object) -> float | None:
    """`ttl` as float seconds if finite and > 0, None for no expiry, else
    `InvalidArgument` (the shared rules of `microstd._validate`)."""
    return _validate.ttl_or_none(ttl)


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of `metadata` after checking it maps str to str."""
    if metadata is None:
        return {}
    out: dict[str, str] = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata must map str to str")
        out[k] = v
    return out


def typed_record(record: Record, type: Any, content_type: str | None = None) -> Record:
    """`record` with its value converted into `type` (`ValidationError` with the
    path when it does not fit); what `read(key, type=T)` returns."""
    from microstd.codec.typed import convert_decoded

    return replace(record, value=convert_decoded(record.value, type, content_type))


def typed_records(
    records: dict[str, Record], type: Any, content_type: str | None = None
) -> dict[str, Record]:
    """`typed_record` for each record of a `read_many` result."""
    return {key: typed_record(rec, type, content_type) for key, rec in records.items()}


class Store(AsyncResource, abc.ABC):
    """Async key-value store. Use as `async with store:` or `connect()` / `close()`."""

    @abc.abstractmethod
    async def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision:
        """Store `value` under `key`; returns the new revision.

        `if_revision` writes only if the current revision equals it; `if_absent`
        only if no live record exists. Either failing raises `Conflict`.
        """

    @abc.abstractmethod
    async def read(self, key: str, *, type: Any = None) -> Record:
        """The live record for `key`; `NotFound` if missing or expired.

        `type=T` converts the value into a `T` (a dataclass, `list[Item]`...),
        raising `ValidationError` with the path when it does not fit.
        """

    async def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]:
        """The live records among `keys`; missing keys are absent from the result."""
        from microstd.errors import NotFound

        out: dict[str, Record] = {}
        for key in keys:
            try:
                out[key] = await self.read(key, type=type)
            except NotFound:
                continue
        return out

    async def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        """Write every item (unconditionally), all or nothing; returns each key's new revision.

        This default checks the ttl and every key first, then writes one item at a
        time; if a write fails (a value that cannot be encoded, a lost server), the
        items already written are put back as they were (or deleted, if they were
        absent) before the error propagates. A value is put back only while the key
        still holds the batch's revision (`if_revision`), so a newer write by someone
        else stays. A key that was absent is read first and deleted only while it
        still holds the batch's revision; this read-then-delete is racy (the
        interface has no conditional delete), so a write by someone else landing
        between the read and the delete is still lost. Keys that cannot be put back
        (or checked) are logged and named in a note on the error. A concurrent reader may see some
        items before the others: a backend that can write them in one transaction
        overrides this.
        """
        validate_ttl(ttl)
        items = dict(items)
        for key in items:
            validate_key(key)
        previous = await self.read_many(list(items))
        revisions: dict[str, Revision] = {}
        try:
            for key, value in items.items():
                revisions[key] = await self.write(key, value, ttl=ttl)
        except BaseException as exc:
            left = await self._put_back(revisions, previous)
            if left:
                note = f"write_many: {len(left)} key(s) could not be put back: {left}"
                if sys.version_info >= (3, 11):
                    exc.add_note(note)
                else:
                    exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]
            raise
        return revisions

    async def _put_back(
        self, written: Mapping[str, Revision], previous: Mapping[str, Record]
    ) -> list[str]:
        """Restore each key `written` (at its revision) to the record it had, or delete
        it if it had none (only while it still holds `rev`: racy, see `write_many`);
        returns the keys that could not be put back or checked."""
        from microstd.errors import Conflict, NotFound

        left: list[str] = []
        for key, rev in written.items():
            old = previous.get(key)
            try:
                ttl = (
                    None if old is None or old.expires_at is None else old.expires_at - time.time()
                )
                if old is None or (ttl is not None and ttl <= 0):
                    # Absent before, or it would have expired by now. No conditional
                    # delete in the interface: read, then delete only if still ours.
                    try:
                        current = await self.read(key)
                    except NotFound:
                        continue
                    if current.revision != rev:
                        continue  # written again since the batch: that newer write stays
                    await self.delete(key)
                else:
                    await self.write(
                        key, old.value, ttl=ttl, metadata=old.metadata, if_revision=rev
                    )
            except Conflict:
                continue  # written again since the batch: that newer write stays
            except Exception:  # best effort per key: the batch's own error is what propagates
                _log.warning("write_many: could not put %r back after a failed batch", key)
                left.append(key)
        return left

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete `key`; True if a live record was deleted. A missing key is not an error."""

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete every key; returns how many live records were deleted."""
        count = 0
        for key in keys:
            count += await self.delete(key)
        return count

    @abc.abstractmethod
    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        """Live keys, sorted; filtered by prefix and suffix first, then paged."""

    async def exists(self, key: str) -> bool:
        """True if a live record exists for `key`."""
        from microstd.errors import NotFound

        try:
            await self.read(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        """Changes to keys under `prefix` from now on, in order. `NotSupported` where
        the backend cannot watch."""


class SyncStore(SyncResource, abc.ABC):
    """The blocking twin of `Store`: same methods, same semantics, no awaits."""

    @abc.abstractmethod
    def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision: ...

    @abc.abstractmethod
    def read(self, key: str, *, type: Any = None) -> Record: ...

    @abc.abstractmethod
    def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]: ...

    @abc.abstractmethod
    def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> int: ...

    @abc.abstractmethod
    def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def watch(self, prefix: str = "") -> Iterator[Event]: ...
