"""The dict store's own tests. The store contract itself is microstd's suite, run with
`pytest --microstd-store='dict://{unique}' --microstd-without=watch` (see README.md)."""

from __future__ import annotations

import pytest
from microstd_dict_store import DictStore

import microstd.store
from microstd.errors import InvalidArgument, NotSupported


def test_the_entry_point_registers_the_scheme() -> None:
    store = microstd.store.open("dict://")
    assert isinstance(store, DictStore)


@pytest.mark.asyncio
async def test_a_named_store_is_shared() -> None:
    async with microstd.store.open("dict://shared") as a, microstd.store.open("dict://shared") as b:
        await a.write("k", 1)
        assert (await b.read("k")).value == 1


def test_options_and_watch_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        microstd.store.open("dict://?colour=red")
    with pytest.raises(NotSupported):
        DictStore().watch()
