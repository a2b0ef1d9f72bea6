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
    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert len(classes) >= 18
    for cls in classes:
        assert issubclass(cls, errors.MicrostdError), cls


def test_service_error_status_comes_from_the_code() -> None:
    err = errors.ServiceError("greeter", 404, "no such user")
    assert err.status == "Not Found"
    assert err.to_dict()["status"] == "Not Found"
    assert errors.ServiceError("x", 499, "odd").status == "Error"
    assert errors.ServiceError("x", 418, "tea", "Short and Stout").status == "Short and Stout"
    # A wire form without a status gets the phrase too.
    assert errors.ServiceError.from_dict({"id": "a", "code": 409}).status == "Conflict"
    assert errors.ServiceError.from_dict({"code": True}).code == 500


@pytest.mark.parametrize(
    ("helper", "code", "status"),
    [
        (errors.bad_request, 400, "Bad Request"),
        (errors.unauthorized, 401, "Unauthorized"),
        (errors.forbidden, 403, "Forbidden"),
        (errors.not_found, 404, "Not Found"),
        (errors.method_not_allowed, 405, "Method Not Allowed"),
        (errors.timeout, 408, "Request Timeout"),
        (errors.conflict, 409, "Conflict"),
        (errors.too_many_requests, 429, "Too Many Requests"),
        (errors.internal_server_error, 500, "Internal Server Error"),
        (errors.not_implemented, 501, "Not Implemented"),
        (errors.bad_gateway, 502, "Bad Gateway"),
        (errors.unavailable, 503, "Service Unavailable"),
        (errors.gateway_timeout, 504, "Gateway Timeout"),
    ],
)
def test_helpers_make_service_errors(helper: object, code: int, status: str) -> None:
    err = helper("it went wrong", id="orders")  # type: ignore[operator]
    assert isinstance(err, errors.ServiceError)
    assert (err.id, err.code, err.detail, err.status) == ("orders", code, "it went wrong", status)
    assert helper("x").id == ""  # type: ignore[operator]  # the server fills in its name


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("k"), 404),
        (errors.Conflict("c"), 409),
        (errors.InvalidKey("k"), 400),
        (errors.InvalidTopic("t"), 400),
        (errors.InvalidArgument("a"), 400),
        (errors.ValidationError("v", "$.a", "int", "str"), 400),
        (errors.EncodeError("e"), 400),
        (errors.LockTimeout("l"), 409),
        (errors.LockLost("l"), 409),
        (errors.DeadlineExceeded("d"), 504),
        (errors.NotSupported("n"), 501),
        (errors.ConnectionFailed("c"), 503),
        (errors.Closed("c"), 503),
        (errors.ConfigError("c"), 500),
        (errors.DecodeError("d", 3), 500),
        (RuntimeError("r"), 500),
        (TimeoutError(), 500),
        (errors.ServiceError("s", 418, "tea"), 418),
    ],
)
def test_http_status_of_errors(exc: BaseException, code: int) -> None:
    assert errors.http_status(exc) == code


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
