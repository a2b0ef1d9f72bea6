"""A queue-group member in its own process, for the two-process contract test.

Usage: python _qg_child.py URL TOPIC QUEUE OUTFILE
Prints "ready" once subscribed, appends each handled message id to OUTFILE,
and exits (after closing the broker, which drains handlers) when stdin closes.
"""

from __future__ import annotations

import sys

import microstd.broker


def main() -> None:
    url, topic, queue, outfile = sys.argv[1:5]
    with open(outfile, "a", encoding="utf-8") as out, microstd.broker.open_sync(url) as broker:

        def handle(message: microstd.broker.Message) -> None:
            out.write(f"{message.decode()}\n")
            out.flush()

        broker.subscribe(topic, handle, queue=queue)
        print("ready", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
