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
    from microstd.bench import AREAS, OPT_IN, run

    areas = args.area or [a for a in AREAS if a not in OPT_IN]
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(
            f"microstd bench: unknown area {', '.join(unknown)}; known: {', '.join(AREAS)}",
            file=sys.stderr,
        )
        return 2
    done = run(
        areas,
        json_path=args.json,
        html_path=args.html,
        quick=args.quick,
        progress=not args.no_progress,
    )
    if done.interrupted:
        return 130
    if done.failed:
        print(f"microstd bench: {len(done.failed)} case(s) FAILED (see above)", file=sys.stderr)
        return 1
    return 0


def _bench_epilog() -> str:
    from microstd.bench import AREAS, DESCRIPTIONS

    width = max(len(a) for a in AREAS)
    lines = [f"  {area:<{width}}  {DESCRIPTIONS.get(area, '')}" for area in AREAS]
    return (
        "areas:\n" + "\n".join(lines) + "\n\n"
        "Each area's table is printed as soon as it is done, then a summary. Every ratio is\n"
        "microstd's row against its pure twin or the fastest peer, with its direction\n"
        '("2.10x faster", "1.25x slower"). Exit status: 0 when every case ran, 1 when\n'
        "any case failed (each failure is printed with its reason), 130 if interrupted."
    )


def _version() -> str:
    from microstd import __version__, _accel

    core = "Rust core" if _accel.AVAILABLE else "pure-Python twins (no Rust core)"
    return f"microstd {__version__} ({core}, Python {sys.version.split()[0]})"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microstd", description="microstd: tools for services built on microstd."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    bench = sub.add_parser(
        "bench",
        help="compare the Rust core with the pure-Python twins and peer packages",
        description="Run the benchmarks of the embedded defaults and print ops/s and ratios.",
        epilog=_bench_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "area", nargs="*", help="areas to run (default: all but those needing servers; below)"
    )
    bench.add_argument("--json", metavar="PATH", help="also save the numbers as JSON to PATH")
    bench.add_argument(
        "--html", metavar="PATH", help="also write a self-contained HTML page with bar charts"
    )
    bench.add_argument(
        "--quick", action="store_true", help="fewer payloads, shorter timings: well under a minute"
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    bench.set_defaults(func=_cmd_bench)

    from microstd import _cli_areas

    _cli_areas.add_commands(sub)
    from microstd import _cli_streams

    _cli_streams.add_command(sub)
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
