"""Marks the suites need in any host project."""

from __future__ import annotations

import inspect
from collections.abc import MutableMapping

import pytest

__all__ = ["mark_async_tests"]


def mark_async_tests(namespace: MutableMapping[str, object]) -> None:
    """Mark each async `test_*` function of a suite module for pytest-asyncio, so the
    suite runs in a project whose `asyncio_mode` is "strict" as well as "auto"."""
    for name, obj in list(namespace.items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(obj):
            namespace[name] = pytest.mark.asyncio(obj)
