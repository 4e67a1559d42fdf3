"""A stop that lands while the attempt is already ending starts nothing: the attempt disposes of its client."""

from __future__ import annotations

import asyncio
from typing import cast

from TikTokLive import TikTokLiveClient

from tiktok_service.connector.redis_client import Endpoint, RedisClient
from tiktok_service.connector.runner import ConnectorRunner
from tiktok_service.domain.connector_status import ConnectorPhase
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.ports import free_ports


def live_runner() -> ConnectorRunner:
    (port,) = free_ports(1)  # never connected to: stop() does no I/O
    settings = ConnectorSettings(livestream_id="ls-1", username="alice", redis_url=f"redis://127.0.0.1:{port}/0")
    runner = ConnectorRunner(settings, redis=RedisClient(Endpoint(host="127.0.0.1", port=port)))
    runner.status.phase = ConnectorPhase.LIVE
    runner._client = cast(TikTokLiveClient, object())
    return runner


async def test_a_stop_after_the_attempt_began_ending_starts_no_close_and_cancels_nothing() -> None:
    runner = live_runner()
    attempt = asyncio.create_task(asyncio.Event().wait())
    runner._attempt = cast("asyncio.Task[object]", attempt)  # type: ignore[assignment]
    runner._attempt_ending = True
    try:
        runner.stop()
        await asyncio.sleep(0)
        assert runner._closing is None and not attempt.done()
    finally:
        attempt.cancel()


async def test_a_stop_of_a_live_attempt_starts_the_bounded_close() -> None:
    runner = live_runner()
    attempt = asyncio.create_task(asyncio.Event().wait())
    runner._attempt = cast("asyncio.Task[object]", attempt)  # type: ignore[assignment]
    try:
        runner.stop()
        assert runner._closing is not None
        runner._closing.cancel()
    finally:
        attempt.cancel()
