"""A leader-elected worker: run several; exactly one does the periodic work.

    python leader_worker.py         # with MICROSTD_LOCKS=redis://... or etcd://... across processes

Each instance is a service (so it is registered and health-checked); it
campaigns for leadership of "report-writer" and, once elected, works until it
loses leadership or is stopped. Stopping the leader (Ctrl-C) resigns, and
another instance takes over within the lease TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import microstd

svc = microstd.Service(
    "report-writer",
    registry=os.environ.get("MICROSTD_REGISTRY"),
    locks=os.environ.get("MICROSTD_LOCKS"),
)


async def work(rounds: int | None) -> None:
    async with svc:
        me = svc.server.node_id
        leadership = await svc.locks.elect("report-writer", candidate=me, ttl=5.0)
        print(f"{me}: elected leader")
        lost = asyncio.ensure_future(leadership.lost)
        done = 0
        try:
            while rounds is None or done < rounds:
                print(f"{me}: writing report {done}")
                done += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(lost), 1.0)
                if lost.done():
                    print(f"{me}: lost leadership")
                    return
        finally:
            lost.cancel()
            # Resigning a leadership already lost raises LockLost: nothing left to give up.
            with contextlib.suppress(microstd.errors.LockLost):
                await leadership.resign()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work(int(sys.argv[1]) if len(sys.argv) > 1 else None))
