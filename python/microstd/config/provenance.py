"""Which source set each value, and what it overrode."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from microstd.config.secrets import mask

__all__ = ["Explanation", "Provenance", "join_path", "split_path"]

Path = tuple[str, ...]


def split_path(path: str | Iterable[str]) -> Path:
    """`"db.host"` -> `("db", "host")`; a tuple or list passes through."""
    if isinstance(path, str):
        return tuple(p for p in path.split(".") if p) if path else ()
    return tuple(path)


def join_path(path: Path) -> str:
    """`("db", "host")` -> `"db.host"`."""
    return ".".join(path)


@dataclass(frozen=True)
class Explanation:
    """Where a configuration value came from.

    `source` is the name of the source that set the value now in effect
    (`None` when no source ever set it), `value` that value (`None` when it
    is absent, for example cleared by an explicit null), and `overrode` the
    `(source, value)` pairs it replaced, in source order. Secret values show
    as the mask in `str()` and `repr()`.
    """

    path: str
    source: str | None
    value: Any
    overrode: tuple[tuple[str, Any], ...] = ()
    secret: bool = field(default=False, repr=False)
    present: bool = field(default=True, repr=False)

    def __str__(self) -> str:
        if self.source is None:
            return f"{self.path}: not set by any source"
        shown = mask(self.value, self.secret)
        head = (
            f"{self.path} = {shown} from {self.source}"
            if self.present
            else f"{self.path} cleared (null) by {self.source}"
        )
        if not self.overrode:
            return head
        earlier = ", ".join(f"{mask(v, self.secret)} from {s}" for s, v in self.overrode)
        return f"{head} (overrode {earlier})"

    def __repr__(self) -> str:
        over = ", ".join(f"({s!r}, {mask(v, self.secret)})" for s, v in self.overrode)
        return (
            f"Explanation(path={self.path!r}, source={self.source!r}, "
            f"value={mask(self.value, self.secret)}, overrode=({over}))"
        )


class Provenance:
    """The history of every path: each source that set it, in source order.

    A mapping node records the sub-mapping each source contributed; a leaf
    records its value, or `None` for an explicit null that cleared it.
    """

    __slots__ = ("_history", "_secret")

    def __init__(self) -> None:
        self._history: dict[Path, list[tuple[str, Any]]] = {}
        self._secret: set[Path] = set()

    def record(self, path: Path, source: str, value: Any, *, secret: bool = False) -> None:
        """Note that `source` set `path` to `value`."""
        self._history.setdefault(path, []).append((source, value))
        if secret:
            self._secret.add(path)

    def mark_secret(self, path: Path) -> None:
        """Treat `path` (and everything under it) as secret."""
        self._secret.add(path)

    def is_secret(self, path: Path) -> bool:
        """Whether `path` or one of its parents holds a secret."""
        return any(path[:i] in self._secret for i in range(len(path) + 1))

    def history(self, path: Path) -> list[tuple[str, Any]]:
        """The `(source, value)` pairs that set `path`, in source order."""
        return list(self._history.get(path, ()))

    def source_of(self, path: Path) -> str | None:
        """The source of the value now at `path`, looking at parents for a replaced subtree."""
        for i in range(len(path), 0, -1):
            entries = self._history.get(path[:i])
            if entries:
                return entries[-1][0]
        return None

    def explain(self, path: Path, value: Any, present: bool) -> Explanation:
        """An `Explanation` of `path`, whose current merged value is `value`."""
        entries = self._history.get(path)
        secret = self.is_secret(path)
        if not entries:
            source = self.source_of(path) if present else None
            return Explanation(join_path(path), source, value, (), secret, present)
        *earlier, last = entries
        return Explanation(join_path(path), last[0], value, tuple(earlier), secret, present)
