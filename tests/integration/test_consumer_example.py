"""The documented consumer example (`examples/consumer.py`) against real Redis: group, ack, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from tiktok_service.domain import events
from tiktok_service_dev import sample_events

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer.py"
LIVESTREAM = "5b0c6f0e-2f59-4f5c-8a34-0c9a2b9d7e11"
TYPES = "tiktok.comment,tiktok.gift"


def run_example(redis_url: str, *args: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--redis-url", redis_url, "--group", "app", "--types", TYPES, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


async def publish(redis_client: aioredis.Redis, start: int, count: int) -> set[str]:
    chosen = [
        sample_events.sample_envelope(n, livestream_id=LIVESTREAM, event_type=kind)
        for n in range(start, start + count)
        for kind in [events.EventType.COMMENT if n % 2 else events.EventType.GIFT]
    ]
    await sample_events.publish(redis_client, chosen, per_livestream=False)
    return {envelope.id for envelope in chosen}


async def test_the_example_consumes_every_event_once_and_resumes_where_it_stopped(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    first = await publish(redis_client, 0, 60)

    part = run_example(redis_url, "--consumer", "one", "--max-events", "25")
    rest = run_example(redis_url, "--consumer", "one", "--until-idle")
    assert len(part) == 25
    assert sorted(e["id"] for e in part + rest) == sorted(first)

    later = await publish(redis_client, 60, 10)
    more = run_example(redis_url, "--consumer", "one", "--until-idle")
    assert {e["id"] for e in more} == later
    for stream in TYPES.split(","):
        assert (await redis_client.xpending(stream, "app"))["pending"] == 0


async def test_entries_read_but_not_acknowledged_are_handled_again_after_a_restart(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    published = await publish(redis_client, 0, 20)
    run_example(redis_url, "--consumer", "one", "--max-events", "0")  # creates the group
    # A consumer that read ten entries and died before acknowledging them.
    await redis_client.xreadgroup("app", "one", {"tiktok.comment": ">"}, count=10)
    assert (await redis_client.xpending("tiktok.comment", "app"))["pending"] == 10

    handled = run_example(redis_url, "--consumer", "one", "--until-idle")
    assert sorted(e["id"] for e in handled) == sorted(published)
    assert (await redis_client.xpending("tiktok.comment", "app"))["pending"] == 0


async def test_a_dead_consumers_entries_are_taken_over(redis_client: aioredis.Redis, redis_url: str) -> None:
    published = await publish(redis_client, 0, 20)
    run_example(redis_url, "--consumer", "one", "--max-events", "0")
    await redis_client.xreadgroup("app", "gone", {"tiktok.gift": ">"}, count=5)

    handled = run_example(redis_url, "--consumer", "two", "--until-idle", "--claim-idle-ms", "0")
    assert sorted(e["id"] for e in handled) == sorted(published)
    assert (await redis_client.xpending("tiktok.gift", "app"))["pending"] == 0


async def test_the_persisters_group_is_left_alone(redis_client: aioredis.Redis, redis_url: str) -> None:
    await redis_client.xgroup_create("tiktok.comment", "persister", id="0", mkstream=True)
    await publish(redis_client, 0, 10)
    run_example(redis_url, "--consumer", "one", "--until-idle")
    groups = {g["name"].decode(): g for g in await redis_client.xinfo_groups("tiktok.comment")}
    assert groups["persister"]["last-delivered-id"] == b"0-0"
    assert groups["app"]["pending"] == 0
