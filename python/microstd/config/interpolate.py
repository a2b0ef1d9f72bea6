"""`${VAR}` and `${VAR:-default}` in the string values of configuration files.

Interpolation runs on parsed string values, never on the raw file text, so
an environment variable cannot inject structure into a document. `$${`
writes a literal `${`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from microstd.errors import ConfigError

__all__ = ["interpolate", "interpolate_tree"]

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace `${VAR}` / `${VAR:-default}` in `text` from `environ` (default `os.environ`).

    A variable that is unset and has no default raises `ConfigError` naming
    `where` (the file and key). `${VAR:-default}` also uses the default when
    the variable is set but empty, as the shell does.
    """
    if "$" not in text:
        return text
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "${"
        default = match.group(2)
        value = env.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            raise ConfigError(f"{where}: ${{{name}}} is not set and has no default")
        return value

    return _REF.sub(replace, text)


def interpolate_tree(
    tree: Any, where: str, path: str = "", environ: Mapping[str, str] | None = None
) -> Any:
    """`tree` with every string value interpolated (keys are left alone)."""
    if isinstance(tree, str):
        return interpolate(tree, f"{where} at {path or '<root>'}", environ)
    if isinstance(tree, dict):
        return {
            k: interpolate_tree(v, where, f"{path}.{k}" if path else str(k), environ)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [interpolate_tree(v, where, f"{path}[{i}]", environ) for i, v in enumerate(tree)]
    return tree
