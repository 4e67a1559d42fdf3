"""Two connectors for one Livestream against the simulator and a real Redis: the newer one wins."""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support import Running, expected_events, tiktok_ids, wait_until
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.connector_status import status_from_hash
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow


@pytest.fixture
def make_settings(simulator: SimulatorServer, redis_roles: dict[Role, str]) -> Callable[..., ConnectorSettings]:
    def make(username: str, livestream_id: str, **overrides: Any) -> ConnectorSettings:
        values: dict[str, Any] = {
            "livestream_id": livestream_id,
            "username": username,
            "redis_url": redis_roles[Role.CONNECTOR],
            "sign_api_url": simulator.base_url,
            "sign_api_key": "test",
            "tiktok_app_url": simulator.base_url,
            "tiktok_webcast_url": simulator.base_url + "/webcast",
            "http_port": 0,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
            "heartbeat_interval_s": 0.2,
            "watchdog_interval_s": 0.1,
            "live_poll_interval_s": 0.2,
        }
        values.update(overrides)
        return ConnectorSettings(**values)

    return make


@pytest.fixture
async def start(redis_roles: dict[Role, str]) -> AsyncIterator[Callable[[ConnectorSettings], Running]]:
    running: list[Running] = []
    client = aioredis.from_url(redis_roles[Role.CONNECTOR])  # as the connector's own Redis user

    def starter(settings: ConnectorSettings) -> Running:
        connector = Running(settings, client)
        running.append(connector)
        return connector

    yield starter
    for connector in running:
        if not connector.task.done():
            await connector.stop()
    await client.aclose()


def doubled(ids: list[str]) -> dict[str, int]:
    return {event_id: n for event_id, n in collections.Counter(ids).items() if n > 1}


async def test_the_newer_connector_takes_over_and_the_older_exits_fenced_with_nothing_doubled(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    redis_client: aioredis.Redis,
) -> None:
    username, livestream_id = f"fence_{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    await simulator.add_room(username, Scenario(seed=3, rate=100, batch=5, mix={"comment": 1, "like": 1}))
    older = start(make_settings(username, livestream_id, pod_uid="pod-older"))

    async def published(n: int) -> bool:
        return len(await tiktok_ids(redis_client, livestream_id)) >= n

    await wait_until(lambda: published(50), timeout=30, what="the older connector publishing")

    newer = start(make_settings(username, livestream_id, pod_uid="pod-newer"))
    assert await older.exit_code(timeout=30) == ExitCode.FENCED
    assert older.runner.fence.lost is not None and older.runner.fence.lost.owner.startswith("pod-newer/")
    assert not newer.task.done()

    so_far = len(await tiktok_ids(redis_client, livestream_id))
    await wait_until(lambda: published(so_far + 50), timeout=30, what="the newer connector publishing")
    await simulator.room(username).end_live()
    assert await newer.exit_code(timeout=30) == ExitCode.LIVE_ENDED

    ids = await tiktok_ids(redis_client, livestream_id)
    assert not doubled(ids), "an event published by both connectors"
    expected = expected_events(list(simulator.room(username).sent_json()["messages"]))
    # Only what the older connector alone had received and not yet published when it was refused
    # can be missing, and that is counted (reason="fenced"), never silent.
    missing = set(expected) - set(ids)
    assert len(missing) <= older.runner.publisher.dropped, f"lost silently in the hand-over: {sorted(missing)[:10]}"
    assert newer.runner.publisher.dropped == 0
    for stream in ("tiktok.comment", "tiktok.like"):
        in_type_stream = [f[naming.FIELD_ID].decode() for _, f in await redis_client.xrange(stream)]
        assert not doubled(in_type_stream), f"an event twice in {stream}"
    # The older connector's last words (its final status) did not overwrite the newer one's.
    final = status_from_hash(
        {
            k.decode(): v.decode()
            for k, v in (await redis_client.hgetall(naming.connector_status_key(livestream_id))).items()
        }
    )
    assert final.exit_code == ExitCode.LIVE_ENDED
    fence = await redis_client.hgetall(naming.connector_fence_key(livestream_id))
    assert fence[b"owner"].decode() == newer.runner.fence.owner
    assert int(fence[b"epoch"]) == newer.runner.fence.epoch == (older.runner.fence.epoch or 0) + 1


async def test_an_idle_connector_notices_at_its_next_heartbeat_that_it_was_superseded(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    redis_client: aioredis.Redis,
) -> None:
    username, livestream_id = f"fence_{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    await simulator.add_room(username, Scenario(offline=True))
    older = start(make_settings(username, livestream_id, wait_for_live=True))
    key = naming.connector_fence_key(livestream_id)

    async def claimed() -> bool:
        return bool(await redis_client.hget(key, "owner"))

    await wait_until(claimed, timeout=30, what="the waiting connector's claim")  # its heartbeat claimed

    newer = start(make_settings(username, livestream_id, wait_for_live=True))
    assert await older.exit_code(timeout=30) == ExitCode.FENCED
    assert not newer.task.done()
    assert await newer.stop() == ExitCode.STOPPED
