"""Deep merge of source layers, recording provenance as it goes.

Rules (later layers override earlier ones):

- mappings merge key by key, recursively;
- any other value replaces what was there, lists included, unless the
  source was created with `lists="append"`, which extends an existing list;
- an explicit `None` (JSON/YAML `null`) removes the key, so a later source
  can clear a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from microstd.config.provenance import Path, Provenance
from microstd.config.secrets import Secret

__all__ = ["Layer", "ListMode", "merge_layers"]

ListMode = Literal["replace", "append"]


class Layer:
    """One source's fetched tree, with how it merges."""

    __slots__ = ("data", "lists", "name", "secret")

    def __init__(
        self, name: str, data: dict[str, Any], *, lists: ListMode = "replace", secret: bool = False
    ) -> None:
        self.name = name
        self.data = data
        self.lists = lists
        self.secret = secret


def merge_layers(
    layers: Iterable[Layer], secret_keys: Iterable[Path] = ()
) -> tuple[dict[str, Any], Provenance]:
    """Merge `layers` in order into a fresh tree; return it with its provenance.

    Paths in `secret_keys` are marked secret and their string values wrapped
    in `Secret`.
    """
    out: dict[str, Any] = {}
    prov = Provenance()
    for layer in layers:
        _merge_into(out, layer.data, (), layer, prov)
    for path in secret_keys:
        prov.mark_secret(path)
        _wrap_secret(out, path)
    return out, prov


def _merge_into(
    target: dict[str, Any], data: dict[str, Any], base: Path, layer: Layer, prov: Provenance
) -> None:
    for key, value in data.items():
        path = (*base, str(key))
        if value is None:
            target.pop(key, None)
            prov.record(path, layer.name, None, secret=layer.secret)
        elif isinstance(value, dict):
            prov.record(path, layer.name, value, secret=layer.secret)
            existing = target.get(key)
            if not isinstance(existing, dict):
                existing = target[key] = {}
            _merge_into(existing, value, path, layer, prov)
        else:
            existing = target.get(key)
            if isinstance(value, list):
                value = list(value)
                if layer.lists == "append" and isinstance(existing, list):
                    value = existing + value
            target[key] = value
            prov.record(path, layer.name, value, secret=layer.secret)


def _wrap_secret(tree: dict[str, Any], path: Path) -> None:
    node: Any = tree
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict) and path and path[-1] in node:
        node[path[-1]] = _secret_strings(node[path[-1]])


def _secret_strings(value: Any) -> Any:
    # A secret path may name a whole subtree (`secret_keys=["db"]`): every string under it.
    if isinstance(value, str):
        return value if isinstance(value, Secret) else Secret(value)
    if isinstance(value, dict):
        return {k: _secret_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_strings(v) for v in value]
    return value
