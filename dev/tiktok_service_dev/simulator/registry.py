"""All rooms of one simulator process, addressable by username and by room id."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import cached_property

from .config import SimulatorConfig
from .fixtures import CapturedPayload, load_captured
from .room import Room
from .scenario import Scenario


class RoomRegistry:
    """Owns the rooms: creating, replacing and deleting them keeps both indexes consistent."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._by_username: dict[str, Room] = {}
        self._by_room_id: dict[int, Room] = {}

    @cached_property
    def captured(self) -> tuple[CapturedPayload, ...]:
        return load_captured(self.config.fixtures_dir)

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._by_username.values()))

    def __len__(self) -> int:
        return len(self._by_username)

    def get(self, username: str) -> Room | None:
        return self._by_username.get(username)

    def by_room_id(self, room_id: int) -> Room | None:
        return self._by_room_id.get(room_id)

    def lookup(self, username: str) -> Room | None:
        """A room for a TikTok-facing request; auto-creates one when the config says so."""
        room = self._by_username.get(username)
        if room is None and self.config.auto_create_rooms:
            room = self._create(username, dataclasses.replace(self.config.default_scenario, seed=None))
        return room

    async def put(self, username: str, scenario: Scenario) -> Room:
        """Create or replace a room (a replaced room's sockets are aborted)."""
        await self.delete(username)
        return self._create(username, scenario)

    def _create(self, username: str, scenario: Scenario) -> Room:
        room = Room(
            username,
            scenario,
            captured=self.captured if scenario.fixtures else (),
            send_timeout_s=self.config.send_timeout_s,
        )
        clash = self._by_room_id.get(room.room_id)
        if clash is not None:
            raise ValueError(f"room_id {room.room_id} is already used by @{clash.username}")
        self._by_username[username] = room
        self._by_room_id[room.room_id] = room
        room.start()
        return room

    async def delete(self, username: str) -> bool:
        room = self._by_username.pop(username, None)
        if room is None:
            return False
        self._by_room_id.pop(room.room_id, None)
        await room.stop()
        return True

    async def close(self) -> None:
        for username in list(self._by_username):
            await self.delete(username)
