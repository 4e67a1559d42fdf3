"""Scenario validation and the determinism/shape of the generated timeline."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tiktok_service_dev.simulator.__main__ import config_from_args
from tiktok_service_dev.simulator.config import load_scenario_file, parse_room_spec
from tiktok_service_dev.simulator.scenario import (
    COMMENT,
    GIFT,
    MIX_KINDS,
    Scenario,
    derive_msg_id,
    seed_for_username,
)
from tiktok_service_dev.simulator.timeline import EventGenerator, generate, make_users


def fingerprint(events):
    return [(e.seq, e.msg_id, e.kind, e.user and e.user.id, e.data) for e in events]


def test_same_seed_same_events_msg_ids_and_users() -> None:
    scenario = Scenario(seed=42)
    assert fingerprint(generate(scenario, 2000)) == fingerprint(generate(scenario, 2000))
    assert make_users(42, 50) == make_users(42, 50)


def test_different_seed_different_events() -> None:
    a, b = generate(Scenario(seed=1), 500), generate(Scenario(seed=2), 500)
    assert {e.msg_id for e in a}.isdisjoint({e.msg_id for e in b})
    assert [e.kind for e in a] != [e.kind for e in b]
    assert make_users(1, 20) != make_users(2, 20)


def test_take_in_chunks_equals_take_at_once() -> None:
    gen = EventGenerator(Scenario(), seed=9)
    chunked = gen.take(7) + gen.take(1) + gen.take(300)
    assert fingerprint(chunked) == fingerprint(generate(Scenario(), 308, seed=9))


def test_default_seed_is_stable_per_username() -> None:
    assert seed_for_username("alice") == seed_for_username("alice")
    assert seed_for_username("alice") != seed_for_username("bob")


def test_msg_ids_unique_positive_int64() -> None:
    ids = [e.msg_id for e in generate(Scenario(seed=3), 20_000)]
    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**63 for i in ids)
    # Disjoint namespaces never collide with generated ids either.
    assert derive_msg_id(3, 1 << 40) not in set(ids)


def test_mix_only_produces_weighted_kinds() -> None:
    events = generate(Scenario(seed=5, mix={"comment": 3, "like": 1}), 2000)
    counts = Counter(e.kind for e in events)
    assert set(counts) == {"comment", "like"}
    assert 0.65 < counts["comment"] / 2000 < 0.85


def test_default_mix_covers_every_kind() -> None:
    kinds = {e.kind for e in generate(Scenario(seed=11), 5000)}
    assert kinds == set(MIX_KINDS)


def test_gift_streak_structure() -> None:
    events = [e for e in generate(Scenario(seed=8, mix={"gift": 1, "comment": 1}), 20_000) if e.kind == GIFT]
    by_group = defaultdict(list)
    for e in events:
        by_group[e.data["group_id"]].append(e)
    streaks = non_streaks = 0
    for group in by_group.values():
        first = group[0]
        assert {(e.user, e.data["gift_id"]) for e in group} == {(first.user, first.data["gift_id"])}
        if not first.data["streakable"]:
            non_streaks += 1
            assert [(e.data["repeat_count"], e.data["repeat_end"]) for e in group] == [(1, 1)]
            continue
        counts = [e.data["repeat_count"] for e in group]
        ends = [e.data["repeat_end"] for e in group]
        if ends[-1] == 0:
            continue  # still open when the sample ended
        streaks += 1
        n = counts[-1]
        assert counts == [*range(1, n + 1), n]
        assert ends == [0] * n + [1]
        assert all(e.data["combo_count"] == e.data["repeat_count"] for e in group)
    assert streaks > 100 and non_streaks > 10
    # Streaks interleave with other events rather than arriving as one block.
    assert any(len(g) > 2 and g[-1].seq - g[0].seq >= len(g) for g in by_group.values())


def test_viewer_and_like_counters_are_consistent() -> None:
    events = generate(Scenario(seed=4, mix={"like": 1, "viewer": 1, "join": 1}), 3000)
    like_totals = [e.data["total"] for e in events if e.kind == "like"]
    assert like_totals == sorted(like_totals)
    for e in events:
        if e.kind == "viewer":
            assert e.data["total_user"] >= e.data["total"] >= 1
            assert e.user is None


def test_comments_include_awkward_text() -> None:
    contents = {e.data["content"] for e in generate(Scenario(seed=2, mix={"comment": 1}), 3000)}
    assert any("'" in c for c in contents)
    assert any("\n" in c for c in contents)
    assert any(any(ord(ch) > 0xFFFF for ch in c) for c in contents)  # astral-plane emoji


@pytest.mark.parametrize(
    "bad",
    [
        {"rate": -1},
        {"batch": 0},
        {"mix": {"comments": 1}},
        {"mix": {"comment": 0}},
        {"malformed": ["nope"]},
        {"malformed_ratio": 0.5},
        {"drop_after": 0},
        {"no_such_field": 1},
        {"seed": 1, "users": 0},
    ],
)
def test_invalid_scenarios_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Scenario.from_dict(bad)


def test_scenario_dict_roundtrip() -> None:
    scenario = Scenario.from_dict({"seed": 5, "rate": 0, "malformed": "bad_gzip", "mix": {COMMENT: 2}})
    assert scenario.malformed == ["bad_gzip"]
    assert Scenario.from_dict(scenario.to_dict()) == scenario


def test_room_spec_and_scenario_file(tmp_path) -> None:
    assert parse_room_spec("@alice:7:12.5") == ("alice", Scenario(seed=7, rate=12.5))
    assert parse_room_spec("bob") == ("bob", Scenario())
    path = tmp_path / "rooms.json"
    path.write_text('{"rooms": {"carol": {"seed": 3, "offline": true}}}')
    assert load_scenario_file(path) == {"carol": Scenario(seed=3, offline=True)}
    path.write_text('[{"username": "dave", "rate": 0}]')
    assert load_scenario_file(path) == {"dave": Scenario(rate=0)}


def test_cli_arguments_build_a_config(tmp_path) -> None:
    path = tmp_path / "rooms.json"
    path.write_text('{"rooms": {"carol": {"seed": 3, "sign_429": 2}}}')
    config = config_from_args(["--port", "0", "--room", "alice:1:5", "--scenario-file", str(path), "--auto-create"])
    assert config.port == 0 and config.auto_create_rooms
    assert config.rooms == {"carol": Scenario(seed=3, sign_429=2), "alice": Scenario(seed=1, rate=5)}


def test_a_mix_preset_from_the_cli_applies_to_listed_and_auto_created_rooms() -> None:
    config = config_from_args(["--port", "0", "--room", "alice:1:5", "--auto-create", "--mix-preset", "realistic"])
    assert config.rooms == {"alice": Scenario(seed=1, rate=5, mix_preset="realistic")}
    assert config.default_scenario.mix_preset == "realistic"
    assert config_from_args(["--port", "0"]).default_scenario == Scenario()
