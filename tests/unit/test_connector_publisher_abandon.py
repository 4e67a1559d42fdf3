"""A publisher whose drain timed out stops when abandoned, with its events still counted as pending."""

from __future__ import annotations

import asyncio

from tiktok_service.connector.publisher import Publisher
from tiktok_service.connector.redis_client import Endpoint, RedisClient
from tiktok_service.domain import events
from tiktok_service_dev.ports import free_ports


async def test_an_abandoned_publisher_stops_retrying_an_unreachable_redis() -> None:
    (port,) = free_ports(1)  # nothing listens there: every flush fails and is retried
    redis = RedisClient(Endpoint(host="127.0.0.1", port=port, connect_timeout=0.5))
    publisher = Publisher(
        redis,
        livestream_id="ls-1",
        buffer_size=10,
        batch_size=10,
        livestream_maxlen=100,
        ttl_s=60,
        retry_base_s=0.01,
        retry_cap_s=0.05,
    )
    envelope = events.Envelope(id="c-1", type=events.EventType.CONNECT, livestream_id="ls-1", room_id=1, time_ms=0)
    assert publisher.offer(envelope)
    flusher = asyncio.create_task(publisher.run())
    try:
        publisher.close()
        done, _ = await asyncio.wait({flusher}, timeout=0.3)
        assert not done  # closing alone keeps retrying: nothing may be lost while there is time

        publisher.abandon()

        await asyncio.wait_for(flusher, 5)
        assert publisher.pending == 1 and not publisher.redis_up
    finally:
        flusher.cancel()
        await redis.aclose()
