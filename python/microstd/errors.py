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
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "InvalidArgument",
    "InvalidKey",
    "InvalidTopic",
    "LockLost",
    "LockTimeout",
    "MicrostdError",
    "NotFound",
    "NotSupported",
    "ServiceError",
    "UnknownBackend",
    "UnknownContentType",
    "ValidationError",
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


class Closed(MicrostdError, RuntimeError):
    """The object was used after `close()`."""


class ConnectionFailed(MicrostdError, ConnectionError):
    """A network backend could not reach its server."""


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

    The wire form is `{"id", "code", "detail", "status"}`: `code` is the HTTP
    status number, `status` its reason phrase.
    """

    def __init__(self, id: str, code: int, detail: str, status: str) -> None:
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
        return cls(
            id=str(data.get("id", "")),
            code=code if isinstance(code, int) else 500,
            detail=str(data.get("detail", "")),
            status=str(data.get("status", "")),
        )
