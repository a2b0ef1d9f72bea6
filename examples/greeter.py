"""A greeter service. Run it with `microstd run greeter:svc` (from this folder)
or `python greeter.py`; it serves until SIGTERM / Ctrl-C.

Set MICROSTD_REGISTRY (for example redis://127.0.0.1:6379/0) to run it in its
own process and find it from others; without it, it uses the process's
embedded registry.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import microstd
from microstd import errors


@dataclass
class HelloRequest:
    name: str


@dataclass
class HelloReply:
    message: str


svc = microstd.Service("greeter", version="1.0", registry=os.environ.get("MICROSTD_REGISTRY"))


@svc.handler("Greeter.Hello")
async def hello(req: HelloRequest) -> HelloReply:
    if not req.name:
        raise errors.bad_request("name must not be empty")  # the client gets a 400
    return HelloReply(f"Hello, {req.name}!")


if __name__ == "__main__":
    if not os.environ.get("MICROSTD_REGISTRY"):
        # It still serves, but only this process can find it in its embedded registry.
        print(
            "greeter: MICROSTD_REGISTRY is not set, so no other process can find this"
            " greeter; for greeter_client.py or `microstd call`, run for example\n"
            "    MICROSTD_REGISTRY=redis://127.0.0.1:6379/0 python greeter.py",
            file=sys.stderr,
        )
    svc.run()
