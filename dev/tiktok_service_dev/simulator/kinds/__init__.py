"""Every TikTok LIVE message kind TikTokLive 7.0.1 maps, built with the library's own classes.

* :func:`every_kind_drafts` - one message per mapped method (62, ``WebcastControlMessage`` included),
  plus a few variants a consumer must tell apart (super fan barrage and treasure box, live pause and
  unpause): :data:`EVERY_KIND_PLAN`. A room sends them with ``Scenario(every_kind=True)`` or
  ``POST /_sim/rooms/{username}/send``; :func:`sent_by_method` reads them back from ``GET /sent``.
* :data:`SEQUENCE_KINDS` / :data:`SINGLE_KINDS` - what the ``mix`` may weight besides the bulk kinds:
  whole battles, polls, subscription drives, guest sessions, goal runs, and single rarer messages.

Families live in ``viewers``, ``battle``, ``revenue``, ``engagement`` and ``notices``; ``shapes`` has the shared
TikTok-shaped pieces and ``base`` the slow-path encoder.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..scenario import SimUser
from . import battle, engagement, notices, revenue, viewers
from .base import Draft, Stage, encode_body, kind_name, message_class

__all__ = [
    "EVERY_KIND_METHODS",
    "EVERY_KIND_PLAN",
    "EVERY_KIND_SIZE",
    "SEQUENCE_KINDS",
    "SINGLE_KINDS",
    "Draft",
    "Stage",
    "encode_body",
    "every_kind_drafts",
    "kind_name",
    "message_class",
    "sent_by_method",
]

# Variant labels of the every-kind set (reported as ``data``-independent ``variant`` in GET /sent).
DEFAULT = "default"


def every_kind_drafts(stage: Stage, msg_id_at: Callable[[int], int]) -> list[tuple[str, Draft]]:
    """One draft per mapped method, in send order, as ``(variant, draft)``.

    ``msg_id_at(i)`` is the msg_id the i-th draft will get: the ``ImDelete`` deletes the set's chat
    message and the ``RoomPin`` pins it, as on TikTok. Live pause and unpause come last; the set never
    ends the live (a room ends it with ``live_end_after`` or ``POST /end``).
    """
    out: list[tuple[str, Draft]] = []

    def add(draft: Draft, variant: str = DEFAULT) -> None:
        out.append((variant, draft))

    chat = viewers.chat(stage)
    add(chat, "emote_mention")
    add(viewers.emote_chat(stage))
    add(viewers.member(stage))
    add(viewers.like(stage))
    add(viewers.follow(stage), "follow")
    add(viewers.barrage(stage))
    add(viewers.superfan_barrage(stage), "super_fan")
    assert chat.user is not None
    add(viewers.im_delete(stage, [msg_id_at(0)], chat.user))
    add(viewers.question(stage))
    add(viewers.caption(stage))
    add(viewers.room_user_seq(stage))
    add(viewers.unauthorized_member(stage))
    add(viewers.live_intro(stage))
    add(viewers.speaker(stage))
    add(viewers.room_pin(stage, msg_id_at(0)))

    fight = battle.Battle.open(stage)
    add(battle.link_mic_method(stage, fight))
    add(battle.link_mic_battle(stage, fight), "open")
    add(battle.link_mic_armies(stage, fight))
    add(battle.fan_ticket(stage, fight))
    add(battle.battle_task(stage, fight))
    add(battle.item_card(stage, fight))
    add(battle.punish_finish(stage, fight))
    guest, channel = stage.viewer(), stage.new_id()
    add(battle.link_layer(stage, channel, guest), "guest_join")
    add(battle.link_message(stage, channel, guest), "guest_join")
    add(battle.layout_state(stage, channel))
    add(battle.link_state(stage, channel, guest))

    add(revenue.gift(stage), "to_guest")
    add(revenue.gift_broadcast(stage))
    add(revenue.envelope(stage))
    add(revenue.envelope(stage, super_fan=True), "super_fan_box")
    add(revenue.goal_update(stage))
    add(revenue.sub_notify(stage))
    add(revenue.sub_pin(stage))
    add(engagement.poll(stage), "start")
    add(engagement.rank_update(stage))
    add(engagement.rank_text(stage))
    add(engagement.hourly_rank_reward(stage))
    add(engagement.game_rank_notify(stage))
    add(revenue.oec_live_shopping(stage))
    add(revenue.viewer_picks(stage))
    add(revenue.boost_card(stage))
    add(revenue.gift_panel_update(stage))
    add(revenue.gift_prompt(stage))
    add(revenue.gift_dynamic_restriction(stage))
    add(revenue.partnership_drops(stage))
    add(revenue.partnership_game_offline(stage))
    add(revenue.partnership_punish(stage))

    add(notices.notice(stage))
    add(notices.toast(stage))
    add(notices.system(stage))
    add(notices.room(stage))
    add(notices.room_notify(stage))
    add(notices.room_verify(stage))
    add(notices.bottom(stage))
    add(notices.capsule(stage))
    add(notices.guide(stage))
    add(notices.in_room_banner(stage))
    add(notices.marquee(stage))
    add(notices.msg_detect(stage))
    add(notices.perception(stage))
    add(notices.access_control(stage))
    add(notices.access_recall(stage))
    add(notices.live_game_intro(stage))
    add(notices.control(stage, notices.STREAM_PAUSED), "pause")
    add(notices.control(stage, notices.STREAM_UNPAUSED), "unpause")
    return out


def _every_kind_plan() -> tuple[tuple[str, str], ...]:
    host = SimUser(1, "host", "Host", "")
    stage = Stage(random.Random(0), (host,), host, 1, lambda: 0)
    return tuple((d.method, variant) for variant, d in every_kind_drafts(stage, lambda i: i + 1))


EVERY_KIND_PLAN: tuple[tuple[str, str], ...] = _every_kind_plan()
"""``(method, variant)`` of each message of the every-kind set, in send order."""
EVERY_KIND_METHODS: tuple[str, ...] = tuple(dict.fromkeys(method for method, _ in EVERY_KIND_PLAN))
"""The 62 methods the every-kind set covers, in send order (each once; variants share a method)."""
EVERY_KIND_SIZE = len(EVERY_KIND_PLAN)
"""Messages in the every-kind set (more than 62: barrage, envelope and control have variants)."""


def sent_by_method(messages: Iterable[Mapping[str, Any]], kind: str = "every_kind") -> dict[str, list[int]]:
    """``GET /sent`` messages of one kind (the every-kind set by default) -> method -> msg_ids, in
    send order: what a consumer test compares with what it received."""
    out: dict[str, list[int]] = {}
    for message in messages:
        if message["kind"] == kind:
            out.setdefault(message["method"], []).append(message["msg_id"])
    return out


def _goal_sequence(stage: Stage) -> Iterator[Draft]:
    """A LIVE goal creeping towards its target, one contributor at a time."""
    progress = stage.rng.randrange(0, 400)
    for _ in range(stage.rng.randrange(3, 7)):
        progress += stage.rng.randrange(1, 60)
        yield revenue.goal_update(stage, progress)


# Mix kinds that open a multi-message sequence, interleaved with the rest of the traffic.
SEQUENCE_KINDS: dict[str, Callable[[Stage], Iterator[Draft]]] = {
    "battle": battle.battle_sequence,
    "poll": engagement.poll_sequence,
    "subscription": revenue.subscription_sequence,
    "guest": battle.guest_sequence,
    "goal": _goal_sequence,
}

# Mix kinds that are one message each.
SINGLE_KINDS: dict[str, Callable[[Stage], Draft]] = {
    "emote": viewers.emote_chat,
    "barrage": viewers.barrage,
    "super_fan": viewers.superfan_barrage,
    "question": viewers.question,
    "caption": viewers.caption,
    "pin": viewers.room_pin,
    "envelope": revenue.envelope,
    "gift_broadcast": revenue.gift_broadcast,
    "rank": engagement.rank_update,
    "shopping": revenue.oec_live_shopping,
}
