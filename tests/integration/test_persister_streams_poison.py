"""An entry that keeps coming back unacknowledged never wedges the group."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.access_support import database_as, redis_as
from tiktok_service.database import migrate
from tiktok_service.domain import events, naming
from tiktok_service.domain.access import Role
from tiktok_service.persister import consumer
from tiktok_service.settings import PersisterSettings
from tiktok_service_dev import sample_events
from tiktok_service_dev.persister_harness import (
    metric,
    pending_entries,
    quick_settings,
    run_burst,
    stored_events,
    wait_until,
)

CR_UID = "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
STREAM = naming.type_stream(events.EventType.COMMENT)
LIMIT = 3
IDLE_MS = 1000


@pytest.fixture(autouse=True)
async def _migrated_by_the_owner(database_url: str) -> None:
    """The schema, as the setup makes it: the persister's own login may not migrate."""
    await migrate.migrate(database_url)


def as_persister(redis_url: str, database_url: str, **overrides: object) -> PersisterSettings:
    """Quick settings with the persister's own Redis user and login: trimming, lag and
    delivery counts run with its rights."""
    return quick_settings(redis_as(redis_url, Role.PERSISTER), database_as(database_url, Role.PERSISTER), **overrides)


async def deliver_to_a_dying_consumer(redis_client: aioredis.Redis, consumer_name: str, times: int) -> bytes:
    """Publish one comment and deliver it `times` times to a consumer that never acks (a
    persister that crashed on it, restarted under the same name, crashed again...)."""
    await sample_events.publish(
        redis_client, [sample_events.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)]
    )
    await redis_client.xgroup_create(STREAM, naming.PERSISTER_GROUP, id="0", mkstream=True)
    reply = await redis_client.xreadgroup(naming.PERSISTER_GROUP, consumer_name, {STREAM: ">"})
    for _ in range(times - 1):
        await redis_client.xreadgroup(naming.PERSISTER_GROUP, consumer_name, {STREAM: "0"})
    entry_id: bytes = reply[0][1][0][0]
    assert (await redis_client.xpending_range(STREAM, naming.PERSISTER_GROUP, "-", "+", 1))[0][
        "times_delivered"
    ] == times
    return entry_id


async def idle_long_enough(redis_client: aioredis.Redis) -> bool:
    return bool(await redis_client.xpending_range(STREAM, naming.PERSISTER_GROUP, "-", "+", 1, idle=IDLE_MS))


async def test_an_entry_delivered_as_often_as_the_limit_is_stored_alone_by_a_peer(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    await deliver_to_a_dying_consumer(redis_client, "crashed", LIMIT)
    await wait_until(lambda: idle_long_enough(redis_client), what="the entry idle past claim_idle_ms")

    registry = await run_burst(
        as_persister(redis_url, database_url, max_deliveries=LIMIT, claim_idle_ms=IDLE_MS), name="peer"
    )

    assert await stored_events(database_url) == 1
    assert await pending_entries(redis_client) == 0
    assert await redis_client.xlen(naming.DEAD_LETTER_STREAM) == 0
    assert metric(registry, "rows_inserted_total") == 1


async def test_an_entry_that_ended_every_attempt_to_store_it_alone_is_dead_lettered_with_the_reason(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    entry_id = await deliver_to_a_dying_consumer(redis_client, "same-name", LIMIT + consumer.SUSPECT_ATTEMPTS)

    # Restarted under the same name: its own pending entries come first.
    settings = as_persister(redis_url, database_url, max_deliveries=LIMIT, consumer_name="same-name")
    registry = await run_burst(settings, name="same-name")

    assert await stored_events(database_url) == 0
    assert await pending_entries(redis_client) == 0
    letters = await redis_client.xrange(naming.DEAD_LETTER_STREAM)
    assert len(letters) == 1
    fields = letters[0][1]
    assert (fields[b"entry_id"], fields[b"category"]) == (entry_id, b"delivery_limit")
    assert b"delivered 7 times" in fields[b"reason"]
    assert metric(registry, "dead_lettered_total", reason="delivery_limit") == 1
