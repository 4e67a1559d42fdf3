"""The operator's data stores: connector reports in Redis (read), livestreams rows (written).

The operator is the single writer of the `livestreams` table: each row mirrors one
Livestream's status (id = the CR's uid). All SQL stays in the persister's repository
module; this only maps a status onto its arguments.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiktok_service.database import livestreams_repository as repo
from tiktok_service.domain import naming
from tiktok_service.domain.connector_status import status_from_hash
from tiktok_service.operator import model
from tiktok_service.operator.model import Heartbeat, Phase

log = logging.getLogger(__name__)

_ROW_STATUS: Final = {
    Phase.PENDING: repo.LivestreamStatus.PENDING,
    Phase.WAITING_FOR_LIVE: repo.LivestreamStatus.WAITING_FOR_LIVE,
    Phase.CONNECTING: repo.LivestreamStatus.CONNECTING,
    Phase.LIVE: repo.LivestreamStatus.LIVE,
    Phase.RECONNECTING: repo.LivestreamStatus.RECONNECTING,
    Phase.BACKING_OFF: repo.LivestreamStatus.BACKING_OFF,
    Phase.PAUSED: repo.LivestreamStatus.PAUSED,
    Phase.STOPPED: repo.LivestreamStatus.STOPPED,
    Phase.ENDED: repo.LivestreamStatus.ENDED,
    Phase.FAILED: repo.LivestreamStatus.FAILED,
}


class StoreUnavailable(Exception):
    """Redis or PostgreSQL did not answer: callers keep what they know and try again later."""


_DATABASE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _decode(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


def heartbeat_from_hash(raw: Mapping[str, str]) -> Heartbeat | None:
    """The connector's status hash (see `ConnectorStatus.to_hash`); None when absent or unreadable."""
    if not raw:
        return None
    try:
        return Heartbeat(status_from_hash(dict(raw)), int(raw.get("updated_at_ms") or 0))
    except ValueError:
        log.warning("unreadable connector status", extra={"fields": sorted(raw)})
        return None


def _moment(value: str | None) -> dt.datetime | None:
    seconds = model.parse_time(value)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC) if seconds is not None else None


def row_from_status(livestream: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of `upsert_livestream` for a Livestream showing `status` (pure)."""
    spec = livestream.get("spec") or {}
    room = status.get("roomId")
    return {
        "id": uuid.UUID(livestream["metadata"]["uid"]),
        "username": spec.get("username", ""),
        "workspace_id": spec.get("workspaceId"),
        "status": _ROW_STATUS[Phase(status.get("phase") or Phase.PENDING)],
        "room_id": int(room) if room else None,
        "viewer_count": status.get("viewerCount"),
        "event_counts": status.get("eventCounts"),
        "connected_at": _moment(status.get("connectedAt")),
        "disconnected_at": _moment(status.get("disconnectedAt")),
        "last_event_at": _moment(status.get("lastEventAt")),
        "reason": status.get("reason") or None,
        "message": status.get("message") or None,
    }


class Store:
    """Redis (connector reports) and an optional PostgreSQL pool (livestreams rows)."""

    def __init__(self, *, redis_url: str, database_url: str | None) -> None:
        self._redis_url = redis_url
        self._database_url = database_url
        self._redis: aioredis.Redis | None = None
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> Self:
        self._redis = aioredis.from_url(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        if self._database_url is not None:
            self._pool = await asyncpg.create_pool(self._database_url, min_size=1, max_size=4)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def connector_report(self, livestream_id: str) -> tuple[Heartbeat | None, dict[str, int]]:
        """The connector's heartbeat and per-type event counts, in one round trip."""
        assert self._redis is not None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(naming.connector_status_key(livestream_id))
                pipe.hgetall(naming.event_counts_key(livestream_id))
                raw_status, raw_counts = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        counts = {key: int(value) for key, value in _decode(raw_counts).items() if value.lstrip("-").isdigit()}
        return heartbeat_from_hash(_decode(raw_status)), counts

    @property
    def keeps_rows(self) -> bool:
        return self._pool is not None

    async def save_row(self, livestream: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Upsert the livestream's row; a terminal phase also closes it (sets ended_at)."""
        if self._pool is None:
            return
        row = row_from_status(livestream, status)
        try:
            async with self._pool.acquire() as conn:
                await repo.upsert_livestream(conn, **row)
                if row["status"] in repo.TERMINAL_STATUSES:
                    await repo.close_livestream(conn, row["id"], status=row["status"], reason=row["reason"])
        except _DATABASE_ERRORS as exc:
            raise StoreUnavailable(repr(exc)) from exc

    async def close_row(self, livestream: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """The Livestream is being deleted: its row ends (Ended/Failed kept, anything else Stopped)."""
        if self._pool is None:
            return
        row = row_from_status(livestream, status)
        if row["status"] not in repo.TERMINAL_STATUSES:
            row.update(status=repo.LivestreamStatus.STOPPED, reason="Deleted", message="the Livestream was deleted")
        try:
            async with self._pool.acquire() as conn:
                await repo.upsert_livestream(conn, **row)
                await repo.close_livestream(conn, row["id"], status=row["status"], reason=row["reason"])
        except _DATABASE_ERRORS as exc:
            raise StoreUnavailable(repr(exc)) from exc
