"""What may be trimmed from a shared stream, and how far behind each consumer group is (pure).

Connectors never trim the shared per-type streams: an entry is removed only once every
consumer group registered on its stream has acknowledged it (it is neither pending in a
group nor undelivered to one) and it is older than the retention window. So a lagging or
stopped persister loses nothing, whatever connectors publish meanwhile; the cost is Redis
memory, which is why the lag of every group is measured and alerted on.

Stream ids are (milliseconds, sequence) pairs, ordered like the ids themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

StreamId = tuple[int, int]
ORIGIN: Final[StreamId] = (0, 0)
_MAX_SEQ: Final = 2**64 - 1


def parse_id(value: bytes | str) -> StreamId:
    """`b"1700000000000-3"` -> (1700000000000, 3); ValueError on anything else."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, sep, seq = text.partition("-")
    return int(ms), int(seq) if sep else 0


def format_id(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


def successor(position: StreamId) -> StreamId:
    """The smallest id after `position`."""
    ms, seq = position
    return (ms + 1, 0) if seq >= _MAX_SEQ else (ms, seq + 1)


@dataclass(frozen=True, slots=True)
class GroupState:
    """One consumer group on one stream, as XINFO GROUPS / XPENDING / XRANGE report it.

    `undelivered` is Redis' own `lag` (None when Redis cannot count it, after a deletion in
    the middle of the stream); `oldest_pending` the smallest id delivered and not acked;
    `first_undelivered` the first entry after `last_delivered`, if any.
    """

    name: str
    last_delivered: StreamId
    pending: int
    undelivered: int | None
    oldest_pending: StreamId | None = None
    first_undelivered: StreamId | None = None

    @property
    def oldest_unacknowledged(self) -> StreamId | None:
        """The oldest entry this group still needs: pending first, else the next undelivered."""
        if self.pending and self.oldest_pending is not None:
            return self.oldest_pending
        return self.first_undelivered

    def keeps_from(self) -> StreamId:
        """Every entry at or after this id may still be needed by the group (ORIGIN when
        entries are pending but the oldest of them is unknown: then nothing is trimmed)."""
        if self.pending:
            return self.oldest_pending if self.oldest_pending is not None else ORIGIN
        return successor(self.last_delivered)


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a group is behind: entries not yet acknowledged, and the age of the oldest."""

    entries: int
    seconds: float


def lag(group: GroupState, *, stream_length: int, now_ms: int) -> Lag:
    """The group's lag. Entries not acknowledged = pending + undelivered; when Redis cannot
    count the undelivered, the stream's length is used (an upper bound: never too low),
    unless nothing follows the last delivered entry."""
    undelivered = group.undelivered
    if undelivered is None:
        undelivered = stream_length if group.first_undelivered is not None else 0
    oldest = group.oldest_unacknowledged
    seconds = max(0.0, (now_ms - oldest[0]) / 1000) if oldest is not None else 0.0
    return Lag(entries=group.pending + undelivered, seconds=seconds)


def trim_point(groups: Sequence[GroupState], *, now_ms: int, retention_ms: int) -> StreamId | None:
    """The MINID to trim a stream to (entries below it go), or None to leave it alone.

    Below what every group still needs, and below the retention window. A stream without
    any group is never trimmed: nobody has acknowledged anything there yet (the persister
    registers its group before it reads, so this is the moment before it first ran).
    """
    if not groups:
        return None
    needed = min(group.keeps_from() for group in groups)
    window = (max(now_ms - retention_ms, 0), 0)
    point = min(needed, window)
    return point if point > ORIGIN else None


def over_delivered(deliveries: Iterable[tuple[bytes, int]], limit: int) -> list[bytes]:
    """Ids of the entries delivered `limit` times or more without being acknowledged
    (from XPENDING's extended form): delivering them again would only repeat what failed."""
    return [entry_id for entry_id, count in deliveries if count >= limit]
