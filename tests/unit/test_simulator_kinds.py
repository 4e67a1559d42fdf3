"""Every message kind the simulator sends, decoded with TikTokLive's own event classes."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from typing import Any

import pytest
from TikTokLive.events.proto_events import EVENT_MAPPINGS
from TikTokLive.proto import ProtoMessageFetchResultBaseProtoMessage

from tiktok_service_dev.simulator.kinds import (
    EVERY_KIND_METHODS,
    EVERY_KIND_SIZE,
    SEQUENCE_KINDS,
    SINGLE_KINDS,
    Draft,
    Stage,
    battle,
    engagement,
    every_kind_drafts,
    kind_name,
    message_class,
    revenue,
    viewers,
)
from tiktok_service_dev.simulator.messages import RoomEncoder
from tiktok_service_dev.simulator.profiles import profile_for
from tiktok_service_dev.simulator.scenario import (
    EVERY_KIND,
    RICH_SEQUENCE_KINDS,
    RICH_SINGLE_KINDS,
    Scenario,
    SimEvent,
    SimUser,
)
from tiktok_service_dev.simulator.timeline import EventGenerator, make_users
from tiktok_service_dev.simulator.wire import decode_fields

ROOM_ID = 7_270_193_599_273_683_745
NOW_MS = 1_765_000_123_456
HOST = SimUser(6_900_000_000_000_000_123, "the_host", "The Host", "MS4wLjABAAAAhost")
FIRST_ID = 7_400_000_000_000_000_000


def stage(seed: int = 1) -> Stage:
    return Stage(random.Random(seed), make_users(seed, 60), HOST, ROOM_ID, lambda: NOW_MS)


def decode(method: str, body: dict[str, Any], msg_id: int = FIRST_ID) -> Any:
    """Encode through the room's encoder (the path the room really uses) and parse the payload with
    the event class TikTokLive emits for that method."""
    event = SimEvent(0, msg_id, EVERY_KIND, method, None, body)
    wrapped = ProtoMessageFetchResultBaseProtoMessage().parse(RoomEncoder(ROOM_ID).encode(event, NOW_MS))
    assert (wrapped.method, wrapped.msg_id) == (method, msg_id)
    return EVENT_MAPPINGS[method]().parse(wrapped.payload)


def every_kind() -> list[tuple[str, Draft]]:
    return every_kind_drafts(stage(), lambda i: FIRST_ID + i)


def test_every_mapped_method_is_covered_once() -> None:
    assert len(EVERY_KIND_METHODS) == 62
    assert set(EVERY_KIND_METHODS) == set(EVENT_MAPPINGS)
    drafts = every_kind()
    assert [d.method for _, d in drafts][-2:] == ["WebcastControlMessage"] * 2  # pause, unpause last
    variants = [(d.method, v) for v, d in drafts]
    assert len(set(variants)) == len(variants)


@pytest.mark.parametrize(("index", "variant", "draft"), [(i, v, d) for i, (v, d) in enumerate(every_kind())])
def test_each_kind_decodes_with_the_library_and_round_trips(index: int, variant: str, draft: Draft) -> None:
    msg_id = FIRST_ID + index
    parsed = decode(draft.method, draft.body, msg_id)
    assert isinstance(parsed, EVENT_MAPPINGS[draft.method])
    common = parsed.common
    assert (common.method, common.msg_id, common.room_id, common.create_time) == (
        draft.method,
        msg_id,
        ROOM_ID,
        NOW_MS,
    )
    # Everything the simulator put in the body comes back: re-encoding the decoded event gives the
    # bytes of the message the library builds from the body (nothing dropped or mistyped on the way).
    # (Not ``to_dict()``: after TikTokLive swapped in its ExtendedUser, that fails inside betterproto2.)
    header = {**draft.body.get("common", {}), "method": draft.method, "msg_id": msg_id}
    expected = message_class(draft.method).from_dict({**draft.body, "common": {**header, "room_id": ROOM_ID}})
    expected.common.create_time = NOW_MS
    assert bytes(parsed) == bytes(expected)
    key = parsed.common.display_text.key if parsed.common.display_text else ""
    if draft.method != "WebcastSocialMessage":  # TikTokLive derives Follow/Share events from the key
        assert "follow" not in key and "share" not in key


def test_users_carry_avatar_badges_follow_role_and_levels() -> None:
    s = stage()
    for _ in range(40):
        draft = viewers.chat(s)
        user = decode(draft.method, draft.body).user
        assert draft.user is not None and user.id == draft.user.id and user.id_str == str(draft.user.id)
        profile = profile_for(user.id)
        assert user.display_id == draft.user.unique_id and user.avatar_thumb.url_list
        assert user.follow_info.follow_status == profile.follow_status
        scenes = {b.scene_type.name: b for b in user.badge_list}
        assert ("SUBSCRIBER" in scenes) is profile.subscriber
        assert ("ADMIN" in scenes) is profile.moderator
        if profile.gifter_level:
            assert scenes["USER_GRADE"].privilege_log_extra.level == str(profile.gifter_level)
        if profile.top_gifter_rank:
            rank_badge = scenes["BADGE_SCENE_TYPE_RANK_LIST"].image.image.url_list[0]
            assert f"ranklist_top_gifter_{profile.top_gifter_rank}.png" in rank_badge


def test_chat_has_emote_mention_and_language() -> None:
    draft = viewers.chat(stage())
    chat = decode(draft.method, draft.body)
    assert chat.content_language == "en"
    assert chat.emotes[0].emote.emote_id and chat.emotes[0].emote.image.url_list
    assert chat.at_user.display_id in chat.content and chat.mention_user_list == [chat.at_user.id]


def test_im_delete_and_room_pin_name_the_sets_chat_message() -> None:
    drafts = {(d.method, v): d for v, d in every_kind()}
    chat = drafts[("WebcastChatMessage", "emote_mention")]
    deleted = decode("WebcastImDeleteMessage", drafts[("WebcastImDeleteMessage", "default")].body)
    assert deleted.delete_msg_ids == [FIRST_ID] and deleted.delete_user_ids == [chat.user.id]  # type: ignore[union-attr]
    pin = decode("WebcastRoomPinMessage", drafts[("WebcastRoomPinMessage", "default")].body)
    assert pin.pin_msg_id == FIRST_ID == pin.chat_message.common.msg_id and pin.action.name == "PIN"


def test_battle_sequence_scores_per_side_and_per_user() -> None:
    s = stage(3)
    drafts = list(battle.battle_sequence(s, updates=12))
    methods = [d.method for d in drafts]
    assert methods[:2] == ["WebcastLinkMicMethod", "WebcastLinkMicBattle"]
    assert methods[-3:] == ["WebcastLinkMicBattle", "WebcastLinkMicArmies", "WebcastLinkMicBattlePunishFinish"]
    decoded = [decode(d.method, d.body) for d in drafts]
    opened, finished = decoded[1], decoded[-3]
    assert (opened.action.name, finished.action.name) == ("OPEN", "FINISH")
    battle_ids = {m.battle_id for m in decoded if hasattr(m, "battle_id") and m.battle_id}
    assert len(battle_ids) == 1
    armies = [m for m in decoded if type(m).__name__ == "LinkMicArmiesEvent"]
    host_scores = [m.armies[HOST.id].hostscore for m in armies]
    assert host_scores == sorted(host_scores) and host_scores[-1] > 0
    final = armies[-1]
    assert final.trigger_reason.name == "BATTLE_END"
    for anchor_id, side in final.armies.items():
        assert sum(u.score for u in side.user_armies) <= side.hostscore
        assert finished.battle_result[anchor_id].score == side.hostscore
    results = {r.result.name for r in finished.battle_result.values()}
    assert results in ({"WIN", "LOSE"}, {"DRAW"})
    assert {a.value.user.user_id for a in opened.anchors_info} == set(final.armies)


def test_poll_sequence_start_updates_end_with_growing_votes() -> None:
    drafts = list(engagement.poll_sequence(stage(4), updates=4))
    polls = [decode(d.method, d.body) for d in drafts]
    assert [p.message_type for p in polls] == [0, 2, 2, 2, 2, 1]
    assert len({p.poll_id for p in polls}) == 1
    labels = [o.display_content for o in polls[0].start_content.option_list]
    totals = [sum(o.votes for o in p.update_votes_content.option_list) for p in polls[1:-1]]
    assert totals == sorted(totals) and totals[0] > 0
    assert [o.display_content for o in polls[-1].end_content.option_list] == labels
    assert sum(o.votes for o in polls[-1].end_content.option_list) == totals[-1]


def test_subscription_and_control_and_superfan() -> None:
    s = stage(5)
    pin, *subs, unpin = (decode(d.method, d.body) for d in revenue.subscription_sequence(s))
    assert pin.action_type.value == 1 and unpin.action_type.name == "UNPIN" and subs
    assert all(n.sub_month >= 1 and n.user.id for n in subs)
    drafts = {(d.method, v): d for v, d in every_kind()}
    pause = decode("WebcastControlMessage", drafts[("WebcastControlMessage", "pause")].body)
    unpause = decode("WebcastControlMessage", drafts[("WebcastControlMessage", "unpause")].body)
    assert (pause.action.name, unpause.action.name) == ("STREAM_PAUSED", "STREAM_UNPAUSED")
    barrage = decode("WebcastBarrageMessage", drafts[("WebcastBarrageMessage", "super_fan")].body)
    assert barrage.content.key.startswith("ttlive_superfan")
    gift = decode("WebcastGiftMessage", drafts[("WebcastGiftMessage", "to_guest")].body)
    assert gift.to_user.id and gift.user.id != 0 and gift.repeat_end == 1 and gift.gift.image.url_list


@pytest.mark.parametrize("name", sorted(SEQUENCE_KINDS) + sorted(SINGLE_KINDS))
def test_mix_kinds_decode(name: str) -> None:
    s = stage(6)
    drafts = list(SEQUENCE_KINDS[name](s)) if name in SEQUENCE_KINDS else [SINGLE_KINDS[name](s)]
    for draft in drafts:
        assert decode(draft.method, draft.body).common.msg_id == FIRST_ID


def test_scenario_mix_kind_names_match_the_kinds_package() -> None:
    assert set(RICH_SEQUENCE_KINDS) == set(SEQUENCE_KINDS)
    assert set(RICH_SINGLE_KINDS) == set(SINGLE_KINDS) | {"im_delete"}


def test_kind_names() -> None:
    assert kind_name("WebcastLinkMicArmies") == "link_mic_armies"
    assert kind_name("WebcastChatMessage") == "chat"
    assert kind_name("WebcastLinkmicBattleTaskMessage") == "linkmic_battle_task"


def test_sent_log_users_report_the_profile_only_for_simulated_viewers() -> None:
    viewer = make_users(1, 1)[0]
    reported = viewer.to_json()
    assert reported["profile"] == profile_for(viewer.id).to_json()
    assert reported["avatar_url"] in user_body_urls(viewer)
    captured = SimUser(viewer.id, viewer.unique_id, viewer.nickname, "", synthetic=False)
    assert set(captured.to_json()) == {"id", "unique_id", "nickname"}  # nothing invented for real payloads


def user_body_urls(user: SimUser) -> list[str]:
    draft = viewers.chat(stage(), user, "hi", rich=False)
    return list(decode(draft.method, draft.body).user.avatar_thumb.url_list)


# A client is a separate process whose first messages build the library's classes lazily; some
# library bugs only show there (e.g. a User's fans_club status enum fails to resolve), so decode in
# a fresh interpreter that imported nothing but TikTokLive, like a connector does.
FRESH_DECODER = """
import base64, json, sys
from TikTokLive.events.proto_events import EVENT_MAPPINGS
failures = []
for method, payload in json.load(sys.stdin):
    try:
        EVENT_MAPPINGS[method]().parse(base64.b64decode(payload))
    except Exception as exc:
        failures.append([method, repr(exc)[:300]])
print(json.dumps(failures))
"""


def test_a_fresh_client_process_decodes_every_kind_and_the_realistic_mix() -> None:
    scenario = Scenario(seed=1, every_kind=True, mix_preset="realistic")
    events = EventGenerator(scenario, 1, room_id=ROOM_ID).take(EVERY_KIND_SIZE + 3000)
    encoded = RoomEncoder(ROOM_ID).encode_batch(events, NOW_MS)
    payloads = []
    for event, message in zip(events, encoded, strict=True):
        if event.method in EVENT_MAPPINGS:
            payload = decode_fields(message)[2]
            assert isinstance(payload, bytes)
            payloads.append((event.method, base64.b64encode(payload).decode()))
    result = subprocess.run(
        [sys.executable, "-c", FRESH_DECODER],
        input=json.dumps(payloads),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(result.stdout) == []
    assert {method for method, _ in payloads} == set(EVENT_MAPPINGS)
