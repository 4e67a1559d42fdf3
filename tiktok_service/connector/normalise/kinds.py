"""Every kind that is not bulk traffic: the decoded message, plus summary fields for first-class kinds.

`data` is the message as proto3 JSON (see `proto_json`), so nothing TikTok sent is lost,
and first-class kinds add a few summary fields that are awkward to compute from the raw
shape (a battle's sides with their scores and supporters, a poll's options and votes...).
Those fields, their names and meanings are listed in `domain.event_schemas.DERIVED`; a
unit test holds the two together.

These messages are rare next to comments and likes, so the generic conversion is fine here.
"""

from __future__ import annotations

from collections.abc import Callable
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

E = EventType
Deriver = Callable[[Any], dict[str, Any]]


def _supporters(armies: Any) -> list[dict[str, Any]]:
    supporters = []
    for army in getattr(armies, "user_armies", None) or ():
        supporters.append(
            {
                "user_id": str(as_int(army.user_id)),
                "nickname": as_str(army.nickname),
                "score": as_int(army.score),
            }
        )
    return supporters


def _side(sides: dict[int, dict[str, Any]], anchor_id: int) -> dict[str, Any]:
    side = sides.get(anchor_id)
    if side is None:
        side = sides[anchor_id] = {"anchor_id": str(anchor_id)}
    return side


#: LinkMicBattle actions after which a side's result means something: FINISH, CUT_SHORT.
_BATTLE_OVER = frozenset({5, 6})


def _battle(event: Any) -> dict[str, Any]:
    sides: dict[int, dict[str, Any]] = {}
    # WIN is the enum's zero, which is also what an unset result decodes to: only a finished
    # battle's result is reported, so a running battle is never shown as won.
    over = as_int(event.action) in _BATTLE_OVER
    for anchor_id, result in (event.battle_result or {}).items():
        side = _side(sides, as_int(anchor_id))
        side["score"] = as_int(result.score)
        if over:
            side["result"] = getattr(result.result, "name", None) or str(as_int(result.result))
    for wrapper in event.armies or ():
        side = _side(sides, as_int(wrapper.key))
        if wrapper.value is not None:
            side.setdefault("score", as_int(wrapper.value.hostscore))
            side["supporters"] = _supporters(wrapper.value)
    return {"sides": list(sides.values())}


def _battle_armies(event: Any) -> dict[str, Any]:
    sides = []
    for anchor_id, armies in (event.armies or {}).items():
        sides.append(
            {"anchor_id": str(as_int(anchor_id)), "score": as_int(armies.hostscore), "supporters": _supporters(armies)}
        )
    return {"sides": sides}


_LINK_CONTENTS = (
    "invite",
    "reply",
    "create",
    "close",
    "enter",
    "leave",
    "cancel",
    "kick_out",
    "linked_list_change",
    "update_user",
    "waiting_list_change",
    "mute",
    "random_match",
    "update_user_setting",
    "mic_idx_update",
    "list_change",
    "cohost_list_change",
    "media_change",
    "reply_accept_notice",
    "sys_kick_out",
    "user_toast",
)


def _link_guest(event: Any) -> dict[str, Any]:
    for name in _LINK_CONTENTS:
        if getattr(event, f"{name}_content", None) is not None:
            return {"guest_action": name}
    return {}


def _poll(event: Any) -> dict[str, Any]:
    for phase in ("start", "update_votes", "end"):
        content = getattr(event, f"{phase}_content", None)
        if content is None:
            continue
        data: dict[str, Any] = {
            "poll_phase": "update" if phase == "update_votes" else phase,
            "options": [
                {"index": as_int(o.option_idx), "text": as_str(o.display_content), "votes": as_int(o.votes)}
                for o in content.option_list or ()
            ],
        }
        if phase == "start" and (title := as_str(content.title)):
            data["title"] = title
        return data
    return {}


def _question(event: Any) -> dict[str, Any]:
    question = event.data
    if question is None:
        return {}
    return {"question_id": str(as_int(question.question_id)), "text": as_str(question.content)}


def _emote(event: Any) -> dict[str, Any]:
    emotes = []
    for emote in event.emote_list or ():
        entry: dict[str, Any] = {"emote_id": as_str(emote.emote_id)}
        if (url := image_url(emote.image)) is not None:
            entry["image_url"] = url
        emotes.append(entry)
    return {"emotes": emotes}


def _pin(event: Any) -> dict[str, Any]:
    for kind in ("chat", "social", "gift", "member", "like"):
        pinned = getattr(event, f"{kind}_message", None)
        if pinned is not None:
            data: dict[str, Any] = {"pinned_kind": "comment" if kind == "chat" else kind}
            if kind == "chat":
                data["pinned_text"] = as_str(pinned.content)
            if (who := user_from(getattr(pinned, "user", None))) is not None:
                data["pinned_user"] = who.to_json()
            return data
    return {}


def _caption(event: Any) -> dict[str, Any]:
    return {"captions": {as_str(c.lang): as_str(c.content) for c in event.content or ()}}


def _goal(event: Any) -> dict[str, Any]:
    goal = event.goal
    if goal is None:
        return {}
    return {
        "goal_description": as_str(goal.description),
        "sub_goals": [
            {"id": str(as_int(s.id)), "progress": as_int(s.progress), "target": as_int(s.target)}
            for s in goal.sub_goals or ()
        ],
    }


#: Summary fields per first-class type (documented in `domain.event_schemas.DERIVED`).
DERIVERS: dict[EventType, Deriver] = {
    E.BATTLE: _battle,
    E.BATTLE_ARMIES: _battle_armies,
    E.LINK_MIC_GUEST: _link_guest,
    E.POLL: _poll,
    E.QUESTION: _question,
    E.EMOTE: _emote,
    E.PIN: _pin,
    E.CAPTION: _caption,
    E.GOAL: _goal,
}


def _user(event: Any, kind: EventType) -> User | None:
    if kind is E.QUESTION and event.data is not None:
        return user_from(event.data.user)
    return user_of(event)


def classify(method: str, event: Any) -> EventType:
    """The type of a decoded message of a known method (classifiers for the shared methods)."""
    if method == "WebcastBarrageMessage":
        # The super fan marker is the display type of either text: field 1 of `Text`, which
        # TikTokLiveProto v3 names `key` (TikTokLive 7.0.1 still reads `display_type`, the
        # v2 name, so its own SuperFanEvent never fires; we read the field v3 decodes).
        return catalogue.classify_barrage(
            as_str(getattr(event.content, "key", "")) if event.content is not None else "",
            as_str(getattr(event.common_barrage_content, "key", "")) if event.common_barrage_content else "",
        )
    if method == "WebcastEnvelopeMessage":
        info = event.envelope_info
        return catalogue.classify_envelope(display_type(event), as_int(info.business_type) if info else 0)
    return catalogue.type_of_method(method)


def decoded(event: Any, kind: EventType, ctx: Context, now_ms: int) -> Normalised:
    """A first-class or generic kind: the decoded message, plus the type's summary fields."""
    data = message_to_json(event, TOP_LEVEL_SKIP)
    derive = DERIVERS.get(kind)
    if derive is not None:
        data.update(derive(event))
    eid, drift = event_id(event)
    envelope = Envelope(
        eid, kind, ctx.livestream_id, ctx.room_id, event_time_ms(event, now_ms), _user(event, kind), data
    )
    return Normalised(envelope, drift=drift)
