"""Every message kind TikTokLive decodes reaches Redis exactly once, as its documented type.

The simulator sends one message of every method the library maps (encoded with the library's own
classes), then ends the LIVE; the real TikTokLive client inside the connector decodes them and
the connector publishes them. Each message must arrive exactly once, under TikTok's msg_id, as the
type the event catalogue documents for it - and (checked at teardown of `redis_url`) valid
against that type's JSON Schema.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from tests.support import livestream_entries
from tiktok_service.connector import runner as connector_runner
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain import catalogue
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.simulator import kinds
from tiktok_service_dev.simulator.scenario import EVERY_KIND, Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow

#: Messages whose type depends on their content (the catalogue's `classify_*` rules), by the
#: simulator's variant: what TikTok marks as a follow, a super fan, a pause...
VARIANT_TYPES: dict[tuple[str, str], str] = {
    ("WebcastSocialMessage", "follow"): "tiktok.follow",
    ("WebcastBarrageMessage", "super_fan"): "tiktok.superfan.join",  # the "...superfanjoined" banner
    ("WebcastEnvelopeMessage", "super_fan_box"): "tiktok.superfan.box",
    ("WebcastControlMessage", "pause"): "tiktok.live_pause",
    ("WebcastControlMessage", "unpause"): "tiktok.live_unpause",
}


def documented_type(message: dict[str, Any]) -> str:
    method, variant = message["method"], message.get("variant") or "default"
    return VARIANT_TYPES.get((method, variant), catalogue.type_of_method(method).value)


def dropped_total() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "tiktok_connector_messages_dropped"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_each_method_the_library_maps_arrives_once_as_its_documented_type(
    simulator: SimulatorServer, redis_url: str, redis_client: aioredis.Redis
) -> None:
    username = f"kinds_{uuid.uuid4().hex[:10]}"
    size = kinds.EVERY_KIND_SIZE
    await simulator.add_room(
        username, Scenario(seed=11, rate=0, batch=7, every_kind=True, mix={"comment": 1}, live_end_after=size + 5)
    )
    settings = ConnectorSettings(
        livestream_id=str(uuid.uuid4()),
        username=username,
        redis_url=redis_url,
        sign_api_url=simulator.base_url,
        sign_api_key="test",
        tiktok_app_url=simulator.base_url,
        tiktok_webcast_url=simulator.base_url + "/webcast",
        http_port=0,
    )
    connector_runner.configure_tiktok_urls(settings)
    dropped_before = dropped_total()
    connector_redis = RedisClient.from_url(redis_url)
    runner = connector_runner.ConnectorRunner(settings, redis=connector_redis, seed=1)
    try:
        assert await asyncio.wait_for(runner.run(), 120) == ExitCode.LIVE_ENDED
    finally:
        await connector_redis.aclose()

    sent = [m for m in simulator.room(username).sent_json()["messages"] if m["kind"] == EVERY_KIND]
    assert {m["method"] for m in sent} == set(kinds.EVERY_KIND_METHODS)
    assert len(kinds.EVERY_KIND_METHODS) == 62 and len(sent) == size
    published = Counter(await livestream_entries(redis_client, settings.livestream_id))
    wrong: list[str] = []
    for message in sent:
        expected = (documented_type(message), str(message["msg_id"]))
        if published[expected] != 1:
            actual = sorted(f"{t}x{n}" for (t, i), n in published.items() if i == expected[1])
            wrong.append(f"{message['method']}[{message.get('variant')}]: want {expected[0]} once, got {actual}")
    assert wrong == []
    assert dropped_total() == dropped_before, "nothing was dropped"
    by_type = {event_type for event_type, _ in published}
    assert "tiktok.unknown" not in by_type, "every mapped method has a type of its own"
