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
