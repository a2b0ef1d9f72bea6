"""`microstd streams`: a broker's streams and durable subscriptions, with their counts.

    microstd streams --broker nats://127.0.0.1:4222
    microstd streams --broker file:///var/lib/app/broker.db --json

For each stream: its subjects, what it holds and its limits; for each of its
durables: the pattern and the counts `Broker.streams()` reports (pending,
unacked, redelivered, dead-lettered, live consumers). A count the engine
cannot tell prints as `-` (null in JSON). Exit codes as the other commands:
2 bad usage, 3 the broker could not be reached or has no streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from typing import Any

__all__ = ["add_command"]

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def _count(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value >= 10_000:
        for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if value >= size:
                return f"{value / size:.1f}{unit}"
    return str(value)


def _limits(info: Any) -> str:
    limits = info.limits
    parts = [
        f"{name}={_count(getattr(limits, name))}"
        for name in ("max_age", "max_count", "max_bytes")
        if getattr(limits, name) is not None
    ]
    return " ".join(parts) or "none"


def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]


def render(infos: list[Any]) -> str:
    """The plain-text report of `Broker.streams()`."""
    if not infos:
        return "no streams"
    lines: list[str] = []
    for info in infos:
        lines += _table(
            [
                ["STREAM", "SUBJECTS", "MESSAGES", "BYTES", "LIMITS"],
                [
                    info.name,
                    ",".join(info.subjects),
                    _count(info.messages),
                    _count(info.bytes),
                    _limits(info),
                ],
            ]
        )
        if info.durables:
            rows = [
                [
                    "DURABLE",
                    "PATTERN",
                    "PENDING",
                    "UNACKED",
                    "REDELIVERED",
                    "DEAD-LETTERED",
                    "CONSUMERS",
                ]
            ]
            rows += [
                [
                    d.name,
                    d.pattern,
                    _count(d.pending),
                    _count(d.unacked),
                    _count(d.redelivered),
                    _count(d.dead_lettered),
                    _count(d.consumers),
                ]
                for d in info.durables
            ]
            lines += _table(rows, indent="  ")
        lines.append("")
    return "\n".join(lines).rstrip()


def _cmd_streams(args: argparse.Namespace) -> int:
    url = args.broker or os.environ.get("MICROSTD_BROKER")
    if not url:
        print(
            "microstd streams: no broker: pass --broker URL or set MICROSTD_BROKER",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def main() -> list[Any]:
        from microstd import broker

        async with broker.open(url) as b:
            return await b.streams()

    from microstd.errors import ConnectionFailed, MicrostdError, NotSupported

    try:
        infos = asyncio.run(main())
    except (ConnectionFailed, NotSupported) as exc:
        print(f"microstd streams: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (MicrostdError, ValueError) as exc:
        print(f"microstd streams: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        out = []
        for info in infos:
            item = asdict(info)
            item["subjects"] = list(info.subjects)
            item["durables"] = [asdict(d) for d in info.durables]
            out.append(item)
        print(json.dumps(out, indent=2))
    else:
        print(render(infos))
    return 0


def add_command(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add `streams` to the `microstd` parser."""
    streams = sub.add_parser(
        "streams",
        help="list a broker's streams and durable subscriptions with their counts",
        description="List the streams of a broker, their limits and durable subscriptions,"
        " with pending, unacked, redelivered and dead-lettered counts.",
    )
    streams.add_argument("--broker", default=None, help="broker URL (default: $MICROSTD_BROKER)")
    streams.add_argument("--json", action="store_true", help="print JSON")
    streams.set_defaults(func=_cmd_streams)
