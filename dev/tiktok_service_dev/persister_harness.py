"""Harness for running persisters in tests, benchmarks and the dev flow.

Like `kopf.testing`: it starts the real thing (own clients, own metrics registry) and
offers condition waits with deadlines, so callers never sleep-and-hope.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import ResponseError

from tiktok_service.database import events_repository
from tiktok_service.domain import naming
from tiktok_service.persister import runner
from tiktok_service.persister.consumer import Persister
from tiktok_service.settings import PersisterSettings
from tiktok_service_dev.postgres_server import LocalPostgres

DEFAULT_DEADLINE_S: Final = 30.0


def quick_settings(redis_url: str, database_url: str, **overrides: object) -> PersisterSettings:
    """Settings that make a persister react in tens of milliseconds (short blocks and retries)."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "batch_size": 100,
        "block_ms": 50,
        "claim_idle_ms": 60_000,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.5,
        "http_port": 0,
    }
    values.update(overrides)
    return PersisterSettings.model_validate(values)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, what: str, within_s: float = DEFAULT_DEADLINE_S
) -> None:
    """Poll `predicate` until it holds; AssertionError naming `what` after `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(
    settings: PersisterSettings,
    *,
    name: str = "p1",
    registry: CollectorRegistry | None = None,
    stop_within_s: float = DEFAULT_DEADLINE_S,
) -> AsyncIterator[Persister]:
    """A persister running in a task for the duration of the block; stopped (and its
    exception, if it died, re-raised) on exit."""
    registry = registry if registry is not None else CollectorRegistry()
    async with runner.open_persister(settings, registry=registry, consumer_name=name) as persister:
        task = asyncio.create_task(persister.run(), name=f"persister-{name}")
        try:
            yield persister
        finally:
            persister.stop()
            await asyncio.wait_for(task, timeout=stop_within_s)


async def run_burst(
    settings: PersisterSettings, *, name: str = "burst", within_s: float = DEFAULT_DEADLINE_S
) -> CollectorRegistry:
    """Run one persister until the streams are drained; returns its metrics registry."""
    registry = CollectorRegistry()
    async with runner.open_persister(settings, registry=registry, consumer_name=name) as persister:
        await asyncio.wait_for(persister.run(burst=True), timeout=within_s)
    return registry


async def stop_postgres(server: LocalPostgres) -> None:
    """`server.stop()` with a fast shutdown that cannot leave a zombie postmaster behind.

    Run as root, LocalPostgres wraps the server in `runuser`, which turns the SIGINT of
    `stop()` (fast shutdown) into SIGTERM (smart shutdown: waits for clients, such as a
    running persister) and SIGKILLs it after 2 s; the orphaned postmaster is never reaped
    and blocks `start()` ("lock file postmaster.pid already exists"). So we ask the
    postmaster itself for a fast shutdown and wait for its pid file to go first. Remove
    once LocalPostgres signals the postmaster directly.
    """
    conn = await asyncpg.connect(server.dsn)
    try:
        pid_file = Path(await conn.fetchval("SHOW data_directory")) / "postmaster.pid"
    finally:
        await conn.close()
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    await wait_until(lambda: _holds(not pid_file.exists()), what="postgres fast shutdown")
    server.stop()


async def _holds(condition: bool) -> bool:
    return condition


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A persister metric's value (`rows_inserted_total`, ...); 0 if never touched."""
    return registry.get_sample_value(f"tiktok_persister_{name}", labels) or 0.0


async def stored_events(database_url: str) -> int:
    """Rows in `events` (0 while the schema does not exist yet)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await events_repository.count_events(conn)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def pending_entries(redis: aioredis.Redis, consumer: str | None = None) -> int:
    """Entries delivered to the persister group (or one consumer of it) and not acked."""
    total = 0
    for stream in naming.all_type_streams():
        try:
            summary = await redis.xpending(stream, naming.PERSISTER_GROUP)
        except ResponseError:  # no such stream or group: nothing pending there
            continue
        if consumer is None:
            total += int(summary["pending"])
        else:
            total += sum(int(c["pending"]) for c in summary["consumers"] if c["name"].decode() == consumer)
    return total
