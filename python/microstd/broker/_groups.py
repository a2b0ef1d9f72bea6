"""Queue groups shared across processes: who should take a message.

Backends whose every process sees every message (Redis pub/sub, the SQLite
log of `file://`) let each message's preferred member claim it first, so
equal members get equal shares; the others claim only after a delay.
"""

from __future__ import annotations

import hashlib

__all__ = ["preferred_member"]


def preferred_member(msgid: str, members: list[str]) -> str:
    """The member of `members` that should handle message `msgid` (rendezvous hashing).

    Every process computes the same answer from the same member list, and a
    member joining or leaving moves only the messages that hash to it.
    """
    best = members[0]
    best_rank = b""
    for member in members:
        rank = hashlib.blake2b(f"{member}\0{msgid}".encode(), digest_size=8).digest()
        if rank > best_rank:
            best, best_rank = member, rank
    return best
