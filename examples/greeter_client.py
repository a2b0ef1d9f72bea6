"""Call the greeter: `python greeter_client.py NAME`, with MICROSTD_REGISTRY set
to the registry the greeter registered in."""

from __future__ import annotations

import asyncio
import os
import sys

import microstd


async def main(name: str) -> None:
    async with microstd.Client(os.environ.get("MICROSTD_REGISTRY")) as client:
        reply = await client.call("greeter", "Greeter.Hello", {"name": name}, timeout=5)
    print(reply["message"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "world"))
