"""Test helpers: condition waits, expected events from the simulator's sent log, stream reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from tiktok_service.connector import runner as connector_runner
from tiktok_service.connector.redis_client import RedisClient, redis_options
from tiktok_service.domain import naming
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings

KIND_TO_TYPE = {
    "comment": "tiktok.comment",
    "like": "tiktok.like",
    "join": "tiktok.join",
    "follow": "tiktok.follow",
    "share": "tiktok.share",
    "viewer": "tiktok.viewer",
    "unknown": "tiktok.unknown",
    "live_end": "tiktok.live_end",
}


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll until `predicate` holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def expected_events(sent: list[dict[str, Any]]) -> dict[str, str]:
    """Event id -> type the connector must publish for what the simulator sent.

    A gift streak is one event: the id of its final message, or of its last step when the
    streak never ended (the connector closes it as incomplete).
    """
    expected: dict[str, str] = {}
    open_streaks: dict[tuple[Any, ...], str] = {}
    for message in sent:
        kind, msg_id = message["kind"], str(message["msg_id"])
        if kind == "gift":
            data = message["data"]
            if not data.get("streakable"):
                expected[msg_id] = "tiktok.gift"
                continue
            key = ((message.get("user") or {}).get("id"), data["gift_id"], data["group_id"])
            if data.get("repeat_end"):
                open_streaks.pop(key, None)
                expected[msg_id] = "tiktok.gift"
            else:
                open_streaks[key] = msg_id
        elif kind in KIND_TO_TYPE:
            expected[msg_id] = KIND_TO_TYPE[kind]
    for msg_id in open_streaks.values():
        expected[msg_id] = "tiktok.gift"
    return expected


async def livestream_entries(redis: aioredis.Redis, livestream_id: str) -> list[tuple[str, str]]:
    """(type, id) of every entry of the per-livestream stream, in stream order."""
    entries = await redis.xrange(naming.livestream_stream(livestream_id))
    return [(f[naming.FIELD_TYPE].decode(), f[naming.FIELD_ID].decode()) for _, f in entries]


async def tiktok_ids(redis: aioredis.Redis, livestream_id: str) -> list[str]:
    """Ids of the TikTok-originated events (not the connector's connect/disconnect markers)."""
    return [
        event_id
        for event_type, event_id in await livestream_entries(redis, livestream_id)
        if event_type not in {"tiktok.connect", "tiktok.disconnect"}
    ]


class Running:
    """A connector running in this process as a task, as its pod would run it.

    It talks to Redis with its own client, made from `settings.redis_url` as the pod makes it;
    `redis` is the test's client, for reading what the connector wrote.
    """

    def __init__(self, settings: ConnectorSettings, redis: aioredis.Redis) -> None:
        connector_runner.configure_tiktok_urls(settings)
        self.settings = settings
        self.redis = redis
        self.connector_redis = RedisClient.from_url(settings.redis_url, **redis_options(settings))
        self.runner = connector_runner.ConnectorRunner(settings, redis=self.connector_redis, seed=1)
        self.task: asyncio.Task[ExitCode] = asyncio.create_task(self._run())

    async def _run(self) -> ExitCode:
        try:
            return await self.runner.run()
        finally:
            await self.connector_redis.aclose()

    async def stop(self, timeout: float = 30) -> ExitCode:
        self.runner.stop()
        return await asyncio.wait_for(self.task, timeout)

    async def exit_code(self, timeout: float = 60) -> ExitCode:
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)
