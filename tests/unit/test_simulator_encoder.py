"""The simulator's hand-written protobuf encoders, checked against TikTokLive's own decoders."""

from __future__ import annotations

import gzip

import pytest
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message
from TikTokLive.events.proto_events import EVENT_MAPPINGS
from TikTokLive.proto import (
    Gift,
    HeartBeatMessage,
    ProtoMessageFetchResult,
    ProtoMessageFetchResultBaseProtoMessage,
    User,
    WebcastChatMessage,
    WebcastControlMessage,
    WebcastGiftMessage,
    WebcastLikeMessage,
    WebcastMemberMessage,
    WebcastPushFrame,
    WebcastRoomUserSeqMessage,
    WebcastSocialMessage,
)
from TikTokLive.proto.custom_proto import ControlAction, ExtendedGift, ExtendedUser

from tiktok_service_dev.simulator.messages import (
    DISPLAY_KEY_BY_KIND,
    RoomEncoder,
    avatar_url,
    encode_base_message,
    encode_common,
    encode_fetch_result,
    encode_gift_struct,
    encode_heartbeat,
    encode_msg_frame,
    encode_push_frame,
    encode_user,
    gift_image_url,
)
from tiktok_service_dev.simulator.profiles import avatar_urls, profile_for
from tiktok_service_dev.simulator.scenario import (
    COMMENT,
    FOLLOW,
    GIFT,
    JOIN,
    LIKE,
    LIVE_END,
    METHOD_BY_KIND,
    SHARE,
    UNKNOWN,
    VIEWER,
    GiftSpec,
    Scenario,
    SimEvent,
    SimUser,
)
from tiktok_service_dev.simulator.timeline import generate
from tiktok_service_dev.simulator.wire import (
    WireError,
    decode_fields,
    field_varint,
    iter_fields,
    to_signed64,
    varint,
)

ROOM_ID = 7_270_193_599_273_683_745
CREATE_TIME = 1_692_726_385_028
USER = SimUser(id=6_919_629_632_300_958_726, unique_id="almando29", nickname="Almando ✨", sec_uid="MS4wLjABAAAAxyz")


def event(kind: str, data: dict[str, object], user: SimUser | None = USER, msg_id: int = 7_270_204_318_916_594_464):
    return SimEvent(seq=0, msg_id=msg_id, kind=kind, method=METHOD_BY_KIND[kind], user=user, data=data)


def roundtrip(ev: SimEvent):
    """Encode with the fast path, decode the BaseProtoMessage and its payload with the library."""
    wrapped = ProtoMessageFetchResultBaseProtoMessage().parse(RoomEncoder(ROOM_ID).encode(ev, CREATE_TIME))
    assert wrapped.method == ev.method
    assert wrapped.msg_id == ev.msg_id
    return wrapped


def assert_common(msg, ev: SimEvent, display_key: str | None = None) -> None:
    assert msg.common.method == ev.method
    assert msg.common.msg_id == ev.msg_id
    assert msg.common.room_id == ROOM_ID
    assert msg.common.create_time == CREATE_TIME
    if display_key is None:
        assert msg.common.display_text is None
    else:
        assert msg.common.display_text.key == display_key


def assert_user(user: User) -> None:
    assert user.id == USER.id
    assert user.nickname == USER.nickname
    assert user.display_id == USER.unique_id
    assert user.sec_uid == USER.sec_uid
    assert user.avatar_thumb.url_list == avatar_urls(USER.id) and avatar_url(USER.id) in user.avatar_thumb.url_list
    assert ExtendedUser.from_user(user).unique_id == USER.unique_id
    profile = profile_for(USER.id)
    assert user.follow_info.follow_status == profile.follow_status
    grade = [b for b in user.badge_list if b.scene_type.name == "USER_GRADE"]
    assert [int(b.privilege_log_extra.level) for b in grade] == ([profile.gifter_level] if profile.gifter_level else [])


# -- wire primitives -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**31, 2**63 - 1, -1, -(2**63)])
def test_varint_roundtrip_matches_protobuf_int64(value: int) -> None:
    encoded = field_varint(1, value)
    decoded = HeartBeatMessage().parse(encoded)  # room_id is an int64 at field 1
    assert decoded.room_id == value
    if value:
        assert to_signed64(decode_fields(encoded)[1]) == value


def test_negative_varint_is_ten_bytes() -> None:
    assert len(varint(-1)) == 10


def test_decoder_rejects_truncated_input() -> None:
    with pytest.raises(WireError):
        list(iter_fields(b"\x08"))
    with pytest.raises(WireError):
        list(iter_fields(b"\x12\x05ab"))


def test_heartbeat_encoding() -> None:
    hb = HeartBeatMessage().parse(encode_heartbeat(ROOM_ID, 7))
    assert (hb.room_id, hb.send_packet_seq_id) == (ROOM_ID, 7)


# -- building blocks -------------------------------------------------------------------------------


def test_user_struct() -> None:
    assert_user(User().parse(encode_user(USER)))


@pytest.mark.parametrize(("gift_type", "streakable"), [(1, True), (2, False)])
def test_gift_struct(gift_type: int, streakable: bool) -> None:
    spec = GiftSpec(5655, "Rose", 1, gift_type)
    gift = Gift().parse(encode_gift_struct(spec))
    assert (gift.id, gift.name, gift.diamond_count, gift.type) == (5655, "Rose", 1, gift_type)
    assert gift.image.url_list == [gift_image_url(5655)]
    assert ExtendedGift(gift).streakable is streakable


def test_common_with_display_text() -> None:
    chat = WebcastChatMessage().parse(
        b"\x0a" + varint(len(c := encode_common("WebcastChatMessage", 5, ROOM_ID, CREATE_TIME, "k"))) + c
    )
    assert chat.common.msg_id == 5
    assert chat.common.display_text.key == "k"


# -- one test per TikTok message -------------------------------------------------------------------


def test_chat_message() -> None:
    ev = event(COMMENT, {"content": "hello 👋 'quoted' \"double\""})
    msg = WebcastChatMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev)
    assert msg.content == ev.data["content"]
    assert_user(msg.user)


@pytest.mark.parametrize(("gift_type", "repeat_end"), [(1, 0), (1, 1), (2, 1)])
def test_gift_message(gift_type: int, repeat_end: int) -> None:
    data = {
        "gift_id": 5655,
        "gift_name": "Rose",
        "diamond_count": 1,
        "gift_type": gift_type,
        "streakable": gift_type == 1,
        "repeat_count": 7,
        "repeat_end": repeat_end,
        "combo_count": 7,
        "group_id": 1_692_725_773_860,
    }
    ev = event(GIFT, data)
    wrapped = roundtrip(ev)
    msg = WebcastGiftMessage().parse(wrapped.payload)
    assert_common(msg, ev, DISPLAY_KEY_BY_KIND[GIFT])
    assert (msg.gift_id, msg.repeat_count, msg.repeat_end, msg.combo_count, msg.group_id) == (
        5655,
        7,
        repeat_end,
        7,
        1_692_725_773_860,
    )
    assert (msg.gift.id, msg.gift.name, msg.gift.diamond_count, msg.gift.type) == (5655, "Rose", 1, gift_type)
    assert_user(msg.user)
    # The library's own GiftEvent view: streaking only for streakable gifts that have not ended.
    # (No local may be called ``base``: pydantic resolves the lazily-built GiftEvent's forward
    # references in the *caller's* namespace on first instantiation.)
    gift_event = EVENT_MAPPINGS["WebcastGiftMessage"]().parse(wrapped.payload)
    assert gift_event.streaking is (gift_type == 1 and repeat_end == 0)


def test_like_message() -> None:
    ev = event(LIKE, {"count": 12, "total": 3456})
    msg = WebcastLikeMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev, DISPLAY_KEY_BY_KIND[LIKE])
    assert (msg.count, msg.total) == (12, 3456)
    assert_user(msg.user)


def test_member_message() -> None:
    ev = event(JOIN, {"action": 1, "member_count": 774})
    msg = WebcastMemberMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev, DISPLAY_KEY_BY_KIND[JOIN])
    assert msg.member_count == 774
    assert int(msg.action) == 1
    assert_user(msg.user)


@pytest.mark.parametrize(
    ("kind", "data", "custom_event"),
    [
        (FOLLOW, {"action": 1, "follow_count": 3}, "FollowEvent"),
        (SHARE, {"action": 3, "share_type": 1, "share_count": 9}, "ShareEvent"),
    ],
)
def test_social_message_follow_and_share(kind: str, data: dict[str, object], custom_event: str) -> None:
    ev = event(kind, data)
    msg = WebcastSocialMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev, DISPLAY_KEY_BY_KIND[kind])
    assert msg.action == data["action"]
    assert msg.follow_count == data.get("follow_count", 0)
    assert msg.share_count == data.get("share_count", 0)
    assert_user(msg.user)
    # TikTokLive turns a SocialMessage into Follow/Share by substring of the display key.
    key = msg.common.display_text.key
    assert ("follow" in key, "share" in key) == (custom_event == "FollowEvent", custom_event == "ShareEvent")


def test_no_other_kind_looks_like_follow_or_share() -> None:
    for kind, key in DISPLAY_KEY_BY_KIND.items():
        if kind not in (FOLLOW, SHARE):
            assert "follow" not in key and "share" not in key


def test_room_user_seq_message() -> None:
    ev = event(VIEWER, {"total": 321, "total_user": 5000}, user=None)
    msg = WebcastRoomUserSeqMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev)
    assert (msg.total, msg.total_user) == (321, 5000)


def test_control_message_live_end() -> None:
    ev = event(LIVE_END, {"action": 3}, user=None)
    msg = WebcastControlMessage().parse(roundtrip(ev).payload)
    assert_common(msg, ev)
    assert msg.action == ControlAction.STREAM_ENDED


def test_unknown_method_is_unknown_to_the_library() -> None:
    ev = event(UNKNOWN, {"sparkles": 5})
    wrapped = roundtrip(ev)
    assert wrapped.method not in EVENT_MAPPINGS


def test_fast_path_equals_building_blocks() -> None:
    ev = event(COMMENT, {"content": "same bytes"})
    common = encode_common(ev.method, ev.msg_id, ROOM_ID, CREATE_TIME)
    payload = b"\x0a" + varint(len(common)) + common + b"\x12" + varint(len(u := encode_user(USER))) + u
    payload += b"\x1a" + varint(len(b"same bytes")) + b"same bytes"
    assert RoomEncoder(ROOM_ID).encode(ev, CREATE_TIME) == encode_base_message(ev.method, payload, ev.msg_id)


# -- envelopes -------------------------------------------------------------------------------------


def test_fetch_result_fields() -> None:
    encoder = RoomEncoder(ROOM_ID)
    messages = [encoder.encode(event(COMMENT, {"content": f"c{i}"}, msg_id=1000 + i), CREATE_TIME) for i in range(3)]
    raw = encode_fetch_result(
        messages,
        cursor="t-1_r-1",
        fetch_interval=1000,
        now=CREATE_TIME,
        internal_ext="ext",
        route_params={"cursor": "t-1_r-1", "wrss": "token"},
        heartbeat_duration=10_000,
        need_ack=True,
        push_server="ws://127.0.0.1:1/webcast/im/ws_proxy/ws_reuse_supplement/",
        is_first=True,
    )
    result = ProtoMessageFetchResult().parse(raw)
    assert [m.msg_id for m in result.messages] == [1000, 1001, 1002]
    assert [WebcastChatMessage().parse(m.payload).content for m in result.messages] == ["c0", "c1", "c2"]
    assert result.cursor == "t-1_r-1"
    assert result.fetch_interval == 1000
    assert result.now == CREATE_TIME
    assert result.internal_ext == "ext"
    assert result.route_params == {"cursor": "t-1_r-1", "wrss": "token"}
    assert result.heartbeat_duration == 10_000
    assert result.need_ack is True
    assert result.push_server.endswith("/webcast/im/ws_proxy/ws_reuse_supplement/")
    assert result.is_first is True


def test_push_frame_with_headers() -> None:
    raw = encode_push_frame(
        payload_type="msg",
        payload=b"xyz",
        seq_id=3,
        log_id=-5,
        service=1,
        method=2,
        headers=[("compress_type", "none"), ("im-cursor", "c")],
    )
    frame = WebcastPushFrame().parse(raw)
    assert (frame.seq_id, frame.log_id, frame.service, frame.method) == (3, -5, 1, 2)
    assert [(h.key, h.value) for h in frame.headers] == [("compress_type", "none"), ("im-cursor", "c")]
    assert (frame.payload_encoding, frame.payload_type, frame.payload) == ("pb", "msg", b"xyz")


def test_msg_frame_is_gzipped_and_decodes_like_the_websocket_path() -> None:
    message = RoomEncoder(ROOM_ID).encode(event(COMMENT, {"content": "zip"}), CREATE_TIME)
    fetch = encode_fetch_result([message], cursor="c", need_ack=True, internal_ext="e")
    raw = encode_msg_frame(fetch, seq_id=9, log_id=77, cursor="c")
    frame = WebcastPushFrame().parse(raw)
    assert {h.key: h.value for h in frame.headers}["compress_type"] == "gzip"
    assert gzip.decompress(frame.payload) == fetch
    result = extract_webcast_response_message(frame)
    assert result.need_ack is True and result.internal_ext == "e"
    assert WebcastChatMessage().parse(result.messages[0].payload).content == "zip"


# -- generated timelines through the encoder -------------------------------------------------------


def test_same_seed_encodes_to_identical_bytes_and_different_seed_does_not() -> None:
    def encoded(seed: int) -> list[bytes]:
        return RoomEncoder(ROOM_ID).encode_batch(generate(Scenario(seed=seed), 500), CREATE_TIME)

    assert encoded(11) == encoded(11)
    assert encoded(11) != encoded(12)


def test_generated_streaks_decode_as_library_streaks() -> None:
    events = [e for e in generate(Scenario(seed=8, mix={"gift": 1}), 3000) if e.data["streakable"]]
    encoder = RoomEncoder(ROOM_ID)
    groups: dict[int, list[tuple[int, int, bool]]] = {}
    for ev in events:
        wrapped = ProtoMessageFetchResultBaseProtoMessage().parse(encoder.encode(ev, CREATE_TIME))
        gift_event = EVENT_MAPPINGS["WebcastGiftMessage"]().parse(wrapped.payload)
        groups.setdefault(gift_event.group_id, []).append(
            (gift_event.repeat_count, gift_event.repeat_end, gift_event.streaking)
        )
    closed = [g for g in groups.values() if g[-1][1] == 1]
    assert len(closed) > 50
    for group in closed:
        n = group[-1][0]
        assert group == [(i, 0, True) for i in range(1, n + 1)] + [(n, 1, False)]
