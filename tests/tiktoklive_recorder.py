"""A recorder of the REAL TikTokLive client's events, for tests that drive it against the simulator."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.events.proto_events import EVENT_MAPPINGS

DEADLINE_S = 30.0


class Recorder:
    """Collects a client's events by class and lets a test wait on a condition over them."""

    def __init__(self, client: TikTokLiveClient, classes: Sequence[type]) -> None:
        self.client = client
        self.events: dict[type, list[Any]] = defaultdict(list)
        self._changed = asyncio.Event()
        for event_type in classes:
            client.add_listener(event_type, self._record)

    def _record(self, event: Any) -> None:  # sync handler: must never raise
        self.events[type(event)].append(event)
        self._changed.set()

    def of(self, event_type: type) -> list[Any]:
        return self.events[event_type]

    def ids(self, event_type: type) -> list[int]:
        return [e.common.msg_id for e in self.events[event_type]]

    def seen(self) -> set[int]:
        """msg_ids of every recorded message of a mapped method."""
        return {e.common.msg_id for t in EVENT_MAPPINGS.values() for e in self.events[t]}

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
