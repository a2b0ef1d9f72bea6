"""`type=` through the rest of microstd: store reads, broker messages and
subscribers, RPC handler parameters and results, and `Client.call`."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

import microstd
from microstd import codec
from microstd.broker.base import Message, message_type
from microstd.client import Client
from microstd.errors import ServiceError, ValidationError


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@dataclasses.dataclass
class Order:
    id: int
    lines: list[Line]


ORDER = {"id": 7, "lines": [{"sku": "A", "qty": 2}]}
TYPED = Order(7, [Line("A", 2)])


@pytest.mark.parametrize("impl", ["rust", "python"])
async def test_store_reads_into_types(impl: str) -> None:
    async with microstd.store.open(f"memory://?impl={impl}") as store:
        await store.write("o/1", ORDER)
        await store.write("o/2", {"id": "x", "lines": []})
        record = await store.read("o/1", type=Order)
        assert record.value == TYPED
        assert record.key == "o/1"
        assert (await store.read("o/1")).value == ORDER  # untyped reads are unchanged
        many = await store.read_many(["o/1", "missing"], type=Order)
        assert {k: r.value for k, r in many.items()} == {"o/1": TYPED}
        with pytest.raises(ValidationError) as info:
            await store.read("o/2", type=Order)
        assert info.value.path == "$.id"
    with microstd.store.open_sync(f"memory://?impl={impl}") as sync:
        sync.write("o/1", ORDER)
        assert sync.read("o/1", type=Order).value == TYPED
        assert sync.read_many(["o/1"], type=Order)["o/1"].value == TYPED


async def test_file_store_reads_into_types(tmp_path: object) -> None:
    async with microstd.store.open(f"file://{tmp_path}/s.db") as store:
        await store.write("o/1", ORDER)
        assert (await store.read("o/1", type=Order)).value == TYPED
        assert (await store.read_many(["o/1"], type=Order))["o/1"].value == TYPED


@pytest.mark.parametrize(
    "content_type", ["application/msgpack", "application/cbor", "application/json"]
)
def test_message_decode_into_types(content_type: str) -> None:
    from microstd import _core

    data = codec.get(content_type).dumps(ORDER)
    for msg in (
        Message("t", data, {}, content_type),
        _core.RustMessage("t", data, {}, content_type),
    ):
        assert msg.decode(Order) == TYPED
        assert msg.decode() == ORDER
        bad = codec.get(content_type).dumps({"id": 7, "lines": [{"sku": "A", "qty": "2"}]})
        with pytest.raises(ValidationError) as info:
            type(msg)("t", bad, {}, content_type).decode(Order)
        assert info.value.path == "$.lines[0].qty"


def test_which_handlers_get_decoded_bodies() -> None:
    async def typed(order: Order) -> None: ...
    async def plain(msg: Message) -> None: ...
    async def bare(msg) -> None: ...  # type: ignore[no-untyped-def]

    assert message_type(typed) is Order
    assert message_type(plain) is None
    assert message_type(bare) is None


async def test_annotated_subscribers_get_typed_bodies() -> None:
    broker_url = f"memory://brk{uuid.uuid4().hex[:8]}"
    svc = microstd.Service("orders", registry="memory://", broker=broker_url)
    got: list[object] = []

    @svc.subscriber("orders.created")
    async def on_order(order: Order) -> None:
        got.append(order)

    @svc.subscriber("orders.created")
    def on_order_sync(order: Order) -> None:  # sync handlers too
        got.append(order)

    async with svc, microstd.broker.open(broker_url) as broker:
        await broker.publish("orders.created", ORDER)
        await _wait_for(lambda: len(got) == 2)
    assert got == [TYPED, TYPED]


async def _wait_for(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def _service(reg: str) -> microstd.Service:
    svc = microstd.Service("orders", registry=reg)

    @svc.handler("Orders.Total")
    async def total(order: Order) -> int:
        assert isinstance(order.lines[0], Line)  # nested dataclasses are built, not left dicts
        return sum(line.qty for line in order.lines)

    @svc.handler("Orders.Echo")
    async def echo(order: Order) -> Order:
        return order

    @svc.handler("Orders.Broken")
    async def broken(order: Order) -> Order:
        return {"id": "not an int", "lines": []}  # type: ignore[return-value]

    return svc


@pytest.mark.parametrize("local", [True, False], ids=["local", "http"])
async def test_rpc_parameters_results_and_replies(local: bool) -> None:
    reg = f"memory://rpc{uuid.uuid4().hex[:8]}"
    async with _service(reg), Client(reg, local=local) as client:
        assert await client.call("orders", "Orders.Total", ORDER) == 2
        with pytest.raises(ServiceError) as info:
            await client.call(
                "orders", "Orders.Total", {"id": 7, "lines": [{"sku": "A", "qty": "2"}]}
            )
        assert info.value.code == 400
        assert "$.lines[0].qty" in info.value.detail
        assert await client.call("orders", "Orders.Echo", ORDER, type=Order) == TYPED
        with pytest.raises(ValidationError):
            await client.call("orders", "Orders.Total", ORDER, type=Order)
        with pytest.raises(ServiceError) as info:
            await client.call("orders", "Orders.Broken", ORDER)
        assert info.value.code == 500
        assert "return annotation" in info.value.detail
