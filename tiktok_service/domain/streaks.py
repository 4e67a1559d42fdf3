"""Gift streak folding: many TikTok gift messages, one gift event.

TikTok sends a streakable gift (gift type 1) as a series of messages with a growing
`repeat_count`, the last one flagged `repeat_end`. We publish one `tiktok.gift` when the
streak ends, carrying the final count. A streak whose end never arrives (the viewer left,
the socket dropped for good) is closed after a timeout as incomplete, and a late end for
an already closed streak is swallowed rather than counted twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

StreakKey = tuple[int, int, int]  # (user id, gift id, group id)


@dataclass(slots=True)
class StreakStep:
    """What one gift message says."""

    key: StreakKey
    msg_id: str
    repeat_count: int
    repeat_end: bool
    streakable: bool
    time_ms: int


@dataclass(slots=True)
class ClosedStreak:
    """A streak to publish as one gift event."""

    msg_id: str
    repeat_count: int
    complete: bool
    time_ms: int
    key: StreakKey


class GiftStreaks:
    """Open streaks by key. Pure state: the caller passes the clock."""

    def __init__(self, *, closed_memory: int = 10_000) -> None:
        self._open: dict[StreakKey, tuple[StreakStep, float]] = {}
        self._closed: OrderedDict[StreakKey, None] = OrderedDict()
        self._closed_memory = closed_memory

    def observe(self, step: StreakStep, now: float) -> ClosedStreak | None:
        """Feed one gift message; returns the streak when this message closes it."""
        if not step.streakable:
            return ClosedStreak(step.msg_id, max(step.repeat_count, 1), True, step.time_ms, step.key)
        if not step.repeat_end:
            if step.key in self._closed:
                return None  # a late step of a streak we already closed by timeout
            previous = self._open.get(step.key)
            if previous is None or step.repeat_count >= previous[0].repeat_count:
                self._open[step.key] = (step, now)
            return None
        self._open.pop(step.key, None)
        if step.key in self._closed:
            del self._closed[step.key]
            return None
        return ClosedStreak(step.msg_id, max(step.repeat_count, 1), True, step.time_ms, step.key)

    def expire(self, now: float, timeout: float) -> list[ClosedStreak]:
        """Close streaks with no step for `timeout` seconds, as incomplete."""
        stale = [key for key, (_, seen) in self._open.items() if now - seen >= timeout]
        return [self._close_incomplete(key) for key in stale]

    def close_all(self) -> list[ClosedStreak]:
        """Close every open streak (shutdown, live end)."""
        return [self._close_incomplete(key) for key in list(self._open)]

    def _close_incomplete(self, key: StreakKey) -> ClosedStreak:
        step, _ = self._open.pop(key)
        self._closed[key] = None
        if len(self._closed) > self._closed_memory:
            self._closed.popitem(last=False)
        return ClosedStreak(step.msg_id, max(step.repeat_count, 1), False, step.time_ms, key)

    def __len__(self) -> int:
        return len(self._open)
