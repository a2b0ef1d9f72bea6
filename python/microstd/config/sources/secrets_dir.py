"""A secrets directory (Docker / Kubernetes style): one file per key, every value secret."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microstd.config.secrets import Secret
from microstd.config.sources._watch import watch_paths
from microstd.config.sources.base import Source, nest
from microstd.config.sources.file import read_text
from microstd.errors import ConfigError

__all__ = ["SecretsDirSource", "secrets_dir"]


class SecretsDirSource(Source):
    """Each regular file's name is a key (`__` nests: `db__password`), its content the value.

    Values are `Secret` strings with one trailing newline removed. Hidden
    files (Kubernetes keeps `..data` links there) are ignored.
    """

    textual = True
    secret = True
    local = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        separator: str = "__",
        optional: bool = False,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.separator = separator
        super().__init__(name or f"secrets:{self.path}", optional=optional)

    def read(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: not a directory")
        flat: dict[str, Any] = {}
        for entry in sorted(self.path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            text = read_text(entry)
            if text.endswith("\n"):
                text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
            flat[entry.name.lower()] = Secret(text)
        return nest(flat, self.separator, self.name)

    def changes(self) -> AsyncIterator[None]:
        return watch_paths([self.path], directory=True)


def secrets_dir(
    path: str | os.PathLike[str],
    *,
    separator: str = "__",
    optional: bool = False,
    name: str | None = None,
) -> SecretsDirSource:
    """A directory holding one file per key; the values are marked secret (print as the mask)."""
    return SecretsDirSource(path, separator=separator, optional=optional, name=name)
