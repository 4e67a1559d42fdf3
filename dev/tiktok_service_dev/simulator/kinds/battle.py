"""Co-host battles and link-mic: the host links up with a rival creator, a battle opens, gifts move the
scores (per side in ``hostscore``, per gifter in ``user_armies``), the battle finishes with a result per
side, then the punishment phase ends. Multi-guest rooms send layer/state/list messages as guests join
and leave.

:class:`Battle` carries one battle's state so that every message of a sequence agrees (same battle id,
channel, anchors, monotonically growing scores).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..scenario import SimUser
from .base import Draft, Stage, draft, other_host, other_room_id
from .shapes import Body, avatar, common, image, small_user, text

BATTLE_SECONDS = 300
PUNISH_SECONDS = 60


@dataclass
class Battle:
    """Two anchors (the host and a rival), their scores and their gifters' contributions."""

    battle_id: int
    channel_id: int
    start_ms: int
    host: SimUser
    rival: SimUser
    rival_room_id: int
    host_room_id: int
    scores: dict[int, int] = field(default_factory=dict)  # anchor id -> score
    gifters: dict[int, dict[SimUser, int]] = field(default_factory=dict)  # anchor id -> gifter -> score

    @classmethod
    def open(cls, stage: Stage) -> Battle:
        rival = other_host(stage, stage.rng.randrange(4))
        battle = cls(
            stage.new_id(), stage.new_id(), stage.now_ms, stage.host, rival, other_room_id(stage), stage.room_id
        )
        for anchor in (battle.host, battle.rival):
            battle.scores[anchor.id] = 0
            battle.gifters[anchor.id] = {}
        return battle

    def add_gift(self, anchor: SimUser, gifter: SimUser, diamonds: int) -> None:
        self.scores[anchor.id] += diamonds
        side = self.gifters[anchor.id]
        side[gifter] = side.get(gifter, 0) + diamonds

    def settings(self, status: str) -> Body:
        return {
            "battle_id": self.battle_id,
            "start_time_ms": self.start_ms,
            "duration": BATTLE_SECONDS,
            "channel_id": self.channel_id,
            "status": status,
            "battle_type": "NORMAL_BATTLE",
            "end_time_ms": self.start_ms + BATTLE_SECONDS * 1000,
        }

    def anchors_info(self) -> list[Body]:
        return [
            {
                "key": anchor.id,
                "value": {
                    "user": {
                        "user_id": anchor.id,
                        "nick_name": anchor.nickname,
                        "avatar_thumb": avatar(anchor.id),
                        "display_id": anchor.unique_id,
                        "room_id": room_id,
                    }
                },
            }
            for anchor, room_id in ((self.host, self.host_room_id), (self.rival, self.rival_room_id))
        ]

    def user_armies(self, anchor: SimUser) -> Body:
        """``BattleUserArmies``: the side's score and its top gifters, best first."""
        ranked = sorted(self.gifters[anchor.id].items(), key=lambda item: -item[1])[:3]
        return {
            "user_armies": [
                {
                    "user_id": user.id,
                    "score": score,
                    "nickname": user.nickname,
                    "avatar_thumb": avatar(user.id),
                    "diamond_score": score,
                    "user_id_str": str(user.id),
                }
                for user, score in ranked
            ],
            "hostscore": self.scores[anchor.id],
            "anchor_id_str": str(anchor.id),
        }

    def results(self) -> dict[str, Body]:
        host_score, rival_score = self.scores[self.host.id], self.scores[self.rival.id]

        def outcome(mine: int, theirs: int) -> str:
            return "DRAW" if mine == theirs else "WIN" if mine > theirs else "LOSE"

        return {
            str(self.host.id): {
                "user_id": self.host.id,
                "result": outcome(host_score, rival_score),
                "score": host_score,
            },
            str(self.rival.id): {
                "user_id": self.rival.id,
                "result": outcome(rival_score, host_score),
                "score": rival_score,
            },
        }


def link_mic_method(stage: Stage, battle: Battle) -> Draft:
    """The rival's join into the host's link-mic channel (co-host session). TikTok's numbering of
    ``message_type`` here is not public; the value is a placeholder consumers should not rely on."""
    return draft(
        "WebcastLinkMicMethod",
        battle.rival,
        common=common(shown=False),
        message_type=7,
        channel_id=battle.channel_id,
        user_id=battle.rival.id,
        from_user_id=battle.host.id,
        to_user_id=battle.rival.id,
        from_room_id=battle.rival_room_id,
        start_time_ms=battle.start_ms - 5000,
        layout=1,
        match_type=1,
        rival_anchor_id=battle.rival.id,
        linked_users=[small_user(battle.host), small_user(battle.rival)],
    )


def link_mic_battle(stage: Stage, battle: Battle, *, finished: bool = False) -> Draft:
    """Battle opened (``OPEN``, status STARTED) or finished (``FINISH`` with a result per anchor)."""
    body: Body = {
        "common": common(shown=False),
        "battle_id": battle.battle_id,
        "battle_settings": battle.settings("BATTLE_FINISHED" if finished else "BATTLE_STARTED"),
        "action": "FINISH" if finished else "OPEN",
        "anchors_info": battle.anchors_info(),
        "invitee_gift_permission_type": "HAS_GIFT_PERMISSION",
        "action_by_user_id": battle.host.id,
    }
    if finished:
        body["battle_result"] = battle.results()
        body["armies"] = [{"key": a.id, "value": battle.user_armies(a)} for a in (battle.host, battle.rival)]
    return Draft("WebcastLinkMicBattle", battle.host, body)


def link_mic_armies(stage: Stage, battle: Battle, *, ended: bool = False) -> Draft:
    """A gift moved a score: both sides' armies, the gift that triggered it, or the final snapshot."""
    gifter = stage.viewer()
    anchor = battle.host if stage.rng.random() < 0.6 else battle.rival
    gift_id, diamonds = stage.rng.choice(((5655, 1), (5487, 5), (6104, 99), (5879, 30)))
    count = stage.rng.choice((1, 1, 5, 10))
    if not ended:
        battle.add_gift(anchor, gifter, diamonds * count)
    body: Body = {
        "common": common(shown=False),
        "battle_id": battle.battle_id,
        "armies": {str(a.id): battle.user_armies(a) for a in (battle.host, battle.rival)},
        "channel_id": battle.channel_id,
        "update_battle_score_time": stage.now_ms,
        "trigger_reason": "BATTLE_END" if ended else "SCORE_UPDATE",
        "battle_settings": battle.settings("BATTLE_FINISHED" if ended else "BATTLE_STARTED"),
    }
    if not ended:
        body.update(
            from_user_id=gifter.id,
            gift_id=gift_id,
            gift_count=count,
            gift_icon_image=image(f"webcast-va/sim-gift-{gift_id}"),
            total_diamond_count=diamonds * count,
            repeat_count=count,
            send_gift_success_time=stage.now_ms - 40,
        )
    return Draft("WebcastLinkMicArmies", None if ended else gifter, body)


def fan_ticket(stage: Stage, battle: Battle) -> Draft:
    """Fan tickets (link-mic score shown under each guest's window)."""
    return draft(
        "WebcastLinkMicFanTicketMethod",
        None,
        common=common(shown=False),
        fan_ticket_room_notice={
            "user_fan_ticket": [
                {"user_id": a.id, "fan_ticket": battle.scores[a.id], "match_total_score": battle.scores[a.id]}
                for a in (battle.host, battle.rival)
            ],
            "total_linkmic_fan_ticket": sum(battle.scores.values()),
            "match_id": battle.battle_id,
            "event_time": stage.now_ms,
            "score_type": "ALL_FAN_TICKET",
        },
    )


def battle_task(stage: Stage, battle: Battle) -> Draft:
    """A bonus task during the battle (progress from one gifter)."""
    return draft(
        "WebcastLinkmicBattleTaskMessage",
        None,
        common=common(shown=False),
        task_message_type="TASK_UPDATE",
        task_update={
            "progress": stage.rng.randrange(1, 100),
            "from_user_id": stage.viewer().id,
            "prompt_key": "pm_mt_battle_task_progress",
        },
        battle_id=battle.battle_id,
    )


def item_card(stage: Stage, battle: Battle) -> Draft:
    """A power-up card used in the battle (critical strike on the host's side)."""
    return draft(
        "WebcastLinkMicBattleItemCard",
        None,
        common=common(shown=False),
        battle_id=battle.battle_id,
        msg_type="USE_CRITICAL_STRIKE_CARD",
        use_critical_strike_card={
            "anchor_id": battle.host.id,
            "display_content": text("pm_mt_battle_critical_strike", "Critical strike! Gifts count x2 for 30s"),
        },
    )


def punish_finish(stage: Stage, battle: Battle) -> Draft:
    return draft(
        "WebcastLinkMicBattlePunishFinish",
        None,
        common=common(shown=False),
        channel_id=battle.channel_id,
        op_uid=battle.host.id,
        reason="TIME_UP",
        battle_id=battle.battle_id,
        battle_settings=battle.settings("BATTLE_PUNISH_FINISHED"),
    )


def battle_sequence(stage: Stage, updates: int = 12) -> Iterator[Draft]:
    """A whole battle: link-mic join, open, score updates (with fan tickets, a task, a card), finish,
    final armies, end of punishment. Each ``next()`` is one message; the caller interleaves them."""
    battle = Battle.open(stage)
    yield link_mic_method(stage, battle)
    yield link_mic_battle(stage, battle)
    for index in range(updates):
        yield link_mic_armies(stage, battle)
        if index % 4 == 3:
            yield fan_ticket(stage, battle)
        if index == updates // 2:
            yield battle_task(stage, battle)
            yield item_card(stage, battle)
    yield link_mic_battle(stage, battle, finished=True)
    yield link_mic_armies(stage, battle, ended=True)
    yield punish_finish(stage, battle)


# -- multi-guest ------------------------------------------------------------------------------------


def _player(user: SimUser, room_id: int) -> Body:
    return {"room_id": room_id, "user_id": user.id}


def layout_state(stage: Stage, channel_id: int) -> Draft:
    return draft(
        "WebcastLinkMicLayoutStateMessage",
        None,
        common=common(shown=False),
        channel_id=channel_id,
        scene=4,
        version=stage.rng.randrange(1, 50),
        biz_spot_list=[{"spot_id": i, "pos_identity": {"type": "IDENTITY_EMPTY_SLOT"}} for i in range(1, 4)],
    )


def link_state(stage: Stage, channel_id: int, guest: SimUser) -> Draft:
    return draft(
        "WebcastLinkStateMessage",
        None,
        common=common(shown=False),
        channel_id=channel_id,
        scene="MULTI_LIVE",
        version=stage.rng.randrange(1, 50),
        layout={"layout_id": "grid_4", "layout_key": "multi_guest_grid"},
        user_states=[
            {
                "user": _player(guest, stage.room_id),
                "linkmic_id": str(guest.id),
                "online_user_state": "STATE_NORMAL",
                "audio_muted": "MEDIA_NORMAL",
                "video_muted": "MEDIA_NORMAL",
            }
        ],
        state_type="STATE_ONLINE_USER_STATE",
    )


def link_layer(stage: Stage, channel_id: int, guest: SimUser, *, leaving: bool = False) -> Draft:
    """A guest joins (the linked list changes) or leaves the host's multi-guest grid."""
    body: Body = {
        "common": common(shown=False),
        "channel_id": channel_id,
        "scene": "MULTI_LIVE",
        "rtc_room_id": channel_id,
    }
    if leaving:
        body.update(
            message_type="LINKER_LEAVE", leave_content={"leaver": _player(guest, stage.room_id), "leave_reason": 1}
        )
    else:
        linked = {"user": _player(guest, stage.room_id), "linkmic_id": str(guest.id), "user_type": "GUEST"}
        body.update(
            message_type="LINKER_LIST_CHANGE",
            list_change_content={"type": 1, "list": {"linked_list": [linked]}},
        )
    return Draft("WebcastLinkLayerMessage", guest, body)


def link_message(stage: Stage, channel_id: int, guest: SimUser, *, leaving: bool = False) -> Draft:
    """The older link message for the same join/leave (``enter_content``/``leave_content``);
    ``message_type`` 6/7 are TYPE_LINKER_ENTER/LEAVE of the library's v2 ``LinkMessageType``."""
    body: Body = {"common": common(shown=False), "linker_id": channel_id, "scene": 4}
    if leaving:
        body.update(
            message_type=7, leave_content={"user_id": guest.id, "linkmic_id_str": str(guest.id), "leave_reason": 1}
        )
    else:
        body.update(
            message_type=6,
            enter_content={
                "linked_users": [
                    {
                        "user": small_user(guest),
                        "linkmic_id_str": str(guest.id),
                        "link_status": "STATUS_LINKED",
                        "link_type": "TYPE_VIDEO",
                        "user_position": 1,
                    }
                ]
            },
        )
    return Draft("WebcastLinkMessage", guest, body)


def guest_sequence(stage: Stage, stay: int = 4) -> Iterator[Draft]:
    """A viewer joins the multi-guest grid, stays for a few state updates, then leaves."""
    guest = stage.viewer()
    channel_id = stage.new_id()
    yield link_layer(stage, channel_id, guest)
    yield link_message(stage, channel_id, guest)
    yield layout_state(stage, channel_id)
    for _ in range(stay):
        yield link_state(stage, channel_id, guest)
    yield link_layer(stage, channel_id, guest, leaving=True)
    yield link_message(stage, channel_id, guest, leaving=True)
