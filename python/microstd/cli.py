"""The `microstd` command.

Each subcommand lives in its own function and is added to the parser in
`_build_parser`; areas add theirs as they land (`services`, `call`,
`publish`, `run`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_bench(args: argparse.Namespace) -> int:
    from microstd.bench import AREAS, run

    areas = args.area or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(
            f"microstd bench: unknown area {', '.join(unknown)}; known: {', '.join(AREAS)}",
            file=sys.stderr,
        )
        return 2
    run(areas, json_path=args.json, quick=args.quick, progress=not args.no_progress)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microstd", description="microstd: tools for services built on microstd."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    bench = sub.add_parser(
        "bench",
        help="compare the Rust core with the pure-Python twins and peer packages",
        description="Run the benchmarks of the embedded defaults and print ops/s and ratios.",
    )
    bench.add_argument("area", nargs="*", help="areas to run (default: all)")
    bench.add_argument("--json", metavar="PATH", help="also save the numbers as JSON to PATH")
    bench.add_argument("--quick", action="store_true", help="shorter runs, noisier numbers")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)

    from microstd import _cli_areas

    _cli_areas.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `microstd` command; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code
