"""Is the room age-restricted for us? One room-info request, read by our own rule.

TikTokLive raises `AgeRestrictedError` only from `fetch_room_info`, which a client does not
call unless asked (`start(fetch_room_info=True)`); without it an age-restricted room was never
recognised. We ask for it, but through `TolerantRoomInfoRoute`, which replaces the client's
route and differs from the library's in what it concludes:

* age-restricted only when TikTok says so: `data.prompts` (the library's own criterion; TikTok
  answers anonymous viewers of an 18+ LIVE with `{"data": {"message": ..., "prompts": ...},
  "status_code": 10011}`, TikTokLive issue #228) or `status_code` 4003110 (the LIVE is
  restricted, login required; seen by recorders such as tiktok-live-recorder);
* anything else it cannot read (an error page, a 404, a short payload) is not a reason to stop
  connecting: it is counted and the connection goes on, since the socket does not need the
  room info. The library would call a payload with one field "age-restricted".

The request is cheap and made only when it can matter: the runner asks for it on the first
attempt and after a failure, not on the reconnect after a healthy connection.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, Final

from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import AgeRestrictedError
from TikTokLive.client.web.routes.fetch_room_info import FetchRoomInfoRoute
from TikTokLive.client.web.web_settings import WebDefaults

log = logging.getLogger(__name__)

#: `status_code` of a room-info answer for a LIVE restricted to logged-in (adult) viewers.
STATUS_LIVE_RESTRICTED: Final = 4003110


class Verdict(StrEnum):
    OPEN = "open"
    AGE_RESTRICTED = "age_restricted"
    UNKNOWN = "unknown"


def verdict(payload: Any) -> Verdict:
    """Read a `/webcast/room/info/` answer (pure)."""
    if not isinstance(payload, dict):
        return Verdict.UNKNOWN
    data = payload.get("data")
    if isinstance(data, dict) and "prompts" in data:
        return Verdict.AGE_RESTRICTED
    if payload.get("status_code") == STATUS_LIVE_RESTRICTED:
        return Verdict.AGE_RESTRICTED
    if payload.get("status_code") == 0 and isinstance(data, dict) and data:
        return Verdict.OPEN
    return Verdict.UNKNOWN


class TolerantRoomInfoRoute(FetchRoomInfoRoute):  # type: ignore[misc]
    """`fetch_room_info` that raises only for an age restriction (see the module docstring)."""

    async def __call__(self, room_id: int | None = None, unique_id: str | None = None) -> dict[str, Any]:
        resolved = room_id or self._web.params.get("room_id")
        try:
            response = await self._web.get(
                url=WebDefaults.tiktok_webcast_url + "/room/info/", extra_params={"room_id": str(resolved)}
            )
            payload = response.json()
        except Exception as exc:  # the check is advisory: a failed request is not the room's answer
            log.info("room info unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            return {}
        found = verdict(payload)
        if found is Verdict.AGE_RESTRICTED:
            if self._web.cookies.get("sessionid"):
                raise AgeRestrictedError(
                    "Age restricted stream and the session was not accepted (expired, or an account under 18)."
                )
            raise AgeRestrictedError(
                "Age restricted stream. Cannot fetch room info. Pass sessionid to log in & bypass age restriction."
            )
        if found is Verdict.UNKNOWN:
            log.info("room info unreadable; connecting anyway", extra={"status_code": _status_of(payload)})
            return {}
        data: dict[str, Any] = payload["data"]
        return data


def _status_of(payload: Any) -> object:
    return payload.get("status_code") if isinstance(payload, dict) else None


def install(client: TikTokLiveClient) -> None:
    """Make `client.start(fetch_room_info=True)` use `TolerantRoomInfoRoute`."""
    client.web.fetch_room_info = TolerantRoomInfoRoute(client.web)
