"""An in-memory WebSocket for the simulator's room: records the frames a room sends (no network)."""

from __future__ import annotations

from typing import Any

from TikTokLive.client.ws.ws_utils import extract_webcast_response_message
from TikTokLive.proto import WebcastPushFrame


class FakeSocket:
    """Records frames; can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.frames: list[bytes] = []
        self.aborted = False
        self.closed_with: tuple[int, bytes] | None = None
        self.fail = fail

    @property
    def closed(self) -> bool:
        return self.aborted or self.closed_with is not None

    async def send(self, frame: bytes) -> None:
        if self.fail:
            raise ConnectionResetError("gone")
        self.frames.append(frame)

    def abort(self) -> None:
        self.aborted = True

    async def close(self, code: int, message: bytes) -> None:
        self.closed_with = (code, message)

    def messages(self) -> list[Any]:
        out: list[Any] = []
        for raw in self.frames:
            frame = WebcastPushFrame().parse(raw)
            out.extend(extract_webcast_response_message(frame).messages)
        return out
