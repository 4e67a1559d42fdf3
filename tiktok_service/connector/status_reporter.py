"""Heartbeat: the connector's status as a Redis hash that expires when heartbeats stop.

The operator reads this hash (phase, room, viewers, last event, errors) and the per-type
counters the publisher keeps; a missing hash means the connector is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from tiktok_service.connector import fencing, memory, metrics
from tiktok_service.connector.redis_client import RedisClient, RedisError
from tiktok_service.domain import naming
from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus

log = logging.getLogger(__name__)

#: The final status outlives the process so the operator can read how it ended.
FINAL_STATUS_TTL_S = 3600


class StatusReporter:
    def __init__(
        self,
        redis: RedisClient,
        livestream_id: str,
        status: ConnectorStatus,
        *,
        interval_s: float,
        ttl_s: int,
        buffer_depth: Callable[[], int] | None = None,
        fence: fencing.Fence | None = None,
    ) -> None:
        self._buffer_depth = buffer_depth
        # With a fence, a status is written only while this connector holds its Livestream:
        # a superseded connector must not overwrite its successor's status (or its final one).
        self._fence = fence
        self._redis = redis
        self._key = naming.connector_status_key(livestream_id)
        self._status = status
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._stopped = asyncio.Event()

    async def write(self, ttl_s: int) -> bool:
        # Gauges are refreshed here, once per heartbeat, not per event on the hot path.
        if self._status.last_event_at_ms is not None:
            metrics.LAST_EVENT.set(self._status.last_event_at_ms / 1000)
        if self._status.viewer_count is not None:
            metrics.VIEWERS.set(self._status.viewer_count)
        if self._buffer_depth is not None:
            metrics.BUFFER_DEPTH.set(self._buffer_depth())
        fields = self._status.to_hash(now_ms=int(time.time() * 1000))
        try:
            if self._fence is not None:
                claim = self._status.phase is not ConnectorPhase.CONNECTING
                return await self._fence.write_status(self._key, fields, ttl_s, claim=claim)
            hset: list[str | bytes | int | float] = ["HSET", self._key]
            for name, value in fields.items():
                hset += (name, value)
            await self._redis.transaction(hset, ("EXPIRE", self._key, ttl_s))
        except (RedisError, OSError) as exc:
            log.debug("status write failed", extra={"error": repr(exc)})
            return False
        return True

    async def run(self) -> None:
        """Write the status every `interval_s` until `stop()`."""
        while not self._stopped.is_set():
            await self.write(self._ttl_s)
            memory.release()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._stopped.wait()

    def stop(self) -> None:
        """End `run()` once the write in progress is done.

        Cancelling the task alone is not enough: a cancel that arrives just as a write completes
        can be lost (on Python 3.11 `asyncio.wait_for` swallows it, CPython gh-86296, fixed in
        3.12), and the loop would run forever.
        """
        self._stopped.set()

    async def write_final(self) -> None:
        await self.write(FINAL_STATUS_TTL_S)
