"""Room lookups that tell TikTok's verification (captcha) answer from a user without a room.

TikTokLive finds the room id in the live page's SIGI_STATE and, when that fails, asks the API
(`/api-live/user/room/`). When TikTok wants a captcha solved it answers either with its verify
page (HTML whose option script says `"title":"tiktok-verify-page"` and `"type":"verify"`;
TikTok-Api issue #407, yt-dlp issue #3776) or, in place of the API's JSON, with its verify JSON
(`{"code": "10000", "type": "verify", "subtype": "slide", "fp": "verify_...", ...}`, no
`message`). The library cannot tell these apart from a user who cannot stream: they end as a
`KeyError`, a `JSONDecodeError` or a `FailedParseRoomIdError`. The routes installed here read
the answer first and raise `CaptchaRequired` when, and only when, it is TikTok's verify answer;
otherwise they behave as the library's routes do, except that a `roomId` that is missing or
empty (TikTok sends `""`: streamlink issue #6380) is the library's "no roomId" /
"That user can't stream" (`FailedParseRoomIdError`) rather than the `ValueError` of `int("")`,
and an API answer without a room for a user who is not live (`liveRoom.status` 4, the
library's own live criterion) is `UserOfflineError`.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import TikTokLiveError, UserNotFoundError, UserOfflineError
from TikTokLive.client.web.routes.fetch_room_id_api import FetchRoomIdAPIRoute
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError, FetchRoomIdLiveHTMLRoute
from TikTokLive.client.web.web_settings import WebDefaults

#: Markers of TikTok's verify page (its option script).
_PAGE_MARKERS: Final = ('"title":"tiktok-verify-page"', '"type":"verify"')
#: `liveRoom.status` of a user who is not live (TikTokLive's `fetch_is_live_unique_id`).
_STATUS_OFFLINE: Final = 4


class CaptchaRequired(TikTokLiveError):  # type: ignore[misc]
    """TikTok answered a room lookup with its verification (captcha) page or JSON."""


def is_verify_json(payload: Any) -> bool:
    """TikTok's verify JSON in place of an API answer (pure)."""
    return isinstance(payload, dict) and payload.get("type") == "verify"


def is_verify_page(html: str) -> bool:
    """TikTok's verify page in place of a page (pure)."""
    compact = html.replace(" ", "")
    return any(marker in compact for marker in _PAGE_MARKERS)


def room_id_of(payload: dict[str, Any]) -> int:
    """The room id of an `/api-live/user/room/` answer that is not TikTok's verify JSON (pure).

    Raises `UserOfflineError` for a user who is not live and `FailedParseRoomIdError` for a
    user without a room, as the library's route means to.
    """
    data = payload.get("data")
    user = data.get("user") if isinstance(data, dict) else None
    live_room = data.get("liveRoom") if isinstance(data, dict) else None
    raw = user.get("roomId") if isinstance(user, dict) else None
    if _is_room_id(raw):
        return int(str(raw))
    if isinstance(live_room, dict) and live_room.get("status") == _STATUS_OFFLINE:
        raise UserOfflineError("The requested TikTok LIVE user is offline.")
    raise FailedParseRoomIdError("That user can't stream, or you might be blocked by TikTok.")


def _is_room_id(raw: object) -> bool:
    return isinstance(raw, str | int) and str(raw).isdigit() and int(raw) > 0


class VerifyAwareHTMLRoute(FetchRoomIdLiveHTMLRoute):  # type: ignore[misc]
    """`fetch_room_id_from_html` that raises `CaptchaRequired` for TikTok's verify page."""

    @classmethod
    def parse_room_id(cls, html: str) -> str:
        if cls.SIGI_PATTERN.search(html) is None and is_verify_page(html):
            raise CaptchaRequired("TikTok answered the live page with its verification page (captcha).")
        room_id: str = super().parse_room_id(html)
        if not _is_room_id(room_id):  # roomId "" (streamlink issue #6380): the library's "no roomId"
            raise FailedParseRoomIdError("SIGI_STATE did not include a roomId.")
        return room_id


class VerifyAwareAPIRoute(FetchRoomIdAPIRoute):  # type: ignore[misc]
    """`fetch_room_id_from_api` that raises `CaptchaRequired` for TikTok's verify answer."""

    async def __call__(self, unique_id: str) -> int:
        response: httpx.Response = await self._web.get(
            url=WebDefaults.tiktok_app_url + "/api-live/user/room/",
            extra_params={"uniqueId": unique_id, "sourceType": 54},
        )
        try:
            payload = response.json()
        except json.JSONDecodeError:
            if is_verify_page(response.text):
                raise CaptchaRequired("TikTok answered the room API with its verification page (captcha).") from None
            raise
        if is_verify_json(payload):
            raise CaptchaRequired("TikTok answered the room API with its verification JSON (captcha).")
        if isinstance(payload, dict) and payload.get("message") == "user_not_found":
            raise UserNotFoundError(
                unique_id,
                f"The requested user '{unique_id}' is not capable of going LIVE on TikTok, "
                "or has never gone live on TikTok, or does not exist.",
            )
        return room_id_of(payload if isinstance(payload, dict) else {})


def install(client: TikTokLiveClient) -> None:
    """Make `client.start()` look the room up through the verify-aware routes."""
    client.web.fetch_room_id_from_html = VerifyAwareHTMLRoute(client.web)
    client.web.fetch_room_id_from_api = VerifyAwareAPIRoute(client.web)
