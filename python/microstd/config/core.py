"""`Config`: the merged, typed configuration, and `load()` / `load_async()`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from microstd.config.binding import bind, parse_textual
from microstd.config.limits import check_tree
from microstd.config.merge import Layer, merge_layers
from microstd.config.provenance import Explanation, Path, Provenance, join_path, split_path
from microstd.config.reload import Change, watch
from microstd.config.sources.args import resolve_dashed
from microstd.config.sources.base import Source
from microstd.config.sources.mapping import MappingSource
from microstd.errors import ConfigError

__all__ = ["SCHEMA_DEFAULT", "Config", "load", "load_async"]

log = logging.getLogger("microstd.config")

_MISSING: Any = object()
#: The `Explanation.source` of a value no source set, filled in by the schema's default.
SCHEMA_DEFAULT = "schema default"
ChangeCallback = Callable[[Any, Any], Any]
ErrorHook = Callable[[ConfigError], Any]


@dataclass(frozen=True)
class _Snapshot:
    # Replaced as a whole, never mutated: a reader that takes `cfg._snap` once sees one version.
    data: dict[str, Any]
    value: Any
    provenance: Provenance


class Config:
    """A loaded configuration: `value`, `get()`, `explain()`, and hot reload via `watch()`."""

    def __init__(
        self,
        schema: Any,
        sources: Sequence[Source],
        layers: list[Layer | None],
        snapshot: _Snapshot,
        secret_keys: tuple[Path, ...],
    ) -> None:
        self.schema = schema
        self.sources: tuple[Source, ...] = tuple(sources)
        self._layers = layers
        self._snap = snapshot
        self._secret_keys = secret_keys
        self._callbacks: list[tuple[Path, ChangeCallback]] = []
        self._error_hooks: list[ErrorHook] = []
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The configuration: a schema instance, or a plain dict without a schema."""
        return self._snap.value

    @property
    def data(self) -> dict[str, Any]:
        """The merged tree before binding (treat it as read-only)."""
        return self._snap.data

    def get(self, path: str, default: Any = _MISSING) -> Any:
        """The value at a dotted `path` of the bound value (`"db.host"`).

        Missing paths return `default`, or raise `KeyError` without one.
        """
        snap = self._snap
        found = _lookup_value(snap.value, split_path(path))
        if found is _MISSING:
            found = _lookup_tree(snap.data, split_path(path))
        if found is _MISSING:
            if default is _MISSING:
                raise KeyError(path)
            return default
        return found

    def explain(self, path: str) -> Explanation:
        """Which source set `path`, its value, and the `(source, value)` pairs it overrode."""
        snap = self._snap
        parts = split_path(path)
        value = _lookup_tree(snap.data, parts)
        present = value is not _MISSING
        if not present and not snap.provenance.history(parts):
            default = _lookup_value(snap.value, parts)
            if default is not _MISSING:
                # No source set it, yet the schema filled it in: say so rather than "unset".
                secret = snap.provenance.is_secret(parts)
                return Explanation(join_path(parts), SCHEMA_DEFAULT, default, (), secret)
        return snap.provenance.explain(parts, value if present else None, present)

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.sources)
        schema = getattr(self.schema, "__name__", "dict")
        return f"<Config {schema} from [{names}]>"

    # --- hooks -----------------------------------------------------------------------------

    def on_change(self, path: str, fn: ChangeCallback) -> Callable[[], None]:
        """Call `fn(old, new)` after each applied reload that changed `path` (or below it).

        `fn` may be a coroutine function. Returns a function that unregisters it.
        """
        entry = (split_path(path), fn)
        self._callbacks.append(entry)

        def remove() -> None:
            if entry in self._callbacks:
                self._callbacks.remove(entry)

        return remove

    def on_error(self, fn: ErrorHook) -> Callable[[], None]:
        """Call `fn(error)` when a reload fails (the last good value stays in effect)."""
        self._error_hooks.append(fn)

        def remove() -> None:
            if fn in self._error_hooks:
                self._error_hooks.remove(fn)

        return remove

    # --- reload ----------------------------------------------------------------------------

    def watch(self, *, debounce: float = 0.05) -> AsyncIterator[Change]:
        """Apply changes from watchable sources; yield a `Change` for each applied reload.

        Bursts of notifications within `debounce` seconds become one reload. A
        reload is fetched, merged and validated first and then swapped in at
        once; one that fails keeps the last good value and is reported to the
        `on_error` hooks and the log.
        """
        return watch(self, debounce)

    async def reload(self) -> Change | None:
        """Re-fetch every source now; the `Change` applied, or None when nothing changed."""
        return await self._reload(range(len(self.sources)))

    async def _reload(self, indexes: Iterable[int]) -> Change | None:
        layers = list(self._layers)
        names = []
        try:
            for i in indexes:
                source = self.sources[i]
                names.append(source.name)
                try:
                    data = await source.fetch()
                    check_tree(data, source.name)
                except Exception as exc:  # any source bug must leave the service running
                    if source.optional and not source.local and layers[i] is not None:
                        # A remote source that is briefly unreachable keeps its last good
                        # layer, rather than silently reverting its keys to the defaults.
                        self._report(_as_error(source, exc))
                        continue
                    layers[i] = _failed(source, exc)
                    continue
                layers[i] = _layer(source, data, self.schema)
            snap = _build(self.schema, layers, self._secret_keys)
        except ConfigError as exc:
            self._report(exc)
            return None
        except Exception as exc:  # a schema's own validation code may raise anything
            # Only the type: the message of an arbitrary exception may quote a secret.
            self._report(ConfigError(f"validation raised {type(exc).__name__}"))
            return None
        with self._lock:
            old = self._snap
            self._layers = layers
            self._snap = snap
        paths = _diff(old.data, snap.data)
        if not paths:
            return None
        change = Change(tuple(join_path(p) for p in paths), old.value, snap.value, tuple(names))
        log.info("configuration reloaded from %s: %s", ", ".join(names), ", ".join(change.paths))
        await self._notify(old, snap)
        return change

    async def _notify(self, old: _Snapshot, new: _Snapshot) -> None:
        for path, fn in list(self._callbacks):
            before = _lookup_tree(old.data, path)
            after = _lookup_tree(new.data, path)
            if before == after and type(before) is type(after):
                continue
            old_v = _lookup_value(old.value, path)
            new_v = _lookup_value(new.value, path)
            try:
                result = fn(
                    None if old_v is _MISSING else old_v, None if new_v is _MISSING else new_v
                )
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # a callback's bug must not stop reloads
                self._report(
                    ConfigError(
                        f"on_change callback for {join_path(path)} raised {type(exc).__name__}"
                    )
                )

    def _report(self, error: ConfigError) -> None:
        log.warning("configuration reload failed, keeping the last good value: %s", error)
        for hook in list(self._error_hooks):
            try:
                hook(error)
            except Exception:
                log.exception("configuration error hook raised")


# --- loading ---------------------------------------------------------------------------------


def _as_source(item: Source | Mapping[str, Any]) -> Source:
    if isinstance(item, Source):
        return item
    if isinstance(item, Mapping):
        return MappingSource(item)
    raise TypeError(f"a configuration source or mapping, not {type(item).__name__}")


def _layer(source: Source, data: dict[str, Any], schema: Any) -> Layer:
    if source.dashed_keys:
        data = resolve_dashed(data, schema)
    if source.textual and schema is None:
        data = parse_textual(data)
    return Layer(source.name, data, lists=source.lists, secret=source.secret)


def _as_error(source: Source, exc: BaseException) -> ConfigError:
    if isinstance(exc, ConfigError):
        return exc
    return ConfigError(f"{source.name}: {type(exc).__name__}: {exc}")


def _failed(source: Source, exc: BaseException) -> Layer | None:
    """None for an optional source (logged), else the failure as a `ConfigError`."""
    err = _as_error(source, exc)
    if source.optional:
        log.warning("optional configuration source skipped: %s", err)
        return None
    if err is exc:
        raise err
    raise err from exc


async def _fetch_layer(source: Source, schema: Any) -> Layer | None:
    try:
        data = await source.fetch()
        check_tree(data, source.name)
    except Exception as exc:  # whatever a source raises, the caller gets a ConfigError
        return _failed(source, exc)
    return _layer(source, data, schema)


def _read_layer(source: Source, schema: Any) -> Layer | None:
    try:
        data = source.read()
        check_tree(data, source.name)
    except Exception as exc:  # whatever a source raises, the caller gets a ConfigError
        return _failed(source, exc)
    return _layer(source, data, schema)


def _build(schema: Any, layers: list[Layer | None], secret_keys: tuple[Path, ...]) -> _Snapshot:
    data, prov = merge_layers((layer for layer in layers if layer is not None), secret_keys)
    return _Snapshot(data, bind(schema, data, prov), prov)


def _prepare(
    sources: Sequence[Source | Mapping[str, Any]], secret_keys: Iterable[str]
) -> tuple[list[Source], tuple[Path, ...]]:
    return [_as_source(s) for s in sources], tuple(split_path(k) for k in secret_keys)


async def load_async(
    schema: Any = None,
    *,
    sources: Sequence[Source | Mapping[str, Any]] = (),
    secret_keys: Iterable[str] = (),
) -> Config:
    """`load()` for code already running in an event loop; fetches remote sources concurrently."""
    srcs, secrets = _prepare(sources, secret_keys)
    layers = list(await asyncio.gather(*(_fetch_layer(s, schema) for s in srcs)))
    return Config(schema, srcs, layers, _build(schema, layers, secrets), secrets)


def load(
    schema: Any = None,
    *,
    sources: Sequence[Source | Mapping[str, Any]] = (),
    secret_keys: Iterable[str] = (),
) -> Config:
    """Load, merge and bind configuration from `sources` (later ones override earlier ones).

    `schema` is a dataclass or pydantic model class, or None for a plain
    dict. A plain mapping in `sources` is a `mapping()` source.
    `secret_keys` lists dotted paths whose values are secret wherever they
    come from. Remote sources are fetched on a private event loop (on a
    helper thread when this thread already runs one); use `load_async()`
    inside async code to share the caller's loop.
    """
    srcs, secrets = _prepare(sources, secret_keys)
    if all(s.local for s in srcs):
        layers = [_read_layer(s, schema) for s in srcs]
        return Config(schema, srcs, layers, _build(schema, layers, secrets), secrets)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(load_async(schema, sources=srcs, secret_keys=secret_keys))
    result: list[Config] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(load_async(schema, sources=srcs, secret_keys=secret_keys)))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="microstd.config load")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


# --- helpers ---------------------------------------------------------------------------------


def _lookup_tree(tree: Any, path: Path) -> Any:
    node = tree
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _lookup_value(value: Any, path: Path) -> Any:
    node = value
    for part in path:
        if isinstance(node, Mapping):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                return _MISSING
            node = node[int(part)]
        elif hasattr(node, "__dataclass_fields__") or hasattr(node, "model_fields"):
            if not hasattr(node, part):
                return _MISSING
            node = getattr(node, part)
        else:
            return _MISSING
    return node


def _diff(old: Any, new: Any, base: Path = ()) -> list[Path]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Path] = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                out.append((*base, str(key)))
            else:
                out.extend(_diff(old[key], new[key], (*base, str(key))))
        return out
    if old == new and type(old) is type(new):
        return []
    return [base]
