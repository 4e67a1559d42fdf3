"""TikTok-shaped building blocks shared by every message family: users, images, texts, badges.

Everything here returns plain ``dict`` s keyed by the field names of TikTokLive 7's generated classes
(``TikTokLiveProto`` v3, snake_case); a message is then built with the library's own
``Message.from_dict`` and encoded with ``bytes(message)``. Plain dicts keep the family modules short
and readable, are what ``GET /sent`` reports, and an unknown key is an error in ``from_dict`` - so a
typo or a renamed field in the library fails the unit tests instead of silently vanishing.

The shapes follow real payloads (the captured 2023 messages): CDN-like image URL lists with a ``uri``,
``follow_info``, ``badge_list`` entries with ``privilege_log_extra.level``, ``id_str`` next to ``id``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..profiles import avatar_urls, profile_for
from ..scenario import SimUser

Body = dict[str, Any]

_CDN = "https://p16-webcast.tiktokcdn.com"
_CDN2 = "https://p19-webcast.tiktokcdn.com"


def image(path: str, *, avg_color: str = "") -> Body:
    """``ImageModel`` for a webcast asset: two CDN mirrors and the ``uri`` TikTok sends."""
    body: Body = {"url_list": [f"{_CDN}/{path}~tplv-obj.image", f"{_CDN2}/{path}~tplv-obj.image"], "uri": path}
    if avg_color:
        body["avg_color"] = avg_color
    return body


def avatar(user_id: int) -> Body:
    return {"url_list": avatar_urls(user_id), "uri": f"100x100/sim-avatar/{user_id}"}


def text(key: str, pattern: str = "", *, color: str = "") -> Body:
    """``Text`` (a display text): a starling key plus the default English pattern."""
    body: Body = {"key": key, "default_pattern": pattern}
    if color:
        body["default_format"] = {"color": color, "weight": 400}
    return body


def _privilege(privilege_id: int, level: int, order: str) -> Body:
    return {
        "data_version": "2",
        "privilege_id": str(privilege_id),
        "privilege_version": "0",
        "privilege_order_id": f"{order}_{privilege_id}",
        "level": str(level),
    }


def badges(user_id: int) -> list[Body]:
    """``badge_list`` for a viewer, in TikTok's order (relation badges, then the platform grade)."""
    profile = profile_for(user_id)
    out: list[Body] = []
    if profile.moderator:
        out.append(
            {
                "display_type": "IMAGE",
                "priority_type": "STRONG_RELATION",
                "scene_type": "ADMIN",
                "position": "LEFT",
                "privilege_log_extra": _privilege(7_138_381_747_292_000_001, 0, "mock_admin"),
                "image": {"display_type": "IMAGE", "image": image("webcast-va/moderator_badge_icon.png")},
            }
        )
    if profile.top_gifter_rank:
        rank = profile.top_gifter_rank
        out.append(
            {
                "display_type": "IMAGE",
                "priority_type": "RANK_LIST",
                "scene_type": "BADGE_SCENE_TYPE_RANK_LIST",
                "position": "LEFT",
                "privilege_log_extra": _privilege(7_138_381_747_292_000_010 + rank, 0, "mock_ranklist"),
                "image": {"display_type": "IMAGE", "image": image(f"webcast-va/ranklist_top_gifter_{rank}.png")},
            }
        )
    if profile.subscriber:
        out.append(
            {
                "display_type": "IMAGE",
                "priority_type": "RELATION",
                "scene_type": "SUBSCRIBER",
                "position": "LEFT",
                "privilege_log_extra": _privilege(7_119_809_098_660_694_789, 0, "mock_sub"),
                "image": {"display_type": "IMAGE", "image": image("webcast-va/subs_badge_Lv1.png")},
            }
        )
    if profile.fans_level:
        out.append(_combine("RELATION", "FANS", 7_196_929_090_442_545_925, profile.fans_level, "fans_badge_icon"))
    if profile.gifter_level:
        level = profile.gifter_level
        icon = f"grade_badge_icon_lite_lv{max(1, level // 5 * 5)}_v2"
        out.append(_combine("PLATFORM", "USER_GRADE", 7_138_381_747_292_559_140 + level, level, icon))
    return out


def _combine(priority: str, scene: str, privilege_id: int, level: int, icon: str) -> Body:
    """A ``COMBINE`` badge: an icon next to the level as text, the shape of TikTok's level badges."""
    return {
        "display_type": "COMBINE",
        "priority_type": priority,
        "scene_type": scene,
        "position": "LEFT",
        "display": True,
        "privilege_log_extra": _privilege(privilege_id, level, "mock_fix_width_transparent"),
        "combine": {"display_type": 4, "icon": image(f"webcast-va/{icon}.png"), "str": str(level)},
    }


@lru_cache(maxsize=4096)
def user_body(user: SimUser) -> Body:
    """A full ``User`` as TikTok sends it on chat, gift, member ... messages. Cached: treat as read-only."""
    profile = profile_for(user.id)
    body: Body = {
        "id": user.id,
        "nickname": user.nickname,
        "avatar_thumb": avatar(user.id),
        "follow_info": {
            "following_count": profile.following_count,
            "follower_count": profile.follower_count,
            "follow_status": profile.follow_status,
        },
        "pay_grade": {},
        "user_attr": {"is_admin": profile.moderator},
        "display_id": user.unique_id,
        "sec_uid": user.sec_uid,
        "badge_list": badges(user.id),
        "id_str": str(user.id),
    }
    # No ``fans_club`` here: the captured users carry none, and TikTokLive 7.0.1 cannot decode its
    # status enum in a fresh process (the fans level travels as the FANS badge instead).
    return body


def small_user(user: SimUser) -> Body:
    """The reduced ``User`` TikTok puts in side lists (ranks, link-mic guests): id, names, avatar."""
    return {
        "id": user.id,
        "nickname": user.nickname,
        "avatar_thumb": avatar(user.id),
        "display_id": user.unique_id,
        "sec_uid": user.sec_uid,
        "id_str": str(user.id),
    }


def user_identity(user: SimUser, *, gifted: bool = False) -> Body:
    """``UserIdentity`` (chat, gift, emote chat): the viewer's relation to the host."""
    profile = profile_for(user.id)
    return {
        "is_gift_giver_of_anchor": gifted or profile.gifter_level > 0,
        "is_subscriber_of_anchor": profile.subscriber,
        "is_mutual_following_with_anchor": profile.follow_status == 2,
        "is_follower_of_anchor": profile.follow_status >= 1,
        "is_moderator_of_anchor": profile.moderator,
    }


def common(key: str | None = None, pattern: str = "", *, color: str = "#ffffffff", shown: bool = True) -> Body:
    """The per-kind part of ``CommonMessageData``; method, msg_id, room_id and create_time are added
    when the message is encoded. ``key`` must not contain "follow"/"share" except on social messages:
    TikTokLive derives FollowEvent/ShareEvent from it. ``shown=False`` for messages that never appear
    in the chat area (a captured battle start carries no ``is_show_msg``)."""
    body: Body = {"is_show_msg": True} if shown else {}
    if key:
        body["display_text"] = text(key, pattern, color=color)
    return body
