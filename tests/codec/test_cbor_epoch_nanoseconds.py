"""CBOR epoch floats (tag 1) with nanoseconds: a `Timestamp` written with
nanoseconds becomes a float on the wire; it decodes to a `Timestamp` that is
written back as the same bytes, where a datetime (microseconds) would have
rounded it to another float. Floats a datetime holds exactly stay datetimes.
Rust core and pure twin alike."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from microstd import _core, codec
from microstd.codec import Tag, Timestamp, _pure_cbor
from microstd.errors import ValidationError

UTC = dt.timezone.utc
LOADS: dict[str, Callable[[bytes], object]] = {
    "rust": _core.cbor_loads,
    "python": _pure_cbor.loads,
}
DUMPS: dict[str, Callable[[object], bytes]] = {
    "rust": _core.cbor_dumps,
    "python": _pure_cbor.dumps,
}


@pytest.fixture(params=sorted(LOADS))
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_nanosecond_timestamp_comes_back_as_the_same_bytes(impl: str) -> None:
    loads, dumps = LOADS[impl], DUMPS[impl]
    rng = random.Random(20261204)
    for _ in range(20_000):
        # Years 1700..2250: where the microsecond and nanosecond forms differ.
        sent = Timestamp(rng.randrange(-8_500_000_000, 8_700_000_000), rng.randrange(1, 10**9))
        data = dumps(sent)
        back = loads(data)
        assert dumps(back) == data, (sent, back)
        assert isinstance(back, (Timestamp, dt.datetime))
        if isinstance(back, Timestamp):
            # The float's own instant: within half a float's spacing of what was sent.
            assert (
                abs(
                    back.seconds * 10**9
                    + back.nanoseconds
                    - sent.seconds * 10**9
                    - sent.nanoseconds
                )
                < 10**3
            )


def test_nanoseconds_near_the_epoch_come_back_exactly(impl: str) -> None:
    loads, dumps = LOADS[impl], DUMPS[impl]
    for sent in (Timestamp(1, 5), Timestamp(-5, 999_999_999), Timestamp(86_400, 123_456_789)):
        assert loads(dumps(sent)) == sent


def test_floats_a_datetime_holds_stay_datetimes(impl: str) -> None:
    loads, dumps = LOADS[impl], DUMPS[impl]
    rng = random.Random(7)
    for _ in range(5_000):
        when = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(
            seconds=rng.randrange(-5_000_000_000, 8_000_000_000), microseconds=rng.randrange(10**6)
        )
        assert loads(dumps(when)) == when
    # Milliseconds as JavaScript writes them, and whole seconds as a float.
    assert loads(dumps(Tag(1, 1_733_312_345.123))) == dt.datetime(
        2024, 12, 4, 11, 39, 5, 123_000, tzinfo=UTC
    )
    assert loads(dumps(Tag(1, 1.0))) == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_the_twins_agree_on_any_float() -> None:
    rng = random.Random(11)
    for _ in range(50_000):
        secs = rng.uniform(-1e10, 1e10) if rng.random() < 0.5 else rng.uniform(-1e5, 1e5)
        data = codec.cbor.dumps(Tag(1, secs))
        rust, pure = LOADS["rust"](data), LOADS["python"](data)
        assert (type(rust), rust) == (type(pure), pure), secs


def test_typed_decoding_keeps_the_nanoseconds_or_refuses_to_lose_them() -> None:
    data = codec.cbor.dumps(Timestamp(1, 5))
    assert codec.cbor.loads(data, type=Timestamp) == Timestamp(1, 5)
    # Strict: a datetime field does not silently drop them.
    with pytest.raises(ValidationError, match="expected datetime, got Timestamp"):
        codec.cbor.loads(data, type=dt.datetime)
    micro = codec.cbor.dumps(dt.datetime(2024, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC))
    assert codec.cbor.loads(micro, type=dt.datetime).microsecond == 678_901
    assert codec.cbor.loads(micro, type=Timestamp).to_datetime().microsecond == 678_901
