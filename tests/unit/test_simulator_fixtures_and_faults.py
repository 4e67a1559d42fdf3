"""Captured-payload replay and malformed frames, checked against TikTokLive's own parsing."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import pytest
from pydantic import ValidationError
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message
from TikTokLive.events.proto_events import EVENT_MAPPINGS
from TikTokLive.proto import WebcastChatMessage, WebcastPushFrame

from tiktok_service_dev.simulator.faults import OVERSIZED_BYTES, build_malformed
from tiktok_service_dev.simulator.fixtures import (
    CAPTURED_METHODS,
    fixture_events,
    load_captured,
)

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "tiktok-captured-2023"


def test_embedded_copy_matches_the_captured_fixture_files() -> None:
    assert load_captured() == load_captured(FIXTURES_DIR)


def test_fixture_events_carry_the_payloads_own_msg_ids() -> None:
    captured = load_captured()
    events = fixture_events(captured)
    assert [e.method for e in events] == list(CAPTURED_METHODS.values())
    for e, c in zip(events, captured, strict=True):
        parsed = EVENT_MAPPINGS[e.method]().parse(c.payload)
        assert e.raw == c.payload
        assert e.msg_id == parsed.common.msg_id
        # LikeMessage.bin is really a member message; the library finds no user where a like has one.
        parsed_user = getattr(parsed, "user", None)
        assert (e.user is None) == (parsed_user is None)
        if e.user is not None:
            assert (e.user.id, e.user.unique_id) == (parsed_user.id, parsed_user.display_id)


def test_embedded_payloads_are_base64_of_the_captures() -> None:
    for c in load_captured():
        assert base64.b64decode(base64.b64encode(c.payload)) == c.payload
        assert len(c.payload) > 1000


def _frame(kind: str):
    return build_malformed(kind, msg_id=123, room_id=456, seq_id=1, log_id=2, now_ms=1_700_000_000_000)


def test_bad_gzip_breaks_the_library_decompression() -> None:
    frame = WebcastPushFrame().parse(_frame("bad_gzip").frame)
    with pytest.raises((zlib.error, OSError, EOFError)):
        extract_webcast_response_message(frame)


def test_truncated_payload_fails_the_library_parse() -> None:
    bad = _frame("truncated")
    result = extract_webcast_response_message(WebcastPushFrame().parse(bad.frame))
    assert [m.msg_id for m in result.messages] == [123]
    with pytest.raises(EOFError):
        WebcastChatMessage().parse(result.messages[0].payload)


def test_unknown_method_frame_parses_but_is_unknown() -> None:
    bad = _frame("unknown_method")
    result = extract_webcast_response_message(WebcastPushFrame().parse(bad.frame))
    assert result.messages[0].method == bad.method
    assert bad.method not in EVENT_MAPPINGS


def test_oversized_frame_exceeds_the_websocket_default_limit() -> None:
    bad = _frame("oversized")
    assert len(bad.frame) > OVERSIZED_BYTES > 1024 * 1024


def test_not_a_push_frame_fails_the_library_parse() -> None:
    with pytest.raises(ValidationError):
        WebcastPushFrame().parse(_frame("not_pushframe").frame)
