"""The normalised event envelope: one shape for every TikTok LIVE event we publish.

Envelopes are CloudEvents 1.0 in structured JSON mode. The same bytes go to the Redis
streams, the PostgreSQL `events.payload` column and the SSE stream, so consumers parse one
format everywhere. The schema is versioned with the `schemaversion` extension attribute;
additive changes keep the version, anything else bumps it.

This module is pure: no I/O, no TikTok library, so it can be tested and reused anywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

SCHEMA_VERSION: Final = 1
SPEC_VERSION: Final = "1.0"
SOURCE_PREFIX: Final = "/tiktok-service/livestreams/"


class EventType(StrEnum):
    """CloudEvents `type` of every event; also the name of its per-type Redis stream.

    Which TikTok method becomes which type is decided in `domain.catalogue`; the `data`
    of each type is described by `domain.event_schemas` (and the JSON Schemas generated
    from it).
    """

    # The bulk of a room's traffic, normalised field by field.
    COMMENT = "tiktok.comment"
    GIFT = "tiktok.gift"
    GIFT_PROGRESS = "tiktok.gift.progress"
    LIKE = "tiktok.like"
    JOIN = "tiktok.join"
    FOLLOW = "tiktok.follow"
    SHARE = "tiktok.share"
    VIEWER = "tiktok.viewer"
    LIVE_END = "tiktok.live_end"
    # Made by the connector itself.
    CONNECT = "tiktok.connect"
    DISCONNECT = "tiktok.disconnect"
    UNKNOWN = "tiktok.unknown"
    # First-class kinds: the decoded message plus documented summary fields.
    SOCIAL = "tiktok.social"
    LIVE_PAUSE = "tiktok.live_pause"
    LIVE_UNPAUSE = "tiktok.live_unpause"
    CONTROL = "tiktok.control"
    BATTLE = "tiktok.battle"
    BATTLE_ARMIES = "tiktok.battle.armies"
    BATTLE_PUNISH_FINISH = "tiktok.battle.punish_finish"
    BATTLE_TASK = "tiktok.battle.task"
    BATTLE_ITEM_CARD = "tiktok.battle.item_card"
    LINK_MIC = "tiktok.link_mic"
    LINK_MIC_FAN_TICKET = "tiktok.link_mic.fan_ticket"
    LINK_MIC_LAYOUT = "tiktok.link_mic.layout"
    LINK_MIC_STATE = "tiktok.link_mic.state"
    LINK_MIC_GUEST = "tiktok.link_mic.guest"
    POLL = "tiktok.poll"
    QUESTION = "tiktok.question"
    SUBSCRIPTION = "tiktok.subscription"
    SUBSCRIPTION_PIN = "tiktok.subscription.pin"
    EMOTE = "tiktok.emote"
    ENVELOPE = "tiktok.envelope"
    SUPERFAN = "tiktok.superfan"
    SUPERFAN_JOIN = "tiktok.superfan.join"
    SUPERFAN_BOX = "tiktok.superfan.box"
    GOAL = "tiktok.goal"
    PIN = "tiktok.pin"
    RANK = "tiktok.rank"
    RANK_TEXT = "tiktok.rank.text"
    RANK_HOURLY_REWARD = "tiktok.rank.hourly_reward"
    COMMENT_DELETED = "tiktok.comment.deleted"
    CAPTION = "tiktok.caption"
    BARRAGE = "tiktok.barrage"
    ROOM_MESSAGE = "tiktok.room_message"
    ROOM_NOTIFY = "tiktok.room_notify"
    NOTICE = "tiktok.notice"
    TOAST = "tiktok.toast"
    SYSTEM = "tiktok.system"
    SHOPPING = "tiktok.shopping"
    GIFT_BROADCAST = "tiktok.gift.broadcast"
    # Every other method: `tiktok.<method in snake case>`, data = the decoded message.
    ACCESS_CONTROL = "tiktok.access_control"
    ACCESS_RECALL = "tiktok.access_recall"
    BOOST_CARD = "tiktok.boost_card"
    BOTTOM = "tiktok.bottom"
    CAPSULE = "tiktok.capsule"
    GAME_RANK_NOTIFY = "tiktok.game_rank_notify"
    GIFT_DYNAMIC_RESTRICTION = "tiktok.gift_dynamic_restriction"
    GIFT_PANEL_UPDATE = "tiktok.gift_panel_update"
    GIFT_PROMPT = "tiktok.gift_prompt"
    GUIDE = "tiktok.guide"
    IN_ROOM_BANNER = "tiktok.in_room_banner"
    LINK_LAYER = "tiktok.link_layer"
    LIVE_GAME_INTRO = "tiktok.live_game_intro"
    LIVE_INTRO = "tiktok.live_intro"
    MARQUEE_ANNOUNCEMENT = "tiktok.marquee_announcement"
    MSG_DETECT = "tiktok.msg_detect"
    PARTNERSHIP_DROPS_UPDATE = "tiktok.partnership_drops_update"
    PARTNERSHIP_GAME_OFFLINE = "tiktok.partnership_game_offline"
    PARTNERSHIP_PUNISH = "tiktok.partnership_punish"
    PERCEPTION = "tiktok.perception"
    ROOM_VERIFY = "tiktok.room_verify"
    SPEAKER = "tiktok.speaker"
    UNAUTHORIZED_MEMBER = "tiktok.unauthorized_member"
    VIEWER_PICKS_UPDATE = "tiktok.viewer_picks_update"


EVENT_TYPES: Final = frozenset(EventType)


class MalformedEnvelope(ValueError):
    """Bytes that do not decode into a valid envelope (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class Badge:
    """One badge shown next to a user's name (moderator, subscriber, top gifter, level...).

    `scene` is TikTok's badge scene in snake case (`admin`, `subscriber`, `rank_list`,
    `user_grade`, `fans`, ...); `level`, `text` and `image_url` only when TikTok sent them.
    """

    scene: str
    level: int | None = None
    text: str | None = None
    image_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"scene": self.scene}
        if self.level is not None:
            doc["level"] = self.level
        if self.text is not None:
            doc["text"] = self.text
        if self.image_url is not None:
            doc["image_url"] = self.image_url
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Badge:
        if not isinstance(doc, dict):
            raise TypeError(f"badge must be an object, not {type(doc).__name__}")
        level = doc.get("level")
        return cls(str(doc["scene"]), None if level is None else int(level), doc.get("text"), doc.get("image_url"))


#: Optional `User` attributes, in the order they are written; absent when TikTok did not send them.
_USER_OPTIONAL: Final = (
    "avatar_url",
    "follow_role",
    "follower_count",
    "following_count",
    "is_moderator",
    "is_subscriber",
    "is_top_gifter",
    "gifter_level",
    "member_level",
)


@dataclass(frozen=True, slots=True)
class User:
    """The TikTok user who caused an event (commenter, gifter, joiner...).

    `id`, `unique_id` (the @handle) and `nickname` are always present. Everything else is
    None when TikTok did not send it, and is then left out of the JSON: a consumer can
    tell "not a moderator" (`is_moderator: false`, badges were sent) from "unknown"
    (absent). `follow_role` is TikTok's follow status towards the host: 0 none,
    1 follows the host, 2 friends (mutual follow).
    """

    id: int
    unique_id: str
    nickname: str
    avatar_url: str | None = None
    follow_role: int | None = None
    follower_count: int | None = None
    following_count: int | None = None
    is_moderator: bool | None = None
    is_subscriber: bool | None = None
    is_top_gifter: bool | None = None
    gifter_level: int | None = None
    member_level: int | None = None
    badges: tuple[Badge, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": str(self.id), "unique_id": self.unique_id, "nickname": self.nickname}
        # Unrolled (no loop over names): this runs for nearly every event published.
        if self.avatar_url is not None:
            doc["avatar_url"] = self.avatar_url
        if self.follow_role is not None:
            doc["follow_role"] = self.follow_role
        if self.follower_count is not None:
            doc["follower_count"] = self.follower_count
        if self.following_count is not None:
            doc["following_count"] = self.following_count
        if self.is_moderator is not None:
            doc["is_moderator"] = self.is_moderator
        if self.is_subscriber is not None:
            doc["is_subscriber"] = self.is_subscriber
        if self.is_top_gifter is not None:
            doc["is_top_gifter"] = self.is_top_gifter
        if self.gifter_level is not None:
            doc["gifter_level"] = self.gifter_level
        if self.member_level is not None:
            doc["member_level"] = self.member_level
        if self.badges is not None:
            doc["badges"] = [badge.to_json() for badge in self.badges]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> User:
        if not isinstance(doc, dict):
            raise TypeError(f"user must be an object, not {type(doc).__name__}")
        extra = {name: doc[name] for name in _USER_OPTIONAL if doc.get(name) is not None}
        badges = doc.get("badges")
        return cls(
            int(doc["id"]),
            str(doc["unique_id"]),
            str(doc["nickname"]),
            badges=None if badges is None else tuple(Badge.from_json(b) for b in badges),
            **extra,
        )


@dataclass(slots=True)
class Envelope:
    """One normalised event.

    `id` is TikTok's `msg_id` as a decimal string for events that come from TikTok (so a
    replayed message keeps its id and is recognised as a duplicate), or a locally unique id
    for events the connector makes itself (connect/disconnect).
    """

    id: str
    type: EventType
    livestream_id: str
    room_id: int
    time_ms: int
    user: User | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.livestream_id

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvent (a JSON object)."""
        data: dict[str, Any] = {"user": self.user.to_json() if self.user else None}
        data.update(self.data)
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type.value,
            "time": format_time(self.time_ms),
            "datacontenttype": "application/json",
            "schemaversion": SCHEMA_VERSION,
            "livestreamid": self.livestream_id,
            "roomid": str(self.room_id),
            "data": data,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_cloudevent())


@functools.lru_cache(maxsize=64)
def _second_prefix(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def format_time(time_ms: int) -> str:
    """RFC 3339 UTC with millisecond precision, as CloudEvents `time` requires.

    Events arrive in bursts within the same second, so the date part is cached.
    """
    seconds, millis = divmod(time_ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


def parse_time(value: str) -> int:
    """Inverse of `format_time`; accepts any RFC 3339 timestamp (ValueError for anything else)."""
    if not isinstance(value, str):
        raise ValueError(f"time must be an RFC 3339 string, not {type(value).__name__}")
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1000)


def decode(raw: bytes | str) -> Envelope:
    """Parse and validate an encoded envelope; raises `MalformedEnvelope` with the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEnvelope(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEnvelope("not a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        raise MalformedEnvelope(f"unsupported specversion {doc.get('specversion')!r}")
    if doc.get("schemaversion") != SCHEMA_VERSION:
        raise MalformedEnvelope(f"unsupported schemaversion {doc.get('schemaversion')!r}")
    try:
        event_type = EventType(doc["type"])
        data = dict(doc["data"])
        user_doc = data.pop("user", None)
        user = User.from_json(user_doc) if user_doc else None
        event_id = doc["id"]
        livestream_id = doc["livestreamid"]
        if not isinstance(event_id, str) or not event_id:
            raise MalformedEnvelope("id must be a non-empty string")
        if not isinstance(livestream_id, str) or not livestream_id:
            raise MalformedEnvelope("livestreamid must be a non-empty string")
        return Envelope(
            id=event_id,
            type=event_type,
            livestream_id=livestream_id,
            room_id=int(doc["roomid"]),
            time_ms=parse_time(doc["time"]),
            user=user,
            data=data,
        )
    except MalformedEnvelope:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise MalformedEnvelope(f"invalid envelope: {exc!r}") from exc
