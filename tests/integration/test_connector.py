"""The connector against the simulator and a real Redis: every path that moves an event."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.access_support import redis_as
from tests.support import Running, expected_events, livestream_entries, tiktok_ids, wait_until
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.connector_status import ConnectorPhase, status_from_hash
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.processes import free_port
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow


def new_name() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(simulator: SimulatorServer, redis_url: str) -> Callable[..., ConnectorSettings]:
    def make(username: str, **overrides: Any) -> ConnectorSettings:
        values: dict[str, Any] = {
            "livestream_id": str(uuid.uuid4()),
            "username": username,
            "redis_url": redis_as(redis_url, Role.CONNECTOR),
            "sign_api_url": simulator.base_url,
            "sign_api_key": "test",
            "tiktok_app_url": simulator.base_url,
            "tiktok_webcast_url": simulator.base_url + "/webcast",
            "http_port": 0,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
            "heartbeat_interval_s": 0.2,
            "watchdog_interval_s": 0.1,
        }
        values.update(overrides)
        return ConnectorSettings(**values)

    return make


@pytest.fixture
async def start(redis_url: str) -> AsyncIterator[Callable[[ConnectorSettings], Running]]:
    """Connectors as their pods run them: each with its own client, as the connector's ACL user."""
    running: list[Running] = []
    clients: list[aioredis.Redis] = []

    def starter(settings: ConnectorSettings) -> Running:
        # Tests restart Redis; a retried command reconnects instead of failing on the stale socket.
        client = aioredis.from_url(
            settings.redis_url, retry=Retry(ExponentialBackoff(cap=0.5), 5), retry_on_error=[RedisConnectionError]
        )
        clients.append(client)
        connector = Running(settings, client)
        running.append(connector)
        return connector

    yield starter
    for connector in running:
        if not connector.task.done():
            await connector.stop()
    for client in clients:
        await client.aclose()


async def sent(simulator: SimulatorServer, username: str) -> list[dict[str, Any]]:
    return list(simulator.room(username).sent_json()["messages"])


async def wait_for_all(
    redis: aioredis.Redis, livestream_id: str, expected: dict[str, str], timeout: float = 30
) -> None:
    async def arrived() -> bool:
        return set(expected) <= set(await tiktok_ids(redis, livestream_id))

    await wait_until(arrived, timeout=timeout, what=f"{len(expected)} events in the livestream stream")


def received_comments(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('tiktok_connector_events_received_total{type="tiktok.comment"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_every_event_type_lands_in_redis_exactly_once_as_the_simulator_sent_it(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    mix = {"comment": 40, "gift": 15, "like": 10, "join": 10, "follow": 5, "share": 5, "viewer": 5, "unknown": 5}
    await simulator.add_room(username, Scenario(seed=7, rate=0, batch=10, live_end_after=400, mix=mix))
    settings = make_settings(username)
    connector = start(settings)
    assert await connector.exit_code() == ExitCode.LIVE_ENDED

    expected = expected_events(await sent(simulator, username))
    published = await tiktok_ids(redis_client, settings.livestream_id)
    assert sorted(published) == sorted(expected), "every sent event once, nothing else"
    types = {event_type for event_type, _ in await livestream_entries(redis_client, settings.livestream_id)}
    assert {
        "tiktok.comment",
        "tiktok.gift",
        "tiktok.like",
        "tiktok.join",
        "tiktok.follow",
        "tiktok.share",
        "tiktok.viewer",
        "tiktok.unknown",
        "tiktok.live_end",
        "tiktok.connect",
        "tiktok.disconnect",
    } <= types
    for event_type in set(expected.values()):
        in_type_stream = await redis_client.xrange(event_type)
        mine = [f[naming.FIELD_ID].decode() for _, f in in_type_stream]
        assert sorted(mine) == sorted(i for i, t in expected.items() if t == event_type)
    counts = await redis_client.hgetall(naming.event_counts_key(settings.livestream_id))
    assert int(counts[b"tiktok.comment"]) == sum(1 for t in expected.values() if t == "tiktok.comment")


async def test_a_gift_streak_is_published_once_with_its_final_count(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=3, rate=0, mix={"gift": 1}, live_end_after=150))
    settings = make_settings(username)
    assert await start(settings).exit_code() == ExitCode.LIVE_ENDED
    messages = await sent(simulator, username)
    finals = {str(m["msg_id"]): m["data"]["repeat_count"] for m in messages if m["data"].get("repeat_end")}
    assert any(count > 1 for count in finals.values()), "the scenario must contain real streaks"
    from tiktok_service.domain.events import decode

    gifts = {
        e.id: e
        for _, f in await redis_client.xrange(naming.livestream_stream(settings.livestream_id))
        if (e := decode(f[naming.FIELD_EVENT])).type.value == "tiktok.gift"
    }
    for msg_id, count in finals.items():
        assert gifts[msg_id].data["repeat_count"] == count
        assert gifts[msg_id].data["streak_complete"] is True
    expected_gifts = [i for i, t in expected_events(messages).items() if t == "tiktok.gift"]
    assert sorted(gifts) == sorted(expected_gifts)


async def test_a_dropped_socket_reconnects_and_the_replayed_history_is_not_published_twice(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(
        username, Scenario(seed=11, rate=400, drop_after=100, drop_repeat=True, history=10, live_end_after=450)
    )
    settings = make_settings(username)
    connector = start(settings)
    assert await connector.exit_code() == ExitCode.LIVE_ENDED
    assert connector.runner.status.reconnects >= 3
    assert simulator.room(username).stats_json()["history_replayed"] > 0
    published = await tiktok_ids(redis_client, settings.livestream_id)
    assert len(published) == len(set(published)), "no duplicates"
    assert set(published) == set(expected_events(await sent(simulator, username)))


async def test_live_end_exits_with_the_live_end_code_and_leaves_a_final_status(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=5, rate=200, mix={"comment": 1, "viewer": 1}))
    settings = make_settings(username)
    connector = start(settings)
    await wait_until(lambda: simulator.room(username).stats_json()["events_sent"] >= 20, timeout=10, what="traffic")
    await simulator.room(username).end_live()
    assert await connector.exit_code() == ExitCode.LIVE_ENDED
    status = status_from_hash(
        {
            k.decode(): v.decode()
            for k, v in (await redis_client.hgetall(naming.connector_status_key(settings.livestream_id))).items()
        }
    )
    assert status.phase is ConnectorPhase.ENDED and status.exit_code == ExitCode.LIVE_ENDED
    assert status.room_id == simulator.room(username).room_id
    assert status.viewer_count is not None
    assert await redis_client.ttl(naming.connector_status_key(settings.livestream_id)) > 60


async def test_an_unknown_user_exits_with_the_user_not_found_code(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(not_found=True))
    assert await start(make_settings(username)).exit_code() == ExitCode.USER_NOT_FOUND


async def test_an_offline_user_exits_or_is_waited_for_until_live(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(offline=True, rate=100, mix={"comment": 1}))
    assert await start(make_settings(username)).exit_code() == ExitCode.USER_OFFLINE

    settings = make_settings(username, wait_for_live=True, live_poll_interval_s=0.2)
    connector = start(settings)
    await wait_until(lambda: connector.runner.status.phase is ConnectorPhase.WAITING, timeout=10, what="waiting")
    await simulator.room(username).set_live(True)
    await wait_until(lambda: connector.runner.status.phase is ConnectorPhase.LIVE, timeout=10, what="live")

    async def comments() -> bool:
        return len(await tiktok_ids(redis_client, settings.livestream_id)) >= 10

    await wait_until(comments, timeout=10, what="comments after going live")
    assert await connector.stop() == ExitCode.STOPPED


async def test_a_sign_server_429_is_retried_no_sooner_than_its_retry_after(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(sign_429=1, retry_after_s=2, rate=50))
    connector = start(make_settings(username))
    await wait_until(lambda: connector.runner.status.next_retry_at_ms is not None, timeout=10, what="a retry")
    scheduled_at = time.time() * 1000
    retry_at = connector.runner.status.next_retry_at_ms
    assert retry_at is not None and retry_at - scheduled_at >= 1900
    assert connector.runner.status.reason == "rate_limited"
    await wait_until(lambda: connector.runner.status.phase is ConnectorPhase.LIVE, timeout=10, what="live")
    assert time.time() * 1000 >= retry_at
    assert metric("tiktok_connector_reconnects_total", reason="rate_limited") >= 1


async def test_malformed_frames_are_counted_and_the_connector_keeps_receiving(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    kinds = ["bad_gzip", "truncated", "unknown_method", "oversized", "not_pushframe"]
    await simulator.add_room(username, Scenario(seed=9, rate=300, malformed=kinds, live_end_after=300, fixtures=True))
    frames_before = metric("tiktok_connector_events_dropped_total", reason="malformed_frame")
    raw_before = metric("tiktok_connector_schema_drift_total", type="tiktok.unknown")
    settings = make_settings(username)
    assert await start(settings).exit_code(timeout=60) == ExitCode.LIVE_ENDED
    published = set(await tiktok_ids(redis_client, settings.livestream_id))
    expected = expected_events(await sent(simulator, username))
    assert set(expected) <= published
    # Undecodable frames are dropped and counted; an undecodable message inside a good frame
    # is published raw as tiktok.unknown and counted as drift.
    assert metric("tiktok_connector_events_dropped_total", reason="malformed_frame") > frames_before
    assert metric("tiktok_connector_schema_drift_total", type="tiktok.unknown") > raw_before


async def test_a_stalled_socket_is_replaced_by_a_fresh_connection(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=2, rate=200, stall_after=50, stall_s=0))
    connector = start(make_settings(username, stall_timeout_s=0.5))
    await wait_until(lambda: connector.runner.status.reconnects >= 1, timeout=15, what="a reconnect")
    assert metric("tiktok_connector_reconnects_total", reason="stalled") >= 1


async def test_events_received_while_redis_is_down_are_published_when_it_returns(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_server: LocalRedis,
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=4, rate=300, total=600, mix={"comment": 3, "like": 1}))
    settings = make_settings(username)
    connector = start(settings)
    room = simulator.room(username)
    await wait_until(lambda: connector.runner.publisher.published >= 100, timeout=15, what="first events")
    redis_server.stop()
    try:
        await wait_until(lambda: not connector.runner.publisher.redis_up, timeout=15, what="outage noticed")
        await wait_until(lambda: room.stats_json()["events_sent"] >= 600, timeout=20, what="all events sent")
        assert connector.runner.publisher.pending > 0
    finally:
        redis_server.start()
    expected = expected_events(await sent(simulator, username))
    await wait_for_all(redis_client, settings.livestream_id, expected)
    published = await tiktok_ids(redis_client, settings.livestream_id)
    assert len(published) == len(set(published)) == len(expected)
    assert connector.runner.publisher.dropped == 0


async def test_a_restarted_connector_does_not_republish_the_history_tiktok_replays(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    start: Callable[..., Running],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=8, rate=300, total=100, history=20, mix={"comment": 1}))
    settings = make_settings(username)
    first = start(settings)
    await wait_for_all(redis_client, settings.livestream_id, expected_events(await sent(simulator, username)))
    await wait_until(lambda: simulator.room(username).stats_json()["events_sent"] >= 100, timeout=10, what="all")
    await wait_for_all(redis_client, settings.livestream_id, expected_events(await sent(simulator, username)))
    assert await first.stop() == ExitCode.STOPPED
    second = start(settings)
    await wait_until(lambda: second.runner.status.phase is ConnectorPhase.LIVE, timeout=10, what="live again")
    simulator.room(username).resume(more=50)
    expected = expected_events(await sent(simulator, username))
    await wait_until(
        lambda: len(expected_events(simulator.room(username).sent_json()["messages"])) >= 150,
        timeout=10,
        what="more events",
    )
    expected = expected_events(simulator.room(username).sent_json()["messages"])
    await wait_for_all(redis_client, settings.livestream_id, expected)
    published = await tiktok_ids(redis_client, settings.livestream_id)
    assert len(published) == len(set(published)) == 150
    assert await second.stop() == ExitCode.STOPPED


async def test_sigterm_flushes_buffered_events_before_the_process_exits(
    simulator: SimulatorServer,
    make_settings: Callable[..., ConnectorSettings],
    redis_server: LocalRedis,
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=6, rate=300, total=300, mix={"comment": 1}))
    port = free_port()
    settings = make_settings(username, drain_timeout_s=30, http_port=port)
    env = {
        **os.environ,
        **{
            f"CONNECTOR_{k.upper()}": str(v)
            for k, v in settings.model_dump().items()
            if v is not None and not isinstance(v, list)
        },
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_service",
        "connector",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    room = simulator.room(username)

    async def received_all() -> bool:
        # What the connector has taken off the socket (its /metrics), not what is still in flight.
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
        except httpx.HTTPError:
            return False
        return received_comments(text) >= 300

    try:
        await wait_until(lambda: room.stats_json()["events_sent"] >= 50, timeout=20, what="traffic")
        redis_server.stop()
        await wait_until(received_all, timeout=30, what="all 300 events received by the connector")
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0)  # the connector is now draining into a Redis that is down
    finally:
        redis_server.start()
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == ExitCode.STOPPED, stderr.decode()[-2000:]
    expected = expected_events(await sent(simulator, username))
    published = await tiktok_ids(redis_client, settings.livestream_id)
    assert sorted(published) == sorted(expected)
