"""Shared fixtures: real Redis and PostgreSQL servers started by the tests themselves."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.access_support import ROLE_PASSWORDS
from tests.contract_support import stream_violations
from tests.redis_failover import RedisPair
from tiktok_service.access.database_logins import apply_database_logins
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.database import migrate
from tiktok_service.domain import access
from tiktok_service.domain.access import Role
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.server import SimulatorServer

_db_counter = itertools.count()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leaked sockets and tasks warn when collected; collecting here blames the test that leaked.

    Only after tests that open sockets: a full collection costs ~0.1 s with TikTokLive loaded.
    """
    yield
    if "integration" in request.node.path.parts:
        gc.collect()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """Redis with each component's ACL user, made by the same setup as production
    (`tiktok-service access`); saved to the server's ACL file, so restarts keep them."""
    with LocalRedis() as server:
        asyncio.run(apply_redis_users(server.url, ROLE_PASSWORDS))
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """PostgreSQL with each component's login (roles are cluster-wide; grants come with
    the migrations of each database)."""
    with LocalPostgres() as server:
        database_passwords = {role: ROLE_PASSWORDS[role] for role in access.DATABASE_ROLES}
        asyncio.run(apply_database_logins(server.dsn, database_passwords))
        yield server


@pytest.fixture
async def redis_url(redis_server: LocalRedis, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A clean Redis for each test (the server is shared, its data is not).

    At teardown every event the test left in Redis is validated against its type's JSON
    Schema (tests that write invalid entries on purpose are marked `invalid_events`).
    """
    if not redis_server.running:
        redis_server.start()
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url
    if redis_server.running and request.node.get_closest_marker("invalid_events") is None:
        problems = await stream_violations(redis_server.url)
        if problems:
            shown = "\n  ".join(problems[:20])
            pytest.fail(f"{len(problems)} published event(s) break their schema:\n  {shown}", pytrace=False)


@pytest.fixture
def redis_roles(redis_url: str) -> dict[Role, str]:
    """Each component's Redis URL (its own ACL user) on the test's clean Redis."""
    return {role: access.redis_role_url(redis_url, role, ROLE_PASSWORDS[role]) for role in Role}


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # Tests restart Redis; a retried command reconnects instead of failing on the stale socket.
    client = aioredis.from_url(
        redis_url, retry=Retry(ExponentialBackoff(cap=0.5), 5), retry_on_error=[RedisConnectionError]
    )
    yield client
    await client.aclose()


@pytest.fixture
async def database_url(postgres_server: LocalPostgres) -> AsyncIterator[str]:
    """A fresh, empty database for each test on the shared server."""
    if not postgres_server.running:
        postgres_server.start()
    name = f"test_{next(_db_counter)}"
    admin = await asyncpg.connect(postgres_server.dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield postgres_server.dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def database_roles(database_url: str) -> dict[Role, str]:
    """Each component's DSN (its own login) on the test's database, migrated by the owner."""
    await migrate.migrate(database_url)
    return {role: access.database_role_url(database_url, role, ROLE_PASSWORDS[role]) for role in access.DATABASE_ROLES}


@pytest.fixture(scope="session")
async def simulator() -> AsyncIterator[SimulatorServer]:
    """One simulator for the session; each test creates its own rooms (unique usernames)."""
    async with SimulatorServer(SimulatorConfig(port=0)) as server:
        yield server


@pytest.fixture
def redis_pair() -> Iterator[RedisPair]:
    """A Redis primary, a real replica and one address (`url`) that follows the primary on
    failover; each component's ACL user is set up on both."""
    with RedisPair() as pair:
        pair.apply_users(ROLE_PASSWORDS)
        yield pair
