"""The persister stores what connectors publish exactly once (real Redis and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tiktok_service.database import events_repository, migrate
from tiktok_service.domain import events, naming
from tiktok_service.domain.access import Role
from tiktok_service.persister import rows
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

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"


def envelopes(n: int, livestream_id: str = CR_UID, start: int = 0) -> list[events.Envelope]:
    return [sample_events.sample_envelope(i, livestream_id=livestream_id) for i in range(start, start + n)]


def shipped_versions() -> list[str]:
    return [m.version for m in migrate.available_migrations()]


async def test_migrations_apply_once_and_are_recorded_in_schema_migrations(database_url: str) -> None:
    assert await migrate.migrate(database_url) == shipped_versions()
    assert await migrate.migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
    assert versions == shipped_versions()


async def test_migrations_started_side_by_side_apply_each_version_once(database_url: str) -> None:
    results = await asyncio.gather(*(migrate.migrate(database_url) for _ in range(4)))
    assert sorted(results) == [[], [], [], shipped_versions()]


async def test_events_published_while_the_persister_runs_are_stored_exactly_once(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    registry = CollectorRegistry()
    async with running(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]), registry=registry):
        await sample_events.publish(redis_client, envelopes(500))
        await wait_until(lambda: _equals(stored_events(database_url), 500), what="500 rows")
        await wait_until(lambda: _equals(pending_entries(redis_client), 0), what="no pending entries")
    conn = await asyncpg.connect(database_url)
    try:
        distinct = await conn.fetchval("SELECT count(DISTINCT event_id) FROM events")
    finally:
        await conn.close()
    assert distinct == 500
    assert metric(registry, "rows_inserted_total") == 500


async def test_entries_written_before_any_persister_started_are_stored(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(300))
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 300
    assert await pending_entries(redis_client) == 0


async def test_an_event_published_twice_is_stored_once(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(120))
    await sample_events.publish(redis_client, envelopes(120))  # a connector replaying its history
    registry = await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 120
    assert metric(registry, "duplicates_skipped_total") == 120
    assert await pending_entries(redis_client) == 0


async def test_a_replay_overlapping_new_events_stores_the_new_ones_and_skips_the_rest(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(150))
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    await sample_events.publish(redis_client, envelopes(150, start=100))  # 50 already stored, 100 new
    registry = await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 250
    assert metric(registry, "rows_inserted_total") == 100
    assert metric(registry, "duplicates_skipped_total") == 50
    assert await pending_entries(redis_client) == 0


@pytest.mark.invalid_events
async def test_a_poison_entry_is_dead_lettered_with_its_reason_and_does_not_block_later_entries(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    poison_id = await redis_client.xadd(
        naming.type_stream(events.EventType.COMMENT),
        {naming.FIELD_TYPE: b"tiktok.comment", naming.FIELD_ID: b"x", naming.FIELD_EVENT: b"{not json"},
    )
    await sample_events.publish(redis_client, envelopes(10))
    registry = await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 10
    assert await pending_entries(redis_client) == 0
    [(_, letter)] = await redis_client.xrange(naming.DEAD_LETTER_STREAM)
    assert letter[b"stream"] == b"tiktok.comment"
    assert letter[b"entry_id"] == poison_id
    assert letter[b"category"] == b"malformed_envelope"
    assert letter[b"reason"].startswith(b"not JSON")
    assert letter[b"raw"] == b"{not json"
    assert metric(registry, "dead_lettered_total", reason="malformed_envelope") == 1


async def test_rows_the_database_refuses_are_dead_lettered_and_the_rest_of_their_batch_is_stored(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await migrate.migrate(database_url)
    assert sample_events.sample_envelope(42, livestream_id=CR_UID).id == "7400000000000000042"
    conn = await asyncpg.connect(database_url)
    try:  # a constraint stands in for whatever PostgreSQL may refuse that we did not foresee
        await conn.execute("ALTER TABLE events ADD CONSTRAINT refuse_one CHECK (event_id <> '7400000000000000042')")
    finally:
        await conn.close()
    await sample_events.publish(redis_client, envelopes(100))
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 99
    assert await pending_entries(redis_client) == 0
    [(_, letter)] = await redis_client.xrange(naming.DEAD_LETTER_STREAM)
    assert letter[b"category"] == b"rejected_by_database"
    assert b"refuse_one" in letter[b"reason"]


async def test_a_livestream_id_that_is_not_a_uuid_is_stored_under_its_uuid5_key(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(5, livestream_id="demo"))
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    conn = await asyncpg.connect(database_url)
    try:
        stored = await events_repository.count_events(conn, rows.livestream_key("demo"))
    finally:
        await conn.close()
    assert stored == 5
    assert rows.livestream_key("demo") == uuid.uuid5(rows.LIVESTREAMS_NAMESPACE, "demo")


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_nul_a_viewer_typed_is_stored_as_the_replacement_character_not_dead_lettered(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    batch = envelopes(10)
    assert batch[3].user is not None
    batch[3].user = dataclasses.replace(batch[3].user, nickname="a\x00b")
    await sample_events.publish(redis_client, batch)
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 10
    assert await redis_client.xlen(naming.DEAD_LETTER_STREAM) == 0
    conn = await asyncpg.connect(database_url)
    try:
        text = await conn.fetchval(
            "SELECT payload->'data'->'user'->>'nickname' FROM events WHERE event_id = $1", batch[3].id
        )
    finally:
        await conn.close()
    assert text == "a\ufffdb"
