"""A leader-elected worker: run several; exactly one does the periodic work.

    python leader_worker.py         # with MICROSTD_LOCKS=redis://... or etcd://... across processes
    python leader_worker.py 3       # stop after 3 reports

Each instance is a service (so it is registered and health-checked); it
campaigns for leadership of "report-writer" and, once elected, works until it
loses leadership or is stopped. Stopping an instance (Ctrl-C, or SIGTERM from
a process manager) resigns at once, so another instance takes over without
waiting for the lease TTL to run out. Without MICROSTD_LOCKS the locks are
this process's own, so only one instance is meaningful.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import microstd

svc = microstd.Service(
    "report-writer",
    registry=os.environ.get("MICROSTD_REGISTRY"),
    locks=os.environ.get("MICROSTD_LOCKS"),
)


async def lead(rounds: int | None) -> None:
    async with svc:
        me = svc.server.node_id
        leadership = await svc.locks.elect("report-writer", candidate=me, ttl=5.0)
        print(f"{me}: elected leader", flush=True)
        lost = asyncio.ensure_future(leadership.lost)
        done = 0
        try:
            while rounds is None or done < rounds:
                print(f"{me}: writing report {done}", flush=True)
                done += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(lost), 1.0)
                if lost.done():
                    print(f"{me}: lost leadership", flush=True)
                    return
        finally:
            lost.cancel()
            # Resigning a leadership already lost raises LockLost: nothing left to give up.
            with contextlib.suppress(microstd.errors.LockLost):
                await leadership.resign()
                print(f"{me}: resigned", flush=True)


async def work(rounds: int | None) -> None:
    """`lead`, stopped the same way by Ctrl-C and by SIGTERM: cancelled, so its
    `finally` resigns and the service deregisters before the process exits."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await lead(rounds)


if __name__ == "__main__":
    sys.exit(asyncio.run(work(int(sys.argv[1]) if len(sys.argv) > 1 else None)))
