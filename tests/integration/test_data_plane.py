"""End to end: simulator -> real TikTokLive client -> connector -> Redis -> persister -> PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support import expected_events, tiktok_ids, wait_until
from tiktok_service.connector import runner as connector_runner
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain.access import Role
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev import persister_harness
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow


def connector_settings(simulator: SimulatorServer, redis_url: str, username: str, **extra: Any) -> ConnectorSettings:
    return ConnectorSettings(
        livestream_id=str(uuid.uuid4()),
        username=username,
        redis_url=redis_url,
        sign_api_url=simulator.base_url,
        tiktok_app_url=simulator.base_url,
        tiktok_webcast_url=simulator.base_url + "/webcast",
        http_port=0,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,
        **extra,
    )


async def stored(database_url: str, livestream_id: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, event_type FROM events WHERE livestream_id = $1", uuid.UUID(livestream_id)
        )
    finally:
        await conn.close()
    return [(r["event_id"], r["event_type"]) for r in rows]


async def test_every_sent_event_is_stored_once_in_redis_and_postgresql_across_drops_and_a_database_outage(
    simulator: SimulatorServer,
    redis_url: str,
    redis_client: aioredis.Redis,
    database_url: str,
    postgres_server: LocalPostgres,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
) -> None:
    username = f"e2e_{uuid.uuid4().hex[:8]}"
    mix = {"comment": 40, "gift": 15, "like": 10, "join": 10, "follow": 5, "share": 5, "viewer": 5, "unknown": 5}
    await simulator.add_room(
        username,
        Scenario(seed=21, rate=400, mix=mix, drop_after=250, drop_repeat=True, history=12, live_end_after=1500),
    )
    settings = connector_settings(simulator, redis_url, username)
    connector_runner.configure_tiktok_urls(settings)
    persister_settings = persister_harness.quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER])
    async with persister_harness.running(persister_settings, name="e2e"):
        connector_redis = RedisClient.from_url(redis_roles[Role.CONNECTOR])
        runner = connector_runner.ConnectorRunner(settings, redis=connector_redis)
        task = asyncio.create_task(runner.run())
        await wait_until(
            lambda: len(simulator.room(username).sent_json()["messages"]) >= 500, timeout=30, what="500 events sent"
        )
        postgres_server.stop()
        try:
            await wait_until(
                lambda: len(simulator.room(username).sent_json()["messages"]) >= 1000,
                timeout=30,
                what="1000 events sent while PostgreSQL is down",
            )
        finally:
            postgres_server.start()
        try:
            assert await asyncio.wait_for(task, 60) == ExitCode.LIVE_ENDED
        finally:
            await connector_redis.aclose()
        expected = expected_events(simulator.room(username).sent_json()["messages"])

        async def all_stored() -> bool:
            return set(expected) <= {event_id for event_id, _ in await stored(database_url, settings.livestream_id)}

        await wait_until(all_stored, timeout=60, what="every event in PostgreSQL")
        assert await persister_harness.pending_entries(redis_client) == 0

    in_redis = await tiktok_ids(redis_client, settings.livestream_id)
    assert sorted(in_redis) == sorted(expected)
    rows = await stored(database_url, settings.livestream_id)
    ids = [event_id for event_id, _ in rows]
    assert len(ids) == len(set(ids)), "no duplicates in PostgreSQL"
    tiktok_rows = {
        event_id: event_type
        for event_id, event_type in rows
        if event_type not in {"tiktok.connect", "tiktok.disconnect"}
    }
    assert tiktok_rows == expected
    assert runner.status.reconnects >= 3
