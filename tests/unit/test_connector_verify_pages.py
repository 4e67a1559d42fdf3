"""Room lookups: TikTok's verify answer is a captcha; a user without a room is not."""

from __future__ import annotations

import json

import pytest
from TikTokLive.client.errors import UserNotFoundError, UserOfflineError
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError

from tiktok_service.connector import verify_pages
from tiktok_service.connector.verify_pages import CaptchaRequired, VerifyAwareHTMLRoute

#: TikTok's verify JSON in place of an API answer (carcabot/tiktok-signature issue #86).
VERIFY_JSON = {
    "code": "10000",
    "from": "",
    "type": "verify",
    "version": "",
    "region": "va",
    "subtype": "slide",
    "detail": "x" * 64,
    "verify_event": "",
    "fp": "verify_abcdefgh_ijklmnop",
}
#: The option script of TikTok's verify page (TikTok-Api issue #407, yt-dlp issue #3776).
VERIFY_PAGE = (
    "<!DOCTYPE html><html><head><title>TikTok</title><script>"
    'const option = {"title":"tiktok-verify-page","iid":"0","did":"0","app_name":"tiktok","aid":1284,'
    '"type":"verify","subtype":"slide","fp":"verify_0123"};</script></head><body></body></html>'
)


def sigi(live_room: object) -> str:
    state = json.dumps({"LiveRoom": live_room})
    return f'<html><script id="SIGI_STATE" type="application/json">{state}</script></html>'


def test_tiktoks_verify_answers_are_recognised() -> None:
    assert verify_pages.is_verify_json(VERIFY_JSON)
    assert verify_pages.is_verify_page(VERIFY_PAGE)
    assert verify_pages.is_verify_page(VERIFY_PAGE.replace('":"', '": "'))


def test_ordinary_answers_are_not_verify_answers() -> None:
    assert not verify_pages.is_verify_json({"data": {}, "message": "user_not_found", "statusCode": 19881007})
    assert not verify_pages.is_verify_json([{"type": "verify"}])
    assert not verify_pages.is_verify_page("<html><body>Something went wrong</body></html>")
    assert not verify_pages.is_verify_page(sigi({"liveRoomUserInfo": {"user": {"roomId": "7"}}}))


def test_the_live_page_route_raises_captcha_only_for_the_verify_page() -> None:
    with pytest.raises(CaptchaRequired):
        VerifyAwareHTMLRoute.parse_room_id(VERIFY_PAGE)
    # Anything else is the library's own reading.
    with pytest.raises(FailedParseRoomIdError):
        VerifyAwareHTMLRoute.parse_room_id("<html><body>Something went wrong</body></html>")
    with pytest.raises(UserNotFoundError):
        VerifyAwareHTMLRoute.parse_room_id(sigi(None))
    assert VerifyAwareHTMLRoute.parse_room_id(sigi({"liveRoomUserInfo": {"user": {"roomId": "7"}}})) == "7"


def test_a_live_page_with_an_empty_room_id_has_no_room_and_an_offline_user_is_offline() -> None:
    with pytest.raises(FailedParseRoomIdError):
        VerifyAwareHTMLRoute.parse_room_id(sigi({"liveRoomUserInfo": {"user": {"roomId": ""}}}))
    with pytest.raises(UserOfflineError):
        VerifyAwareHTMLRoute.parse_room_id(sigi({"liveRoomUserInfo": {"user": {"roomId": "", "status": 4}}}))


def test_the_room_api_answer_gives_the_room_id() -> None:
    assert verify_pages.room_id_of({"data": {"user": {"roomId": "7301"}, "liveRoom": {"status": 2}}}) == 7301


@pytest.mark.parametrize(
    "payload",
    [
        {"data": {"user": {"roomId": ""}}},  # the library's int('') ValueError
        {"data": {"user": {}}},
        {"data": {}},
        {"data": {"user": {"roomId": "0"}}},
    ],
)
def test_an_api_answer_without_a_room_is_a_user_who_cannot_stream(payload: dict[str, object]) -> None:
    with pytest.raises(FailedParseRoomIdError, match="can't stream"):
        verify_pages.room_id_of(payload)


def test_an_api_answer_without_a_room_for_a_user_who_is_not_live_is_offline() -> None:
    with pytest.raises(UserOfflineError):
        verify_pages.room_id_of({"data": {"user": {"roomId": ""}, "liveRoom": {"status": 4}}})
