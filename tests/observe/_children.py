"""Running `microstd run proc_observed:make` in child processes and reading their logs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


class Lines:
    """A child's stderr, read line by line on a thread (so waiting has a deadline)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                assert left > 0, f"no line with {text!r} in:\n" + "\n".join(self.lines)
                self._cond.wait(left)

    def join(self) -> None:
        self._thread.join(10)


def finish(proc: subprocess.Popen[str], out: Lines) -> None:
    """Kill the child if a test left it running; close its pipe."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    out.join()
    if proc.stderr is not None:
        proc.stderr.close()


def run(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "proc_observed:make", *args],
        cwd=HERE,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, Lines(proc)
