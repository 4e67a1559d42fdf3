"""A pod create the API server refuses: which answers count, the backoff, and the status it makes."""

from __future__ import annotations

from typing import Any

import pytest

from tiktok_service.operator import lifecycle, model, refusals, status
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.model import Phase
from tiktok_service.settings import OperatorSettings

NOW = 1_800_000_000.0
SETTINGS = OperatorSettings()
POLICY = model.RestartPolicy(max_restarts=3, backoff_base_s=5, backoff_cap_s=60)
QUOTA = 'pods "ls-alice" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0'


def livestream(status_: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "alice", "namespace": "rooms", "uid": "u-1", "generation": generation},
        "spec": {"username": "alice", "restartPolicy": {"backoffBaseSeconds": 5, "backoffCapSeconds": 60}},
        "status": status_ or {},
    }


@pytest.mark.parametrize(("code", "refused"), [(400, True), (403, True), (422, True), (409, False), (429, False)])
def test_client_errors_are_refusals_except_conflicts_and_throttling(code: int, refused: bool) -> None:
    assert refusals.refuses(code) is refused


@pytest.mark.parametrize("code", [500, 503, 504])
def test_server_errors_are_no_refusal(code: int) -> None:
    assert not refusals.refuses(code)


def test_refusals_in_a_row_are_counted_and_a_success_starts_again() -> None:
    first = refusals.next_refusal(None, 403, "Forbidden", QUOTA)
    second = refusals.next_refusal(first, 403, "Forbidden", QUOTA)

    assert (first.attempts, second.attempts) == (1, 2)
    assert refusals.next_refusal(None, 422, "", "bad").api_reason == "Refused"


def test_the_delay_doubles_with_each_refusal_up_to_the_cap() -> None:
    delays = [refusals.refusal_delay(n, POLICY) for n in range(1, 7)]

    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_a_refused_create_backs_off_with_the_api_servers_reason_and_message() -> None:
    body = livestream()
    creating = lifecycle.assess(body, None, None, NOW, SETTINGS)
    refusal = refusals.PodRefusal(403, "Forbidden", QUOTA, attempts=2)

    found = lifecycle.refused_create(creating, refusal, body, NOW)

    assert creating.action.do is Do.CREATE_POD
    assert (found.phase, found.reason, found.action.do) == (Phase.BACKING_OFF, "PodRefused", Do.NOTHING)
    assert found.next_retry_at == NOW + 10
    assert found.action.requeue_after == 10
    assert f"(403 Forbidden): {QUOTA}; attempt 2" in found.message
    wanted = status.desired_status(body, None, None, None, NOW, SETTINGS, assessment=found)
    ready = {c["type"]: c for c in wanted["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PodRefused")
    assert "exceeded quota" in ready["message"]
    assert wanted["restarts"] == 0  # no connector ran: maxRestarts is untouched


def test_a_refused_livestream_waits_for_its_retry_time_then_creates_again() -> None:
    refused = {
        "phase": "BackingOff",
        "reason": "PodRefused",
        "nextRetryAt": model.format_time(NOW + 10),
        "observedGeneration": 1,
    }

    waiting = lifecycle.assess(livestream(refused), None, None, NOW, SETTINGS)
    due = lifecycle.assess(livestream(refused), None, None, NOW + 10, SETTINGS)

    assert (waiting.phase, waiting.action.do, waiting.action.requeue_after) == (Phase.BACKING_OFF, Do.NOTHING, 10)
    assert due.action.do is Do.CREATE_POD


def test_a_spec_change_retries_a_refused_create_at_once() -> None:
    refused = {
        "phase": "BackingOff",
        "reason": "PodRefused",
        "nextRetryAt": model.format_time(NOW + 600),
        "observedGeneration": 1,
    }

    assert lifecycle.assess(livestream(refused, generation=2), None, None, NOW, SETTINGS).action.do is Do.CREATE_POD


def test_the_refusal_event_is_posted_by_the_loop_so_the_transition_adds_no_restart_event() -> None:
    current = {"phase": "Pending", "reason": "Creating"}
    wanted = {"phase": "BackingOff", "reason": "PodRefused", "message": "refused", "restarts": 0}
    crash = {"phase": "BackingOff", "reason": "Error", "message": "exit 1", "restarts": 1}

    assert status.transition_events(current, wanted) == []
    assert [event.reason for event in status.transition_events(current, crash)] == ["RestartScheduled"]


def test_the_refusals_in_a_row_are_recorded_in_the_status_while_the_reason_is_pod_refused() -> None:
    body = livestream()
    creating = lifecycle.assess(body, None, None, NOW, SETTINGS)
    refusal = refusals.PodRefusal(403, "Forbidden", QUOTA, attempts=4)
    found = lifecycle.refused_create(creating, refusal, body, NOW)

    wanted = status.desired_status(body, None, None, None, NOW, SETTINGS, assessment=found, refusal=refusal)

    assert wanted["podRefusals"] == 4
    created = status.desired_status(body, None, None, None, NOW, SETTINGS, assessment=creating, refusal=None)
    assert "podRefusals" not in created
    # A pass that no longer shows PodRefused drops the field (a merge patch nulls it).
    assert status.status_patch(wanted, created)["podRefusals"] is None


def test_an_operator_that_restarts_goes_on_counting_from_the_status() -> None:
    """It used to start again at one: the backoff fell back to its base after every operator restart."""
    recorded = {"phase": "BackingOff", "reason": "PodRefused", "podRefusals": 4, "observedGeneration": 1}

    taken_over = refusals.from_status(recorded)
    following = refusals.next_refusal(taken_over, 403, "Forbidden", QUOTA)

    assert following.attempts == 5
    assert refusals.refusal_delay(following.attempts, POLICY) == 60.0  # not 5 s again


@pytest.mark.parametrize(
    "recorded",
    [
        {},
        {"reason": "Error", "podRefusals": 3},  # stale: only PodRefused carries it
        {"reason": "PodRefused"},
        {"reason": "PodRefused", "podRefusals": 0},
        {"reason": "PodRefused", "podRefusals": "many"},
    ],
)
def test_a_status_without_a_count_of_refusals_starts_from_none(recorded: dict[str, Any]) -> None:
    assert refusals.from_status(recorded) is None


def test_a_livestream_waiting_after_a_refusal_keeps_its_count_in_the_status() -> None:
    recorded = {
        "phase": "BackingOff",
        "reason": "PodRefused",
        "podRefusals": 3,
        "nextRetryAt": model.format_time(NOW + 10),
        "observedGeneration": 1,
    }
    body = livestream(recorded)
    waiting = lifecycle.assess(body, None, None, NOW, SETTINGS)

    wanted = status.desired_status(
        body, None, None, None, NOW, SETTINGS, assessment=waiting, refusal=refusals.from_status(recorded)
    )

    assert wanted["podRefusals"] == 3
    assert "podRefusals" not in status.status_patch(recorded, wanted)  # unchanged: not patched
