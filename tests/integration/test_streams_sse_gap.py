"""SSE catch-up that meets a trimmed range says so with a gap event (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tiktok_service.api import feeds, sse
from tiktok_service.api.metrics import ApiMetrics
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service_dev import sample_events

LIVESTREAM = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
KEY = naming.livestream_stream(LIVESTREAM)
SETTINGS = feeds.FeedSettings(
    block_ms=50, batch=100, ring_size=16, ping_interval_s=15, phase_check_s=0.05, retry_ms=1000, writes_per_s=20_000
)


async def publish(redis_client: aioredis.Redis, count: int) -> list[str]:
    ids = []
    for n in range(count):
        fields = sample_events.entry_fields(sample_events.sample_envelope(n, livestream_id=LIVESTREAM))
        ids.append((await redis_client.xadd(KEY, fields)).decode())  # type: ignore[arg-type]
    return ids


@pytest.fixture
async def api_client(redis_roles: dict[Role, str]) -> AsyncIterator[aioredis.Redis]:
    """The API's own Redis user: the gap check (XINFO STREAM) runs with its rights."""
    client = aioredis.from_url(redis_roles[Role.API])
    yield client
    await client.aclose()


async def everything_sent(api_client: aioredis.Redis, after: str) -> tuple[bytes, ApiMetrics]:
    """The bytes a subscriber resuming after `after` gets until the (stopped) livestream ends."""

    async def stopped(_: str) -> str:
        return feeds.STOPPED

    metrics = ApiMetrics(CollectorRegistry())
    all_feeds = feeds.Feeds(api_client, SETTINGS, end_check=stopped, metrics=metrics)
    async with all_feeds.running():
        parts = [part async for part in all_feeds.stream(LIVESTREAM, sse.parse_id(after), None)]
    return b"".join(parts), metrics


def gap_of(wire: bytes) -> dict[str, str] | None:
    for block in wire.split(b"\n\n"):
        if b"event: gap" in block:
            data = next(line for line in block.split(b"\n") if line.startswith(b"data: "))
            parsed: dict[str, str] = orjson.loads(data[len(b"data: ") :])
            return parsed
    return None


def ids_sent(wire: bytes) -> list[str]:
    return [line[len(b"id: ") :].decode() for line in wire.split(b"\n") if line.startswith(b"id: ")]


async def test_a_resume_from_a_trimmed_entry_gets_a_gap_event_before_what_is_still_held(
    redis_client: aioredis.Redis, api_client: aioredis.Redis
) -> None:
    ids = await publish(redis_client, 50)
    await redis_client.xtrim(KEY, maxlen=10, approximate=False)  # entries 0..39 are gone

    wire, metrics = await asyncio.wait_for(everything_sent(api_client, after=ids[5]), 30)

    assert gap_of(wire) == {"after": ids[5], "resume": ids[40], "reason": "trimmed"}
    assert wire.index(b"event: gap") < wire.index(f"id: {ids[40]}".encode())
    assert ids_sent(wire) == ids[40:]
    assert metrics.registry.get_sample_value("tiktok_api_sse_gaps_total") == 1


async def test_a_resume_from_an_entry_still_held_gets_no_gap(
    redis_client: aioredis.Redis, api_client: aioredis.Redis
) -> None:
    ids = await publish(redis_client, 50)
    await redis_client.xtrim(KEY, maxlen=10, approximate=False)

    wire, _ = await asyncio.wait_for(everything_sent(api_client, after=ids[42]), 30)

    assert gap_of(wire) is None
    assert ids_sent(wire) == ids[43:]


async def test_a_resume_from_the_start_of_a_stream_never_trimmed_gets_no_gap(
    redis_client: aioredis.Redis, api_client: aioredis.Redis
) -> None:
    ids = await publish(redis_client, 30)

    wire, _ = await asyncio.wait_for(everything_sent(api_client, after="0-0"), 30)

    assert gap_of(wire) is None
    assert ids_sent(wire) == ids
