"""desired_status, status_patch, rate_limited, transition_events."""

from __future__ import annotations

from typing import Any

from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.operator import desired, model, status
from tiktok_service.operator.model import Heartbeat, PodObservation
from tiktok_service.settings import OperatorSettings

NOW = 1_800_000_000.0
SETTINGS = OperatorSettings()
SPEC = {"username": "alice", "state": "Running"}


def livestream(current: dict[str, Any] | None = None, generation: int = 3) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "alice", "generation": generation}, "spec": dict(SPEC)}
    if current is not None:
        body["status"] = current
    return body


def running_pod(**fields: Any) -> PodObservation:
    values: dict[str, Any] = {
        "name": "ls-alice",
        "uid": "p",
        "phase": "Running",
        "spec_hash": desired.spec_hash(SPEC),
        "started_at": NOW - 20,
    }
    return PodObservation(**(values | fields))


def live(**fields: Any) -> Heartbeat:
    report = ConnectorStatus(
        phase=ConnectorPhase.LIVE,
        room_id=7312345678901234567,
        viewer_count=1234,
        connected_at_ms=int((NOW - 10) * 1000),
        last_event_at_ms=int((NOW - 1) * 1000),
        **fields,
    )
    return Heartbeat(report, int(NOW * 1000))


def wanted(
    body: dict[str, Any],
    pod: PodObservation | None = None,
    beat: Heartbeat | None = None,
    counts: dict[str, int] | None = None,
    now: float = NOW,
) -> dict[str, Any]:
    return status.desired_status(body, pod, beat, counts, now, SETTINGS)


def test_a_live_connector_fills_room_viewers_times_and_counts() -> None:
    result = wanted(livestream(), running_pod(), live(), {"tiktok.comment": 5, "tiktok.like": 2})

    assert result["phase"] == "Live"
    assert result["roomId"] == "7312345678901234567"
    assert result["viewerCount"] == 1234
    assert result["connectedAt"] == model.format_time(NOW - 10)
    assert result["lastEventAt"] == model.format_time(NOW - 1)
    assert result["eventCounts"] == {"tiktok.comment": 5, "tiktok.like": 2}
    assert result["totalEvents"] == 7
    assert result["podName"] == "ls-alice"
    assert result["observedGeneration"] == 3


def test_ready_and_connected_conditions_are_true_when_live() -> None:
    conditions = {c["type"]: c for c in wanted(livestream(), running_pod(), live())["conditions"]}

    assert conditions["Ready"]["status"] == "True"
    assert conditions["Connected"]["status"] == "True"
    assert conditions["Connected"]["lastTransitionTime"] == model.format_time(NOW)
    assert conditions["Connected"]["observedGeneration"] == 3


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = wanted(livestream(), running_pod(), live())

    later = wanted(livestream(first), running_pod(), live(), now=NOW + 100)

    assert later["conditions"] == first["conditions"]


def test_a_condition_moves_its_transition_time_when_its_status_flips() -> None:
    first = wanted(livestream(), running_pod(), live())
    reconnecting = Heartbeat(ConnectorStatus(phase=ConnectorPhase.RECONNECTING), int(NOW * 1000))

    later = {c["type"]: c for c in wanted(livestream(first), running_pod(), reconnecting, now=NOW + 100)["conditions"]}

    assert later["Connected"] == {
        "type": "Connected",
        "status": "False",
        "reason": "Reconnecting",
        "message": "",
        "lastTransitionTime": model.format_time(NOW + 100),
        "observedGeneration": 3,
    }


def test_unknown_counts_and_heartbeat_keep_the_last_reported_values() -> None:
    first = wanted(livestream(), running_pod(), live(), {"tiktok.comment": 5})

    later = wanted(livestream(first), None, None, None)

    assert (later["roomId"], later["viewerCount"], later["totalEvents"]) == ("7312345678901234567", 1234, 5)
    assert "podName" not in later


def test_backing_off_shows_the_next_retry_time() -> None:
    pod = running_pod(phase="Failed", exit_code=1, finished_at=NOW - 1, started_at=NOW - 5)

    result = wanted(livestream(), pod)

    assert result["phase"] == "BackingOff"
    assert result["nextRetryAt"] == model.format_time(NOW - 1 + 5)
    assert result["restarts"] == 1


def test_a_connector_retrying_shows_why_and_when_in_the_status_and_its_conditions() -> None:
    retry_ms = int((NOW + 8) * 1000)
    report = ConnectorStatus(
        phase=ConnectorPhase.RECONNECTING,
        reason="rate_limited",
        last_error="SignatureRateLimitError: slow down",
        next_retry_at_ms=retry_ms,
    )
    beat = Heartbeat(report, int(NOW * 1000))

    result = wanted(livestream(), running_pod(), beat)

    assert (result["phase"], result["reason"]) == ("Reconnecting", "SignRateLimited")
    assert result["nextRetryAt"] == model.format_time(NOW + 8)
    assert {c["type"]: (c["status"], c["reason"]) for c in result["conditions"]} == {
        "Ready": ("False", "SignRateLimited"),
        "Connected": ("False", "SignRateLimited"),
    }


def test_a_spent_sign_quota_shows_the_announced_reset_as_the_next_retry() -> None:
    reset = NOW + 7200
    pod = running_pod(phase="Failed", exit_code=16, finished_at=NOW - 1, started_at=NOW - 5)
    final = Heartbeat(
        ConnectorStatus(phase=ConnectorPhase.FAILED, exit_code=16, next_retry_at_ms=int(reset * 1000)),
        int((NOW - 1) * 1000),
    )

    result = wanted(livestream(), pod, final)

    assert (result["phase"], result["reason"], result["restarts"]) == ("BackingOff", "SignQuotaExhausted", 0)
    assert result["nextRetryAt"] == model.format_time(reset)
    assert status.transition_events({"phase": "Live"}, result)[0].reason == "RestartScheduled"


def test_an_unchanged_status_needs_no_patch() -> None:
    first = wanted(livestream(), running_pod(), live())

    assert status.status_patch(first, wanted(livestream(first), running_pod(), live(), now=NOW + 1)) == {}


def test_the_patch_holds_changed_fields_and_nulls_for_removed_ones() -> None:
    current = {"phase": "BackingOff", "nextRetryAt": "2027-01-01T00:00:00Z", "eventCounts": {"a": 1, "b": 2}}
    new = {"phase": "Pending", "eventCounts": {"a": 1, "c": 1}}

    assert status.status_patch(current, new) == {
        "phase": "Pending",
        "nextRetryAt": None,
        "eventCounts": {"b": None, "a": 1, "c": 1},
    }


def test_only_counter_changes_are_rate_limited() -> None:
    assert status.rate_limited({"viewerCount": 5, "totalEvents": 9, "eventCounts": {"a": 9}, "lastEventAt": "x"})
    assert not status.rate_limited({"viewerCount": 5, "phase": "Live"})
    assert not status.rate_limited({})


def test_going_live_posts_a_connected_event() -> None:
    events = status.transition_events({"phase": "Connecting"}, {"phase": "Live", "roomId": "42"})

    assert events == [status.Event("Normal", "Connected", "connected to room 42")]


def test_the_end_of_a_live_posts_a_live_ended_event() -> None:
    (event,) = status.transition_events({"phase": "Live"}, {"phase": "Ended", "reason": "LiveEnded", "message": "m"})

    assert (event.type, event.reason) == ("Normal", "LiveEnded")


def test_each_scheduled_restart_posts_a_warning() -> None:
    first = status.transition_events({"phase": "Live"}, {"phase": "BackingOff", "restarts": 1})
    second = status.transition_events({"phase": "BackingOff", "restarts": 1}, {"phase": "BackingOff", "restarts": 2})

    assert [(e.type, e.reason) for e in first + second] == [("Warning", "RestartScheduled")] * 2


def test_reaching_the_restart_limit_posts_a_warning() -> None:
    (event,) = status.transition_events({"phase": "BackingOff"}, {"phase": "Failed", "reason": "RestartLimitReached"})

    assert (event.type, event.reason) == ("Warning", "RestartLimitReached")


def test_pausing_and_resuming_post_events() -> None:
    paused = status.transition_events({"phase": "Live"}, {"phase": "Paused"})
    resumed = status.transition_events({"phase": "Paused"}, {"phase": "Pending"})

    assert [e.reason for e in paused + resumed] == ["Paused", "Resumed"]


def test_a_status_that_keeps_its_phase_posts_nothing() -> None:
    assert status.transition_events({"phase": "Live"}, {"phase": "Live", "viewerCount": 3}) == []
