"""`write_many` on the backends that cannot write a batch in one transaction
(nats://, s3://): a batch that fails midway is put back, and what cannot be put
back is said. Failures are injected in the store's `_put` primitive, so each
test knows exactly where the batch stopped; tests/faults cuts real connections."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from microstd.errors import ConnectionFailed
from microstd.store import Store
from microstd.store._network import NetworkStore, Put
from microstd.store.base import Revision
from store.backends import make_store

pytestmark = pytest.mark.services

BATCH = {"a": "new", "b": "new", "c": "new", "d": "new"}


@pytest.fixture(params=["nats", "s3"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[NetworkStore]:
    made = await make_store(request.param, request)
    assert isinstance(made, NetworkStore)
    try:
        yield made
    finally:
        await made.close()


def _fail_at(
    store: NetworkStore,
    key: str,
    *,
    apply: bool = False,
    then: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Make the batch's write of `key` raise ConnectionFailed (after applying it
    when `apply`: a lost reply); `then` runs first (another client's write)."""
    real = store._put

    async def put(p: Put) -> Revision | None:
        if p.key != key or p.conditional:
            return await real(p)
        if apply:
            await real(p)
        if then is not None:
            await then()
        raise ConnectionFailed("the connection was lost")

    store._put = put  # type: ignore[method-assign]


async def _state(store: Store) -> dict[str, object]:
    return {k: r.value for k, r in (await store.read_many(await store.list())).items()}


@pytest.mark.parametrize("apply", [False, True], ids=["unsent", "reply-lost"])
async def test_a_batch_failing_midway_is_put_back(store: NetworkStore, apply: bool) -> None:
    """Every key the batch wrote goes back to its record (value, metadata, expiry) or
    is deleted if it had none, the failed key too when its write landed; the error
    propagates. A failed write seen applied and undone is certain (no note); one
    not seen applied may still land later, so the note says it is ambiguous."""
    await store.write("a", "old", ttl=60, metadata={"m": "1"})
    await store.write("z", "untouched")
    before = await store.read("a")
    _fail_at(store, "c", apply=apply)
    with pytest.raises(ConnectionFailed) as caught:
        await store.write_many(BATCH)
    assert getattr(caught.value, "__notes__", []) == (
        []
        if apply
        else [
            "write_many: the failed write of 'c' may still be applied"
            " (ambiguous: its reply was lost or it may land late; read it to see)"
        ]
    )
    assert await _state(store) == {"a": "old", "z": "untouched"}
    after = await store.read("a")
    assert (after.metadata, after.expires_at) == (before.metadata, before.expires_at)


async def test_a_newer_write_by_someone_else_is_not_undone(store: NetworkStore) -> None:
    """Putting back is conditional on the batch's own revision: a key written by
    someone else after the batch keeps their value."""
    await store.write("a", "old")

    async def theirs() -> None:
        await store.write("b", "theirs")

    _fail_at(store, "c", then=theirs)
    with pytest.raises(ConnectionFailed):
        await store.write_many(BATCH)
    assert await _state(store) == {"a": "old", "b": "theirs"}


async def test_when_putting_back_fails_the_error_names_what_stays(
    store: NetworkStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection stays lost: nothing more can be put back. The batch's error
    propagates with a note naming the keys that may keep the batch's value, and
    an error is logged; they are not put back later."""
    await store.write("a", "old")
    down = False

    async def lost() -> None:
        nonlocal down
        down = True

    _fail_at(store, "c", then=lost)
    for name in ("_put", "_get", "_remove_if"):
        real = getattr(store, name)

        async def gone(*args: object, real: Callable[..., Awaitable[object]] = real) -> object:
            if down:
                raise ConnectionFailed("the connection was lost")
            return await real(*args)

        setattr(store, name, gone)
    with (
        caplog.at_level(logging.ERROR, "microstd.store"),
        pytest.raises(ConnectionFailed) as caught,
    ):
        await store.write_many(BATCH)
    notes = getattr(caught.value, "__notes__", [])
    assert notes == [
        "write_many: 3 key(s) could not be put back and may keep the batch's value: ['a', 'b', 'c']"
    ]
    assert "may keep the batch's value" in caplog.text
    down = False
    assert await _state(store) == {"a": "new", "b": "new"}


async def test_a_failed_write_that_lands_late_was_named_as_ambiguous(store: NetworkStore) -> None:
    """The failed key's write is not visible when the batch is undone, then lands
    (a replicated bucket committing it after the client's timeout): the batch's
    error said that key may still be applied."""
    _fail_at(store, "c")
    with pytest.raises(ConnectionFailed) as caught:
        await store.write_many(BATCH)
    del store._put  # the instance's stand-in: back to the real one
    await store.write("c", "new")  # the late landing
    assert await _state(store) == {"c": "new"}
    assert any("'c' may still be applied" in n for n in getattr(caught.value, "__notes__", []))
