"""Backend resolution by URL scheme, shared by every area.

Each area (store, broker, sync, registry) names its built-in backends as
`scheme -> "module:attribute"` strings, imported only when a URL asks for
them, so `import microstd` never imports redis-py or nats-py. Third-party
backends plug in through the entry point group of the area.
"""

from __future__ import annotations

import difflib
import importlib
import re
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlsplit

from microstd import _deps, _validate
from microstd.errors import InvalidArgument, MicrostdError, UnknownBackend

__all__ = [
    "Backends",
    "MemoryOptions",
    "ParsedURL",
    "memory_options",
    "parse_url",
    "redact",
    "redact_text",
    "resolve",
    "shared_instance",
]

T = TypeVar("T")


class ParsedURL:
    """A backend URL split into the parts backends need.

    `query` holds the query string's options (last value wins); `redacted`
    is the URL with any password replaced, safe for logs and reprs.

    A URL may name several servers of one cluster, either as a host list
    (``redis+sentinel://h1:26379,h2:26379/mymaster``, ``etcd://h1,h2:2379``) or
    as a list of whole server URLs (``nats://a:4222,nats://b:4222``, the NATS
    clients' form; the path and query come after the last one). `hosts` holds
    every ``(host, port)`` in order and `servers` each one as
    ``scheme://[userinfo@]host[:port]``; `host` and `port` are the first one's.
    An engine that takes one server refuses a URL with several
    (`single_server`).
    """

    __slots__ = (
        "host",
        "hosts",
        "password",
        "path",
        "port",
        "query",
        "raw",
        "scheme",
        "servers",
        "username",
    )

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str) or "://" not in raw:
            raise UnknownBackend(f"not a backend URL (expected scheme://...): {raw!r}")
        self.raw = raw
        # Only before the query: an option's value may itself be a list of URLs.
        head, question, tail = raw.partition("?")
        pieces = _SERVER_LIST.split(head)
        pieces[-1] += question + tail
        try:
            last: SplitResult = urlsplit(pieces[-1].strip())
            firsts = [urlsplit(piece.strip()) for piece in pieces[:-1]]
        except ValueError as exc:
            raise UnknownBackend(f"not a backend URL: {redact(raw)!r}: {exc}") from None
        self.scheme = last.scheme.lower()
        for part in firsts:
            if part.scheme.lower() != self.scheme:
                raise UnknownBackend(
                    f"a server list mixes schemes {part.scheme!r} and {last.scheme!r}:"
                    f" {redact(raw)!r}"
                )
            if part.path not in ("", "/") or part.query or part.fragment:
                raise UnknownBackend(
                    f"in a server list only the last server may have a path or options:"
                    f" {redact(raw)!r}"
                )
        # (userinfo, "host:port") of every server; a host list shares its userinfo.
        netlocs: list[tuple[str, str]] = []
        for part in [*firsts, last]:
            userinfo, at, hostports = part.netloc.rpartition("@")
            for hostport in hostports.split(","):
                if not hostport.strip() and (len(firsts) or "," in hostports):
                    raise UnknownBackend(f"empty server in URL {redact(raw)!r}")
                netlocs.append((userinfo + at, hostport.strip()))
        hosts: list[tuple[str, int | None]] = []
        servers: list[str] = []
        usernames: list[tuple[str | None, str | None]] = []
        for userinfo, hostport in netlocs:
            one = urlsplit(f"{self.scheme}://{userinfo}{hostport}")
            try:
                port = one.port
            except ValueError as exc:
                raise UnknownBackend(f"bad port in URL {redact(raw)!r}") from exc
            hosts.append((one.hostname or "", port))
            servers.append(f"{self.scheme}://{userinfo}{hostport}")
            usernames.append((one.username, one.password))
        self.hosts: tuple[tuple[str, int | None], ...] = tuple(hosts)
        self.servers: tuple[str, ...] = tuple(servers)
        self.host, self.port = hosts[0]
        # The first credentials given (a server list may repeat them per server).
        self.username, self.password = next(
            (pair for pair in usernames if pair != (None, None)), (None, None)
        )
        self.path = last.path
        self.query: dict[str, str] = dict(parse_qsl(last.query, keep_blank_values=True))

    def single_server(self, what: str, hint: str = "") -> None:
        """Refuse (`InvalidArgument`) a URL naming several servers: `what` takes one."""
        if len(self.hosts) > 1:
            more = f"; {hint}" if hint else ""
            raise InvalidArgument(
                f"{what} takes one server, got {len(self.hosts)} in {self.redacted!r}{more}"
            )

    @property
    def netloc_name(self) -> str:
        """Everything between `scheme://` and the path or query: the name in `memory://NAME`."""
        rest = self.raw.split("://", 1)[1]
        return rest.split("?", 1)[0].split("/", 1)[0]

    @property
    def redacted(self) -> str:
        return redact(self.raw)

    def __repr__(self) -> str:
        return f"ParsedURL({self.redacted!r})"


# Schemes whose user-only userinfo is a secret: nats://TOKEN@host authenticates
# with TOKEN (nats-py's token form).
_TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
# Query options whose values are secrets (redis-py takes ?password=, S3 URLs may
# carry keys, presigned URLs a signature).
_SECRET_OPTION = re.compile(r"pass|secret|token|key|credential|signature|sig$|auth", re.I)
# A new server starts at a comma followed by a scheme: nats://a:4222,nats://b:4222.
_SERVER_LIST = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)")
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']*)'")
_USERINFO_IN_TEXT = re.compile(r"(://[^/@:\s]*):[^@/\s]*@")


def redact(url: str) -> str:
    """`url` fit for logs and reprs: a password, a token in the user position of
    a token scheme (`nats://TOKEN@host`) and secret-looking query values become
    `***`. A comma-separated server list is redacted server by server."""
    servers = _SERVER_LIST.split(url)
    if len(servers) > 1:
        return ",".join(redact(server) for server in servers)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url.split("?", 1)[0])
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:***"
        elif parts.scheme.lower() in _TOKEN_SCHEMES:
            userinfo = "***"
    netloc = f"{userinfo}{at}{hostport}"
    query = "&".join(_redact_option(option) for option in parts.query.split("&"))
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret: unchanged (geturl would drop the // of memory://)
    return parts._replace(netloc=netloc, query=query).geturl()


def _redact_option(option: str) -> str:
    name, eq, _value = option.partition("=")
    return f"{name}=***" if eq and _SECRET_OPTION.search(name) else option


def redact_text(text: str) -> str:
    """`text` (an error message that may quote a URL) with `user:password@` redacted."""
    return _USERINFO_IN_TEXT.sub(r"\1:***@", text)


def parse_url(url: str) -> ParsedURL:
    """Parse a backend URL, raising `UnknownBackend` when it is not one."""
    return ParsedURL(url)


def resolve(area: str, scheme: str, builtins: Mapping[str, str], group: str) -> Any:
    """The backend object registered for `scheme`: a builtin, or an entry point in `group`."""
    target = builtins.get(scheme)
    if target is not None:
        try:
            return _import_target(target)
        except ModuleNotFoundError as exc:
            # A network backend whose client library is not installed: say which extra.
            error = _deps.missing(exc, f"the {scheme}:// {area} backend")
            if error is None:
                raise
            raise error from exc
    for ep in entry_points(group=group):
        if ep.name == scheme:
            return ep.load()
    known = sorted({*builtins, *(ep.name for ep in entry_points(group=group))})
    close = difflib.get_close_matches(scheme, known, n=1)
    if not close and _OTHER_NAMES.get(scheme) in known:
        close = [_OTHER_NAMES[scheme]]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownBackend(
        f"no {area} backend for scheme {scheme!r}; known: {', '.join(known)}.{hint}"
    )


#: What other libraries call a scheme microstd has under another name (SQLAlchemy's
#: sqlite://, for one), for the "did you mean" of an unknown scheme.
_OTHER_NAMES = {
    "sqlite": "file",
    "sqlite3": "file",
    "pg": "postgresql",
    "postgre": "postgresql",
    "psql": "postgresql",
    "rabbitmq": "amqp",
    "jetstream": "nats",
    "minio": "s3",
    "mem": "memory",
    "inmemory": "memory",
}

_shared: dict[tuple[str, str, str], object] = {}
_shared_lock = threading.Lock()


def shared_instance(area: str, impl: str, name: str, factory: Callable[[], T]) -> T:
    """The process-wide instance `memory://NAME` names, made by `factory` on first use.

    `memory://` with no name is private: callers only come here with a name.
    """
    key = (area, impl, name)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = factory()
            _shared[key] = found
        return found  # type: ignore[return-value]


class MemoryOptions:
    """A `memory://` URL's options, parsed once for every area.

    `name` is the instance name (`memory://NAME`; "" for a private instance),
    `impl` the in-process core ("rust" or "python"), `values` the area's own
    options, keyword arguments overriding the query string.
    """

    __slots__ = ("impl", "name", "values")

    def __init__(self, name: str, impl: _validate.Impl, values: dict[str, Any]) -> None:
        self.name = name
        self.impl: _validate.Impl = impl
        self.values = values


#: Converts a query-string value (always text) to an option's value.
Convert = Callable[[str], object]


def memory_options(
    area: str,
    parsed: ParsedURL,
    options: Mapping[str, Any],
    known: Mapping[str, Convert | None] | None = None,
    *,
    impls: bool = True,
) -> MemoryOptions:
    """The options of a `memory://` URL of `area`, checked the same way in every area.

    `known` maps each option the area takes to the converter of its query-string
    form (None: keyword only, not in the query). `impl` is taken by every area
    with an in-process core (`impls`): "rust", "python", or absent for the Rust
    core when it is built; "rust" without the extension raises `NotSupported`.
    An unknown option raises `InvalidArgument` naming the known ones.
    """
    known = dict(known or {})
    merged: dict[str, Any] = {}
    for option, text in parsed.query.items():
        convert = known.get(option, _unknown)
        if convert is None:
            raise InvalidArgument(
                f"memory:// {area} option {option!r} is a keyword argument, not a URL option"
            )
        merged[option] = _convert(area, option, text, convert)
    merged.update(options)
    impl_value = merged.pop("impl", None) if impls else None
    unknown = sorted(set(merged) - set(known))
    if unknown:
        names = sorted([*known, *(["impl"] if impls else [])])
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(
            f"unknown memory:// {area} option(s): {', '.join(unknown)};"
            f" known: {', '.join(names) or 'none'}.{hint}"
        )
    impl = _validate.impl_choice(impl_value if impl_value != "" else None)
    return MemoryOptions(parsed.netloc_name, impl, merged)


def _unknown(text: str) -> object:
    """Stands for an option the area does not know: kept as text, refused below."""
    return text


def _convert(area: str, option: str, text: str, convert: Convert) -> object:
    try:
        return convert(text)
    except InvalidArgument:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"memory:// {area} option {option}={text!r}: {exc}") from exc


def option_flag(value: object) -> bool:
    """A boolean option given as a Python value or a query-string word."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _option_names(make: Callable[..., Any]) -> list[str]:
    """The keyword options a backend class takes (its `__init__`'s keyword-only
    parameters) and its engine's connection options (`ENGINE_OPTIONS` of the
    `microstd._engines` module its module uses), for an unknown option's message.
    Empty when `make` is not a classmethod of such a class."""
    import inspect
    import sys

    cls = getattr(make, "__self__", None)
    if not isinstance(cls, type):
        return []
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    names = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    # The engine the backend's module uses: imported as a module, or one of its classes.
    for value in vars(sys.modules.get(cls.__module__, sys)).values():
        where = getattr(value, "__name__", "") if inspect.ismodule(value) else None
        where = where or getattr(value, "__module__", "")
        if isinstance(where, str) and where.startswith("microstd._engines."):
            names.update(getattr(sys.modules.get(where), "ENGINE_OPTIONS", ()))
    return sorted(names)


class Backends:
    """The backends of one area, and its `open` / `open_sync` logic.

    A backend is a class (or any object) with `from_url(parsed, **options)`
    returning the async interface, and optionally `from_url_sync(parsed,
    **options)` returning a native blocking twin; without one, `open_sync`
    wraps the async backend in the area's `blocking` class (`"module:Class"`),
    which runs it on a private loop thread.
    """

    def __init__(self, area: str, group: str, builtins: Mapping[str, str], blocking: str) -> None:
        self.area = area
        self.group = group
        self.builtins = dict(builtins)
        self.blocking = blocking

    def _resolve(self, url: str) -> tuple[Any, ParsedURL]:
        parsed = parse_url(url)
        return resolve(self.area, parsed.scheme, self.builtins, self.group), parsed

    def open(self, url: str, options: Mapping[str, Any]) -> Any:
        """The async interface `url` names; `options` override its query parameters."""
        backend, parsed = self._resolve(url)
        return self._observed(parsed, self._make(parsed, backend.from_url, options))

    def open_sync(self, url: str, options: Mapping[str, Any]) -> Any:
        """The blocking interface `url` names: native where the backend has one."""
        backend, parsed = self._resolve(url)
        native = getattr(backend, "from_url_sync", None)
        if native is not None:
            return self._observed(parsed, self._make(parsed, native, options))
        inner = self._observed(parsed, self._make(parsed, backend.from_url, options))
        return _import_target(self.blocking)(inner)

    def _make(self, parsed: ParsedURL, make: Callable[..., Any], options: Mapping[str, Any]) -> Any:
        """`make(parsed, **options)`, where a bad option or URL is always `InvalidArgument`.

        Building a backend makes no connection, so a bare `TypeError` here is an
        option the backend does not take (or one of the wrong type): reported as
        `InvalidArgument` (still a `TypeError`) naming the scheme and the area,
        not as some internal class's `__init__()` complaining.
        """
        try:
            return make(parsed, **options)
        except MicrostdError:
            raise
        except TypeError as exc:
            unexpected = _UNEXPECTED_KEYWORD.search(str(exc))
            what = f"{parsed.scheme}:// {self.area}"
            if unexpected is not None:
                name = unexpected.group(1)
                known = _option_names(make)
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                listed = f"; known: {', '.join(known)}" if known else ""
                message = f"unknown {what} option {name!r}{listed}.{hint}"
            else:
                message = f"{what}: {exc}"
            raise InvalidArgument(message) from exc
        except ValueError as exc:
            # A URL missing a part the backend needs (file:// without a path, s3:// without
            # a bucket), or a bad option value: ours, with the backend's own message.
            raise InvalidArgument(str(exc)) from exc

    def _observed(self, parsed: ParsedURL, opened: Any) -> Any:
        # Traces and metrics, added here once for every backend (microstd.observe).
        from microstd.observe import _state

        _state.refresh()
        if not _state.state.on:
            return opened
        from microstd.observe.instrument import instrument

        return instrument(self.area, parsed.scheme, opened)
