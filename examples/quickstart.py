"""The greeter and its client in one process, on the embedded defaults.

The client finds the greeter in the process's `memory://default` registry
and, since the server lives in this process, calls it without HTTP (same
encoding and errors). `python quickstart.py`
"""

from __future__ import annotations

import asyncio

from greeter import svc

import microstd
from microstd.errors import ServiceError


async def main() -> None:
    async with svc, microstd.Client() as client:
        reply = await client.call("greeter", "Greeter.Hello", {"name": "Ada"})
        print(reply["message"])
        try:
            await client.call("greeter", "Greeter.Hello", {"name": ""})
        except ServiceError as exc:
            print(f"error {exc.code}: {exc.detail}")


if __name__ == "__main__":
    asyncio.run(main())
