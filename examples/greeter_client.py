"""Call the greeter: `python greeter_client.py NAME`, with MICROSTD_REGISTRY set
to the registry the greeter registered in (for example redis://127.0.0.1:6379/0).

Without MICROSTD_REGISTRY this process looks in its own embedded registry,
where no greeter runs: it says how to give one (`quickstart.py` runs both in
one process).
"""

from __future__ import annotations

import asyncio
import os
import sys

import microstd
from microstd.errors import ConnectionFailed, NotFound

HOW = (
    "start the greeter with a shared registry, for example\n"
    "    MICROSTD_REGISTRY=redis://127.0.0.1:6379/0 microstd run greeter:svc\n"
    "and set the same MICROSTD_REGISTRY here (or run quickstart.py: both in one process)"
)


async def main(name: str) -> int:
    registry = os.environ.get("MICROSTD_REGISTRY")
    try:
        async with microstd.Client(registry) as client:
            reply = await client.call("greeter", "Greeter.Hello", {"name": name}, timeout=5)
    except NotFound:
        where = registry or "this process's embedded registry (MICROSTD_REGISTRY is not set)"
        print(f"greeter_client: no greeter is registered in {where}:\n{HOW}", file=sys.stderr)
        return 3
    except ConnectionFailed as exc:
        print(f"greeter_client: cannot reach the registry {registry}: {exc}", file=sys.stderr)
        return 3
    print(reply["message"])
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "world")))
