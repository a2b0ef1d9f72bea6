"""Runs the first Python block of a README section with the installed microstd.

    python .ci/readme_example.py "## Codecs"

Used by .ci/run to prove a wheel installed where there is no Rust toolchain
works: the block runs against the installed package (run it from a directory
outside the checkout), with the Rust core loaded, not the pure twins.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    found = re.search(r"^```python\n(.*?)^```$", text[start:], flags=re.M | re.S)
    if found is None:
        raise SystemExit(f"no python block under {heading!r} in {README}")
    return found.group(1)


def main() -> None:
    heading = sys.argv[1]
    for tool in ("cargo", "rustc"):
        if shutil.which(tool):
            raise SystemExit(f"{tool} is on the PATH: this check needs a machine without Rust")
    import microstd

    if not microstd.RUST_CORE_AVAILABLE:
        raise SystemExit("the installed wheel did not load microstd's Rust core")
    code = block(heading)
    exec(compile(code, f"README.md {heading}", "exec"), {"__name__": "__main__"})  # noqa: S102
    print(f"README {heading!r} ran with microstd {microstd.__version__} from {microstd.__file__}")


if __name__ == "__main__":
    main()
