"""Reading decoded TikTok messages defensively: ids, times and users.

TikTok's schema drifts, so every field is read defensively: a field that decodes empty or
with the wrong shape becomes a neutral value (and the event is flagged as drift by the
caller) — nothing here raises on odd input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from tiktok_service.domain.events import Badge, Envelope, User

#: TikTok's badge scenes (TikTokLiveProto `BadgeSceneType`) by wire value, in our snake case.
BADGE_SCENES: Final = {
    1: "admin",
    2: "first_recharge",
    3: "friends",
    4: "subscriber",
    5: "activity",
    6: "rank_list",
    7: "new_subscriber",
    8: "user_grade",
    9: "state_controlled_media",
    10: "fans",
    11: "live_pro",
    12: "anchor",
    13: "class_rank",
    14: "enigma",
}


@dataclass(slots=True)
class Context:
    """What the connector knows that the event does not."""

    livestream_id: str
    room_id: int


@dataclass(slots=True)
class Normalised:
    envelope: Envelope
    drift: bool = False


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def event_id(event: Any) -> tuple[str, bool]:
    """TikTok's msg_id as our id; a content hash when the message carries none (drift)."""
    common = getattr(event, "common", None)
    msg_id = as_int(getattr(common, "msg_id", 0)) if common is not None else 0
    if msg_id > 0:
        return str(msg_id), False
    digest = hashlib.blake2b(bytes(event), digest_size=12).hexdigest()
    return f"h{digest}", True


def event_time_ms(event: Any, fallback_ms: int) -> int:
    common = getattr(event, "common", None)
    created = as_int(getattr(common, "create_time", 0)) if common is not None else 0
    if created <= 0:
        return fallback_ms
    # TikTok sends milliseconds; some messages carry seconds.
    return created * 1000 if created < 10_000_000_000 else created


def display_type(event: Any) -> str:
    """The key of the message's display text (`pm_main_follow_message`, ...), or ""."""
    common = getattr(event, "common", None)
    text = getattr(common, "display_text", None) if common is not None else None
    return as_str(getattr(text, "key", "")) if text is not None else ""


def image_url(image: Any) -> str | None:
    """The first URL of an ImageModel, or None when TikTok sent none."""
    if image is None:
        return None
    urls = image.url_list
    if urls and type(urls[0]) is str:
        first: str = urls[0]
        return first
    return None


def _badge(badge: Any) -> Badge | None:
    scene_value = as_int(badge.scene_type)
    if not scene_value:
        return None
    scene = BADGE_SCENES.get(scene_value) or f"scene_{scene_value}"
    extra = badge.privilege_log_extra
    level = None
    if extra is not None and extra.level:
        level_text = as_str(extra.level)
        level = int(level_text) if level_text.isdigit() else None
    text: str | None = None
    url: str | None = None
    if badge.str is not None:
        text = as_str(badge.str.str) or None
    if text is None and badge.text is not None:
        text = as_str(badge.text.default_pattern) or None
    if badge.image is not None:
        url = image_url(badge.image.image)
    return Badge(scene, level, text, url)


def user_from(user: Any) -> User | None:
    """Our `User` of a decoded TikTok user; None when it identifies nobody.

    Optional attributes stay None when TikTok did not send them. Badge-derived flags
    (`is_moderator`, ...) are only set when the user came with a badge list. This runs
    for nearly every message (commenters, likers, joiners), so attributes are read
    directly: a decoded message always has every field of its class.
    """
    if user is None:
        return None
    user_id = user.id
    if type(user_id) is not int:
        user_id = as_int(user_id)
    # `display_id` is the @handle; the library's `unique_id` alias only exists on its
    # ExtendedUser wrapper, which it does not always apply.
    unique_id = user.display_id
    if type(unique_id) is not str:
        unique_id = as_str(unique_id)
    if not user_id and not unique_id:
        return None
    nickname = user.nickname
    if type(nickname) is not str:
        nickname = as_str(nickname)
    follow = user.follow_info
    badge_list = user.badge_list
    badges: tuple[Badge, ...] | None = None
    is_moderator = is_subscriber = is_top_gifter = None
    gifter_level = member_level = None
    if badge_list:
        badges = tuple(b for b in map(_badge, badge_list) if b is not None)
        is_moderator = is_subscriber = is_top_gifter = False
        for badge in badges:
            scene = badge.scene
            if scene == "admin":
                is_moderator = True
            elif scene in ("subscriber", "new_subscriber"):
                is_subscriber = True
            elif scene == "rank_list":
                is_top_gifter = True
            elif scene == "user_grade" and badge.level is not None:
                gifter_level = badge.level
            elif scene == "fans" and badge.level is not None:
                member_level = badge.level
    if gifter_level is None and user.pay_grade is not None:
        gifter_level = as_int(user.pay_grade.level) or None
    if member_level is None and user.fans_club_info is not None:
        member_level = as_int(user.fans_club_info.fans_level) or None
    if member_level is None and user.fans_club is not None and user.fans_club.data is not None:
        member_level = as_int(user.fans_club.data.level) or None
    return User(
        user_id,
        unique_id,
        nickname,
        image_url(user.avatar_thumb),
        None if follow is None else as_int(follow.follow_status),
        None if follow is None else as_int(follow.follower_count),
        None if follow is None else as_int(follow.following_count),
        is_moderator,
        is_subscriber,
        is_top_gifter,
        gifter_level,
        member_level,
        badges,
    )


def user_of(event: Any) -> User | None:
    """The user an event is about (`event.user`)."""
    return user_from(getattr(event, "user", None))
