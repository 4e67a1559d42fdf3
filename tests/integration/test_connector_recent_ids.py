"""A connector taking a livestream over learns its newest ids from the livestream's stream, page by page."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from tiktok_service.connector.publisher import newest_ids
from tiktok_service.connector.redis_client import RedisClient, RedisConnectionError
from tiktok_service.domain import naming


@pytest.mark.invalid_events  # bare entries with ids only, not events
async def test_the_newest_ids_come_back_oldest_first_across_pages(redis_url: str, redis_client: aioredis.Redis) -> None:
    livestream_id = str(uuid.uuid4())
    stream = naming.livestream_stream(livestream_id)
    for n in range(10):
        await redis_client.xadd(stream, {naming.FIELD_TYPE: "tiktok.comment", naming.FIELD_ID: f"m{n}", "event": "{}"})
    await redis_client.xadd(stream, {"note": "an entry without an id is skipped"})
    redis = RedisClient.from_url(redis_url)
    try:
        assert await newest_ids(redis, stream, 7, page=3) == [f"m{n}" for n in range(3, 10)]
        assert await newest_ids(redis, stream, 50, page=4) == [f"m{n}" for n in range(10)]
        assert await newest_ids(redis, naming.livestream_stream(str(uuid.uuid4())), 50, page=4) == []
    finally:
        await redis.aclose()


async def test_an_unreachable_redis_is_an_error_the_publisher_retries() -> None:
    redis = RedisClient.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(RedisConnectionError):
        await newest_ids(redis, naming.livestream_stream("ls-1"), 10)
