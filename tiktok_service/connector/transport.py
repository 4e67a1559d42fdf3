"""A WebSocket frame reader that survives undecodable frames, with or without a proxy.

TikTokLive's reader (`WebcastConnect.__aiter__`) decodes each push frame inline; a frame it
cannot decode (bad gzip, not a protobuf) raises out of the receive loop and ends the
socket, losing whatever TikTok sends until we reconnect. `TolerantReader` decodes the same
way but drops and counts an undecodable frame and keeps reading. It is installed as the
client's connection class (`WebcastWSClient._connect_generator_class`), the one extension
point the library has for its socket; everything else (URL building, acks, heartbeats)
stays the library's.

Two classes, as in the library: `TolerantWebcastConnect` (direct) and
`TolerantWebcastProxyConnect` (through an HTTP CONNECT or SOCKS5 proxy: the library's
`WebcastProxyConnect`, which opens the socket through python-socks). `install` picks the
one matching the client's proxy setting, as the library itself does. Between two frames it
yields to the event loop, so the publisher drains the buffer during a burst (see below).

A rejected handshake is translated as the library translates it: status 400 or 200 with a
`Handshake-Msg` header is TikTok refusing us (`WebcastBlockedError`), not a network error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import WebcastBlockedError
from TikTokLive.client.ws.ws_connect import WebcastConnect, WebcastIterator, WebcastProxyConnect
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message, extract_websocket_options
from TikTokLive.proto import WebcastPushFrame
from websockets.legacy.exceptions import InvalidStatusCode

from tiktok_service.connector import metrics

log = logging.getLogger(__name__)


def blocked_error(exc: InvalidStatusCode) -> WebcastBlockedError | None:
    """The library's reading of a rejected handshake, or None for any other status."""
    reason = exc.headers.get("Handshake-Msg", "an unknown reason")
    if exc.status_code == 400:
        return WebcastBlockedError(f'WebSocket rejected by TikTok due to "400 Bad Request" with reason "{reason}"')
    if exc.status_code == 200:
        # TikTokLive: a socket signed with a session but opened without its cookie lands here too.
        return WebcastBlockedError(f'WebSocket rejected by TikTok due to "{reason}".')
    return None


class TolerantReader:
    """`__aiter__` for `WebcastConnect` subclasses: same frames, but a bad one is dropped, not fatal."""

    async def __aiter__(self: Any) -> WebcastIterator:
        try:
            async with self as protocol:
                self._ws = protocol
                self._ws_options = extract_websocket_options(protocol.response_headers)
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
                    # Let the other tasks run between frames. While frames are queued the
                    # library's loop never waits, so without this the publisher (and the
                    # watchdog) only ran when the socket went quiet: a burst piled up in
                    # the publish buffer and was written to Redis in one large batch.
                    await asyncio.sleep(0)
        except InvalidStatusCode as exc:
            blocked = blocked_error(exc)
            if blocked is None:
                raise
            raise blocked from exc
        finally:
            self._ws = None
            self._ws_options = None


class TolerantWebcastConnect(TolerantReader, WebcastConnect):  # type: ignore[misc]
    """Direct connection."""


class TolerantWebcastProxyConnect(TolerantReader, WebcastProxyConnect):  # type: ignore[misc]
    """Through the client's `ws_proxy` (HTTP CONNECT or SOCKS5, credentials included)."""


def install(client: TikTokLiveClient) -> None:
    """Make `client` read frames with the tolerant reader matching its proxy setting."""
    ws = client._ws
    ws._connect_generator_class = TolerantWebcastProxyConnect if ws._ws_proxy else TolerantWebcastConnect
