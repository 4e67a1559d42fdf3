"""All SQL on the `events` table: bulk insert for the persister, keyset reads for the API.

Values always travel as parameters or COPY records; the only names in SQL text are the
constants below.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from tiktok_service.database import events_table

EVENTS_TABLE: Final = "events"
STAGING_TABLE: Final = "events_staging"

# The merge path, for batches holding events that may already be stored. One temp table
# per connection, created by the first merge on that connection and emptied by PostgreSQL
# at every commit (ON COMMIT DELETE ROWS), so a batch never sees another's rows. IF NOT
# EXISTS makes it self-healing: a new pooled connection, or a transaction that rolled back
# its creation, simply creates it again.
_CREATE_STAGING: Final = """
CREATE TEMP TABLE IF NOT EXISTS events_staging (
    id uuid, livestream_id uuid, event_id text, event_type text, room_id bigint,
    user_id bigint, username text, payload jsonb, "timestamp" timestamptz
) ON COMMIT DELETE ROWS
"""
_MERGE_STAGING: Final = """
INSERT INTO events (id, livestream_id, event_id, event_type, room_id, user_id, username, payload, "timestamp")
SELECT id, livestream_id, event_id, event_type, room_id, user_id, username, payload, "timestamp"
FROM events_staging
ON CONFLICT (id) DO NOTHING
"""
_COUNT_ALL: Final = "SELECT count(*) FROM events"
_COUNT_LIVESTREAM: Final = "SELECT count(*) FROM events WHERE livestream_id = $1"
# One static statement for every filter combination: absent filters become -infinity /
# infinity / NULL, so the plan keeps `(livestream_id, (timestamp, id) > cursor)` as index
# conditions on events_livestream_time_idx and deep pages cost the same as the first.
_PAGE: Final = """
SELECT id, livestream_id, event_id, event_type, room_id, user_id, username, payload,
       "timestamp", received_at
FROM events
WHERE livestream_id = $1
  AND ("timestamp", id) > (COALESCE($2::timestamptz, '-infinity'),
                           COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'))
  AND "timestamp" >= COALESCE($4::timestamptz, '-infinity')
  AND "timestamp" < COALESCE($5::timestamptz, 'infinity')
  AND ($6::text[] IS NULL OR event_type = ANY($6::text[]))
ORDER BY "timestamp", id
LIMIT $7
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event; `payload` is the CloudEvent as JSON text (jsonb-normalised)."""

    id: uuid.UUID
    livestream_id: uuid.UUID
    event_id: str
    event_type: str
    room_id: int | None
    user_id: int | None
    username: str | None
    payload: str
    timestamp: dt.datetime
    received_at: dt.datetime

    @property
    def cursor(self) -> events_table.Cursor:
        return events_table.Cursor(timestamp=self.timestamp, id=self.id)


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[EventRow]
    #: Pass back as `after` for the next page; None when this page is the last.
    next_cursor: events_table.Cursor | None


async def insert_events(
    conn: asyncpg.Connection, records: Sequence[events_table.Record], *, expect_new: bool = True
) -> int:
    """Store `records` atomically, skipping events already stored; returns how many were new.

    COPY is the fastest way in but cannot skip duplicates, and duplicates are rare (replays,
    reclaims), so with `expect_new` the batch is copied straight into `events`: one
    statement, one round trip, and PostgreSQL's cost is that of a plain COPY. If any event
    is already there, the COPY fails on the primary key as a whole and stores nothing; the
    batch is then copied into a staging table and merged with ON CONFLICT (id) DO NOTHING,
    which also tolerates the same event twice within one batch. A caller that expects
    duplicates (a replay is under way) passes expect_new=False to merge right away rather
    than pay for a COPY that fails.

    Outside a transaction the COPY commits on its own; inside a caller's transaction it
    runs in a savepoint, so a failed attempt does not abort the caller's transaction.
    """
    if not records:
        return 0
    if expect_new:
        try:
            if conn.is_in_transaction():
                async with conn.transaction():  # a savepoint
                    status = await conn.copy_records_to_table(
                        EVENTS_TABLE, records=records, columns=events_table.COLUMNS
                    )
            else:
                status = await conn.copy_records_to_table(EVENTS_TABLE, records=records, columns=events_table.COLUMNS)
            return _row_count(status)
        except asyncpg.UniqueViolationError:
            pass  # nothing of the batch was stored: merge it
    async with conn.transaction():
        await conn.execute(_CREATE_STAGING)
        await conn.copy_records_to_table(STAGING_TABLE, records=records, columns=events_table.COLUMNS)
        return _row_count(await conn.execute(_MERGE_STAGING))


def _row_count(status: str) -> int:
    """The row count of a command tag (`COPY 2000`, `INSERT 0 1990`)."""
    return int(status.rsplit(" ", 1)[-1])


def is_data_error(exc: BaseException) -> bool:
    """True when PostgreSQL (or asyncpg's encoder) refused the rows themselves.

    Such a batch fails the same way on every retry, so the caller isolates the culprit
    rows instead of retrying; every other error (connection lost, server starting, too
    many connections, even a missing table) is worth retrying. A program limit (a jsonb
    nested deeper than the server's stack allows, a value too large) is the rows' too:
    bisecting stores the others and dead-letters only the row that hits it.
    """
    if isinstance(
        exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError | asyncpg.ProgramLimitExceededError
    ):
        return True
    # asyncpg's client-side "invalid input for query argument" is an InterfaceError and a ValueError.
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


async def count_events(conn: asyncpg.Connection, livestream_id: uuid.UUID | None = None) -> int:
    if livestream_id is None:
        return int(await conn.fetchval(_COUNT_ALL))
    return int(await conn.fetchval(_COUNT_LIVESTREAM, livestream_id))


async def events_page(
    conn: asyncpg.Connection,
    livestream_id: uuid.UUID,
    *,
    after: events_table.Cursor | None = None,
    limit: int = 100,
    types: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> EventsPage:
    """Events of a livestream in (timestamp, id) order, strictly after `after`.

    `since` is inclusive and `until` exclusive, so consecutive windows never overlap.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    records = await conn.fetch(
        _PAGE,
        livestream_id,
        after.timestamp if after else None,
        after.id if after else None,
        since,
        until,
        list(types) if types is not None else None,
        limit + 1,  # one extra row tells whether another page exists
    )
    found = [EventRow(**dict(record)) for record in records[:limit]]
    next_cursor = found[-1].cursor if len(records) > limit else None
    return EventsPage(events=found, next_cursor=next_cursor)
