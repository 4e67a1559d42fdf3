"""TikTokLive events -> our envelopes.

Every function here is pure (no I/O): given a decoded TikTokLive event it returns what to
publish. TikTok's schema drifts, so every field is read defensively: a field that decodes
empty or with the wrong shape becomes a neutral value and the event is flagged in
`Normalised.drift`, so the caller can count it — nothing here raises on odd input.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from TikTokLive.events import proto_events as pe
from TikTokLive.events.custom_events import FollowEvent, ShareEvent

from tiktok_service.domain.events import Envelope, EventType, User
from tiktok_service.domain.streaks import ClosedStreak, StreakStep

#: Unknown messages keep at most this much of their payload (base64) in the envelope.
UNKNOWN_PAYLOAD_LIMIT = 4096


@dataclass(slots=True)
class Context:
    """What the connector knows that the event does not."""

    livestream_id: str
    room_id: int


@dataclass(slots=True)
class Normalised:
    envelope: Envelope
    drift: bool = False


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def event_id(event: Any) -> tuple[str, bool]:
    """TikTok's msg_id as our id; a content hash when the message carries none (drift)."""
    common = getattr(event, "common", None)
    msg_id = _int(getattr(common, "msg_id", 0)) if common is not None else 0
    if msg_id > 0:
        return str(msg_id), False
    digest = hashlib.blake2b(bytes(event), digest_size=12).hexdigest()
    return f"h{digest}", True


def event_time_ms(event: Any, fallback_ms: int) -> int:
    common = getattr(event, "common", None)
    created = _int(getattr(common, "create_time", 0)) if common is not None else 0
    if created <= 0:
        return fallback_ms
    # TikTok sends milliseconds; some messages carry seconds.
    return created * 1000 if created < 10_000_000_000 else created


def user_of(event: Any) -> User | None:
    user = getattr(event, "user", None)
    if user is None:
        return None
    user_id = _int(getattr(user, "id", 0))
    # `display_id` is the @handle; the library's `unique_id` alias only exists on its
    # ExtendedUser wrapper, which it does not always apply.
    unique_id = _str(getattr(user, "display_id", ""))
    nickname = _str(getattr(user, "nickname", ""))
    if not user_id and not unique_id:
        return None
    return User(user_id, unique_id, nickname)


def _envelope(event: Any, kind: EventType, ctx: Context, now_ms: int, data: dict[str, Any]) -> Normalised:
    eid, drift = event_id(event)
    user = user_of(event)
    return Normalised(
        Envelope(eid, kind, ctx.livestream_id, ctx.room_id, event_time_ms(event, now_ms), user, data),
        drift=drift,
    )


def comment(event: pe.CommentEvent, ctx: Context, now_ms: int) -> Normalised:
    text = _str(event.content)
    result = _envelope(event, EventType.COMMENT, ctx, now_ms, {"text": text})
    result.drift = result.drift or not isinstance(event.content, str)
    return result


def like(event: pe.LikeEvent, ctx: Context, now_ms: int) -> Normalised:
    result = _envelope(event, EventType.LIKE, ctx, now_ms, {"count": _int(event.count), "total": _int(event.total)})
    # Seen in captured 2023 traffic: `count` decoding as a list.
    result.drift = result.drift or not isinstance(event.count, int) or not isinstance(event.total, int)
    return result


def join(event: pe.JoinEvent, ctx: Context, now_ms: int) -> Normalised:
    return _envelope(event, EventType.JOIN, ctx, now_ms, {"member_count": _int(event.member_count)})


def social(event: pe.SocialEvent, ctx: Context, now_ms: int) -> Normalised | None:
    """Follow and share; other social messages (display keys we do not model) yield None."""
    if isinstance(event, FollowEvent):
        return _envelope(event, EventType.FOLLOW, ctx, now_ms, {"follow_count": _int(event.follow_count)})
    if isinstance(event, ShareEvent):
        data = {"share_count": _int(event.share_count), "share_target": _str(event.share_target)}
        return _envelope(event, EventType.SHARE, ctx, now_ms, data)
    return None


def viewers(event: pe.RoomUserSeqEvent, ctx: Context, now_ms: int) -> Normalised:
    data = {"viewer_count": _int(event.total), "total_viewers": _int(event.total_user)}
    return _envelope(event, EventType.VIEWER, ctx, now_ms, data)


def live_end(event: pe.ControlEvent, ctx: Context, now_ms: int) -> Normalised:
    return _envelope(event, EventType.LIVE_END, ctx, now_ms, {"action": _int(event.action)})


def gift_step(event: pe.GiftEvent, now_ms: int) -> tuple[StreakStep, dict[str, Any], User | None, bool]:
    """A gift message as a streak step plus the gift's description."""
    eid, drift = event_id(event)
    gift = getattr(event, "gift", None)
    gift_id = _int(event.gift_id) or _int(getattr(gift, "id", 0))
    diamonds = _int(getattr(gift, "diamond_count", 0)) if gift is not None else 0
    streakable = gift is not None and _int(getattr(gift, "type", 0)) == 1
    user = user_of(event)
    step = StreakStep(
        key=(user.id if user else 0, gift_id, _int(event.group_id)),
        msg_id=eid,
        repeat_count=_int(event.repeat_count),
        repeat_end=bool(_int(event.repeat_end)),
        streakable=streakable,
        time_ms=event_time_ms(event, now_ms),
    )
    description = {
        "gift_id": gift_id,
        "gift_name": _str(getattr(gift, "name", "")) if gift is not None else "",
        "diamond_count": diamonds,
        "streakable": streakable,
        "group_id": _int(event.group_id),
    }
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
