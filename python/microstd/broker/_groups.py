"""Queue groups shared across processes: who should take a message.

Backends whose every process sees every message (Redis pub/sub, the SQLite
log of `file://`) let each message's preferred member claim it first, so
equal members get equal shares; the others claim only after a delay.
"""

from __future__ import annotations

import asyncio
import hashlib

from microstd.broker._network import NetworkSubscription
from microstd.broker.base import Message

__all__ = ["ClaimedMessage", "Group", "preferred_member"]


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


class ClaimedMessage(Message):
    """A message every process receives, which one member of a queue group claims by `msgid`."""

    __slots__ = ("msgid",)

    def __init__(
        self, msgid: str, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        super().__init__(topic, data, headers, content_type)
        self.msgid = msgid


class Group:
    """This broker's members of one queue group, and the group's live members
    (`view`, member ids) as the engine last listed them."""

    __slots__ = ("key", "local", "turn", "view")

    def __init__(self, key: str) -> None:
        self.key = key  # where the engine keeps the group's member ids
        self.local: dict[str, NetworkSubscription] = {}
        self.view: list[str] = []
        self.turn = 0

    def next_local(self) -> NetworkSubscription | None:
        if not self.local:
            return None
        members = list(self.local.values())
        self.turn += 1
        return members[self.turn % len(members)]

    def route(self, message: ClaimedMessage, fallback_s: float) -> None:
        """Hand `message` to a local member now if one is its preferred member (or
        no member list is known yet); else after `fallback_s`, so that another
        process's preferred member claims it first."""
        if self.view:
            chosen = self.local.get(preferred_member(message.msgid, self.view))
            if chosen is None:
                asyncio.get_running_loop().call_later(fallback_s, self._fall_back, message)
                return
        else:
            chosen = self.next_local()
        if chosen is not None and chosen.delivery is not None:
            chosen.delivery.push(message)

    def _fall_back(self, message: ClaimedMessage) -> None:
        chosen = self.next_local()
        if chosen is not None and chosen.delivery is not None and not chosen.delivery.closed:
            chosen.delivery.push(message)
