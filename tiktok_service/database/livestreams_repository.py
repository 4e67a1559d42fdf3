"""All SQL on the `livestreams` table.

The operator is the only writer in production (it mirrors each Livestream CR's status
here); the API reads the rows and the persister never calls these. They live next to the
schema they depend on so the operator, the API and the dev flow share one implementation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import asyncpg
import orjson


class LivestreamStatus(StrEnum):
    """Values of the `livestream_status` enum (keep in step with the migrations)."""

    PENDING = "pending"
    WAITING_FOR_LIVE = "waiting_for_live"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    BACKING_OFF = "backing_off"
    PAUSED = "paused"
    STOPPED = "stopped"
    ENDED = "ended"
    FAILED = "failed"


TERMINAL_STATUSES: Final = frozenset({LivestreamStatus.STOPPED, LivestreamStatus.ENDED, LivestreamStatus.FAILED})

# Observations that are None keep the stored value: the operator reports what it knows
# now, and not knowing the viewer count this time must not erase the last one.
# `ended_at` follows the status instead ($13: is it terminal?): a terminal status keeps the
# first end time (or records now), any other status clears it, so a livestream resumed
# after Stopped/Ended is not reported as ended.
_UPSERT: Final = """
INSERT INTO livestreams AS l (id, workspace_id, username, status, room_id, viewer_count,
                              event_counts, connected_at, disconnected_at, last_event_at,
                              reason, message, ended_at)
VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7::jsonb, '{}'::jsonb), $8, $9, $10, $11, $12,
        CASE WHEN $13::boolean THEN now() END)
ON CONFLICT (id) DO UPDATE SET
    workspace_id    = COALESCE(EXCLUDED.workspace_id, l.workspace_id),
    username        = EXCLUDED.username,
    status          = EXCLUDED.status,
    room_id         = COALESCE(EXCLUDED.room_id, l.room_id),
    viewer_count    = COALESCE(EXCLUDED.viewer_count, l.viewer_count),
    event_counts    = COALESCE($7::jsonb, l.event_counts),
    connected_at    = COALESCE(EXCLUDED.connected_at, l.connected_at),
    disconnected_at = COALESCE(EXCLUDED.disconnected_at, l.disconnected_at),
    last_event_at   = COALESCE(EXCLUDED.last_event_at, l.last_event_at),
    reason          = COALESCE(EXCLUDED.reason, l.reason),
    message         = COALESCE(EXCLUDED.message, l.message),
    ended_at        = CASE WHEN $13::boolean THEN COALESCE(l.ended_at, now()) END,
    updated_at      = now()
RETURNING id, workspace_id, username, status, room_id, viewer_count, event_counts, connected_at,
          disconnected_at, last_event_at, created_at, updated_at, ended_at, reason, message
"""
_GET: Final = """
SELECT id, workspace_id, username, status, room_id, viewer_count, event_counts, connected_at,
       disconnected_at, last_event_at, created_at, updated_at, ended_at, reason, message
FROM livestreams WHERE id = $1
"""
_CLOSE: Final = """
UPDATE livestreams SET
    status          = $2,
    reason          = COALESCE($3, reason),
    message         = COALESCE($4, message),
    ended_at        = COALESCE(ended_at, $5),
    disconnected_at = COALESCE(disconnected_at, $5),
    updated_at      = now()
WHERE id = $1
RETURNING id, workspace_id, username, status, room_id, viewer_count, event_counts, connected_at,
          disconnected_at, last_event_at, created_at, updated_at, ended_at, reason, message
"""


@dataclass(frozen=True, slots=True)
class Livestream:
    id: uuid.UUID
    workspace_id: str | None
    username: str
    status: LivestreamStatus
    room_id: int | None
    viewer_count: int | None
    event_counts: dict[str, int]
    connected_at: dt.datetime | None
    disconnected_at: dt.datetime | None
    last_event_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None
    reason: str | None
    message: str | None


def _livestream(record: Mapping[str, Any]) -> Livestream:
    values = dict(record)
    values["status"] = LivestreamStatus(values["status"])
    values["event_counts"] = orjson.loads(values["event_counts"])
    return Livestream(**values)


async def upsert_livestream(
    conn: asyncpg.Connection,
    *,
    id: uuid.UUID,
    username: str,
    status: LivestreamStatus = LivestreamStatus.PENDING,
    workspace_id: str | None = None,
    room_id: int | None = None,
    viewer_count: int | None = None,
    event_counts: Mapping[str, int] | None = None,
    connected_at: dt.datetime | None = None,
    disconnected_at: dt.datetime | None = None,
    last_event_at: dt.datetime | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> Livestream:
    """Create the row or update it with what is known now (None = keep the stored value).

    `ended_at` is set by a terminal status (stopped, ended, failed) unless already set,
    and cleared by any other: a livestream resumed after it stopped is no longer ended.
    """
    counts = orjson.dumps(dict(event_counts)).decode() if event_counts is not None else None
    record = await conn.fetchrow(
        _UPSERT,
        id,
        workspace_id,
        username,
        status.value,
        room_id,
        viewer_count,
        counts,
        connected_at,
        disconnected_at,
        last_event_at,
        reason,
        message,
        status in TERMINAL_STATUSES,
    )
    assert record is not None  # INSERT ... RETURNING always returns the row
    return _livestream(record)


async def get_livestream(conn: asyncpg.Connection, id: uuid.UUID) -> Livestream | None:
    record = await conn.fetchrow(_GET, id)
    return _livestream(record) if record is not None else None


async def close_livestream(
    conn: asyncpg.Connection,
    id: uuid.UUID,
    *,
    status: LivestreamStatus = LivestreamStatus.ENDED,
    reason: str | None = None,
    message: str | None = None,
    ended_at: dt.datetime | None = None,
) -> Livestream | None:
    """Mark a livestream finished; the first `ended_at` wins. None if there is no such row."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status} is not a terminal status")
    moment = ended_at or dt.datetime.now(dt.UTC)
    record = await conn.fetchrow(_CLOSE, id, status.value, reason, message, moment)
    return _livestream(record) if record is not None else None
