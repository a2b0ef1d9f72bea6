"""File-system change notification through watchfiles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from microstd.errors import ConfigError

__all__ = ["watch_paths"]


async def watch_paths(paths: Sequence[Path], *, directory: bool = False) -> AsyncIterator[None]:
    """Yield whenever one of `paths` (or, with `directory`, anything inside them) changes.

    Files are watched through their parent directory, so an editor or a
    deployment tool that replaces the file by renaming a new one over it is
    still noticed.
    """
    try:
        import watchfiles
    except ImportError:
        raise ConfigError(
            "watching files needs watchfiles (pip install 'microstd[config]')"
        ) from None
    resolved = [p.resolve() for p in paths]
    roots = resolved if directory else sorted({p.parent for p in resolved})

    def wanted(_change: object, changed: str) -> bool:
        p = Path(changed)
        if directory:
            return any(p == r or r in p.parents for r in resolved)
        return p in resolved

    async for _ in watchfiles.awatch(
        *roots, watch_filter=wanted, debounce=200, step=20, recursive=directory
    ):
        yield None
