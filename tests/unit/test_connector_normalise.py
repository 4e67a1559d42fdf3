"""Normalising TikTokLive events: field mapping, drift tolerance, and the captured 2023 payloads."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from TikTokLive.events import proto_events as pe
from TikTokLive.events.custom_events import FollowEvent, ShareEvent
from TikTokLive.proto import CommonMessageData
from TikTokLive.proto.custom_proto import ExtendedGift, ExtendedUser
from TikTokLiveProto.v3.webcast.model.message.common import Text

from tiktok_service.connector import normalise
from tiktok_service.domain.events import EventType, User

CTX = normalise.Context(livestream_id="ls-1", room_id=77)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tiktok-captured-2023"
NOW = 1_700_000_000_000


def common(msg_id: int, *, display_key: str = "") -> CommonMessageData:
    return CommonMessageData(msg_id=msg_id, create_time=1_700_000_001_000, display_text=Text(key=display_key))


def user() -> ExtendedUser:
    return ExtendedUser(id=42, display_id="alice", nickname="Alice")


def test_a_comment_keeps_text_user_time_and_msg_id() -> None:
    result = normalise.comment(pe.CommentEvent(common=common(11), content="hi", user=user()), CTX, NOW)
    envelope = result.envelope
    assert (envelope.id, envelope.type, envelope.room_id) == ("11", EventType.COMMENT, 77)
    assert envelope.time_ms == 1_700_000_001_000
    assert envelope.user == User(42, "alice", "Alice")
    assert envelope.data == {"text": "hi"}
    assert not result.drift


def test_a_message_without_msg_id_gets_a_stable_content_id_and_is_flagged() -> None:
    event = pe.CommentEvent(content="no id", user=user())
    first, second = normalise.comment(event, CTX, NOW), normalise.comment(event, CTX, NOW + 5)
    assert first.drift and first.envelope.id.startswith("h")
    assert first.envelope.id == second.envelope.id
    assert first.envelope.time_ms == NOW


def test_likes_viewers_and_joins_carry_their_numbers() -> None:
    like = normalise.like(pe.LikeEvent(common=common(1), count=5, total=500, user=user()), CTX, NOW).envelope
    assert like.data == {"count": 5, "total": 500}
    seq = normalise.viewers(pe.RoomUserSeqEvent(common=common(2), total=321, total_user=4000), CTX, NOW).envelope
    assert seq.data == {"viewer_count": 321, "total_viewers": 4000} and seq.user is None
    join = normalise.join(pe.JoinEvent(common=common(3), member_count=9, user=user()), CTX, NOW).envelope
    assert join.type is EventType.JOIN


def test_follow_and_share_are_told_apart_and_other_social_messages_are_kept_as_social() -> None:
    follow = normalise.social(
        FollowEvent(common=common(1, display_key="pm_main_follow_message"), user=user()), CTX, NOW
    )
    share = normalise.social(ShareEvent(common=common(2, display_key="pm_mt_guidance_share"), user=user()), CTX, NOW)
    assert follow is not None and follow.envelope.type is EventType.FOLLOW
    assert share is not None and share.envelope.type is EventType.SHARE
    other = normalise.social(pe.SocialEvent(common=common(3), share_type=7), CTX, NOW)
    assert other.envelope.type is EventType.SOCIAL and other.envelope.data == {"share_type": "7"}


def test_a_gift_step_describes_the_gift_and_its_streak_key() -> None:
    event = pe.GiftEvent(
        common=common(9),
        gift_id=5655,
        repeat_count=3,
        repeat_end=1,
        group_id=8,
        user=user(),
        gift=ExtendedGift(id=5655, name="Rose", diamond_count=1, type=1),
    )
    step, description, who, drift = normalise.gift_step(event, NOW)
    assert step.key == (42, 5655, 8) and step.repeat_end and step.streakable and step.repeat_count == 3
    assert description == {"gift_id": 5655, "gift_name": "Rose", "diamond_count": 1, "streakable": True, "group_id": 8}
    assert who == User(42, "alice", "Alice") and not drift


def test_unknown_methods_are_kept_with_a_bounded_payload() -> None:
    envelope = normalise.unknown("WebcastFutureMessage", 5, b"x" * 10_000, CTX, NOW)
    assert envelope.type is EventType.UNKNOWN and envelope.id == "5"
    assert envelope.data["payload_size"] == 10_000 and envelope.data["truncated"]
    assert len(base64.b64decode(envelope.data["payload_b64"])) == normalise.UNKNOWN_PAYLOAD_LIMIT


CAPTURED = [
    ("MessageWebcastChatMessage.bin", pe.CommentEvent, normalise.comment),
    ("LikeMessage.bin", pe.LikeEvent, normalise.like),
    ("WebcastMemberMessage.bin", pe.JoinEvent, normalise.join),
]


@pytest.mark.parametrize(("name", "event_class", "fn"), CAPTURED)
def test_payloads_captured_from_tiktok_in_2023_normalise_without_error(
    name: str, event_class: type, fn: object
) -> None:
    event = event_class().parse(base64.b64decode((FIXTURES / name).read_bytes()))
    result = fn(event, CTX, NOW)  # type: ignore[operator]
    assert result.envelope.id
    assert result.envelope.encode()


def test_the_captured_gift_and_social_payloads_normalise_without_error() -> None:
    gift = pe.GiftEvent().parse(base64.b64decode((FIXTURES / "MessageWebcastGiftMessage.bin").read_bytes()))
    _, description, _, _ = normalise.gift_step(gift, NOW)
    assert description["gift_id"] == 5655
    social = pe.SocialEvent().parse(base64.b64decode((FIXTURES / "MessageWebcastSocialMessage.bin").read_bytes()))
    normalise.social(social, CTX, NOW)


def test_a_like_whose_numbers_arrive_in_the_wrong_shape_is_flagged_as_drift() -> None:
    event = pe.LikeEvent().parse(base64.b64decode((FIXTURES / "LikeMessage.bin").read_bytes()))
    result = normalise.like(event, CTX, NOW)
    assert result.drift == (not isinstance(event.count, int) or not isinstance(event.total, int))
    assert isinstance(result.envelope.data["count"], int)
