"""Optional client libraries, imported with an error that says which extra to install.

The network backends stand on client libraries that microstd does not install
by default (`pip install 'microstd[redis]'` and so on). A backend whose
library is missing raises `MissingDependency` naming the package and the extra,
rather than a bare `ModuleNotFoundError` from deep inside its module.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from microstd.errors import MissingDependency

__all__ = ["missing", "needed_by", "require"]

#: Top-level module -> (the package on PyPI, the microstd extra that installs it).
CLIENTS: dict[str, tuple[str, str]] = {
    "redis": ("redis", "redis"),
    "nats": ("nats-py", "nats"),
    "aio_pika": ("aio-pika", "amqp"),
    "aiormq": ("aio-pika", "amqp"),
    "pamqp": ("aio-pika", "amqp"),
    "aiobotocore": ("aiobotocore", "s3"),
    "botocore": ("aiobotocore", "s3"),
    "asyncpg": ("asyncpg", "postgres"),
    "aiohttp": ("aiohttp", "http"),
    "yaml": ("PyYAML", "config"),
    "watchfiles": ("watchfiles", "config"),
    "opentelemetry": ("opentelemetry-api", "otel"),
    "prometheus_client": ("prometheus-client", "prometheus"),
}


def missing(
    exc: ModuleNotFoundError, what: str, extra: str | None = None
) -> MissingDependency | None:
    """The `MissingDependency` for `exc` if it is an optional client's absence, else None.

    `what` names what needs it ("the redis:// store"); `extra` overrides the
    extra the table names (etcd:// needs aiohttp through the `etcd` extra).
    """
    top = (exc.name or "").split(".", 1)[0]
    found = CLIENTS.get(top)
    if found is None:
        return None
    package, default_extra = found
    extra = extra or default_extra
    return MissingDependency(
        f"{what} needs the {package!r} package, which is not installed:"
        f" pip install 'microstd[{extra}]'",
        name=top,
        extra=extra,
    )


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import `module`, or raise `MissingDependency` saying which extra installs it."""
    with needed_by(what, extra):
        return importlib.import_module(module)
    raise AssertionError("unreachable")  # for type checkers: needed_by re-raises


@contextlib.contextmanager
def needed_by(what: str, extra: str | None = None) -> Iterator[None]:
    """Turn an optional client's `ModuleNotFoundError` raised in the block into
    `MissingDependency` (for imports that keep their static types)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        error = missing(exc, what, extra)
        if error is None:
            raise
        raise error from exc
