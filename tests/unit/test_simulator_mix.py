"""The realistic mix (battles, polls, subscriptions ... among chat and likes), the every-kind set in a
room's timeline and ``Room.send_kinds`` (what ``POST /send`` does)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from TikTokLive.events.proto_events import EVENT_MAPPINGS

from tests.fake_socket import FakeSocket
from tiktok_service_dev.simulator.fixtures import fixture_events, load_captured
from tiktok_service_dev.simulator.kinds import EVERY_KIND_METHODS, EVERY_KIND_PLAN, EVERY_KIND_SIZE, sent_by_method
from tiktok_service_dev.simulator.room import Room, RoomError, RoomState
from tiktok_service_dev.simulator.scenario import (
    DEFAULT_MIX,
    EVERY_KIND,
    MIX_KINDS,
    REALISTIC_MIX,
    RICH_MIX_KINDS,
    Scenario,
    derive_msg_id,
)
from tiktok_service_dev.simulator.timeline import EventGenerator, generate

WAIT_S = 10.0


def fingerprint(events):
    return [(e.seq, e.msg_id, e.kind, e.method, e.user and e.user.id, e.data, e.variant) for e in events]


def realistic(count: int, seed: int = 11) -> list:
    return generate(Scenario(seed=seed, mix_preset="realistic"), count)


def test_realistic_mix_is_deterministic_by_seed() -> None:
    assert fingerprint(realistic(3000)) == fingerprint(realistic(3000))
    assert fingerprint(realistic(3000)) != fingerprint(realistic(3000, seed=12))


def test_realistic_mix_keeps_chat_likes_and_gifts_the_bulk() -> None:
    events = realistic(20_000)
    kinds = Counter(e.kind for e in events)
    rich = sum(kinds[k] for k in RICH_MIX_KINDS)
    assert 0.01 < rich / len(events) < 0.08
    assert (kinds["comment"] + kinds["like"] + kinds["gift"]) / len(events) > 0.8  # gift streaks count too
    for kind in ("battle", "poll", "subscription", "goal", "guest"):
        assert kinds[kind] > 0, kind
    methods = {e.method for e in events}
    assert {"WebcastLinkMicArmies", "WebcastPollMessage", "WebcastSubNotifyMessage"} <= methods
    assert methods <= set(EVENT_MAPPINGS) | {"WebcastFutureShinyMessage"}


def test_sequences_run_in_order_one_at_a_time() -> None:
    events = realistic(30_000, seed=5)
    battles: dict[int, list[str]] = defaultdict(list)
    open_battle: int | None = None
    for e in events:
        if e.kind != "battle":
            continue
        battle_id = e.data.get("battle_id")
        if battle_id is None:
            continue  # the link-up and fan tickets (keyed by channel / match id)
        if open_battle is None or battle_id != open_battle:
            assert not battles[battle_id], "a battle reappeared after another one"
            open_battle = battle_id
        battles[battle_id].append(e.method + (":" + e.data.get("action", "") if "action" in e.data else ""))
    assert battles
    for steps in battles.values():
        if steps[-1].endswith("PunishFinish"):
            assert steps[0] == "WebcastLinkMicBattle:OPEN"
            assert steps[-3:] == [
                "WebcastLinkMicBattle:FINISH",
                "WebcastLinkMicArmies",
                "WebcastLinkMicBattlePunishFinish",
            ]
    polls: dict[int, list[int]] = defaultdict(list)
    for e in events:
        if e.method == "WebcastPollMessage":
            polls[e.data["poll_id"]].append(e.data["message_type"])
    complete = [types for types in polls.values() if types[-1] == 1]
    assert complete and all(t[0] == 0 and set(t[1:-1]) == {2} for t in complete)


def test_im_delete_names_a_comment_the_room_sent() -> None:
    events = generate(Scenario(seed=3, mix={"comment": 10, "im_delete": 1}), 2000)
    comments = {e.msg_id: e.user.id for e in events if e.kind == "comment" and e.user}
    deletes = [e for e in events if e.kind == "im_delete"]
    assert deletes
    for e in deletes:
        (msg_id,) = e.data["delete_msg_ids"]
        assert comments[msg_id] == e.data["delete_user_ids"][0]


def test_default_mix_never_takes_the_slow_path() -> None:
    generator = EventGenerator(Scenario(seed=9), 9)
    events = generator.take(5000)
    assert {e.kind for e in events} <= set(MIX_KINDS)
    assert generator.open_sequences == []
    assert DEFAULT_MIX.keys() <= REALISTIC_MIX.keys()


def test_every_kind_set_starts_the_timeline_after_fixtures() -> None:
    generator = EventGenerator(Scenario(seed=4, every_kind=True), 4)
    first = generator.take(EVERY_KIND_SIZE + 3)
    every = first[:EVERY_KIND_SIZE]
    assert {e.kind for e in every} == {EVERY_KIND}
    assert list(dict.fromkeys(e.method for e in every)) == list(EVERY_KIND_METHODS)
    assert [e.msg_id for e in first] == [derive_msg_id(4, seq) for seq in range(EVERY_KIND_SIZE + 3)]
    assert [e.variant for e in every if e.method == "WebcastControlMessage"] == ["pause", "unpause"]
    assert all(e.kind != EVERY_KIND for e in first[EVERY_KIND_SIZE:])


@pytest.mark.parametrize(
    "bad", [{"mix_preset": "wild"}, {"mix": {"battle": 1, "duel": 1}}, {"every_kind": True, "users": 0}]
)
def test_invalid_new_options_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Scenario.from_dict(bad)


def test_new_options_roundtrip_and_preset_replaces_the_mix() -> None:
    scenario = Scenario.from_dict({"seed": 2, "every_kind": True, "mix_preset": "realistic", "mix": {"battle": 1}})
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert scenario.effective_mix() == REALISTIC_MIX
    assert Scenario(mix={"poll": 1}).effective_mix() == {"poll": 1.0}


async def test_send_kinds_goes_out_despite_total_and_can_end_the_live() -> None:
    room = Room("kim", Scenario(seed=1, rate=0, total=3))
    room.start()
    sock = FakeSocket()
    room.attach(sock)
    try:
        assert await room.wait_until(lambda: room.stats.events_sent == 3, WAIT_S)
        queued = room.send_kinds(end=True)
        assert len(queued) == EVERY_KIND_SIZE
        assert await room.wait_until(lambda: room.state is RoomState.ENDED, WAIT_S)
        assert room.stats.injected_sent == EVERY_KIND_SIZE and room.stats.events_sent == 3
        on_wire = [(m.method, m.msg_id) for m in sock.messages()]
        assert on_wire[3:-1] == [(e.method, e.msg_id) for e in queued]
        assert on_wire[-1][0] == "WebcastControlMessage"  # STREAM_ENDED after the set
        sent = room.sent_json()["messages"]
        assert [(m["method"], m["msg_id"], m.get("variant")) for m in sent if m["kind"] == EVERY_KIND] == [
            (e.method, e.msg_id, e.variant) for e in queued
        ]
        assert [(e.method, e.variant) for e in queued] == list(EVERY_KIND_PLAN)
        by_method = sent_by_method(sent)
        assert list(by_method) == list(EVERY_KIND_METHODS) and sum(map(len, by_method.values())) == EVERY_KIND_SIZE
        with pytest.raises(RoomError):
            room.send_kinds()
    finally:
        await room.stop()


async def test_send_kinds_subset_keeps_ids_unique_across_calls() -> None:
    room = Room("lou", Scenario(seed=2, rate=0, total=0))
    room.start()
    room.attach(FakeSocket())
    try:
        first = room.send_kinds(["WebcastPollMessage", "WebcastControlMessage"])
        second = room.send_kinds(["WebcastPollMessage"])
        assert [e.method for e in first] == ["WebcastPollMessage", "WebcastControlMessage", "WebcastControlMessage"]
        ids = [e.msg_id for e in first + second]
        assert len(set(ids)) == len(ids)
        assert await room.wait_until(lambda: room.stats.injected_sent == 4, WAIT_S)
        assert room.state is RoomState.LIVE and room.stats.events_sent == 0
    finally:
        await room.stop()


def test_injected_sets_do_not_change_the_timeline() -> None:
    plain = EventGenerator(Scenario(seed=8, mix_preset="realistic"), 8)
    injected = EventGenerator(Scenario(seed=8, mix_preset="realistic"), 8)
    before = injected.take(500)
    first, second = injected.injected_events(), injected.injected_events()
    assert fingerprint(plain.take(500)) == fingerprint(before)
    assert fingerprint(plain.take(2000)) == fingerprint(injected.take(2000))
    assert {e.msg_id for e in first}.isdisjoint(e.msg_id for e in second)
    assert {e.msg_id for e in first}.isdisjoint(e.msg_id for e in before)


def test_every_kind_set_follows_the_captured_fixtures() -> None:
    fixtures = fixture_events(load_captured())
    generator = EventGenerator(Scenario(seed=4, every_kind=True, fixtures=True), 4, prelude=fixtures)
    events = generator.take(len(fixtures) + EVERY_KIND_SIZE + 1)
    assert [e.kind for e in events[: len(fixtures)]] == ["fixture"] * len(fixtures)
    every = events[len(fixtures) : len(fixtures) + EVERY_KIND_SIZE]
    assert {e.kind for e in every} == {EVERY_KIND}
    assert [e.msg_id for e in every] == [derive_msg_id(4, e.seq) for e in every]
    assert every[0].seq == len(fixtures) and events[-1].kind != EVERY_KIND
