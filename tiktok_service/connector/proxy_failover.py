"""The rotation state of one connector's proxy list.

When to move on is decided with every other failure decision in `outcomes` (`Decision.rotate_proxy`:
the proxy failed, TikTok blocked or throttled this egress IP, the room lookup came back empty as
captcha pages do, or TikTok could not be reached through it). Not rotated: the sign server's
answers (TikTokLive does not send sign requests through the proxy), offline users and age
restrictions (TikTok's answer about the room, not about us), our own configuration errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tiktok_service.connector import metrics
from tiktok_service.domain.proxies import ProxyEndpoint, ProxyRotation, start_index

log = logging.getLogger(__name__)


class ProxyFailover:
    """The proxies of one connector: which one the next client uses, and when to move on."""

    def __init__(self, proxies: Sequence[ProxyEndpoint], *, key: str) -> None:
        self.rotation = ProxyRotation(proxies, start=start_index(key, len(proxies)))
        metrics.PROXY_INDEX.set(self.rotation.index if proxies else -1)

    @property
    def current(self) -> ProxyEndpoint | None:
        return self.rotation.current

    def rotate(self, reason: str) -> None:
        """Move to the next proxy (the failure policy in `outcomes` decides when: `Decision.rotate_proxy`)."""
        if len(self.rotation) < 2:
            return
        previous = self.rotation.current
        current = self.rotation.rotate()
        metrics.PROXY_ROTATIONS.labels(reason=reason).inc()
        metrics.PROXY_INDEX.set(self.rotation.index)
        log.warning(
            "next proxy",
            extra={"reason": reason, "from": str(previous), "to": str(current), "index": self.rotation.index},
        )
