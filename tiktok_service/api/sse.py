"""Server-sent events of a livestream (pure): stream positions, the wire bytes, what to send next.

The wire format is FastAPI's own (`fastapi.sse.format_sse_event`, `KEEPALIVE_COMMENT`).
Each event is encoded ONCE, by the livestream's reader, and the same bytes go to every
subscriber: a subscriber's write is a join of ready-made bytes, which is what lets one
process serve a thousand subscribers of a busy room.

    id: <Redis stream entry id>      <- resume with Last-Event-ID
    event: <CloudEvents type>         (tiktok.comment, tiktok.gift, ...)
    data: <the CloudEvent JSON, as published>

When the livestream ends, one last `event: end` (no id) says why; EventSource clients
should close on it instead of reconnecting.

A resume from a Last-Event-ID older than what Redis still holds (the stream is trimmed to
its MAXLEN and expires after its TTL) cannot be served whole: the subscriber gets one
`event: gap` (no id) with `{"after": <its id>, "resume": <first id still held>, "reason":
"trimmed"}` before the entries that follow, instead of a silent jump.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

import orjson
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event

from tiktok_service.domain.events import EventType

#: A Redis stream entry id: (milliseconds, sequence). Tuples order like the ids themselves.
StreamId = tuple[int, int]

ORIGIN: Final[StreamId] = (0, 0)
LIVE_END: Final = EventType.LIVE_END.value
END_EVENT: Final = "end"
GAP_EVENT: Final = "gap"
KEEPALIVE: Final = KEEPALIVE_COMMENT
LAST_EVENT_ID_PATTERN: Final = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
_ID: Final = re.compile(LAST_EVENT_ID_PATTERN)
_MAX_PART: Final = 2**64 - 1


def parse_id(text: str) -> StreamId:
    """`1700000000000-3` (or `1700000000000`, meaning `-0`) to a tuple; ValueError otherwise."""
    if _ID.fullmatch(text) is None:
        raise ValueError(f"not a stream id: {text!r}")
    ms, _, seq = text.partition("-")
    parsed = (int(ms), int(seq or 0))
    if parsed[0] > _MAX_PART or parsed[1] > _MAX_PART:
        raise ValueError(f"stream id out of range: {text!r}")
    return parsed


def format_id(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry, ready to send."""

    position: StreamId
    type: str
    wire: bytes


def encode_entry(entry_id: str, event_type: str, event_json: str) -> Entry:
    wire = format_sse_event(data_str=event_json, event=event_type, id=entry_id)
    return Entry(parse_id(entry_id), event_type, wire)


def end_event(reason: str) -> bytes:
    return format_sse_event(event=END_EVENT, data_str=orjson.dumps({"reason": reason}).decode())


def gap_event(after: StreamId, resume: StreamId) -> bytes:
    """Entries after `after` and before `resume` are gone from Redis: the subscriber missed them."""
    data = {"after": format_id(after), "resume": format_id(resume), "reason": "trimmed"}
    return format_sse_event(event=GAP_EVENT, data_str=orjson.dumps(data).decode())


def missed(after: StreamId, first_held: StreamId | None, removed: bool) -> bool:
    """Whether a subscriber at `after` missed entries: some were removed from the stream's
    front (trimmed or expired) and the oldest entry still held comes after `after`.

    Removed entries leave no ids behind, so one case cannot be told apart: a subscriber
    whose last entry was exactly the last one trimmed is told of a gap it did not have.
    That errs on the side of saying so.
    """
    return removed and first_held is not None and after < first_held


def hello(retry_ms: int) -> bytes:
    """The first bytes of every stream: the reconnect delay for EventSource clients."""
    return format_sse_event(comment="tiktok-service", retry=retry_ms)


def newer(ring: deque[Entry], after: StreamId) -> list[Entry]:
    """Entries of `ring` (ordered by position) after `after`, oldest first; scans from the newest end."""
    found: list[Entry] = []
    for entry in reversed(ring):
        if entry.position <= after:
            break
        found.append(entry)
    found.reverse()
    return found


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one subscriber sends next: bytes (possibly none), its new position, and whether to end after."""

    wire: bytes
    position: StreamId
    live_ended: bool


def select(entries: Iterable[Entry], after: StreamId, types: Collection[str] | None, limit: int) -> Chunk:
    """At most `limit` entries after `after`, filtered by `types`; stops after a `tiktok.live_end`.

    The position advances past filtered-out entries too, so a filter never makes a
    subscriber read the same entries twice.
    """
    parts: list[bytes] = []
    position, seen = after, 0
    for entry in entries:
        if entry.position <= position:
            continue
        if seen == limit:
            break
        seen += 1
        position = entry.position
        if types is None or entry.type in types:
            parts.append(entry.wire)
        if entry.type == LIVE_END:
            return Chunk(b"".join(parts), position, True)
    return Chunk(b"".join(parts), position, False)
