"""The API's SQL: API keys, and the livestream rows shown next to each Livestream resource.

Values always travel as parameters. Livestream rows are written only by the operator; the
API reads them here (one query per page) and through `livestreams_repository.get_livestream`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import orjson

from tiktok_service.database import livestreams_repository

_INSERT_KEY: Final = """
INSERT INTO api_keys (id, workspace_id, name, key_hash, key_prefix) VALUES ($1, $2, $3, $4, $5)
RETURNING id, workspace_id, name, key_prefix, created_at, revoked_at
"""
_WORKSPACE_OF_KEY: Final = "SELECT workspace_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
_LIVE_KEYS: Final = "SELECT key_hash FROM api_keys WHERE key_hash = ANY($1::bytea[]) AND revoked_at IS NULL"
_REVOKE_KEY: Final = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
RETURNING id, workspace_id, name, key_prefix, created_at, revoked_at
"""
_LIST_KEYS: Final = """
SELECT id, workspace_id, name, key_prefix, created_at, revoked_at FROM api_keys
WHERE ($1::text IS NULL OR workspace_id = $1)
ORDER BY workspace_id, created_at
"""
_ROWS: Final = """
SELECT id, workspace_id, username, status, room_id, viewer_count, event_counts, connected_at,
       disconnected_at, last_event_at, created_at, updated_at, ended_at, reason, message
FROM livestreams WHERE id = ANY($1::uuid[]) AND workspace_id = $2
"""
_PING: Final = "SELECT 1"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    workspace_id: str
    name: str
    key_prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


async def insert_key(
    conn: asyncpg.Connection, *, workspace_id: str, name: str, key_hash: bytes, key_prefix: str
) -> ApiKey:
    record = await conn.fetchrow(_INSERT_KEY, uuid.uuid4(), workspace_id, name, key_hash, key_prefix)
    assert record is not None  # INSERT ... RETURNING always returns the row
    return ApiKey(**dict(record))


async def workspace_of_key(conn: asyncpg.Connection, key_hash: bytes) -> str | None:
    """The workspace of a live (not revoked) key, or None."""
    value = await conn.fetchval(_WORKSPACE_OF_KEY, key_hash)
    return str(value) if value is not None else None


async def live_keys(conn: asyncpg.Connection, key_hashes: Collection[bytes]) -> set[bytes]:
    """Which of `key_hashes` are still live keys (one query for every open stream of a process)."""
    if not key_hashes:
        return set()
    return {bytes(record["key_hash"]) for record in await conn.fetch(_LIVE_KEYS, list(key_hashes))}


async def revoke_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> ApiKey | None:
    """Revoke; None when there is no such key or it was revoked already."""
    record = await conn.fetchrow(_REVOKE_KEY, key_id)
    return ApiKey(**dict(record)) if record is not None else None


async def list_keys(conn: asyncpg.Connection, workspace_id: str | None = None) -> list[ApiKey]:
    return [ApiKey(**dict(record)) for record in await conn.fetch(_LIST_KEYS, workspace_id)]


async def livestream_rows(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], workspace_id: str
) -> dict[uuid.UUID, livestreams_repository.Livestream]:
    """The rows of `ids` that belong to `workspace_id` (rows of other workspaces are never read)."""
    if not ids:
        return {}
    rows = {}
    for record in await conn.fetch(_ROWS, list(ids), workspace_id):
        values = dict(record)
        values["status"] = livestreams_repository.LivestreamStatus(values["status"])
        values["event_counts"] = orjson.loads(values["event_counts"])
        rows[values["id"]] = livestreams_repository.Livestream(**values)
    return rows


async def livestream_row(
    conn: asyncpg.Connection, livestream_id: uuid.UUID, workspace_id: str
) -> livestreams_repository.Livestream | None:
    row = await livestreams_repository.get_livestream(conn, livestream_id)
    return row if row is not None and row.workspace_id == workspace_id else None


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval(_PING)
