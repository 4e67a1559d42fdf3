"""assess/next_action: phases and pod actions decided from the Livestream, its pod and the clock."""

from __future__ import annotations

from typing import Any

from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.operator import desired, lifecycle, model, status
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.model import Heartbeat, Phase, PodObservation
from tiktok_service.settings import OperatorSettings

NOW = 1_800_000_000.0
SETTINGS = OperatorSettings.model_validate({"restart_reset_after_s": 600, "heartbeat_grace_s": 30})
POLICY = {"maxRestarts": 3, "backoffBaseSeconds": 5, "backoffCapSeconds": 12}


def livestream(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "alice", "namespace": "rooms", "uid": "u-1", "generation": generation},
        "spec": {"username": "alice", "state": "Running", "restartPolicy": POLICY, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def pod(body: dict[str, Any] | None = None, **fields: Any) -> PodObservation:
    spec_hash = desired.spec_hash((body or livestream())["spec"])
    values: dict[str, Any] = {
        "name": "ls-alice",
        "uid": "p-1",
        "phase": "Running",
        "spec_hash": spec_hash,
        "started_at": NOW - 60,
        "node_name": "node-1",
    }
    values.update(fields)
    return PodObservation(**values)


def failed(
    exit_code: int | None = 1,
    restarts: int = 0,
    finished_ago: float = 1.0,
    body: dict[str, Any] | None = None,
    **fields: Any,
) -> PodObservation:
    return pod(
        body,
        phase="Failed",
        exit_code=exit_code,
        restarts=restarts,
        finished_at=NOW - finished_ago,
        started_at=NOW - finished_ago - 10,
        **fields,
    )


def heartbeat(phase: ConnectorPhase, age_s: float = 1.0, **fields: Any) -> Heartbeat:
    return Heartbeat(ConnectorStatus(phase=phase, **fields), int((NOW - age_s) * 1000))


def assess(
    body: dict[str, Any], observed: PodObservation | None, beat: Heartbeat | None = None, now: float = NOW
) -> lifecycle.Assessment:
    return lifecycle.assess(body, observed, beat, now, SETTINGS)


# -- creating ---------------------------------------------------------------------------


def test_a_new_livestream_without_a_pod_gets_one_created() -> None:
    found = assess(livestream(), None)

    assert (found.phase, found.reason) == (Phase.PENDING, "Creating")
    assert found.action == lifecycle.Action(Do.CREATE_POD, restarts=0)


def test_a_pod_that_vanished_is_recreated_at_once_without_counting_a_failure() -> None:
    found = assess(livestream({"phase": "Live", "restarts": 2}), None)

    assert found.action == lifecycle.Action(Do.CREATE_POD, restarts=2)


def test_next_action_is_the_action_half_of_the_assessment() -> None:
    assert lifecycle.next_action(livestream(), None, NOW, SETTINGS).do is Do.CREATE_POD


# -- pending pods -----------------------------------------------------------------------


def test_an_unschedulable_pod_is_pending_with_reason_unschedulable_not_failed() -> None:
    observed = pod(phase="Pending", node_name=None, reason="Unschedulable", message="0/3 nodes are available")

    found = assess(livestream(), observed)

    assert (found.phase, found.reason, found.message) == (Phase.PENDING, "Unschedulable", "0/3 nodes are available")
    assert found.action.do is Do.NOTHING


def test_only_a_pod_the_scheduler_has_not_decided_on_is_awaiting_the_scheduler() -> None:
    undecided = assess(livestream(), pod(phase="Pending", node_name=None))
    bound = assess(livestream(), pod(phase="Pending", node_name="node-a"))
    refused = assess(livestream(), pod(phase="Pending", node_name=None, reason="Unschedulable"))

    assert (undecided.reason, undecided.awaiting_scheduler) == ("Scheduling", True)
    assert (bound.reason, bound.awaiting_scheduler) == ("ContainerCreating", False)
    assert not refused.awaiting_scheduler


def test_a_pod_waiting_for_its_container_reports_the_kubelets_reason() -> None:
    found = assess(livestream(), pod(phase="Pending", reason="CreateContainerConfigError", message="no secret"))

    assert (found.phase, found.reason) == (Phase.PENDING, "CreateContainerConfigError")


# -- running pods and heartbeats --------------------------------------------------------


def test_a_running_pod_without_a_heartbeat_is_connecting() -> None:
    found = assess(livestream(), pod(started_at=NOW - 5))

    assert (found.phase, found.reason) == (Phase.CONNECTING, "Starting")


def test_a_running_pod_silent_past_the_grace_period_is_reported_as_without_heartbeat() -> None:
    assert assess(livestream(), pod(started_at=NOW - 31)).reason == "NoHeartbeat"


def test_a_live_heartbeat_makes_the_livestream_live() -> None:
    found = assess(livestream(), pod(), heartbeat(ConnectorPhase.LIVE))

    assert (found.phase, found.reason, found.action.do) == (Phase.LIVE, "Connected", Do.NOTHING)


def test_each_connector_phase_maps_to_a_livestream_phase() -> None:
    expected = {
        ConnectorPhase.CONNECTING: Phase.CONNECTING,
        ConnectorPhase.RECONNECTING: Phase.RECONNECTING,
        ConnectorPhase.WAITING: Phase.WAITING_FOR_LIVE,
        ConnectorPhase.ENDED: Phase.ENDED,
    }
    for connector_phase, phase in expected.items():
        assert assess(livestream(), pod(), heartbeat(connector_phase)).phase is phase


def test_a_heartbeat_written_before_the_pod_started_belongs_to_the_previous_pod() -> None:
    stale = heartbeat(ConnectorPhase.LIVE, age_s=120)

    assert assess(livestream(), pod(started_at=NOW - 10), stale).phase is Phase.CONNECTING


def test_waiting_after_the_live_ended_says_so() -> None:
    body = livestream(waitForLive=True)

    found = assess(body, pod(body), heartbeat(ConnectorPhase.WAITING, reason="live_end"))

    assert (found.phase, found.reason) == (Phase.WAITING_FOR_LIVE, "LiveEnded")


def test_a_pod_running_for_longer_than_the_reset_period_clears_the_failure_count() -> None:
    assert assess(livestream(), pod(restarts=3, started_at=NOW - 601)).restarts == 0
    assert assess(livestream(), pod(restarts=3, started_at=NOW - 60)).restarts == 3


# -- finished pods ----------------------------------------------------------------------


def test_exit_code_10_ends_the_livestream_and_keeps_the_pod() -> None:
    found = assess(livestream(), failed(exit_code=10))

    assert (found.phase, found.reason, found.action.do) == (Phase.ENDED, "LiveEnded", Do.NOTHING)


def test_exits_a_restart_cannot_fix_fail_at_once() -> None:
    assert assess(livestream(), failed(exit_code=11)).reason == "UserNotFound"
    assert assess(livestream(), failed(exit_code=13)).reason == "Blocked"
    assert assess(livestream(), failed(exit_code=2)).reason == "InvalidConfiguration"
    assert {assess(livestream(), failed(exit_code=code)).phase for code in (2, 11, 13, 15)} == {Phase.FAILED}


def test_an_age_restricted_room_fails_at_once_and_says_a_session_is_needed() -> None:
    found = assess(livestream(), failed(exit_code=15))

    assert (found.phase, found.reason, found.action.do) == (Phase.FAILED, "AgeRestricted", Do.NOTHING)
    assert "session" in found.message and found.restarts == 0


def test_a_captcha_exit_is_restarted_with_backoff_under_its_own_reason() -> None:
    found = assess(livestream(), failed(exit_code=14, restarts=0, finished_ago=1))

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "CaptchaRequired", 1)
    assert "captcha" in found.message
    assert assess(livestream(), failed(exit_code=14, restarts=3)).reason == "RestartLimitReached"


def test_a_proxy_exit_is_restarted_with_backoff_under_its_own_reason() -> None:
    found = assess(livestream(), failed(exit_code=17, restarts=1, finished_ago=1))

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "ProxyFailed", 2)


def test_a_spent_sign_quota_backs_off_until_the_announced_reset_without_counting_a_failure() -> None:
    reset = NOW + 3 * 3600
    finished = failed(exit_code=16, restarts=2, finished_ago=1)
    final = heartbeat(ConnectorPhase.FAILED, age_s=1, next_retry_at_ms=int(reset * 1000), exit_code=16)

    found = assess(livestream(), finished, final)

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "SignQuotaExhausted", 2)
    assert found.next_retry_at == reset and found.action == lifecycle.Action(requeue_after=reset - NOW)
    due = assess(livestream(), finished, final, now=reset + 1)
    assert due.action == lifecycle.Action(Do.RECREATE_POD, pod_uid="p-1", restarts=2)


def test_a_spent_sign_quota_keeps_the_recorded_reset_once_the_final_status_expired() -> None:
    body = livestream({"phase": "BackingOff", "restarts": 0, "nextRetryAt": model.format_time(NOW + 900)})

    found = assess(body, failed(exit_code=16, finished_ago=1))

    assert (found.reason, found.next_retry_at) == ("SignQuotaExhausted", NOW + 900)
    assert assess(livestream(), failed(exit_code=16, finished_ago=1)).next_retry_at == NOW - 1 + 3600


def test_a_reconnecting_connector_says_why_and_until_when() -> None:
    beat = heartbeat(
        ConnectorPhase.RECONNECTING, reason="user_not_found", next_retry_at_ms=int((NOW + 4) * 1000), last_error="x"
    )

    found = assess(livestream(), pod(), beat)

    assert (found.phase, found.reason, found.next_retry_at, found.message) == (
        Phase.RECONNECTING,
        "UserNotFound",
        NOW + 4,
        "x",
    )
    for kind, reason in [
        ("captcha", "CaptchaRequired"),
        ("rate_limited", "SignRateLimited"),
        ("closed", "ConnectionClosed"),
        ("error", "Error"),
    ]:
        assert assess(livestream(), pod(), heartbeat(ConnectorPhase.RECONNECTING, reason=kind)).reason == reason
    unknown = heartbeat(ConnectorPhase.RECONNECTING, reason="not_a_reason")
    assert assess(livestream(), pod(), unknown).reason == "Reconnecting"


def test_an_offline_user_without_wait_for_live_ends_the_livestream() -> None:
    found = assess(livestream(), failed(exit_code=12))

    assert (found.phase, found.reason) == (Phase.ENDED, "UserOffline")


def test_a_failed_pod_backs_off_from_its_finish_time() -> None:
    found = assess(livestream(), failed(exit_code=1, restarts=0, finished_ago=1))

    assert found.phase is Phase.BACKING_OFF
    assert found.restarts == 1
    assert found.next_retry_at == NOW - 1 + 5
    assert found.action == lifecycle.Action(requeue_after=4.0)


def test_backoff_doubles_with_each_consecutive_failure_up_to_the_cap() -> None:
    delays = [assess(livestream(), failed(restarts=n, finished_ago=0)).next_retry_at for n in range(3)]

    assert [delay - NOW for delay in delays if delay is not None] == [5, 10, 12]


def test_the_pod_is_replaced_once_the_backoff_has_passed() -> None:
    found = assess(livestream(), failed(exit_code=1, restarts=1, finished_ago=11))

    assert (found.phase, found.reason) == (Phase.PENDING, "Restarting")
    assert found.action == lifecycle.Action(Do.RECREATE_POD, pod_uid="p-1", restarts=2)


def test_a_recorded_retry_time_is_kept_while_backing_off() -> None:
    body = livestream({"phase": "BackingOff", "restarts": 1, "nextRetryAt": model.format_time(NOW + 30)})

    assert assess(body, failed(restarts=0, finished_ago=1)).next_retry_at == NOW + 30


def test_the_failure_after_the_restart_limit_fails_the_livestream() -> None:
    found = assess(livestream(), failed(exit_code=1, restarts=3))

    assert (found.phase, found.reason, found.action.do) == (Phase.FAILED, "RestartLimitReached", Do.NOTHING)
    assert "4 times in a row" in found.message


def test_a_restart_limit_of_zero_fails_on_the_first_failure() -> None:
    body = livestream(restartPolicy={"maxRestarts": 0, "backoffBaseSeconds": 1, "backoffCapSeconds": 1})

    assert assess(body, failed(restarts=0, body=body)).phase is Phase.FAILED


def test_a_pod_that_failed_after_a_long_run_counts_as_the_first_failure() -> None:
    long_run = pod(phase="Failed", exit_code=1, restarts=3, started_at=NOW - 1000, finished_at=NOW - 1)

    assert assess(livestream(), long_run).restarts == 1


def test_a_pod_missing_while_backing_off_is_created_only_when_the_retry_is_due() -> None:
    status = {"phase": "BackingOff", "restarts": 2, "nextRetryAt": model.format_time(NOW + 10)}

    assert assess(livestream(status), None).action == lifecycle.Action(requeue_after=10.0)
    assert assess(livestream(status), None, now=NOW + 11).action == lifecycle.Action(Do.CREATE_POD, restarts=2)


# -- terminal phases, spec changes, pause -----------------------------------------------


def test_an_ended_livestream_stays_ended_when_its_pod_is_gone() -> None:
    found = assess(livestream({"phase": "Ended", "reason": "LiveEnded", "observedGeneration": 1}), None)

    assert (found.phase, found.action.do) == (Phase.ENDED, Do.NOTHING)


def test_a_spec_change_restarts_an_ended_livestream_from_scratch() -> None:
    body = livestream({"phase": "Ended", "observedGeneration": 1, "restarts": 2}, generation=2)

    assert assess(body, None).action == lifecycle.Action(Do.CREATE_POD, restarts=0)


def test_a_pod_built_from_an_older_spec_is_deleted_by_uid() -> None:
    found = assess(livestream(waitForLive=True), pod(livestream()))

    assert (found.phase, found.reason) == (Phase.PENDING, "SpecChanged")
    assert found.action == lifecycle.Action(Do.DELETE_POD, pod_uid="p-1")


def test_a_terminating_pod_is_waited_for() -> None:
    found = assess(livestream(), pod(deleting=True))

    assert (found.reason, found.action.do) == ("PodTerminating", Do.NOTHING)


def test_pausing_deletes_the_pod_and_reports_paused() -> None:
    body = livestream(state="Paused")

    assert assess(body, pod(body)).action == lifecycle.Action(Do.DELETE_POD, pod_uid="p-1")
    assert (assess(body, None).phase, assess(body, None).action.do) == (Phase.PAUSED, Do.NOTHING)


def test_stopping_reports_stopped() -> None:
    assert assess(livestream(state="Stopped"), None).phase is Phase.STOPPED


def test_resuming_after_a_pause_creates_a_fresh_pod() -> None:
    found = assess(livestream({"phase": "Paused", "restarts": 2}), None)

    assert found.action == lifecycle.Action(Do.CREATE_POD, restarts=0)


def test_restart_delay_is_base_times_two_to_the_failures_minus_one_capped() -> None:
    policy = model.RestartPolicy(max_restarts=10, backoff_base_s=2, backoff_cap_s=30)

    assert [lifecycle.restart_delay(n, policy) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


# -- evictions ----------------------------------------------------------------------------

NODE_PRESSURE = "The node was low on resource: memory. Threshold quantity: 7838Mi, available: 3010124Ki. "
OWN_STORAGE = 'Container connector exceeded its local ephemeral storage limit "1Mi". '


def test_a_pod_evicted_for_node_pressure_is_replaced_at_once_without_counting_a_failure() -> None:
    evicted = failed(
        exit_code=0, restarts=3, reason="Evicted", message=NODE_PRESSURE, disruption="TerminationByKubelet"
    )

    found = assess(livestream(), evicted)  # 3 failures in a row already: the limit, were it counted

    assert (found.phase, found.reason, found.restarts) == (Phase.PENDING, "Evicted", 3)
    assert found.action == lifecycle.Action(Do.RECREATE_POD, pod_uid="p-1", restarts=3)
    assert NODE_PRESSURE in found.message and "not counted" in found.message
    assert found.news  # said at once, not held back like an ordinary create


def test_a_pod_evicted_for_its_own_storage_limit_counts_like_an_oom_kill() -> None:
    found = assess(livestream(), failed(exit_code=None, restarts=1, reason="Evicted", message=OWN_STORAGE))
    at_limit = assess(livestream(), failed(exit_code=None, restarts=3, reason="Evicted", message=OWN_STORAGE))

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "Evicted", 2)
    assert OWN_STORAGE in found.message
    assert (at_limit.phase, at_limit.reason) == (Phase.FAILED, "RestartLimitReached")


def test_an_eviction_message_nobody_knows_is_restarted_with_backoff() -> None:
    found = assess(livestream(), failed(exit_code=None, reason="Evicted", message="something new"))

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "Evicted", 1)


def test_a_connector_exit_code_does_not_hide_a_node_eviction() -> None:
    evicted = failed(exit_code=2, reason="Evicted", message=NODE_PRESSURE)  # 2 alone would fail the Livestream

    assert assess(livestream(), evicted).action.do is Do.RECREATE_POD


def test_a_pod_being_evicted_through_the_eviction_api_says_so_and_is_replaced_when_gone() -> None:
    draining = pod(
        deleting=True, restarts=1, disruption="EvictionByEvictionAPI", disruption_message="Eviction API: evicting"
    )

    found = assess(livestream(), draining)
    after = assess(livestream({"phase": "Pending", "reason": "Evicted", "restarts": 1}), None)

    assert (found.phase, found.reason, found.restarts, found.action.do) == (Phase.PENDING, "Evicted", 1, Do.NOTHING)
    assert "Eviction API" in found.message
    assert after.action == lifecycle.Action(Do.CREATE_POD, restarts=1)


def test_a_pod_deleted_without_a_disruption_condition_is_only_terminating() -> None:
    assert assess(livestream(), pod(deleting=True)).reason == "PodTerminating"


# -- every restart is announced -------------------------------------------------------------


def test_a_restart_already_due_when_the_exit_is_first_seen_is_announced_by_its_status() -> None:
    body = livestream({"phase": "Live", "reason": "Connected", "restarts": 0})

    found = assess(body, failed(exit_code=137, restarts=0, finished_ago=30))  # reported 30 s late; backoff 5 s

    assert (found.phase, found.reason, found.action.do) == (Phase.PENDING, "Restarting", Do.RECREATE_POD)
    assert found.news and "exit code 137" in found.message and "restart 1 of 3" in found.message
    wanted = {"phase": "Pending", "reason": found.reason, "message": found.message, "restarts": found.restarts}
    events = status.transition_events(body["status"], wanted)
    assert [(e.type, e.reason) for e in events] == [("Warning", "RestartScheduled")]
    assert "exit code 137" in events[0].message


def test_a_restart_the_backing_off_status_announced_is_not_announced_again() -> None:
    backing_off = {"phase": "BackingOff", "reason": "Error", "restarts": 1, "nextRetryAt": model.format_time(NOW - 1)}

    found = assess(livestream(backing_off), failed(exit_code=1, restarts=0, finished_ago=10))
    restarting = {"phase": "Pending", "reason": "Restarting", "message": found.message, "restarts": found.restarts}

    assert (found.reason, found.news) == ("Restarting", False)
    assert status.transition_events(backing_off, restarting) == []


def test_a_succeeded_pod_the_kubelet_stopped_for_node_pressure_is_replaced_uncounted() -> None:
    """The phase follows the exit code (0 after draining on SIGTERM); only the DisruptionTarget condition says why."""
    body = livestream(restartPolicy={"maxRestarts": 0})
    evicted = pod(
        body,
        phase="Succeeded",
        exit_code=0,
        reason="Completed",
        finished_at=NOW - 1,
        disruption="TerminationByKubelet",
        disruption_message=NODE_PRESSURE,
    )

    found = assess(body, evicted)

    assert (found.phase, found.reason, found.action.do) == (Phase.PENDING, "Evicted", Do.RECREATE_POD)
    assert NODE_PRESSURE in found.message


def test_an_own_limit_eviction_whose_restart_is_due_at_once_still_posts_an_evicted_event() -> None:
    body = livestream({"phase": "Live", "reason": "Connected", "restarts": 0})
    late = failed(exit_code=137, restarts=0, finished_ago=30, reason="Evicted", message=OWN_STORAGE)
    at_limit = failed(exit_code=137, restarts=3, finished_ago=30, reason="Evicted", message=OWN_STORAGE)

    restarting, failing = assess(body, late), assess(body, at_limit)

    assert (restarting.reason, restarting.disruption) == ("Restarting", "Evicted")
    assert (failing.reason, failing.disruption) == ("RestartLimitReached", "Evicted")
    for found, then in ((restarting, "RestartScheduled"), (failing, "RestartLimitReached")):
        wanted = {"phase": str(found.phase), "reason": found.reason, "message": found.message, "restarts": 1}
        events = status.transition_events(body["status"], wanted, disruption=found.disruption)
        assert [e.reason for e in events] == ["Evicted", then]
        assert OWN_STORAGE in events[0].message


def test_a_connector_its_node_stopped_without_a_recorded_reason_counts_and_says_where_to_look() -> None:
    """Seen on a real kubelet: an own-limit eviction of a connector exiting 0 leaves a Succeeded pod, nothing else."""
    found = assess(livestream(), pod(phase="Succeeded", exit_code=0, reason="Completed", finished_at=NOW - 1))

    assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "StoppedByNode", 1)
    assert "the pod's events" in found.message
    assert "liveness probe" in found.message and "ephemeral-storage limit" in found.message
