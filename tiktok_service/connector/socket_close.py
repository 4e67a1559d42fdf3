"""The close frame the server sent, kept for the decision after the socket ended.

TikTokLive ends its receive loop quietly when it notices between two frames that the socket
is no longer open (`WebcastWSClient.connect`: `if not self.connected: break`), whatever the
close code: a 4429 or 4555 from the push server then looks like a clean close. `watch` wraps the
client's connection class (whichever is installed: ours, or a proxying one) so the opened
protocol is remembered and its received close frame (`close_rcvd`) can be read afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from TikTokLive import TikTokLiveClient


@dataclass(slots=True)
class CloseSeen:
    """The protocol of one attempt's socket, once opened."""

    protocol: Any = None

    @property
    def code(self) -> int | None:
        """The close code the server sent (None: no close frame received, or never opened)."""
        received = getattr(self.protocol, "close_rcvd", None)
        return int(received.code) if received is not None else None

    @property
    def reason(self) -> str:
        received = getattr(self.protocol, "close_rcvd", None)
        return str(received.reason) if received is not None else ""


def watch(client: TikTokLiveClient) -> CloseSeen:
    """Remember the protocol `client`'s next socket opens with (call after the transport is installed)."""
    seen = CloseSeen()
    base: type[Any] = client._ws._connect_generator_class

    class Watched(base):  # type: ignore[misc]
        async def __aenter__(self) -> Any:
            protocol = await super().__aenter__()
            seen.protocol = protocol
            return protocol

    client._ws._connect_generator_class = Watched
    return seen
