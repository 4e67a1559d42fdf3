"""A WebSocket frame reader that survives undecodable frames.

TikTokLive's reader (`WebcastConnect.__aiter__`) decodes each push frame inline; a frame it
cannot decode (bad gzip, not a protobuf) raises out of the receive loop and ends the
socket, losing whatever TikTok sends until we reconnect. This subclass decodes the same way
but drops and counts an undecodable frame and keeps reading. It is installed as the
client's connection class (`WebcastWSClient._connect_generator_class`), the one extension
point the library has for its socket; everything else (URL building, acks, heartbeats)
stays the library's, and a refused handshake is translated into `WebcastBlockedError` as the
library's own reader does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import WebcastBlockedError
from TikTokLive.client.ws.ws_connect import WebcastConnect, WebcastIterator
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message, extract_websocket_options
from TikTokLive.proto import WebcastPushFrame
from websockets.legacy.exceptions import InvalidStatusCode

from tiktok_service.connector import metrics

log = logging.getLogger(__name__)


def blocked_error(status_code: int, headers: Mapping[str, str]) -> WebcastBlockedError | None:
    """The library's translation of a refused upgrade (`WebcastConnect.__aiter__`): 200/400 = blocked."""
    if status_code not in (200, 400):
        return None
    reason = headers.get("Handshake-Msg", "an unknown reason")
    return WebcastBlockedError(f'WebSocket rejected by TikTok ({status_code}) with reason "{reason}"')


class TolerantWebcastConnect(WebcastConnect):  # type: ignore[misc]
    async def __aenter__(self) -> Any:
        # The upgrade happens here (`async with self` in `__aiter__`); keep the library's
        # WebcastBlockedError for a handshake TikTok answers 200/400 with a Handshake-Msg.
        try:
            return await super().__aenter__()
        except InvalidStatusCode as exc:
            blocked = blocked_error(int(exc.status_code), exc.headers)
            if blocked is None:
                raise
            raise blocked from exc

    async def __aiter__(self) -> WebcastIterator:
        async with self as protocol:
            self._ws = protocol
            self._ws_options = extract_websocket_options(protocol.response_headers)
            try:
                yield None, self._initial_response
                async for payload in protocol:
                    frame_bytes = payload.encode() if isinstance(payload, str) else payload
                    try:
                        frame = WebcastPushFrame().parse(frame_bytes)
                        if frame.payload_type != "msg":
                            continue
                        response = extract_webcast_response_message(frame, logger=self._logger)
                    except Exception as exc:
                        metrics.EVENTS_DROPPED.labels(reason="malformed_frame").inc()
                        log.warning(
                            "dropped an undecodable frame",
                            extra={"bytes": len(frame_bytes), "error": f"{type(exc).__name__}: {exc}"[:200]},
                        )
                        continue
                    yield frame, response
            finally:
                self._ws = None
                self._ws_options = None


def install(client: TikTokLiveClient, **_: Any) -> None:
    """Make `client` read frames with `TolerantWebcastConnect` (no proxy support needed here)."""
    client._ws._connect_generator_class = TolerantWebcastConnect
