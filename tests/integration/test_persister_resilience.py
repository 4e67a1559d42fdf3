"""Exactly-once storage survives parallel persisters, crashes and outages of either store."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

import tiktok_service
from tiktok_service.domain import events, naming
from tiktok_service.domain.access import Role
from tiktok_service.persister.streams import GroupConsumer
from tiktok_service_dev import processes, sample_events
from tiktok_service_dev.persister_harness import (
    metric,
    pending_entries,
    quick_settings,
    running,
    stop_postgres,
    stored_events,
    wait_until,
)
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"


def envelopes(n: int, start: int = 0) -> list[events.Envelope]:
    return [sample_events.sample_envelope(i, livestream_id=CR_UID) for i in range(start, start + n)]


async def distinct_event_ids(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(DISTINCT event_id) FROM events"))
    finally:
        await conn.close()


async def read_as_dead_consumer(redis_client: aioredis.Redis, consumer: str) -> int:
    """What a persister that crashed after XREADGROUP leaves behind: entries pending on it."""
    group = GroupConsumer(
        redis_client, streams=naming.all_type_streams(), group=naming.PERSISTER_GROUP, consumer=consumer
    )
    await group.ensure_groups()
    return len(await group.read_new(count=10_000, block_ms=None))


async def test_two_persisters_side_by_side_store_each_event_once_and_leave_nothing_pending(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    settings = quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER], batch_size=50)
    async with running(settings, name="a", registry=first), running(settings, name="b", registry=second):
        await sample_events.publish(redis_client, envelopes(3000))
        await wait_until(lambda: _is(stored_events(database_url), 3000), what="3000 rows")
        await wait_until(lambda: _is(pending_entries(redis_client), 0), what="no pending entries")
    assert await distinct_event_ids(database_url) == 3000
    inserted = metric(first, "rows_inserted_total") + metric(second, "rows_inserted_total")
    assert inserted == 3000


async def test_a_postgresql_outage_loses_and_duplicates_nothing_once_the_database_is_back(
    redis_client: aioredis.Redis,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
    database_url: str,
    postgres_server: LocalPostgres,
) -> None:
    registry = CollectorRegistry()
    async with running(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]), registry=registry):
        await sample_events.publish(redis_client, envelopes(200))
        await wait_until(lambda: _is(stored_events(database_url), 200), what="200 rows before the outage")
        await stop_postgres(postgres_server)
        try:
            for start in range(200, 500, 100):  # events keep arriving during the outage
                await sample_events.publish(redis_client, envelopes(100, start=start))
            await wait_until(lambda: _holds(metric(registry, "db_retries_total") >= 3), what="database retries")
            assert await pending_entries(redis_client) > 0  # nothing acked while the database is down
        finally:
            postgres_server.start()
        await wait_until(lambda: _is(stored_events(database_url), 500), what="500 rows after the outage")
        await wait_until(lambda: _is(pending_entries(redis_client), 0), what="no pending entries")
    assert await distinct_event_ids(database_url) == 500
    assert metric(registry, "rows_inserted_total") == 500


async def test_stopping_during_a_database_outage_leaves_the_batch_unacked_for_another_consumer(
    redis_client: aioredis.Redis,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
    database_url: str,
    postgres_server: LocalPostgres,
) -> None:
    registry = CollectorRegistry()
    settings = quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER], claim_idle_ms=1_000)
    try:
        async with running(settings, name="first", registry=registry, stop_within_s=5) as persister:
            await wait_until(lambda: _holds(persister.state == "running"), what="migrated and consuming")
            await stop_postgres(postgres_server)
            await sample_events.publish(redis_client, envelopes(40))
            await wait_until(lambda: _holds(metric(registry, "db_retries_total") >= 1), what="a database retry")
        # stopped while the database is still down: what it had read stays pending on it
        assert await pending_entries(redis_client, "first") >= 1
    finally:
        if not postgres_server.running:
            postgres_server.start()
    second = CollectorRegistry()
    async with running(settings, name="second", registry=second):
        await wait_until(lambda: _is(stored_events(database_url), 40), what="40 rows stored by the second")
        await wait_until(lambda: _is(pending_entries(redis_client), 0), what="no pending entries")
    assert metric(second, "claimed_total") >= 1


async def test_entries_read_by_a_consumer_that_died_without_acking_are_reclaimed_and_stored(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(60))
    assert await read_as_dead_consumer(redis_client, "crashed-pod") == 60
    registry = CollectorRegistry()
    async with running(
        quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER], claim_idle_ms=1_000),
        registry=registry,
    ):
        await wait_until(lambda: _is(stored_events(database_url), 60), what="60 reclaimed rows")
        await wait_until(lambda: _is(pending_entries(redis_client), 0), what="no pending entries")
    assert metric(registry, "claimed_total") == 60


async def test_a_restarted_persister_finishes_what_its_previous_life_read_without_waiting_for_reclaim(
    redis_client: aioredis.Redis, redis_roles: dict[Role, str], database_roles: dict[Role, str], database_url: str
) -> None:
    await sample_events.publish(redis_client, envelopes(30))
    assert await read_as_dead_consumer(redis_client, "pod-0") == 30
    registry = CollectorRegistry()
    async with running(
        quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER], claim_idle_ms=600_000),
        name="pod-0",
        registry=registry,
    ):
        await wait_until(lambda: _is(stored_events(database_url), 30), what="30 rows", within_s=10)
    assert metric(registry, "claimed_total") == 0


async def test_a_redis_restart_that_loses_the_group_is_survived_and_later_events_are_stored(
    redis_client: aioredis.Redis,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
    database_url: str,
    redis_server: LocalRedis,
) -> None:
    registry = CollectorRegistry()
    async with running(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]), registry=registry):
        await sample_events.publish(redis_client, envelopes(50))
        await wait_until(lambda: _is(stored_events(database_url), 50), what="50 rows before the restart")
        redis_server.stop()
        try:
            await wait_until(lambda: _holds(metric(registry, "redis_retries_total") >= 1), what="a redis retry")
        finally:
            redis_server.start()  # no persistence: streams and groups are gone
        await redis_client.connection_pool.disconnect()  # the test's own connections are stale
        await sample_events.publish(redis_client, envelopes(50, start=50))
        await wait_until(lambda: _is(stored_events(database_url), 100), what="100 rows after the restart")
        await wait_until(lambda: _is(pending_entries(redis_client), 0), what="no pending entries")


async def test_the_process_serves_probes_and_exits_zero_on_sigterm(
    redis_client: aioredis.Redis,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    port = processes.free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(tiktok_service.__file__).parent.parent),
        "PERSISTER_REDIS_URL": redis_roles[Role.PERSISTER],
        "PERSISTER_DATABASE_URL": database_roles[Role.PERSISTER],
        "PERSISTER_HTTP_PORT": str(port),
        "PERSISTER_BLOCK_MS": "100",
    }
    code = (
        "import asyncio, sys; from tiktok_service.persister.runner import run_persister; "
        "from tiktok_service.settings import PersisterSettings; "
        "sys.exit(asyncio.run(run_persister(PersisterSettings())))"
    )
    log = tmp_path / "persister.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env, stderr=stderr)
    try:
        await sample_events.publish(redis_client, envelopes(20))
        await wait_until(lambda: _is(stored_events(database_url), 20), what="20 rows")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["state"] == "running"
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "tiktok_persister_rows_inserted_total 20.0" in await response.text()
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), timeout=15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert returncode == 0, log.read_text()
    assert '"msg": "persister stopped"' in log.read_text()


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _holds(condition: bool) -> bool:
    return condition
