"""Defaults from a mapping in code."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from microstd.config.merge import ListMode
from microstd.config.sources.base import Source

__all__ = ["MappingSource", "mapping"]


class MappingSource(Source):
    """A fixed mapping, copied at each read so later edits of the caller's dict do not leak in."""

    local = True

    def __init__(
        self, data: Mapping[str, Any], *, name: str = "defaults", lists: ListMode = "replace"
    ) -> None:
        super().__init__(name, lists=lists)
        self._data = data

    def read(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(copy.deepcopy(dict(self._data)))
        return plain


def _plain(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _plain(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return [_plain(v) for v in tree]
    if isinstance(tree, list):
        return [_plain(v) for v in tree]
    return tree


def mapping(
    data: Mapping[str, Any], *, name: str = "defaults", lists: ListMode = "replace"
) -> MappingSource:
    """A source holding `data` (nested mappings), usually the defaults, first in the list."""
    return MappingSource(data, name=name, lists=lists)
