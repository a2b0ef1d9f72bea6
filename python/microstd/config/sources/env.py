"""Environment variables with a prefix, `__` between levels: `APP_DB__HOST` -> `db.host`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from microstd.config.sources.base import Source, nest

__all__ = ["EnvSource", "env", "env_tree"]


def env_tree(
    variables: Mapping[str, str], prefix: str, separator: str, where: str
) -> dict[str, Any]:
    """The variables starting with `prefix` (case-insensitively), nested on `separator`."""
    upper = prefix.upper()
    flat: dict[str, Any] = {}
    for key, value in variables.items():
        if not key.upper().startswith(upper):
            continue
        rest = key[len(prefix) :].lower()
        if rest:
            flat[rest] = value
    return nest(flat, separator.lower(), where)


class EnvSource(Source):
    """Variables of the process environment (or of `environ=`), read at each load."""

    textual = True
    local = True

    def __init__(
        self,
        prefix: str = "",
        *,
        separator: str = "__",
        environ: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"env:{prefix}*")
        self.prefix = prefix
        self.separator = separator
        self._environ = environ

    def read(self) -> dict[str, Any]:
        variables = os.environ if self._environ is None else self._environ
        return env_tree(variables, self.prefix, self.separator, self.name)


def env(
    prefix: str = "",
    *,
    separator: str = "__",
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
) -> EnvSource:
    """Environment variables named `prefix` + key, `separator` (`__`) between levels.

    `APP_DB__HOST=db1` with `prefix="APP_"` sets `db.host`. Keys are
    lower-cased. Values are strings coerced to the schema's types, or parsed
    as JSON where they look like JSON when there is no schema.
    """
    return EnvSource(prefix, separator=separator, environ=environ, name=name)
