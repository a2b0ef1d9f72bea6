"""The exception hierarchy: one base, each class also its closest builtin."""

from __future__ import annotations

import pytest

from microstd import errors


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.EncodeError, TypeError),
        (errors.EncodeError, ValueError),
        (errors.DecodeError, ValueError),
        (errors.NotFound, KeyError),
        (errors.InvalidKey, ValueError),
        (errors.InvalidArgument, TypeError),
        (errors.InvalidArgument, ValueError),
        (errors.InvalidTopic, ValueError),
        (errors.LockTimeout, TimeoutError),
        (errors.DeadlineExceeded, TimeoutError),
        (errors.ConnectionFailed, ConnectionError),
        (errors.NotSupported, NotImplementedError),
        (errors.UnknownContentType, LookupError),
        (errors.UnknownBackend, ValueError),
        (errors.ConfigError, ValueError),
    ],
)
def test_each_error_is_also_its_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, errors.MicrostdError)
    assert issubclass(cls, builtin)


def test_every_public_error_derives_from_the_base() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.MicrostdError), name


def test_encode_and_decode_errors_carry_their_location() -> None:
    enc = errors.EncodeError("cannot encode object of type Foo", "$.items[3].price")
    assert enc.path == "$.items[3].price"
    assert str(enc) == "cannot encode object of type Foo at $.items[3].price"
    dec = errors.DecodeError("truncated input", 17)
    assert dec.offset == 17
    assert str(dec) == "truncated input at byte 17"


def test_not_found_reads_as_a_message_not_a_repr() -> None:
    assert str(errors.NotFound("no record for 'a'")) == "no record for 'a'"


def test_service_error_round_trips_through_its_wire_form() -> None:
    err = errors.ServiceError(id="greeter", code=404, detail="no such endpoint", status="Not Found")
    wire = err.to_dict()
    assert wire == {
        "id": "greeter",
        "code": 404,
        "detail": "no such endpoint",
        "status": "Not Found",
    }
    back = errors.ServiceError.from_dict(wire)
    assert (back.id, back.code, back.detail, back.status) == (
        "greeter",
        404,
        "no such endpoint",
        "Not Found",
    )
    assert "404 Not Found" in str(back)


def test_service_error_tolerates_a_malformed_wire_form() -> None:
    back = errors.ServiceError.from_dict({"code": "oops"})
    assert back.code == 500
    assert back.detail == ""


def test_rust_core_raises_the_same_classes() -> None:
    from microstd import _accel

    core = _accel.require_core()
    with pytest.raises(errors.DecodeError) as info:
        core.msgpack_loads(b"\xc1")
    assert isinstance(info.value.offset, int)
