"""The exceptions microstd raises, in one hierarchy under `MicrostdError`.

Each class also subclasses the closest builtin, so code written against the
builtins keeps working: a missing record is a `KeyError`, a lock wait that
runs out is a `TimeoutError`, undecodable bytes are a `ValueError`.

The Rust core imports these same classes (`pyo3::import_exception!`), so an
error looks the same whichever implementation raised it.
"""

from __future__ import annotations

__all__ = [
    "Closed",
    "ConfigError",
    "Conflict",
    "ConnectionFailed",
    "ConnectionRestored",
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "InvalidArgument",
    "InvalidKey",
    "InvalidTopic",
    "LockLost",
    "LockTimeout",
    "MicrostdError",
    "MissingDependency",
    "NotFound",
    "NotSupported",
    "ServiceError",
    "UnknownBackend",
    "UnknownContentType",
    "ValidationError",
    "bad_gateway",
    "bad_request",
    "conflict",
    "forbidden",
    "gateway_timeout",
    "http_status",
    "internal_server_error",
    "method_not_allowed",
    "not_found",
    "not_implemented",
    "reason_phrase",
    "timeout",
    "too_many_requests",
    "unauthorized",
    "unavailable",
]


class MicrostdError(Exception):
    """Base class of every exception microstd raises."""


class EncodeError(MicrostdError, TypeError, ValueError):
    """An object could not be encoded.

    `path` locates the offending value inside the object (`$.items[3].price`).
    """

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} at {self.path}"


class DecodeError(MicrostdError, ValueError):
    """Bytes could not be decoded; `offset` is the byte where decoding failed."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.message} at byte {self.offset}"


class ValidationError(DecodeError):
    """Decoded data does not match the type it was decoded into.

    `path` locates the value (`$.items[3].price`), `expected` names the type
    wanted and `found` describes what was there. `offset` is 0: typed decoding
    checks values, not bytes.
    """

    def __init__(self, message: str, path: str = "$", expected: str = "", found: str = "") -> None:
        super().__init__(message, 0)
        self.args = (message, path, expected, found)
        self.path = path
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        return f"{self.message} at {self.path}"


class UnknownContentType(MicrostdError, LookupError):
    """No codec is registered for a content type."""


class UnknownBackend(MicrostdError, ValueError):
    """No backend is registered for a URL scheme."""


class NotFound(MicrostdError, KeyError):
    """A record, service or key does not exist (or has expired)."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; a message reads better.
        return str(self.args[0]) if self.args else "not found"


class Conflict(MicrostdError):
    """A conditional write's condition (`if_revision`, `if_absent`) did not hold."""


class InvalidKey(MicrostdError, ValueError):
    """A key or name (store key, lock or election name, service name, node id) is not a
    non-empty `str`, or is otherwise unusable."""


class InvalidArgument(MicrostdError, TypeError, ValueError):
    """An argument or option has the wrong type or value: a ttl, a wait, `impl=`, an
    unknown backend option.

    Both a `TypeError` and a `ValueError`, as Python's own checks raise either for
    these, so code written against either builtin catches it.
    """


class InvalidTopic(MicrostdError, ValueError):
    """A broker topic or subscription pattern is malformed."""


class NotSupported(MicrostdError, NotImplementedError):
    """The backend cannot do this (for example, watch on S3)."""


class MissingDependency(MicrostdError, ModuleNotFoundError):
    """An optional client library that a backend or feature needs is not installed.

    The message names the package and the extra that installs it
    (`pip install 'microstd[redis]'`); `name` is the missing module, `extra`
    the extra's name. A `ModuleNotFoundError`, so code written against the
    builtin still catches it.
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str = "") -> None:
        super().__init__(message, name=name)
        self.extra = extra


class Closed(MicrostdError, RuntimeError):
    """The object was used after `close()`."""


class ConnectionFailed(MicrostdError, ConnectionError):
    """A network backend could not reach its server (or it did not answer in time).

    A write that raised it may still have been applied: docs/guarantees.md says
    which operations are ambiguous, per backend.
    """


class ConnectionRestored(MicrostdError):
    """Not a failure: a lost connection to a server is back. Never raised.

    A broker passes it to its `on_error` hook, with each subscription, after a
    `ConnectionFailed` reported the loss: the subscriptions receive again, but
    messages published while the connection was down were not delivered to them.
    """


class LockTimeout(MicrostdError, TimeoutError):
    """A lock or election was not obtained within `wait` seconds."""


class LockLost(MicrostdError):
    """A lease is no longer held: released, expired, or taken over."""


class ConfigError(MicrostdError, ValueError):
    """A configuration source failed to load, parse or validate."""


class DeadlineExceeded(MicrostdError, TimeoutError):
    """A call's deadline passed before it completed."""


class ServiceError(MicrostdError):
    """An error returned by a remote service, as carried on the wire.

    The wire form is `{"id", "code", "detail", "status"}`: `id` names the
    service that answered, `code` is the HTTP status number, `status` its
    reason phrase (derived from `code` when not given). Raise one in a handler
    to answer with it, or use the helpers below (`not_found("no order 42")`);
    an empty `id` is filled in with the service's name.
    """

    def __init__(self, id: str, code: int, detail: str, status: str | None = None) -> None:
        if status is None:
            status = reason_phrase(code)
        super().__init__(id, code, detail, status)
        self.id = id
        self.code = code
        self.detail = detail
        self.status = status

    def __str__(self) -> str:
        return f"{self.code} {self.status}: {self.detail} (id={self.id})"

    def to_dict(self) -> dict[str, object]:
        """The wire form of this error."""
        return {"id": self.id, "code": self.code, "detail": self.detail, "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ServiceError:
        """Rebuild an error from its wire form, tolerating missing fields."""
        code = data.get("code", 500)
        if not isinstance(code, int) or isinstance(code, bool):
            code = 500
        status = data.get("status")
        return cls(
            id=str(data.get("id", "")),
            code=code,
            detail=str(data.get("detail", "")),
            status=str(status) if status else None,
        )


def reason_phrase(code: int) -> str:
    """The HTTP reason phrase of `code` (`404` -> `"Not Found"`), `"Error"` if unknown."""
    import http

    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Error"


# --- ServiceError helpers, one per common status (as go-micro's errors package) ---------


def bad_request(detail: str, *, id: str = "") -> ServiceError:
    """400: the request is malformed or fails validation."""
    return ServiceError(id, 400, detail)


def unauthorized(detail: str, *, id: str = "") -> ServiceError:
    """401: the caller is not authenticated."""
    return ServiceError(id, 401, detail)


def forbidden(detail: str, *, id: str = "") -> ServiceError:
    """403: the caller may not do this."""
    return ServiceError(id, 403, detail)


def not_found(detail: str, *, id: str = "") -> ServiceError:
    """404: what the request names does not exist."""
    return ServiceError(id, 404, detail)


def method_not_allowed(detail: str, *, id: str = "") -> ServiceError:
    """405: the operation is not allowed on this resource."""
    return ServiceError(id, 405, detail)


def timeout(detail: str, *, id: str = "") -> ServiceError:
    """408: the request took too long to arrive or to be handled."""
    return ServiceError(id, 408, detail)


def conflict(detail: str, *, id: str = "") -> ServiceError:
    """409: the request conflicts with the current state (a failed condition, a held lock)."""
    return ServiceError(id, 409, detail)


def too_many_requests(detail: str, *, id: str = "") -> ServiceError:
    """429: the caller is over its rate limit."""
    return ServiceError(id, 429, detail)


def internal_server_error(detail: str, *, id: str = "") -> ServiceError:
    """500: the service failed."""
    return ServiceError(id, 500, detail)


def not_implemented(detail: str, *, id: str = "") -> ServiceError:
    """501: the service cannot do this."""
    return ServiceError(id, 501, detail)


def bad_gateway(detail: str, *, id: str = "") -> ServiceError:
    """502: a service this one depends on answered wrongly."""
    return ServiceError(id, 502, detail)


def unavailable(detail: str, *, id: str = "") -> ServiceError:
    """503: the service (or one it depends on) cannot be reached or is overloaded."""
    return ServiceError(id, 503, detail)


def gateway_timeout(detail: str, *, id: str = "") -> ServiceError:
    """504: the deadline passed (here or in a service this one called)."""
    return ServiceError(id, 504, detail)


#: What a microstd exception raised in a handler answers, most specific first.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ValidationError, 400),
    (InvalidArgument, 400),
    (InvalidKey, 400),
    (InvalidTopic, 400),
    (EncodeError, 400),
    (NotFound, 404),
    (Conflict, 409),
    (LockTimeout, 409),
    (LockLost, 409),
    (DeadlineExceeded, 504),
    (NotSupported, 501),
    (ConnectionFailed, 503),
    (Closed, 503),
)


def http_status(exc: BaseException) -> int:
    """The HTTP status an exception raised in a handler answers with.

    A `ServiceError` answers its own `code`; the microstd errors that say
    something about the request or a dependency keep that meaning (`NotFound`
    404, `Conflict` and `LockTimeout` 409, `InvalidKey` / `InvalidTopic` /
    `InvalidArgument` / `ValidationError` / `EncodeError` 400,
    `DeadlineExceeded` 504, `NotSupported` 501, `ConnectionFailed` and `Closed`
    503); anything else is a 500.
    """
    if isinstance(exc, ServiceError):
        return exc.code
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 500
