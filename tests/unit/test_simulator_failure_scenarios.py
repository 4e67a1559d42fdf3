"""The simulator's failure scenarios: what TikTok answers instead of the room (pure parts)."""

from __future__ import annotations

import pytest
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError, FetchRoomIdLiveHTMLRoute

from tiktok_service.connector import room_check
from tiktok_service_dev.simulator import faults
from tiktok_service_dev.simulator.scenario import Scenario

ROOM = {"id": 7, "id_str": "7", "status": 2, "title": "t", "owner": {"display_id": "alice"}}


def test_an_age_restricted_room_withholds_its_info_from_a_viewer_without_a_session() -> None:
    anonymous = faults.room_info(ROOM, age_restricted=True, cookies={"ttwid": "x"}, now_ms=1)
    assert anonymous["status_code"] == 10011 and "prompts" in anonymous["data"]  # type: ignore[operator]
    assert room_check.verdict(anonymous) is room_check.Verdict.AGE_RESTRICTED


def test_an_age_restricted_room_shows_its_info_to_a_logged_in_viewer() -> None:
    logged_in = faults.room_info(ROOM, age_restricted=True, cookies={"sessionid": "abc123"}, now_ms=1)
    assert logged_in["data"] == ROOM and logged_in["status_code"] == 0
    assert room_check.verdict(logged_in) is room_check.Verdict.OPEN


def test_a_cleared_session_cookie_is_no_session() -> None:
    # TikTokLive's set_session(None, None) sets the cookies to "".
    cookies = {"sessionid": "", "sessionid_ss": "", "sid_tt": ""}
    assert room_check.verdict(faults.room_info(ROOM, age_restricted=True, cookies=cookies, now_ms=1)) is (
        room_check.Verdict.AGE_RESTRICTED
    )
    assert not faults.has_session({"sessionid_ss": "abc"})  # TikTok reads sessionid


def test_a_room_without_restriction_shows_its_info_to_everyone() -> None:
    assert faults.room_info(ROOM, age_restricted=False, cookies={}, now_ms=1)["data"] == ROOM


def test_the_captcha_page_has_no_sigi_state_so_the_librarys_html_lookup_fails() -> None:
    with pytest.raises(FailedParseRoomIdError):
        FetchRoomIdLiveHTMLRoute.parse_room_id(faults.captcha_page("0" * 32))


def test_the_captcha_json_is_tiktoks_verify_answer_without_a_message() -> None:
    body = faults.captcha_json("ab" * 16)
    assert body["type"] == "verify" and body["code"] == "10000" and "message" not in body


def test_a_refused_handshake_carries_tiktoks_headers() -> None:
    status, headers = faults.handshake_refusal(200, "DEVICE_BLOCKED", "log")
    assert status == 200 and headers["Handshake-Msg"] == "DEVICE_BLOCKED" and headers["Handshake-Status"] == "415"
    assert faults.handshake_refusal(400, "illegal secret key", "log")[1]["Handshake-Status"] == "417"


def test_fault_counts_limit_how_often_a_fault_strikes() -> None:
    assert [faults.applies(2, seen) for seen in range(4)] == [True, True, False, False]
    assert all(faults.applies(-1, seen) for seen in range(100))
    assert not faults.applies(0, 0)


def test_failure_fields_are_validated_and_round_trip() -> None:
    scenario = Scenario.from_dict({"captcha": 2, "handshake_blocked": -1, "close_code": 4429, "close_after": 5})
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    for bad in ({"captcha": -2}, {"handshake_status": 101}, {"close_code": 1006}, {"close_after": -1}):
        with pytest.raises(ValueError):
            Scenario.from_dict(bad)


def test_the_room_checks_verdict_stops_only_for_an_announced_restriction() -> None:
    assert room_check.verdict({"data": {}, "status_code": 4003110}) is room_check.Verdict.AGE_RESTRICTED
    assert room_check.verdict({"data": {"id": 1}, "status_code": 0}) is room_check.Verdict.OPEN
    # The library would call one field "age-restricted"; we only say we could not tell.
    assert room_check.verdict({"data": {}, "status_code": 0}) is room_check.Verdict.UNKNOWN
    assert room_check.verdict("<html>") is room_check.Verdict.UNKNOWN
    assert room_check.verdict({"status_code": 404}) is room_check.Verdict.UNKNOWN
