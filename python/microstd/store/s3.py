"""`s3://BUCKET?endpoint_url=...`: a store in an S3 bucket, through aiobotocore.

    store = microstd.store.open(
        "s3://my-bucket?endpoint_url=http://127.0.0.1:9000&region_name=us-east-1",
        aws_access_key_id="...", aws_secret_access_key="...",
    )

Each record is one object named ``<key_prefix><key>``. Its body is a small
envelope (``MSTD\\x01``, a 4-byte header length, a JSON header with metadata,
expiry and a random nonce, then the encoded value), so the object's ETag differs
on every write, even of the same value: the revision *is* the ETag.

Conditional writes use S3's own preconditions on PutObject: `if_absent` sends
``If-None-Match: *`` and `if_revision` sends ``If-Match: <etag>``, so they are
as atomic as the server makes them: on S3, of two writes conditional on the same
ETag exactly one succeeds. moto_server (5.x) checks the precondition and then
writes without a lock, so two such writes can both succeed there; test against
it with requests serialised (this project's tests/_s3_server.py does).

A conditional write that raises `Conflict` was not applied. botocore sends a
request again after a lost reply or a 5xx; when such a retried conditional PUT
fails its precondition, the first attempt may be what changed the object, so
the store looks: if the object's ETag is the MD5 of this write's body (unique:
the envelope holds a nonce), the write was applied and returns that revision;
otherwise it raises `ConnectionFailed` (ambiguous: applied, then overwritten, or
never applied; an SSE-KMS bucket, whose ETags are not MD5s, always ends here).

TTL is emulated: S3 has no per-object expiry, so ``expires_at`` is stored with
the object (envelope and ``x-amz-meta-microstd-expires-at``) and an expired
object reads as missing. Nothing deletes it on the server; add a bucket lifecycle
rule if storage matters. Because S3 listings carry no metadata, `list` asks for
each candidate object's head to skip expired ones, which costs a request per key.

`write_many` writes one object at a time (S3 has no multi-object
transaction): readers may see a batch part-way, and one that fails is put back
(see `NetworkStore.write_many`) with ``If-Match`` PUTs and DELETEs on the batch's
ETags, so a newer write is kept (on a server that ignores ``If-Match`` on DELETE,
only the head read just before protects it).

`watch` raises `NotSupported`: S3 has no change feed this store can follow.
Credentials and `endpoint_url` come from the options, the query string or the
usual AWS environment; they never appear in a repr.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import botocore.exceptions as bexc
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import get_session

from microstd._backends import ParsedURL, option_flag, redact, redact_text
from microstd.errors import (
    Closed,
    ConnectionFailed,
    DecodeError,
    InvalidKey,
    MicrostdError,
    NotFound,
)
from microstd.store._common import decode_record, malformed, stored_expiry
from microstd.store._network import NetworkStore, Put
from microstd.store.base import Record, Revision

__all__ = ["S3Store"]

_MAGIC = b"MSTD\x01"
_CONTENT_TYPE = "application/vnd.microstd.record"
_EXPIRES_META = "microstd-expires-at"
_MAX_KEY_BYTES = 1024
_CLIENT_OPTIONS = (
    "endpoint_url",
    "region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
)
_NETWORK_ERRORS = (bexc.ConnectionError, bexc.HTTPClientError, OSError)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _fail(exc: BaseException) -> NoReturn:
    # botocore's messages quote the endpoint URL, which may hold credentials.
    raise ConnectionFailed(f"S3 endpoint unreachable: {redact_text(str(exc))}") from exc


def _code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Refused(MicrostdError):
    """S3 refused a request (internal).

    `retried`: botocore sent the request more than once, so an earlier attempt,
    whose reply was lost, may be what made this one fail.
    """

    def __init__(self, code: str, *, retried: bool = False) -> None:
        super().__init__(code)
        self.retried = retried


class _Missing(_Refused):
    """The object does not exist (internal: callers turn it into NotFound or Conflict)."""


class _Precondition(_Refused):
    """An If-Match / If-None-Match precondition failed (internal)."""


def _retried(exc: bexc.ClientError) -> bool:
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0) > 0


def _pack(data: bytes, meta: dict[str, str], expires_at: float | None) -> bytes:
    header = json.dumps({"m": meta, "e": expires_at, "n": os.urandom(8).hex()}).encode()
    return _MAGIC + struct.pack(">I", len(header)) + header + data


def _unpack(key: str, body: bytes) -> tuple[bytes, object, object]:
    """(value bytes, metadata, expiry) of a stored object, still to be checked by
    `decode_record`; `DecodeError` naming the key when the framing is wrong."""
    start = len(_MAGIC) + 4
    if not body.startswith(_MAGIC) or len(body) < start:
        raise malformed(key, "the S3 object is not a microstd record")
    (size,) = struct.unpack(">I", body[len(_MAGIC) : start])
    if size > len(body) - start:
        raise malformed(key, "the record header runs past the end of the object", start)
    try:
        header = json.loads(body[start : start + size])
    except (ValueError, RecursionError):
        raise malformed(key, "the record header is not JSON", start) from None
    if not isinstance(header, dict):
        raise malformed(key, "the record header is not a JSON object", start)
    return body[start + size :], header.get("m"), header.get("e")


class _BotocoreRetriesOnly(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, without aiohttp's own silent resend.

    aiohttp sends a PUT a second time, by itself, when a reused connection
    fails before the reply (aiohttp#10790: no public switch). botocore never
    hears of that resend, so a conditional PUT applied by the first send would
    come back as a plain precondition failure, indistinguishable from a real
    conflict. With it off, every resend is botocore's, counted in the
    response's ``RetryAttempts``, which `S3Store._put_object` checks.
    """

    async def _get_session(self, proxy_url: Any) -> Any:
        session = await super()._get_session(proxy_url)
        session._retry_connection = False
        return session


def _config(timeout: float) -> AioConfig:
    options: dict[str, Any] = {
        "retries": {"max_attempts": 2, "mode": "standard"},
        "connect_timeout": timeout,
        "read_timeout": timeout,
    }
    try:
        return AioConfig(http_session_cls=_BotocoreRetriesOnly, **options)
    except TypeError:  # aiobotocore before http_session_cls: the MD5 check still runs
        return AioConfig(**options)


def _expired(expires_at: float | None) -> bool:
    return expires_at is not None and expires_at <= time.time()


class S3Store(NetworkStore):
    """A store in one S3 bucket: one object per record, revision = ETag, no watch."""

    no_watch = "S3 has no change feed: watch is not supported by the s3:// store"

    def __init__(
        self,
        bucket: str,
        *,
        key_prefix: str = "",
        codec: object = None,
        create_bucket: bool = False,
        timeout: float = 10.0,
        concurrency: int = 16,
        **client_options: Any,
    ) -> None:
        if not bucket:
            raise ValueError("s3:// URL needs a bucket name: s3://BUCKET?endpoint_url=...")
        unknown = set(client_options) - set(_CLIENT_OPTIONS)
        if unknown:
            raise TypeError(f"unknown S3 store options: {', '.join(sorted(unknown))}")
        super().__init__(codec=codec)
        self.bucket = bucket
        self._key_prefix = key_prefix
        self._create_bucket = create_bucket
        self._timeout = timeout
        self._concurrency = concurrency
        self._client_options = {k: v for k, v in client_options.items() if v is not None}
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> S3Store:
        """`s3://BUCKET?endpoint_url=...&region_name=...`; options override the query."""
        merged: dict[str, Any] = {**parsed.query, **options}
        if "region" in merged:
            merged.setdefault("region_name", merged.pop("region"))
        if "create_bucket" in merged:
            merged["create_bucket"] = option_flag(merged["create_bucket"])
        for name, kind in (("timeout", float), ("concurrency", int)):
            if name in merged:
                merged[name] = kind(merged[name])
        return cls(parsed.netloc_name, **merged)

    def __repr__(self) -> str:
        endpoint = redact(str(self._client_options.get("endpoint_url", "aws")))
        return f"S3Store(bucket={self.bucket!r}, endpoint={endpoint!r})"

    async def _open(self) -> None:
        config = _config(self._timeout)
        options = {"region_name": "us-east-1", **self._client_options}
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                get_session().create_client("s3", config=config, **options)
            )
            await self._ensure_bucket(client)
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, _NETWORK_ERRORS):
                _fail(exc)
            raise
        self._stack, self._client = stack, client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
        except bexc.ClientError as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"} or not self._create_bucket:
                raise NotFound(f"S3 bucket {self.bucket!r} not found") from exc
            await client.create_bucket(Bucket=self.bucket)

    async def _shutdown(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _s3(self) -> Any:
        if self._client is None:
            raise Closed("store is closed")
        return self._client

    def _check_key(self, key: str) -> None:
        if len(key.encode()) + len(self._key_prefix.encode()) > _MAX_KEY_BYTES:
            raise InvalidKey(f"S3 object names are at most {_MAX_KEY_BYTES} bytes")

    def _name(self, key: str) -> str:
        return self._key_prefix + key

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate botocore's errors into microstd's."""
        try:
            yield
        except bexc.ClientError as exc:
            code = _code(exc)
            if code in _MISSING:
                raise _Missing(code, retried=_retried(exc)) from exc
            if code in _PRECONDITION:
                raise _Precondition(code, retried=_retried(exc)) from exc
            if code == "NoSuchBucket":
                raise NotFound(f"S3 bucket {self.bucket!r} does not exist") from exc
            raise MicrostdError(f"S3 request failed: {code or exc}") from exc
        except _NETWORK_ERRORS as exc:
            _fail(exc)

    async def _head(self, name: str) -> tuple[str, float | None] | None:
        """(etag, expires_at) of an object, or None when it does not exist."""
        client = self._s3()
        try:
            with self._guard():
                head = await client.head_object(Bucket=self.bucket, Key=name)
        except _Missing:
            return None
        expires = (head.get("Metadata") or {}).get(_EXPIRES_META)
        return str(head.get("ETag", "")), stored_expiry(name, expires)

    # -- writes ----------------------------------------------------------------

    async def _put(self, put: Put) -> Revision | None:
        name = self._name(put.key)
        body = _pack(put.data, put.metadata, put.expires_at)
        if put.if_revision is not None:
            head = await self._head(name)
            # An expired object is gone as far as the contract goes.
            if head is None or _expired(head[1]) or head[0] != put.if_revision:
                return None
            return await self._put_object(name, body, put.expires_at, {"IfMatch": head[0]})
        if put.if_absent:
            etag = await self._put_object(name, body, put.expires_at, {"IfNoneMatch": "*"})
            if etag is not None:
                return etag
            head = await self._head(name)
            if head is None or not _expired(head[1]):
                return None
            # Replace the expired object, unless someone else did so first.
            return await self._put_object(name, body, put.expires_at, {"IfMatch": head[0]})
        return await self._put_object(name, body, put.expires_at, {})

    async def _put_object(
        self, name: str, body: bytes, expires_at: float | None, conditions: dict[str, str]
    ) -> str | None:
        """The new ETag; None when a condition failed."""
        client = self._s3()
        extra: dict[str, Any] = dict(conditions)
        if expires_at is not None:
            extra["Metadata"] = {_EXPIRES_META: repr(expires_at)}
        try:
            with self._guard():
                out = await client.put_object(
                    Bucket=self.bucket, Key=name, Body=body, ContentType=_CONTENT_TYPE, **extra
                )
        except _Refused as exc:
            # A failed condition (412, or 404 for If-Match on a missing object).
            if not conditions:
                raise
            if exc.retried:
                return await self._landed(name, body)
            return None
        return str(out["ETag"])

    async def _landed(self, name: str, body: bytes) -> str:
        """The revision of a retried conditional PUT that failed its condition,
        when the object is this write (its ETag is the MD5 of this unique body);
        `ConnectionFailed` when that cannot be told."""
        ours = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        head = await self._head(name)
        if head is not None and head[0] == ours:
            return ours
        raise ConnectionFailed(
            f"S3 conditional write of {name!r} is ambiguous: a retried request failed its "
            "precondition, and the first attempt, whose reply was lost, may have been applied"
        )

    async def _remove(self, key: str) -> bool:
        name = self._name(key)
        head = await self._head(name)
        if head is None:
            return False
        client = self._s3()
        with self._guard():
            await client.delete_object(Bucket=self.bucket, Key=name)
        return not _expired(head[1])

    async def _remove_if(self, key: str, revision: Revision) -> bool:
        # DeleteObject with If-Match: S3 (and moto) refuse it once the object has
        # another ETag. The head first spares the request in the usual case and
        # bounds the race on a server that ignores If-Match on DELETE.
        name = self._name(key)
        head = await self._head(name)
        if head is None or head[0] != revision:
            return False
        client = self._s3()
        try:
            with self._guard():
                await client.delete_object(Bucket=self.bucket, Key=name, IfMatch=head[0])
        except _Refused:
            return False
        return True

    # -- reads ---------------------------------------------------------------

    async def _get(self, key: str) -> Record | None:
        name = self._name(key)
        client = self._s3()
        try:
            with self._guard():
                out = await client.get_object(Bucket=self.bucket, Key=name)
                async with out["Body"] as stream:
                    body = await stream.read()
        except _Missing:
            return None
        data, meta, expires_at = _unpack(key, body)
        if _expired(stored_expiry(key, expires_at)):
            return None
        return decode_record(
            self._codec,
            key,
            data,
            metadata=meta,
            revision=out.get("ETag"),
            expires_at=expires_at,
            numeric_revision=False,
        )

    async def _get_many(self, keys: builtins.list[str]) -> dict[str, Record]:
        gate = asyncio.Semaphore(self._concurrency)

        async def one(key: str) -> Record | None:
            async with gate:
                return await self._get(key)

        found = await asyncio.gather(*(one(k) for k in keys))
        return {rec.key: rec for rec in found if rec is not None}

    async def _keys(
        self, prefix: str, suffix: str, limit: int | None, offset: int
    ) -> builtins.list[str]:
        client = self._s3()
        wanted = None if limit is None else offset + limit
        live: builtins.list[str] = []
        cut = len(self._key_prefix)
        paginator = client.get_paginator("list_objects_v2")
        with self._guard():
            # S3 lists in UTF-8 byte order, which is code point order: already sorted.
            async for result in paginator.paginate(
                Bucket=self.bucket, Prefix=self._key_prefix + prefix
            ):
                names = [o["Key"] for o in result.get("Contents", ())]
                names = [n for n in names if n.endswith(suffix) and len(n) > cut]
                live += await self._live(names)
                if wanted is not None and len(live) >= wanted:
                    break
        keys = sorted(n[cut:] for n in live)
        return keys[offset:wanted]

    async def _live(self, names: builtins.list[str]) -> builtins.list[str]:
        gate = asyncio.Semaphore(self._concurrency)

        async def alive(name: str) -> bool:
            async with gate:
                try:
                    head = await self._head(name)
                except DecodeError:
                    return True  # it exists; reading it says what is wrong
            return head is not None and not _expired(head[1])

        flags = await asyncio.gather(*(alive(n) for n in names))
        return [n for n, ok in zip(names, flags, strict=True) if ok]

    async def _exists(self, key: str) -> bool:
        head = await self._head(self._name(key))
        return head is not None and not _expired(head[1])
