"""Configuration files: JSON, YAML or TOML, chosen by extension."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microstd.config.interpolate import interpolate_tree
from microstd.config.merge import ListMode
from microstd.config.sources._formats import format_for, parse_document
from microstd.config.sources._watch import watch_paths
from microstd.config.sources.base import Source
from microstd.errors import ConfigError

__all__ = ["FileSource", "file", "read_text"]

# A configuration file larger than this is a mistake, not configuration.
MAX_FILE_BYTES = 16 * 1024 * 1024


def read_text(path: Path) -> str:
    """The UTF-8 text of `path`; `ConfigError` naming it when it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8-sig")  # a BOM is not content
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


class FileSource(Source):
    """One JSON, YAML or TOML file, with `${VAR}` interpolation in its string values."""

    local = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        optional: bool = False,
        interpolate: bool = True,
        lists: ListMode = "replace",
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = format or format_for(str(self.path))
        self.interpolate = interpolate
        super().__init__(name or f"file:{self.path}", optional=optional, lists=lists)

    def read(self) -> dict[str, Any]:
        data = parse_document(read_text(self.path), self.format, str(self.path))
        if self.interpolate:
            data = interpolate_tree(data, str(self.path))
        return data

    def changes(self) -> AsyncIterator[None]:
        return watch_paths([self.path])


def file(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    optional: bool = False,
    interpolate: bool = True,
    lists: ListMode = "replace",
    name: str | None = None,
) -> FileSource:
    """A JSON, YAML or TOML file (by extension, or `format=`); `${VAR:-default}` is expanded.

    `optional=True` skips a missing or broken file with a warning.
    """
    return FileSource(
        path, format=format, optional=optional, interpolate=interpolate, lists=lists, name=name
    )
