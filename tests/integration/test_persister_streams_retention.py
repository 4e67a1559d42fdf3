"""Shared per-type streams keep every entry until every consumer group has acknowledged it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.access_support import database_as, redis_as
from tiktok_service.connector.publisher import Publisher
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.database import migrate
from tiktok_service.domain import events, naming
from tiktok_service.domain.access import Role
from tiktok_service.persister import retention
from tiktok_service.settings import PersisterSettings
from tiktok_service_dev import sample_events
from tiktok_service_dev.persister_harness import (
    metric,
    pending_entries,
    quick_settings,
    run_burst,
    running,
    stored_events,
    wait_until,
)

CR_UID = "5d0c1b8e-2f4a-4c6d-9e7f-1a2b3c4d5e6f"
#: The smallest per-type MAXLEN a Livestream could once set; publishing far past it used to
#: trim entries the persister had not read yet.
OLD_SMALLEST_CAP = 100


@pytest.fixture(autouse=True)
async def _migrated_by_the_owner(database_url: str) -> None:
    """The schema, as the setup makes it: the persister's own login may not migrate."""
    await migrate.migrate(database_url)


def as_persister(redis_url: str, database_url: str, **overrides: object) -> PersisterSettings:
    """Quick settings with the persister's own Redis user and login: trimming, lag and
    delivery counts run with its rights."""
    return quick_settings(redis_as(redis_url, Role.PERSISTER), database_as(database_url, Role.PERSISTER), **overrides)


async def publish_as_a_connector(redis_url: str, count: int) -> None:
    """`count` comments through the connector's own publisher (its Lua script and client), then drained."""
    client = RedisClient.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    publisher = Publisher(
        client,
        livestream_id=CR_UID,
        buffer_size=count,
        batch_size=200,
        livestream_maxlen=OLD_SMALLEST_CAP,
        ttl_s=3600,
    )
    for n in range(count):
        assert publisher.offer(
            sample_events.sample_envelope(n, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
        )
    flusher = asyncio.create_task(publisher.run())
    publisher.close()
    try:
        await asyncio.wait_for(flusher, 60)
    finally:
        await client.aclose()
    assert publisher.published == count


async def test_a_stopped_persister_loses_nothing_however_far_connectors_publish_past_the_old_cap(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    published = 30 * OLD_SMALLEST_CAP

    await publish_as_a_connector(redis_url, published)  # no persister running meanwhile
    assert await redis_client.xlen(naming.type_stream(events.EventType.COMMENT)) == published

    registry = await run_burst(as_persister(redis_url, database_url), within_s=120)

    assert await stored_events(database_url) == published
    assert metric(registry, "rows_inserted_total") == published
    assert await pending_entries(redis_client) == 0
    assert await redis_client.xlen(naming.DEAD_LETTER_STREAM) == 0


async def test_acknowledged_entries_are_trimmed_but_another_groups_unread_ones_are_kept(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    stream = naming.type_stream(events.EventType.COMMENT)
    await redis_client.xgroup_create(stream, "analytics", id="0", mkstream=True)
    await publish_as_a_connector(redis_url, 1000)
    analytics_read = await redis_client.xreadgroup("analytics", "a1", {stream: ">"}, count=400)
    await redis_client.xack(stream, "analytics", *[entry_id for entry_id, _ in analytics_read[0][1][:300]])

    registry = await run_burst(as_persister(redis_url, database_url, stream_retention_s=0), within_s=120)

    assert await stored_events(database_url) == 1000
    remaining = await redis_client.xrange(stream)
    oldest_pending_of_analytics = analytics_read[0][1][300][0]
    # nothing analytics still holds is gone
    assert retention.parse_id(remaining[0][0]) <= retention.parse_id(oldest_pending_of_analytics)
    assert len(remaining) < 1000  # what both groups acknowledged is
    assert metric(registry, "stream_trimmed_entries_total", stream=stream) == 1000 - len(remaining)
    labels = {"stream": stream, "group": "analytics"}
    assert metric(registry, "stream_lag_entries", **labels) == 700  # 100 pending + 600 never read
    assert metric(registry, "stream_lag_seconds", **labels) > 0
    assert metric(registry, "stream_lag_entries", stream=stream, group=naming.PERSISTER_GROUP) == 0


async def test_acknowledged_entries_within_the_retention_window_stay(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    await publish_as_a_connector(redis_url, 500)

    await run_burst(as_persister(redis_url, database_url, stream_retention_s=3600), within_s=120)

    assert await redis_client.xlen(naming.type_stream(events.EventType.COMMENT)) == 500


async def test_a_running_persister_trims_what_it_stored_as_it_goes_and_reports_no_lag(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    stream = naming.type_stream(events.EventType.COMMENT)
    registry = CollectorRegistry()
    settings = as_persister(redis_url, database_url, stream_retention_s=0, trim_interval_s=0.1)
    async with running(settings, registry=registry):
        await publish_as_a_connector(redis_url, 1000)
        await wait_until(lambda: _is(stored_events(database_url), 1000), what="1000 rows")

        async def trimmed() -> bool:
            return (
                await redis_client.xlen(stream) < 200
                and metric(registry, "stream_trimmed_entries_total", stream=stream) > 0
            )

        await wait_until(trimmed, what="the stored entries trimmed")
        lag = {"stream": stream, "group": naming.PERSISTER_GROUP}
        await wait_until(
            lambda: _is_value(metric(registry, "stream_lag_entries", **lag), 0), what="no lag once everything is stored"
        )
    assert metric(registry, "stream_lag_seconds", **lag) == 0


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _is_value(value: float, expected: float) -> bool:
    return value == expected
