"""Subcommands contributed by the service areas (services, call, publish, run).

Kept apart from `cli.py` so the command's core does not import the RPC stack.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the service subcommands to the `microstd` parser."""
    del sub
    _ = argparse
