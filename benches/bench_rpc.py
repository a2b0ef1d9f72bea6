"""RPC speed: microstd's server and client against a bare aiohttp handler.

Both servers decode the msgpack request with the same codec and encode the
same reply, on loopback. Cases:

- bare: aiohttp handler, driven by a plain aiohttp client session;
- server: the microstd server, driven by the same plain aiohttp session
  (the server's overhead alone);
- client: the microstd `Client` over HTTP to the microstd server (full stack:
  registry resolution, headers, deadlines, error handling);
- in-process: the microstd `Client` in-process path (no HTTP).

Each case runs as single round trips (latency) and as batches of 64
concurrent calls (throughput). `python benches/bench_rpc.py` prints the
ratios against the bare handler. The rig (servers, clients, loop) is
`microstd.bench.rpc.Rig`, shared with `microstd bench rpc`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from microstd.bench.rpc import BATCH, KINDS, REPLY, Rig


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    made.start()
    yield made
    made.close()


@pytest.mark.parametrize("kind", KINDS)
def test_latency(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = "rpc round trip"
    reply = benchmark(rig.once, kind)
    assert reply == REPLY


@pytest.mark.parametrize("kind", KINDS)
def test_throughput(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = f"rpc {BATCH} concurrent calls"
    replies = benchmark(rig.batch, kind)
    assert replies == [REPLY] * BATCH


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn()
        n += 1
    return (time.perf_counter() - began) / n


def main() -> None:
    """Print latency, requests/s and the ratio to the bare handler.

    The cases are interleaved over several rounds and the best round of each
    kept, so a busy machine skews them alike.
    """
    rig = Rig()
    lat = dict.fromkeys(KINDS, float("inf"))
    thr = dict.fromkeys(KINDS, float("inf"))
    try:
        for kind in KINDS:  # warm up connections and caches
            rig.batch(kind)
        for _ in range(5):
            for k in KINDS:
                lat[k] = min(lat[k], _per_call(lambda k=k: rig.once(k), 0.3))  # type: ignore[misc]
                thr[k] = min(thr[k], _per_call(lambda k=k: rig.batch(k), 0.3))  # type: ignore[misc]
    finally:
        rig.close()
    print(f"{'case':10} {'latency us':>11} {'x bare':>7} {'req/s (64 conc.)':>17} {'x bare':>7}")
    for k in KINDS:
        rps = BATCH / thr[k]
        print(
            f"{k:10} {lat[k] * 1e6:11.1f} {lat[k] / lat['bare']:7.2f} {rps:17.0f}"
            f" {thr[k] / thr['bare']:7.2f}"
        )


if __name__ == "__main__":
    main()
