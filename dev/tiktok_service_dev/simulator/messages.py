"""Encoders for the TikTok LIVE messages the simulator sends, on top of :mod:`.wire`.

Field numbers are those of TikTokLive 7.x's generated classes (``TikTokLiveProto/v3``); the unit tests
decode every encoder's output with those classes, so a drift in the library shows up as a test failure.

Layering, innermost first:

* a TikTok message (``WebcastChatMessage`` ...) with its ``common`` header and ``user``;
* ``BaseProtoMessage`` = (method, payload, msg_id) - one entry of a fetch result;
* ``ProtoMessageFetchResult`` = messages + cursor/ack/routing metadata. The sign server returns it raw
  (not gzipped) over HTTP; the WebSocket sends it gzipped inside a
* ``WebcastPushFrame`` (payload_type "msg", header ``compress_type=gzip``).

:class:`RoomEncoder` is the fast path: per room it pre-encodes everything that never changes (room id,
users, gift structs, method names) so that encoding one event is a handful of ``bytes`` joins. Kinds
it has no hand-written encoder for (battles, polls, every-kind messages ...) take the slow path:
``kinds.encode_body``, the library's own classes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from TikTokLiveProto.v3.webcast.model.base.user import User

from .kinds import encode_body
from .kinds.shapes import user_body
from .profiles import avatar_urls
from .scenario import (
    COMMENT,
    FIXTURE,
    FOLLOW,
    GIFT,
    JOIN,
    LIKE,
    LIVE_END,
    SHARE,
    UNKNOWN,
    VIEWER,
    GiftSpec,
    SimEvent,
    SimUser,
)
from .wire import (
    WIRE_LEN,
    WIRE_VARINT,
    field_bool,
    field_bytes,
    field_message,
    field_str,
    field_varint,
    map_str_str,
    tag,
    varint,
)

# ``common.display_text.key`` per kind. TikTokLive turns a SocialMessage into FollowEvent/ShareEvent by
# looking for "follow"/"share" in this key, so the other kinds must contain neither word.
DISPLAY_KEY_BY_KIND: dict[str, str] = {
    GIFT: "webcast_aweme_gift_send_message",
    LIKE: "pm_mt_msg_viewer",
    JOIN: "live_room_enter_toast",
    FOLLOW: "pm_main_follow_message_viewer_2",
    SHARE: "pm_mt_guidance_share",
    UNKNOWN: "pm_mt_future_shiny_toast",
}

# Precomputed tags: (field number, wire type) -> key bytes.
_T1_LEN = tag(1, WIRE_LEN)
_T2_LEN = tag(2, WIRE_LEN)
_T2_VAR = tag(2, WIRE_VARINT)
_T3_VAR = tag(3, WIRE_VARINT)
_T4_VAR = tag(4, WIRE_VARINT)
_T5_LEN = tag(5, WIRE_LEN)
_T7_LEN = tag(7, WIRE_LEN)

GZIP_LEVEL = 1  # speed over ratio: the simulator is CPU-bound, loopback bandwidth is free


def gzip_fast(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """gzip-framed deflate (what ``GzipFile`` on the client expects), at a low level for speed."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


# -- building blocks ----------------------------------------------------------------------------------


def encode_text(key: str, default_pattern: str = "") -> bytes:
    """``Text`` (display text): key=1, default_pattern=2."""
    return field_str(1, key) + field_str(2, default_pattern)


def encode_common(method: str, msg_id: int, room_id: int, create_time: int, display_key: str | None = None) -> bytes:
    """``CommonMessageData``: method=1, msg_id=2, room_id=3, create_time=4 (ms), display_text=8."""
    body = field_str(1, method) + field_varint(2, msg_id) + field_varint(3, room_id)
    body += field_varint(4, create_time)
    if display_key:
        body += field_message(8, encode_text(display_key))
    return body


def encode_image(url: str) -> bytes:
    """``ImageModel``: url_list=1 (repeated string)."""
    return field_str(1, url)


def avatar_url(user_id: int) -> str:
    """The 100x100 webp avatar (the variant consumers such as the Node connector prefer)."""
    return avatar_urls(user_id)[1]


def gift_image_url(gift_id: int) -> str:
    return f"https://p16-webcast.tiktokcdn.com/img/maliva/webcast-va/sim-gift-{gift_id}~tplv-obj.png"


def encode_user(user: SimUser) -> bytes:
    """``User`` as TikTok sends it (id, names, avatar list, follow info, badges, levels), encoded once
    with the library's class: :class:`RoomEncoder` caches it per viewer, so the fast path pays this
    only the first time a viewer appears."""
    return bytes(User.from_dict(user_body(user)))


def encode_gift_struct(gift: GiftSpec) -> bytes:
    """``Gift``: image=1, describe=2, id=5, combo=10, type=11 (1 = streakable), diamond_count=12,
    name=16."""
    return (
        field_message(1, encode_image(gift_image_url(gift.id)))
        + field_str(2, f"sent {gift.name}")
        + field_varint(5, gift.id)
        + field_bool(10, gift.streakable)
        + field_varint(11, gift.type)
        + field_varint(12, gift.diamond_count)
        + field_str(16, gift.name)
    )


def encode_base_message(method: str, payload: bytes, msg_id: int) -> bytes:
    """``BaseProtoMessage``: method=1, payload=2, msg_id=3."""
    return field_str(1, method) + field_bytes(2, payload) + field_varint(3, msg_id)


def encode_fetch_result(
    messages: Sequence[bytes],
    *,
    cursor: str = "",
    fetch_interval: int = 0,
    now: int = 0,
    internal_ext: str = "",
    fetch_type: int = 0,
    route_params: Mapping[str, str] | None = None,
    heartbeat_duration: int = 0,
    need_ack: bool = False,
    push_server: str = "",
    is_first: bool = False,
) -> bytes:
    """``ProtoMessageFetchResult``. ``messages`` are already-encoded ``BaseProtoMessage`` bodies."""
    parts = [_T1_LEN + varint(len(message)) + message for message in messages]
    parts.append(field_str(2, cursor))
    parts.append(field_varint(3, fetch_interval))
    parts.append(field_varint(4, now))
    parts.append(field_str(5, internal_ext))
    parts.append(field_varint(6, fetch_type))
    parts.append(map_str_str(7, (route_params or {}).items()))
    parts.append(field_varint(8, heartbeat_duration))
    parts.append(field_bool(9, need_ack))
    parts.append(field_str(10, push_server))
    parts.append(field_bool(11, is_first))
    return b"".join(parts)


def encode_push_frame(
    *,
    payload_type: str,
    payload: bytes,
    seq_id: int = 0,
    log_id: int = 0,
    service: int = 0,
    method: int = 0,
    headers: Iterable[tuple[str, str]] = (),
    payload_encoding: str = "pb",
) -> bytes:
    """``WebcastPushFrame``: seq_id=1, log_id=2, service=3, method=4, headers=5 (repeated PushHeader
    key=1/value=2), payload_encoding=6, payload_type=7, payload=8."""
    parts = [field_varint(1, seq_id), field_varint(2, log_id), field_varint(3, service), field_varint(4, method)]
    for key, value in headers:
        parts.append(field_message(5, field_str(1, key) + field_str(2, value)))
    parts.append(field_str(6, payload_encoding))
    parts.append(field_str(7, payload_type))
    parts.append(field_bytes(8, payload))
    return b"".join(parts)


def encode_msg_frame(
    fetch_result: bytes, *, seq_id: int, log_id: int, cursor: str = "", compress: bool = True
) -> bytes:
    """A server -> client ``msg`` push frame around a fetch result, gzipped as TikTok does."""
    headers: list[tuple[str, str]] = [("compress_type", "gzip" if compress else "none")]
    if cursor:
        headers.append(("im-cursor", cursor))
    payload = gzip_fast(fetch_result) if compress else fetch_result
    return encode_push_frame(payload_type="msg", payload=payload, seq_id=seq_id, log_id=log_id, headers=headers)


def encode_heartbeat(room_id: int, seq_id: int) -> bytes:
    """``HeartBeatMessage``: room_id=1, send_packet_seq_id=2 (what a client sends inside an ``hb``)."""
    return field_varint(1, room_id) + field_varint(2, seq_id)


# -- per-room fast path -------------------------------------------------------------------------------


class RoomEncoder:
    """Encodes a room's :class:`SimEvent` s into ``BaseProtoMessage`` bytes, caching invariant parts.

    Wire-equivalent to composing the building blocks above (the tests check both against the
    library's decoder), but several times faster.
    """

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        self._room_part = _T3_VAR + varint(room_id)
        self._method_parts: dict[str, bytes] = {}
        self._display_parts = {kind: field_message(8, encode_text(key)) for kind, key in DISPLAY_KEY_BY_KIND.items()}
        self._users: dict[int, bytes] = {}  # user id -> length-prefixed User body
        self._gifts: dict[int, bytes] = {}  # gift id -> complete field 15 (gift struct)
        self._payload_builders: dict[str, Callable[[SimEvent, bytes], bytes]] = {
            COMMENT: self._chat,
            GIFT: self._gift,
            LIKE: self._like,
            JOIN: self._member,
            FOLLOW: self._social,
            SHARE: self._social,
            VIEWER: self._room_user_seq,
            UNKNOWN: self._unknown,
            LIVE_END: self._control,
        }

    def encode(self, event: SimEvent, create_time: int) -> bytes:
        """One event -> ``BaseProtoMessage`` body."""
        return self.encode_batch((event,), create_time)[0]

    def encode_batch(self, events: Iterable[SimEvent], create_time: int) -> list[bytes]:
        """Many events sharing one create_time (ms) -> ``BaseProtoMessage`` bodies."""
        ct_part = _T4_VAR + varint(create_time)
        out = []
        builders = self._payload_builders
        for event in events:
            method_part = self._method_part(event.method)
            builder = builders.get(event.kind)
            if event.kind == FIXTURE:
                payload = event.raw or b""
            elif builder is None:
                payload = encode_body(
                    event.method, event.data, msg_id=event.msg_id, room_id=self.room_id, create_time=create_time
                )
            else:
                common = (
                    method_part
                    + _T2_VAR
                    + varint(event.msg_id)
                    + self._room_part
                    + ct_part
                    + self._display_parts.get(event.kind, b"")
                )
                payload = builder(event, _T1_LEN + varint(len(common)) + common)
            out.append(method_part + _T2_LEN + varint(len(payload)) + payload + _T3_VAR + varint(event.msg_id))
        return out

    def _method_part(self, method: str) -> bytes:
        part = self._method_parts.get(method)
        if part is None:
            part = self._method_parts[method] = field_str(1, method)
        return part

    def _user(self, field_tag: bytes, user: SimUser | None) -> bytes:
        """The complete user field (tag included), or nothing for user-less events."""
        if user is None:
            return b""
        part = self._users.get(user.id)
        if part is None:
            body = encode_user(user)
            part = self._users[user.id] = varint(len(body)) + body
        return field_tag + part

    def _chat(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastChatMessage: common=1, user=2, content=3
        return common + self._user(_T2_LEN, event.user) + field_str(3, event.data["content"])

    def _gift(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastGiftMessage: common=1, gift_id=2, repeat_count=5, combo_count=6, user=7, repeat_end=9,
        # group_id=11, gift=15
        data = event.data
        gift_id = data["gift_id"]
        gift_part = self._gifts.get(gift_id)
        if gift_part is None:
            spec = GiftSpec(gift_id, data["gift_name"], data["diamond_count"], data["gift_type"])
            gift_part = self._gifts[gift_id] = field_message(15, encode_gift_struct(spec))
        return b"".join(
            (
                common,
                field_varint(2, gift_id),
                field_varint(5, data["repeat_count"]),
                field_varint(6, data["combo_count"]),
                self._user(_T7_LEN, event.user),
                field_varint(9, data["repeat_end"]),
                field_varint(11, data["group_id"]),
                gift_part,
            )
        )

    def _like(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastLikeMessage: common=1, count=2, total=3, user=5
        data = event.data
        return (
            common + field_varint(2, data["count"]) + field_varint(3, data["total"]) + self._user(_T5_LEN, event.user)
        )

    def _member(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastMemberMessage: common=1, user=2, member_count=3, action=10
        data = event.data
        return (
            common
            + self._user(_T2_LEN, event.user)
            + field_varint(3, data["member_count"])
            + field_varint(10, data["action"])
        )

    def _social(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastSocialMessage: common=1, user=2, share_type=3, action=4, follow_count=6, share_count=8
        data = event.data
        return (
            common
            + self._user(_T2_LEN, event.user)
            + field_varint(3, data.get("share_type", 0))
            + field_varint(4, data["action"])
            + field_varint(6, data.get("follow_count", 0))
            + field_varint(8, data.get("share_count", 0))
        )

    def _room_user_seq(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastRoomUserSeqMessage: common=1, total=3, total_user=7
        data = event.data
        return common + field_varint(3, data["total"]) + field_varint(7, data["total_user"])

    def _unknown(self, event: SimEvent, common: bytes) -> bytes:
        # A method TikTokLive has no class for: common=1, user=2, then an opaque field.
        return common + self._user(_T2_LEN, event.user) + field_varint(3, event.data["sparkles"])

    def _control(self, event: SimEvent, common: bytes) -> bytes:
        # WebcastControlMessage: common=1, action=2 (3 = STREAM_ENDED)
        return common + field_varint(2, event.data["action"])
