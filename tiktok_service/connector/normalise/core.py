"""The bulk kinds, normalised field by field: comments, gifts, likes, joins, viewers, social.

These are most of a room's traffic, so each is read with plain attribute access and no
generic conversion. Every function is pure: given a decoded TikTokLive event it returns
what to publish; a field of the wrong shape becomes a neutral value and flags drift.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tiktok_service.connector.normalise.common import (
    Context,
    Normalised,
    as_int,
    as_str,
    display_type,
    event_id,
    event_time_ms,
    image_url,
    user_from,
    user_of,
)
from tiktok_service.connector.normalise.proto_json import TOP_LEVEL_SKIP, message_to_json
from tiktok_service.domain import catalogue
from tiktok_service.domain.events import Envelope, EventType, User
from tiktok_service.domain.streaks import ClosedStreak, StreakStep

#: Unknown messages keep at most this much of their payload (base64) in the envelope.
UNKNOWN_PAYLOAD_LIMIT = 4096


def envelope_of(event: Any, kind: EventType, ctx: Context, now_ms: int, data: dict[str, Any]) -> Normalised:
    eid, drift = event_id(event)
    return Normalised(
        Envelope(eid, kind, ctx.livestream_id, ctx.room_id, event_time_ms(event, now_ms), user_of(event), data),
        drift=drift,
    )


def _users_json(users: Any) -> list[dict[str, Any]]:
    found = (user_from(u) for u in users)
    return [u.to_json() for u in found if u is not None]


def comment(event: Any, ctx: Context, now_ms: int) -> Normalised:
    text = as_str(event.content)
    data: dict[str, Any] = {"text": text}
    if language := as_str(event.content_language):
        data["language"] = language
    if event.emotes:
        emotes = []
        for item in event.emotes:
            emote = item.emote
            entry: dict[str, Any] = {"index": as_int(item.index)}
            if emote is not None:
                entry["emote_id"] = as_str(emote.emote_id)
                if (url := image_url(emote.image)) is not None:
                    entry["image_url"] = url
            emotes.append(entry)
        data["emotes"] = emotes
    if event.mention_users:
        data["mentions"] = _users_json(event.mention_users)
    if event.mention_user_list:
        data["mention_user_ids"] = [str(as_int(i)) for i in event.mention_user_list]
    if event.at_user is not None and (at_user := user_from(event.at_user)) is not None:
        data["at_user"] = at_user.to_json()
    result = envelope_of(event, EventType.COMMENT, ctx, now_ms, data)
    result.drift = result.drift or not isinstance(event.content, str)
    return result


def like(event: Any, ctx: Context, now_ms: int) -> Normalised:
    result = envelope_of(
        event, EventType.LIKE, ctx, now_ms, {"count": as_int(event.count), "total": as_int(event.total)}
    )
    # Seen in captured 2023 traffic: `count` decoding as a list.
    result.drift = result.drift or not isinstance(event.count, int) or not isinstance(event.total, int)
    return result


def join(event: Any, ctx: Context, now_ms: int) -> Normalised:
    return envelope_of(event, EventType.JOIN, ctx, now_ms, {"member_count": as_int(event.member_count)})


def social(event: Any, ctx: Context, now_ms: int, kind: EventType | None = None) -> Normalised:
    """Follow and share by their display key; any other social message is `tiktok.social`.

    `kind` is the classification when the caller already made it (the router does, to count).
    """
    if kind is None:
        kind = catalogue.classify_social(display_type(event))
    if kind is EventType.FOLLOW:
        return envelope_of(event, kind, ctx, now_ms, {"follow_count": as_int(event.follow_count)})
    if kind is EventType.SHARE:
        data = {"share_count": as_int(event.share_count), "share_target": as_str(event.share_target)}
        return envelope_of(event, kind, ctx, now_ms, data)
    return envelope_of(event, kind, ctx, now_ms, message_to_json(event, TOP_LEVEL_SKIP))


def viewers(event: Any, ctx: Context, now_ms: int) -> Normalised:
    data: dict[str, Any] = {"viewer_count": as_int(event.total), "total_viewers": as_int(event.total_user)}
    if event.ranks:
        top = []
        for contributor in event.ranks:
            entry: dict[str, Any] = {"rank": as_int(contributor.rank), "score": as_int(contributor.score)}
            if (who := user_from(contributor.user)) is not None:
                entry["user"] = who.to_json()
            top.append(entry)
        data["top_viewers"] = top
    return envelope_of(event, EventType.VIEWER, ctx, now_ms, data)


def control(event: Any, ctx: Context, now_ms: int) -> Normalised:
    """End, pause, unpause or another control action; `action` is TikTok's number."""
    action = as_int(event.action)
    data = message_to_json(event, TOP_LEVEL_SKIP)
    data["action"] = action
    return envelope_of(event, catalogue.classify_control(action), ctx, now_ms, data)


def gift_step(event: Any, now_ms: int) -> tuple[StreakStep, dict[str, Any], User | None, bool]:
    """A gift message as a streak step plus the gift's description."""
    eid, drift = event_id(event)
    gift = getattr(event, "gift", None)
    gift_id = as_int(event.gift_id) or as_int(getattr(gift, "id", 0))
    diamonds = as_int(getattr(gift, "diamond_count", 0)) if gift is not None else 0
    streakable = gift is not None and as_int(getattr(gift, "type", 0)) == 1
    user = user_of(event)
    step = StreakStep(
        key=(user.id if user else 0, gift_id, as_int(event.group_id)),
        msg_id=eid,
        repeat_count=as_int(event.repeat_count),
        repeat_end=bool(as_int(event.repeat_end)),
        streakable=streakable,
        time_ms=event_time_ms(event, now_ms),
    )
    description: dict[str, Any] = {
        "gift_id": gift_id,
        "gift_name": as_str(getattr(gift, "name", "")) if gift is not None else "",
        "diamond_count": diamonds,
        "streakable": streakable,
        "group_id": as_int(event.group_id),
    }
    if gift is not None and (url := image_url(getattr(gift, "icon", None))) is not None:
        description["gift_image_url"] = url
    if event.to_user is not None and (to_user := user_from(event.to_user)) is not None:
        description["to_user"] = to_user.to_json()
    return step, description, user, drift or gift is None


def gift_event(streak: ClosedStreak, description: dict[str, Any], user: User | None, ctx: Context) -> Envelope:
    """The one gift event of a closed streak."""
    data = dict(description)
    data["repeat_count"] = streak.repeat_count
    data["total_diamonds"] = streak.repeat_count * int(description.get("diamond_count", 0))
    data["streak_complete"] = streak.complete
    return Envelope(streak.msg_id, EventType.GIFT, ctx.livestream_id, ctx.room_id, streak.time_ms, user, data)


def gift_progress(step: StreakStep, description: dict[str, Any], user: User | None, ctx: Context) -> Envelope:
    data = dict(description)
    data["repeat_count"] = step.repeat_count
    return Envelope(step.msg_id, EventType.GIFT_PROGRESS, ctx.livestream_id, ctx.room_id, step.time_ms, user, data)


def unknown(method: str, msg_id: int, payload: bytes, ctx: Context, now_ms: int) -> Envelope:
    """A message whose method we (or the library) do not model: kept, not dropped."""
    kept = payload[:UNKNOWN_PAYLOAD_LIMIT]
    data = {
        "method": method,
        "payload_b64": base64.b64encode(kept).decode(),
        "payload_size": len(payload),
        "truncated": len(payload) > len(kept),
    }
    eid = str(msg_id) if msg_id > 0 else "h" + hashlib.blake2b(payload, digest_size=12).hexdigest()
    return Envelope(eid, EventType.UNKNOWN, ctx.livestream_id, ctx.room_id, now_ms, None, data)


def connection(kind: EventType, ctx: Context, now_ms: int, seq: int, data: dict[str, Any]) -> Envelope:
    """Connect/disconnect markers the connector makes itself; ids unique per livestream."""
    return Envelope(
        f"{kind.value.rsplit('.', 1)[1]}-{now_ms}-{seq}", kind, ctx.livestream_id, ctx.room_id, now_ms, None, data
    )
