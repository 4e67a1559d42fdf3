"""Fencing decisions: the publish script's answers, the connector's exit and the operator's reaction."""

from __future__ import annotations

import random

import pytest

from tests.unit.test_operator_desired import env_of
from tests.unit.test_operator_desired import livestream as desired_livestream
from tests.unit.test_operator_desired import settings as desired_settings
from tests.unit.test_operator_lifecycle import assess, failed, livestream
from tiktok_service.connector import fencing, outcomes
from tiktok_service.connector.publisher import Answer, UnexpectedAnswer, Verdict, read_answer
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.operator import desired
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.model import Phase

POLICY = outcomes.Policy(
    wait_for_live=False, live_poll_interval_s=30, backoff_base_s=1, backoff_cap_s=60, max_reconnects=3
)


def test_a_new_batch_is_written_whole() -> None:
    assert read_answer([b"ok", 10, 5], first=11, count=5) == Answer(Verdict.OK, last=10, published=5)


def test_a_resent_batch_that_redis_already_has_is_counted_as_already_published() -> None:
    assert read_answer([b"ok", 15, 0], first=11, count=5) == Answer(Verdict.OK, last=15, published=0, already=5)


def test_a_sequence_past_the_whole_batch_is_reported_not_skipped_silently() -> None:
    answer = read_answer([b"ok", 40, 0], first=11, count=5)

    assert (answer.already, answer.ahead) == (5, 25)


def test_a_refused_batch_names_the_connector_that_holds_the_livestream() -> None:
    answer = read_answer([b"fenced", b"7", b"pod-b/0a1b"], first=11, count=5)

    assert answer == Answer(Verdict.FENCED, holder=fencing.Holder(7, "pod-b/0a1b"))


def test_redis_holding_fewer_events_than_it_acknowledged_is_a_gap() -> None:
    assert read_answer([b"gap", 3], first=11, count=5) == Answer(Verdict.GAP, last=3)


@pytest.mark.parametrize("reply", [1, None, [b"ok", 10], [b"ok", 10, 2], [b"what", 1, 2]])
def test_an_answer_the_script_never_gives_is_an_error_not_ignored(reply: object) -> None:
    with pytest.raises(UnexpectedAnswer):
        read_answer(reply, first=11, count=5)


def test_only_a_fenced_answer_names_a_holder() -> None:
    assert fencing.holder([b"ok"]) is None
    assert fencing.holder([b"fenced", b"2", b""]) == fencing.Holder(2, "")


def test_owner_tokens_name_the_pod_and_differ_per_process() -> None:
    first, second = fencing.new_owner("uid-1"), fencing.new_owner("uid-1")

    assert first.startswith("uid-1/") and second.startswith("uid-1/")
    assert first != second


@pytest.mark.parametrize("failures", [0, 5])
def test_a_fenced_connector_exits_with_its_own_code_whatever_its_streak(failures: int) -> None:
    streak = outcomes.Streak(failures=failures, kind=outcomes.Kind.NETWORK, same=failures)

    decision, _ = outcomes.decide(outcomes.Outcome(outcomes.Kind.FENCED), streak, POLICY, random.Random(1), now=0.0)

    assert (decision.action, decision.exit_code, decision.reason) == (outcomes.Action.EXIT, ExitCode.FENCED, "fenced")


def test_the_operator_replaces_a_fenced_pod_at_once_without_counting_a_failure() -> None:
    found = assess(livestream(), failed(exit_code=int(ExitCode.FENCED), restarts=3))

    assert (found.phase, found.reason) == (Phase.PENDING, "Superseded")
    assert found.action.do is Do.RECREATE_POD
    assert found.action.restarts == 3  # the failures before it, not one more
    assert found.restarts == 3


def test_a_connector_pod_knows_its_uid_to_name_itself_as_the_holder() -> None:
    env = env_of(desired.desired_pod(desired_livestream(), desired_settings()))

    assert env["CONNECTOR_POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}


def test_ids_learnt_at_take_over_are_older_than_those_already_seen_and_forgotten_first() -> None:
    seen = RecentIds(4, ["c", "d"])

    seen.add_older(["a", "b", "c"])

    assert seen.add("e") and "a" not in seen  # the oldest learnt id made room, not "c" or "d"
    assert all(event_id in seen for event_id in ("b", "c", "d", "e"))
