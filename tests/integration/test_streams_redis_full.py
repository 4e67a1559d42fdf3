"""Shared streams are never trimmed by connectors: a Redis that is full refuses writes, and
the connector's publisher then buffers (and, past its buffer, drops and counts) instead of
losing events silently or dying."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tiktok_service.connector.publisher import Publisher
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain import events, naming
from tiktok_service_dev import sample_events
from tiktok_service_dev.persister_harness import wait_until

CR_UID = "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091"


async def test_a_full_redis_makes_the_publisher_buffer_and_flush_everything_once_there_is_room(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    connector_redis = RedisClient.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    publisher = Publisher(
        connector_redis,
        livestream_id=CR_UID,
        buffer_size=1000,
        batch_size=50,
        livestream_maxlen=10_000,
        ttl_s=3600,
        retry_base_s=0.01,
        retry_cap_s=0.05,
    )
    flusher = asyncio.create_task(publisher.run())
    await redis_client.config_set("maxmemory", 1)  # below what Redis uses already: every write is refused
    try:
        for n in range(200):
            assert publisher.offer(
                sample_events.sample_envelope(n, livestream_id=CR_UID, event_type=events.EventType.LIKE)
            )
        await wait_until(lambda: _holds(not publisher.redis_up), what="the publisher to notice the refusal")
        assert not flusher.done()
    finally:
        await redis_client.config_set("maxmemory", 0)
    publisher.close()
    try:
        await asyncio.wait_for(flusher, 30)
    finally:
        await connector_redis.aclose()

    assert publisher.published == 200 and publisher.dropped == 0
    assert await redis_client.xlen(naming.type_stream(events.EventType.LIKE)) == 200


async def _holds(condition: bool) -> bool:
    return condition
