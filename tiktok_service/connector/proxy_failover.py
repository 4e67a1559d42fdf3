"""Which failures move a connector to its next proxy, and the rotation state of one connector.

`rotation_reason(exc)` is the predicate the connection loop asks after each failed attempt
(and the failure classification in `outcomes` may share): a bounded label when the failure
is one a different egress IP can cure, None otherwise.

Rotated on (TikTok judges the IP, or the proxy itself failed):
* `proxy`: the proxy refused us (bad credentials, CONNECT denied) or could not be reached;
* `blocked`: TikTok rejected the WebSocket handshake (`WebcastBlockedError`, another status);
* `rate_limited`: TikTok answered 429;
* `room_lookup`: the live page or room API gave no room (captcha or block pages look like
  this, and like "user not found" - the library's own comment says so);
* `unreachable`: TikTok could not be reached or answered too slowly through this proxy.

Not rotated: the sign server's answers (TikTokLive does not send sign requests through the
proxy, so another proxy cannot change them), offline users and age restrictions (TikTok's
answer about the room, not about us), and our own configuration errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
import python_socks
from TikTokLive.client.errors import (
    AgeRestrictedError,
    SignAPIError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
)
from TikTokLive.client.web.routes.fetch_is_live import MissingRoomIdInResponse
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError
from websockets.exceptions import InvalidHandshake

from tiktok_service.connector import metrics
from tiktok_service.domain.proxies import ProxyEndpoint, ProxyRotation, start_index

log = logging.getLogger(__name__)

#: Every label `rotation_reason` returns.
REASONS = frozenset({"proxy", "blocked", "rate_limited", "room_lookup", "unreachable"})
_CHAIN_DEPTH = 6  # TikTokLive raises "API fallback failed" *from* "live page failed"
_NEVER: tuple[type[BaseException], ...] = (SignAPIError, UserOfflineError, AgeRestrictedError)


def _reason(exc: BaseException) -> str | None:
    if isinstance(exc, httpx.ProxyError | python_socks.ProxyError | python_socks.ProxyConnectionError):
        return "proxy"
    if isinstance(exc, python_socks.ProxyTimeoutError):
        return "proxy"
    if isinstance(exc, WebcastBlockedError | InvalidHandshake):
        return "blocked"
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 429:
        return "rate_limited"
    if isinstance(exc, FailedParseRoomIdError | MissingRoomIdInResponse | UserNotFoundError):
        return "room_lookup"
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError):
        return "unreachable"
    return None


def rotation_reason(exc: BaseException) -> str | None:
    """Why `exc` calls for the next proxy (a short label), or None when another proxy would not help."""
    seen: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if seen is None or isinstance(seen, _NEVER):
            return None
        reason = _reason(seen)
        if reason is not None:
            return reason
        seen = seen.__cause__ or seen.__context__
    return None


def rotates_proxy(exc: BaseException) -> bool:
    return rotation_reason(exc) is not None


class ProxyFailover:
    """The proxies of one connector: which one the next client uses, and when to move on."""

    def __init__(self, proxies: Sequence[ProxyEndpoint], *, key: str) -> None:
        self.rotation = ProxyRotation(proxies, start=start_index(key, len(proxies)))
        metrics.PROXY_INDEX.set(self.rotation.index if proxies else -1)

    @property
    def current(self) -> ProxyEndpoint | None:
        return self.rotation.current

    def after_failure(self, exc: BaseException) -> str | None:
        """Called after each failed attempt: rotate when the failure calls for it; returns the reason."""
        reason = rotation_reason(exc)
        if reason is None or len(self.rotation) < 2:
            return reason
        previous = self.rotation.current
        current = self.rotation.rotate()
        metrics.PROXY_ROTATIONS.labels(reason=reason).inc()
        metrics.PROXY_INDEX.set(self.rotation.index)
        log.warning(
            "next proxy",
            extra={"reason": reason, "from": str(previous), "to": str(current), "index": self.rotation.index},
        )
        return reason
