"""Each component's own credential does its job and nothing else (real Redis and PostgreSQL).

The users and logins are those the session fixtures made with `tiktok-service access`'s own
functions; every refusal asserted here is the server's (NOPERM, insufficient privilege).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

import tiktok_service
from tests.access_support import ROLE_PASSWORDS, database_as, redis_as
from tiktok_service.access.database_logins import apply_database_logins
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.api import quotas
from tiktok_service.api.metrics import ApiMetrics
from tiktok_service.api.ratelimit import RateLimiter
from tiktok_service.api.stream_guard import StreamGuard
from tiktok_service.connector import fencing
from tiktok_service.connector.publisher import Publisher, newest_ids
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.database import livestreams_repository, migrate
from tiktok_service.domain import access, naming
from tiktok_service.domain.access import Role
from tiktok_service.persister import trimming
from tiktok_service.persister.metrics import PersisterMetrics
from tiktok_service_dev import sample_events
from tiktok_service_dev.persister_harness import metric, quick_settings, run_burst, running, stored_events, wait_until

LIVESTREAM = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"
OTHER = "9d0c3e44-1b6f-4f0a-8c1e-5a7b2c9d0e11"


@pytest.fixture
async def clients(redis_roles: dict[Role, str]) -> AsyncIterator[dict[Role, aioredis.Redis]]:
    opened = {role: aioredis.from_url(url) for role, url in redis_roles.items()}
    yield opened
    for client in opened.values():
        await client.aclose()


async def refused(call: Callable[[], Awaitable[Any]]) -> str:
    """The server's refusal of `call` (NOPERM, or the script's ACL error)."""
    with pytest.raises((NoPermissionError, ResponseError)) as caught:
        await call()
    message = str(caught.value)
    assert "no permissions" in message or "can't access" in message, message
    return message


@pytest.fixture
async def connector_client(redis_roles: dict[Role, str]) -> AsyncIterator[RedisClient]:
    """The connector's own client, as its pod makes it, on the connector's user."""
    client = RedisClient.from_url(redis_roles[Role.CONNECTOR], socket_timeout=5, socket_connect_timeout=5)
    yield client
    await client.aclose()


async def publish_as_connector(client: RedisClient, livestream_id: str, n: int) -> None:
    """Publish as a connector does with every option on: its fence, the take-over's read of the
    newest ids, and WAIT for a replica after each batch (pipelined with the script); then a
    fenced heartbeat."""
    fence = fencing.Fence(client, livestream_id, owner=fencing.new_owner("pod"), ttl_s=600)
    publisher = Publisher(
        client,
        livestream_id=livestream_id,
        buffer_size=100,
        batch_size=50,
        livestream_maxlen=1000,
        ttl_s=600,
        fence=fence,
        replay_window=100,
        wait_replicas=1,
        wait_timeout_ms=5,
        handover_ids=10,
    )
    for i in range(n):
        assert publisher.offer(sample_events.sample_envelope(i, livestream_id=livestream_id))
    publisher.close()
    await publisher.run()
    assert publisher.published == n
    assert await fence.write_status(naming.connector_status_key(livestream_id), {"phase": "Live"}, 15, claim=True)


async def test_the_connector_publishes_with_its_script_and_reaches_nothing_else(
    clients: dict[Role, aioredis.Redis], connector_client: RedisClient, redis_client: aioredis.Redis
) -> None:
    await redis_client.script_flush()  # the connector's client loads its scripts itself (SCRIPT LOAD)
    await publish_as_connector(connector_client, LIVESTREAM, 30)
    assert len(await newest_ids(connector_client, naming.livestream_stream(LIVESTREAM), 100)) == 30
    # A second connector of the livestream takes the fence over (the claim script).
    successor = fencing.Fence(connector_client, LIVESTREAM, owner=fencing.new_owner("pod-2"), ttl_s=600)
    assert await successor.claim() == 2
    status_key = naming.connector_status_key(LIVESTREAM)  # the status reporter's write without a fence
    await connector_client.transaction(("HSET", status_key, "phase", "Live"), ("EXPIRE", status_key, 15))
    assert await redis_client.xlen(naming.livestream_stream(LIVESTREAM)) == 30

    # The connector's own redis-py client, for the refusals: the server's ACL decides them.
    connector = clients[Role.CONNECTOR]

    # Appends to the shared streams, never reads them (other tenants' events are there).
    await refused(lambda: connector.xrange("tiktok.comment"))
    await refused(lambda: connector.xread({"tiktok.comment": "0"}))
    # A livestream stream is read only backwards, to seed the duplicate filter.
    await refused(lambda: connector.xread({naming.livestream_stream(OTHER): "0"}))
    await refused(lambda: connector.xrange(naming.livestream_stream(OTHER)))
    # Its hashes are written with HSET/HINCRBY only, never read with a command.
    await refused(lambda: connector.hgetall(naming.connector_status_key(OTHER)))
    await refused(lambda: connector.hgetall(naming.event_counts_key(OTHER)))
    # Nothing outside its key families, no administration, no Pub/Sub.
    await refused(lambda: connector.xadd(naming.DEAD_LETTER_STREAM, {"x": "y"}))
    await refused(lambda: connector.set(quotas.connect_lock_key("w"), "x"))  # the API's keys
    await refused(lambda: connector.set("elsewhere", "x"))
    await refused(lambda: connector.get("elsewhere"))
    await refused(lambda: connector.flushall())
    await refused(lambda: connector.config_get("*"))
    # ... and no way to learn another livestream's id (a random CR uid): no key listing, no
    # shared stream, no status hash to read.
    await refused(lambda: connector.keys("*"))
    await refused(lambda: connector.scan())
    await refused(lambda: connector.randomkey())
    await refused(lambda: connector.xinfo_stream("tiktok.comment"))
    await refused(lambda: connector.execute_command("ACL", "SETUSER", "me", "on", "+@all", "~*"))
    await refused(lambda: connector.publish("tiktok", "x"))
    await refused(lambda: connector.eval("return 1", 0))  # scripts only by SCRIPT LOAD + EVALSHA
    # A script it loads runs with its rights: a key outside its families is refused there too,
    # and so is a command it lacks.
    script = connector.register_script("return redis.call('XADD', ARGV[1], '*', 'a', 'b')")
    await refused(lambda: script(keys=[], args=[naming.DEAD_LETTER_STREAM]))
    flush = connector.register_script("return redis.call('FLUSHALL')")
    with pytest.raises(ResponseError, match="can't run this command"):
        await flush(keys=[], args=[])


async def test_the_persister_consumes_trims_and_dead_letters_and_reaches_nothing_else(
    clients: dict[Role, aioredis.Redis],
    connector_client: RedisClient,
    redis_roles: dict[Role, str],
    database_roles: dict[Role, str],
    database_url: str,
) -> None:
    await publish_as_connector(connector_client, LIVESTREAM, 40)
    await run_burst(quick_settings(redis_roles[Role.PERSISTER], database_roles[Role.PERSISTER]))
    assert await stored_events(database_url) == 40

    persister = clients[Role.PERSISTER]
    removed = await trimming.housekeep(
        persister, naming.all_type_streams(), metrics=PersisterMetrics.create(CollectorRegistry()), retention_s=0
    )  # XLEN, XINFO GROUPS, XPENDING, XRANGE, XTRIM MINID: everything was acknowledged, all goes
    assert sum(removed.values()) == 40, removed
    assert await persister.xpending("tiktok.comment", naming.PERSISTER_GROUP) is not None
    assert await persister.xautoclaim("tiktok.comment", naming.PERSISTER_GROUP, "me", 0) is not None
    await persister.xtrim("tiktok.comment", minid="0-1")
    await persister.xadd(naming.DEAD_LETTER_STREAM, {"reason": "test"})
    await refused(lambda: persister.xrange(naming.DEAD_LETTER_STREAM))
    await refused(lambda: persister.xrevrange(naming.livestream_stream(LIVESTREAM)))
    await refused(lambda: persister.xadd("tiktok.comment.x", {"x": "y"}))
    await refused(lambda: persister.hgetall(naming.event_counts_key(LIVESTREAM)))
    await refused(lambda: persister.flushall())
    await refused(lambda: persister.delete("tiktok.comment"))
    await refused(lambda: persister.xgroup_destroy("tiktok.comment", naming.PERSISTER_GROUP))


async def test_the_api_reads_livestream_streams_and_writes_only_its_own_keys(
    clients: dict[Role, aioredis.Redis], connector_client: RedisClient, redis_roles: dict[Role, str]
) -> None:
    await publish_as_connector(connector_client, LIVESTREAM, 5)
    api = clients[Role.API]
    key = naming.livestream_stream(LIVESTREAM)
    assert len(await api.xrange(key)) == 5
    assert len(await api.xrevrange(key, count=1)) == 1
    assert len((await api.xread({key: "0"}, count=10, block=10))[0][1]) == 5
    assert (await api.xinfo_stream(key))["entries-added"] == 5  # the SSE gap check
    # Its own keys, with the code that uses them: rate limits (`limits`' scripts), stream
    # leases (the lease script, renewal, release), the connect lock, the id -> name index.
    pool = aioredis.BlockingConnectionPool.from_url(redis_roles[Role.API], max_connections=2)
    limiter = RateLimiter(redis_roles[Role.API], pool, "2/minute", ApiMetrics(CollectorRegistry()))
    try:
        assert await limiter.retry_after("key-a") is None
        assert await limiter.retry_after("key-a") is None
        assert await limiter.retry_after("key-a") is not None  # the third within the minute
    finally:
        await pool.aclose()
    guard = StreamGuard(
        api,
        None,  # type: ignore[arg-type]  # the database is not asked by admit/renew/release
        workspace_limit=1,
        key_limit=1,
        lease_s=30,
        recheck_s=1,
        metrics=ApiMetrics(CollectorRegistry()),
    )
    ticket = await guard.admit("acme", b"k" * 32)
    await guard.renew()
    await guard.release(ticket)
    lock = api.lock(quotas.connect_lock_key("acme"), timeout=5, blocking_timeout=1, thread_local=False)
    assert await lock.acquire()
    await lock.release()
    await api.set(quotas.livestream_name_key(LIVESTREAM), "name", ex=60)
    assert await api.get(quotas.livestream_name_key(LIVESTREAM)) == b"name"

    await refused(lambda: api.xadd(key, {"x": "y"}))
    await refused(lambda: api.xrange("tiktok.comment"))
    await refused(lambda: api.hgetall(naming.connector_status_key(LIVESTREAM)))
    await refused(lambda: api.delete(key))
    await refused(lambda: api.get(naming.connector_fence_key(LIVESTREAM)))
    await refused(lambda: api.flushall())


async def test_the_operator_reads_heartbeats_and_counts_only(
    clients: dict[Role, aioredis.Redis], connector_client: RedisClient
) -> None:
    await publish_as_connector(connector_client, LIVESTREAM, 5)
    operator = clients[Role.OPERATOR]
    assert sum(int(v) for v in (await operator.hgetall(naming.event_counts_key(LIVESTREAM))).values()) == 5
    await refused(lambda: operator.hset(naming.connector_status_key(LIVESTREAM), "phase", "Live"))
    await refused(lambda: operator.xrange(naming.livestream_stream(LIVESTREAM)))
    await refused(lambda: operator.flushall())


async def test_redis_users_survive_a_restart_and_a_second_setup_rotates_a_password(
    redis_url: str, redis_server: Any
) -> None:
    redis_server.stop()
    redis_server.start()
    url = access.redis_role_url(redis_url, Role.API, ROLE_PASSWORDS[Role.API])
    client = aioredis.from_url(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    setup = await apply_redis_users(redis_url, {Role.API: "rotated"})
    assert setup.users == ["tiktok-api"] and setup.saved
    stale = aioredis.from_url(url)
    fresh = aioredis.from_url(access.redis_role_url(redis_url, Role.API, "rotated"))
    try:
        with pytest.raises(AuthenticationError):
            await stale.ping()
        assert await fresh.ping()
    finally:
        await stale.aclose()
        await fresh.aclose()
        await apply_redis_users(redis_url, {Role.API: ROLE_PASSWORDS[Role.API]})


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def denied(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    with pytest.raises((asyncpg.InsufficientPrivilegeError,)):
        await conn.execute(sql, *args)


async def test_the_api_login_reads_and_can_neither_write_nor_change_the_schema(database_roles: dict[Role, str]) -> None:
    conn = await connect(database_roles[Role.API])
    try:
        assert await conn.fetchval("SELECT count(*) FROM livestreams") == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
        await denied(conn, "CREATE TABLE evil (x int)")
        await denied(conn, "DROP TABLE events")
        await denied(conn, "ALTER TABLE events ADD COLUMN evil int")
        await denied(
            conn,
            "INSERT INTO events (id, livestream_id, event_id, event_type, payload, timestamp)"
            " VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 'tiktok.comment', '{}', now())",
        )
        await denied(conn, "DELETE FROM events")
        await denied(conn, "UPDATE livestreams SET status = 'failed'")
        await denied(
            conn,
            "INSERT INTO api_keys (id, workspace_id, key_hash, key_prefix) VALUES ($1, 'w', 'h', 'p')",
            uuid.uuid4(),
        )
        await denied(conn, "UPDATE api_keys SET revoked_at = now()")
    finally:
        await conn.close()


async def test_the_persister_login_appends_events_and_nothing_more(database_roles: dict[Role, str]) -> None:
    conn = await connect(database_roles[Role.PERSISTER])
    try:
        await conn.execute(
            "INSERT INTO events (id, livestream_id, event_id, event_type, payload, timestamp)"
            " VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 'tiktok.comment', '{}', now())"
        )
        await denied(conn, "SELECT payload FROM events")  # only the conflict target, `id`, is readable
        await denied(conn, "DELETE FROM events")
        await denied(conn, "DROP TABLE events")
        await denied(conn, "TRUNCATE events")
        await denied(conn, "SELECT count(*) FROM api_keys")
        await denied(conn, "UPDATE livestreams SET status = 'failed'")
        await denied(conn, "CREATE TABLE evil (x int)")
    finally:
        await conn.close()


async def test_the_operator_login_writes_livestream_rows_only(database_roles: dict[Role, str]) -> None:
    conn = await connect(database_roles[Role.OPERATOR])
    try:
        row_id = uuid.uuid4()
        await livestreams_repository.upsert_livestream(conn, id=row_id, username="alice", workspace_id="acme")
        closed = await livestreams_repository.close_livestream(conn, row_id, reason="Deleted")
        assert closed is not None and closed.ended_at is not None
        await denied(conn, "DELETE FROM livestreams")
        await denied(conn, "SELECT count(*) FROM events")
        await denied(conn, "SELECT count(*) FROM api_keys")
        await denied(conn, "DROP TABLE livestreams")
    finally:
        await conn.close()


async def test_logins_prove_their_password_and_a_second_setup_rotates_it(
    database_roles: dict[Role, str], postgres_server: Any
) -> None:
    wrong = access.with_credentials(database_roles[Role.API], access.database_login(Role.API), "wrong")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await connect(wrong)
    _, logins = await apply_database_logins(postgres_server.dsn, {Role.API: "rotated-password"})
    assert logins == ["tiktok_api_login"]
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await connect(database_roles[Role.API])
        rotated = access.with_credentials(database_roles[Role.API], access.database_login(Role.API), "rotated-password")
        conn = await connect(rotated)
        await conn.close()
    finally:
        await apply_database_logins(postgres_server.dsn, {Role.API: ROLE_PASSWORDS[Role.API]})


def access_command(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiktok_service", "access"],
        env={**os.environ, "PYTHONPATH": str(Path(tiktok_service.__file__).parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_access_command_migrates_and_sets_up_every_component_from_the_urls_it_reads(
    redis_url: str, database_url: str
) -> None:
    env = {"ACCESS_REDIS_URL": redis_url, "ACCESS_DATABASE_URL": database_url}
    for role in Role:
        env[f"ACCESS_{role.upper()}_REDIS_URL"] = redis_as(redis_url, role)
    for role in access.DATABASE_ROLES:
        env[f"ACCESS_{role.upper()}_DATABASE_URL"] = database_as(database_url, role)

    result = await asyncio.to_thread(access_command, env)

    assert result.returncode == 0, result.stderr
    assert "redis users: tiktok-connector, tiktok-persister, tiktok-api, tiktok-operator\n" in result.stdout
    assert "migrations applied: 0001_initial, 0002_api_keys, 0003_roles" in result.stdout
    assert "database logins: tiktok_persister_login, tiktok_operator_login, tiktok_api_login" in result.stdout
    conn = await connect(database_as(database_url, Role.API))  # the fresh database is usable at once
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await conn.close()


async def test_the_access_command_refuses_a_url_that_names_another_components_user(redis_url: str) -> None:
    env = {"ACCESS_REDIS_URL": redis_url, "ACCESS_API_REDIS_URL": redis_as(redis_url, Role.CONNECTOR)}

    result = await asyncio.to_thread(access_command, env)

    assert result.returncode != 0
    assert "expected 'tiktok-api'" in result.stderr


async def test_a_persister_whose_login_may_not_migrate_waits_for_the_owner_then_stores(
    clients: dict[Role, aioredis.Redis], connector_client: RedisClient, redis_roles: dict[Role, str], database_url: str
) -> None:
    await publish_as_connector(connector_client, LIVESTREAM, 20)
    settings = quick_settings(redis_roles[Role.PERSISTER], database_as(database_url, Role.PERSISTER))
    registry = CollectorRegistry()
    async with running(settings, registry=registry) as persister:
        await wait_until(lambda: _holds(metric(registry, "db_retries_total") >= 2), what="retries before migration")
        assert persister.state == "retrying_db" and await stored_events(database_url) == 0
        await migrate.migrate(database_url)  # the owner
        await wait_until(lambda: _equals(stored_events(database_url), 20), what="20 rows once migrated")


async def _holds(condition: bool) -> bool:
    return condition


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
