"""Bounded memory of recently seen event ids.

TikTok replays recent messages when a client (re)connects; a replayed message keeps its
msg_id, so remembering the last N ids is enough to publish each message once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """An insertion-ordered set that forgets its oldest ids beyond `capacity`."""

    __slots__ = ("_capacity", "_ids")

    def __init__(self, capacity: int, initial: Iterable[str] = ()) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        for event_id in initial:
            self.add(event_id)

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False if it was already known (a duplicate)."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def add_older(self, event_ids: Iterable[str]) -> None:
        """Remember ids seen before every id known so far (oldest first): they are the first forgotten."""
        merged: OrderedDict[str, None] = OrderedDict((i, None) for i in event_ids if i not in self._ids)
        merged.update(self._ids)
        while len(merged) > self._capacity:
            merged.popitem(last=False)
        self._ids = merged

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
