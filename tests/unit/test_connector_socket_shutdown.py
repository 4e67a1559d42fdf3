"""The bounded socket close never raises, also when called again after it cancelled the receive loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import pytest
from TikTokLive import TikTokLiveClient

from tiktok_service.connector import socket_shutdown


class StuckClient:
    """A client as the library leaves it when TikTok does not answer: `disconnect()` awaits the receive loop."""

    def __init__(self) -> None:
        self._event_loop_task: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())

    async def disconnect(self) -> None:
        # As `TikTokLiveClient.disconnect`: the loop task is awaited (only `Exception` is caught).
        with contextlib.suppress(Exception):
            await self._event_loop_task


async def test_a_second_close_after_the_receive_loop_was_cancelled_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket_shutdown, "LOOP_END_TIMEOUT_S", 0.05)
    client = cast(TikTokLiveClient, StuckClient())
    loop_task = cast(Any, client)._event_loop_task

    assert await socket_shutdown.close(client, None, timeout_s=0.05) is False  # abandoned, the loop cancelled
    await asyncio.sleep(0)
    assert loop_task.cancelled()

    # The library still holds the cancelled loop task: its disconnect() now ends cancelled.
    assert await asyncio.wait_for(socket_shutdown.close(client, None, timeout_s=1.0), 5) is True
