"""Per-key request rate limits, counted in Redis with the `limits` library (shared by every replica).

The sliding-window counter strategy costs two small keys per key and window and no list of
timestamps, and it does not let a client send twice the limit across a window boundary the
way a fixed window does. When Redis does not answer, requests go through unchecked (counted
in `tiktok_api_rate_limit_unchecked`): a rate limit protects the API, it must not become a
second way to take it down.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from tiktok_service.api import quotas
from tiktok_service.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

_SCHEME_PREFIX: Final = "async+"


class RateLimiter:
    """`retry_after(key)`: None while the key is within every limit, else whole seconds to wait."""

    def __init__(self, redis_url: str, pool: aioredis.ConnectionPool, limits: str, metrics: ApiMetrics) -> None:
        self.items: list[RateLimitItem] = parse_many(limits)
        shared: dict[str, Any] = {"connection_pool": pool}  # the API's control pool, not a pool of its own
        storage = RedisStorage(
            _SCHEME_PREFIX + redis_url,
            implementation="redispy",
            key_prefix=quotas.RATE_LIMIT_PREFIX,
            wrap_exceptions=True,
            **shared,
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._metrics = metrics

    async def retry_after(self, key: str) -> int | None:
        """Count one request of `key`; None when allowed, else the seconds until it would be."""
        name = quotas.rate_limit_key(key)
        try:
            for item in self.items:
                if not await self._limiter.hit(item, name):
                    stats = await self._limiter.get_window_stats(item, name)
                    return quotas.retry_after_s(stats.reset_time, time.time())
        except StorageError as exc:
            self._metrics.rate_limit_unchecked.inc()
            log.warning("rate limit not checked: redis did not answer", extra={"error": repr(exc.storage_error)})
        return None
