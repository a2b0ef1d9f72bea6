"""A one-line progress bar on stderr, with no dependency."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, *, enabled: bool = True, width: int = 30) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.width = width
        self.count = 0
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        """Show that the next item, `label`, is starting."""
        self.count += 1
        if not self.enabled:
            return
        filled = int(self.width * (self.count - 1) / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.started
        line = f"\r[{bar}] {self.count}/{self.total} {elapsed:5.1f}s {label[:50]:<50}"
        sys.stderr.write(line)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (self.width + 70) + "\r")
            sys.stderr.flush()
