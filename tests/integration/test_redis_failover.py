"""A Redis failover to a real replica under a live connector: what is lost, what is kept.

The replica is promoted while the old primary still acknowledges the connector's batches (the
acknowledged tail of asynchronous replication), then the connector's address moves to the new
primary. The connector finds the new primary's sequence behind its own, sends the tail again
from its replay window and counts what the window no longer holds.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.access_support import redis_as
from tests.redis_failover import RedisPair
from tests.support import Running, expected_events, tiktok_ids, wait_until
from tiktok_service.domain.access import Role
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def front_client(redis_pair: RedisPair) -> AsyncIterator[aioredis.Redis]:
    """The connector's client, through the address that follows the primary (as in its pod)."""
    client = aioredis.from_url(
        redis_as(redis_pair.url, Role.CONNECTOR),
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.2), 3),
        retry_on_error=[RedisConnectionError],
    )
    yield client
    await client.aclose()


def settings(simulator: SimulatorServer, url: str, username: str, **overrides: Any) -> ConnectorSettings:
    values: dict[str, Any] = {
        "livestream_id": str(uuid.uuid4()),
        "username": username,
        "redis_url": url,
        "sign_api_url": simulator.base_url,
        "sign_api_key": "test",
        "tiktok_app_url": simulator.base_url,
        "tiktok_webcast_url": simulator.base_url + "/webcast",
        "http_port": 0,
        "heartbeat_interval_s": 0.2,
        "watchdog_interval_s": 0.1,
        "publish_batch": 20,
        **overrides,
    }
    return ConnectorSettings(**values)


async def ids_on(port: int, livestream_id: str) -> list[str]:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        return await tiktok_ids(client, livestream_id)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("replay_window", "replicas_to_wait"),
    [(2_000, 1), (0, 0)],
    ids=["replayed-after-wait", "no-replay-window-counts-the-loss"],
)
async def test_a_failover_loses_the_acknowledged_tail_only_where_the_readme_says(
    simulator: SimulatorServer,
    redis_pair: RedisPair,
    front_client: aioredis.Redis,
    replay_window: int,
    replicas_to_wait: int,
) -> None:
    username = f"failover_{uuid.uuid4().hex[:8]}"
    await simulator.add_room(username, Scenario(seed=5, rate=100, batch=5, mix={"comment": 1}))
    url = redis_as(redis_pair.url, Role.CONNECTOR)  # the connector's own user, set up on both nodes
    config = settings(simulator, url, username, replay_window=replay_window, replicas_to_wait=replicas_to_wait)
    livestream_id = config.livestream_id
    lost_before = metric("tiktok_connector_events_lost_total", reason="redis_lost_acknowledged")
    replayed_before = metric("tiktok_connector_events_replayed_total")
    unconfirmed_before = metric("tiktok_connector_replication_unconfirmed_total")
    connector = Running(config, front_client)
    try:

        async def on_primary(n: int) -> bool:
            return len(await ids_on(redis_pair.primary.port, livestream_id)) >= n

        await wait_until(lambda: on_primary(40), timeout=30, what="events on the primary")
        redis_pair.wait_in_sync()

        redis_pair.promote()  # the old primary goes on acknowledging: this is the tail a failover loses
        kept = set(await ids_on(redis_pair.replica.port, livestream_id))
        await wait_until(lambda: on_primary(len(kept) + 40), timeout=30, what="an acknowledged tail")
        redis_pair.switch()
        tail = {i for i in await ids_on(redis_pair.primary.port, livestream_id) if i not in kept}
        redis_pair.primary.stop()

        async def more_on_new_primary() -> bool:
            return len(await ids_on(redis_pair.replica.port, livestream_id)) >= len(kept) + len(tail) + 40

        await wait_until(more_on_new_primary, timeout=30, what="publishing to the new primary")
        await simulator.room(username).end_live()
        await connector.exit_code(timeout=30)
    finally:
        if not connector.task.done():
            await connector.stop()

    now = await ids_on(redis_pair.replica.port, livestream_id)
    assert not {i: n for i, n in collections.Counter(now).items() if n > 1}, "doubled after the failover"
    lost = metric("tiktok_connector_events_lost_total", reason="redis_lost_acknowledged") - lost_before
    replayed = metric("tiktok_connector_events_replayed_total") - replayed_before
    missing = [i for i in expected_events(list(simulator.room(username).sent_json()["messages"])) if i not in now]
    assert len(tail) >= 40, "the old primary acknowledged a tail the replica never had"
    assert lost == len(missing), "every lost event is counted"
    if replay_window:
        assert missing == [], "the replay window held the tail: nothing lost"
        assert replayed >= len(tail) - config.publish_batch  # a batch cut in flight is simply sent again
        # WAIT saw no replica once the replica was promoted: those batches were counted.
        assert metric("tiktok_connector_replication_unconfirmed_total") > unconfirmed_before
    else:
        assert set(missing) <= tail and len(missing) >= len(tail) - config.publish_batch, "the tail is lost"
        assert replayed == 0
