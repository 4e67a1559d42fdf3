"""The status heartbeat ends when the runner stops it, even when its cancellation is lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.connector.status_reporter import StatusReporter
from tiktok_service.domain.connector_status import ConnectorStatus


class SwallowingReporter(StatusReporter):
    """Its write swallows a cancel, as redis-py's writes can on Python 3.11.

    redis-py wraps each socket write in `asyncio.wait_for`, which on 3.11 returns the result
    instead of raising when the cancel arrives as the write completes (CPython gh-86296).
    """

    def __init__(self) -> None:
        super().__init__(cast(RedisClient, None), "ls", ConnectorStatus(), interval_s=0.01, ttl_s=15)
        self.writes = 0
        self.writing = asyncio.Event()
        self.wrote_three = asyncio.Event()

    async def write(self, ttl_s: int) -> bool:
        self.writes += 1
        self.writing.set()
        if self.writes >= 3:
            self.wrote_three.set()
        # The write completes as the cancel arrives: its result wins, the cancel is lost.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return True


async def test_a_stopped_heartbeat_ends_even_when_its_cancel_is_swallowed() -> None:
    reporter = SwallowingReporter()
    task = asyncio.create_task(reporter.run())
    await reporter.writing.wait()
    reporter.stop()
    task.cancel()
    await asyncio.wait_for(task, 5)
    assert reporter.writes == 1


async def test_a_running_heartbeat_keeps_writing() -> None:
    reporter = SwallowingReporter()
    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.wait_for(reporter.wrote_three.wait(), 5)
    finally:
        reporter.stop()
        await asyncio.wait_for(task, 5)
