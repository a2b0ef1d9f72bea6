"""Progress of a `microstd bench` run on stderr, with no dependency.

On a terminal: one line redrawn in place, from the moment an area starts
preparing its cases (building a 100,000-key store takes a few seconds) to
the last case. Elsewhere (CI logs, a pipe): a line when the run starts and
one line per area when it finishes, so a log is short and still shows where
the time went.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Reports a run's progress; `enabled=False` makes every method a no-op."""

    def __init__(
        self,
        areas: list[str],
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
        width: int = 24,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self.areas = areas
        self.width = width
        self.started = time.monotonic()
        self.area = ""
        self.area_started = self.started
        self.total = 0
        self.count = 0
        self._drawn = 0

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _draw(self, label: str) -> None:
        position = f"{self.areas.index(self.area) + 1}/{len(self.areas)}"
        if self.total:
            filled = int(self.width * self.count / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            where = f"[{bar}] {self.area} ({position}) {self.count}/{self.total}"
        else:
            where = f"[{'-' * self.width}] {self.area} ({position})"
        line = f"{where} {self._elapsed():5.1f}s  {label}"
        # A line wider than the terminal wraps, and "\r" then redraws only its
        # last part: keep it to one row (the report prints labels whole).
        line = line[: max(20, shutil.get_terminal_size((120, 24)).columns - 1)]
        padding = " " * max(0, self._drawn - len(line))
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._drawn = len(line)

    def start(self, quick: bool) -> None:
        """The run begins (not shown on a terminal, where the bar appears at once)."""
        if self.enabled and not self.tty:
            mode = " (quick)" if quick else ""
            self.stream.write(f"microstd bench: {', '.join(self.areas)}{mode}\n")
            self.stream.flush()

    def preparing(self, area: str) -> None:
        """`area` is building its cases (stores, subscriptions, servers)."""
        self.area, self.area_started, self.total, self.count = area, time.monotonic(), 0, 0
        if self.enabled and self.tty:
            self._draw("preparing the cases...")

    def prepared(self, total: int) -> None:
        self.total = total

    def case(self, label: str, rows: int = 1) -> None:
        """The next case, `label`, is starting; it measures `rows` implementations."""
        if self.enabled and self.tty:
            self._draw(label)
        self.count += rows

    def clear(self) -> None:
        """Remove the bar before something else is printed to the terminal."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def area_done(self, failed: int) -> None:
        """The area's cases are all measured (or failed)."""
        self.clear()
        if self.enabled and not self.tty:
            seconds = time.monotonic() - self.area_started
            status = f", {failed} FAILED" if failed else ""
            self.stream.write(
                f"microstd bench: {self.area} done, {self.total} cases{status}"
                f" in {seconds:.1f}s (total {self._elapsed():.1f}s)\n"
            )
            self.stream.flush()
