"""Node agent, pure decisions: restarts, back-off, phases and the pod status a kubelet writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tiktok_service_dev.node_agent import status
from tiktok_service_dev.node_agent.status import ContainerObservation, Running, Terminated, Waiting

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(*names: str, restart_policy: str = "Always", conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": n, "image": f"img-{n}"} for n in names]},
        "status": {"conditions": conditions or []},
    }


def exited(code: int, *, at: datetime = T0) -> Terminated:
    return status.terminated(code, started_at=at, finished_at=at + timedelta(seconds=1), container_id="local://7")


def running(name: str = "c", **kwargs: Any) -> ContainerObservation:
    return ContainerObservation(name, Running(T0), container_id="local://7", **kwargs)


@pytest.mark.parametrize(
    ("returncode", "code"), [(0, 0), (1, 1), (-15, 143), (-9, 137)], ids=["ok", "error", "sigterm", "sigkill"]
)
def test_a_process_killed_by_a_signal_reports_128_plus_the_signal(returncode: int, code: int) -> None:
    assert status.exit_code_of(returncode) == code


def test_an_exit_reason_is_completed_for_zero_and_error_otherwise() -> None:
    assert exited(0).reason == "Completed"
    assert exited(3).reason == "Error"


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_the_restart_policy_decides_which_exits_restart(policy: str, code: int, restart: bool) -> None:
    assert status.should_restart(policy, code) is restart


def test_crash_loop_back_off_restarts_first_at_once_then_doubles_up_to_the_cap() -> None:
    delays = [status.crash_loop_delay(step, base=10, cap=300) for step in range(8)]

    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_restarted_container_counts_the_restart_and_remembers_the_last_termination() -> None:
    crashed = ContainerObservation("c", exited(1), container_id="local://7")

    after = status.started(crashed, Running(T0), container_id="local://8")

    assert after.restart_count == 1
    assert after.last_state == exited(1)
    assert after.container_id == "local://8"


def test_the_first_start_is_not_a_restart() -> None:
    after = status.started(status.creating("c"), Running(T0), container_id="local://8")

    assert (after.restart_count, after.last_state) == (0, None)


def test_a_crash_loop_wait_keeps_the_crash_as_last_state() -> None:
    crashed = ContainerObservation("c", exited(2), restart_count=3)

    backing_off = status.waiting(crashed, "CrashLoopBackOff", "back-off 20s")

    assert backing_off.state == Waiting("CrashLoopBackOff", "back-off 20s")
    assert backing_off.last_state == exited(2)
    assert status.started(backing_off, Running(T0), container_id=None).restart_count == 4


def test_a_pod_with_a_container_still_being_created_is_pending() -> None:
    assert status.pod_phase("Always", [running("a"), status.creating("b")], terminal=False) == "Pending"


def test_a_pod_with_a_running_container_is_running() -> None:
    observations = [running("a"), ContainerObservation("b", exited(0))]

    assert status.pod_phase("Never", observations, terminal=False) == "Running"


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [
        ("Never", [0, 0], "Succeeded"),
        ("Never", [0, 1], "Failed"),
        ("OnFailure", [0, 0], "Succeeded"),
        ("OnFailure", [1], "Running"),  # about to restart
        ("Always", [0], "Running"),  # about to restart
    ],
)
def test_a_pod_whose_containers_all_exited_follows_its_restart_policy(
    policy: str, codes: list[int], phase: str
) -> None:
    observations = [ContainerObservation(f"c{i}", exited(code)) for i, code in enumerate(codes)]

    assert status.pod_phase(policy, observations, terminal=False) == phase


def test_a_crash_looping_pod_is_running_not_pending() -> None:
    looping = ContainerObservation("c", Waiting("CrashLoopBackOff"), last_state=exited(1), restart_count=2)

    assert status.pod_phase("Always", [looping], terminal=False) == "Running"


def test_a_torn_down_pod_is_terminal_whatever_its_restart_policy() -> None:
    assert status.pod_phase("Always", [ContainerObservation("c", exited(143))], terminal=True) == "Failed"
    assert status.pod_phase("Always", [ContainerObservation("c", exited(0))], terminal=True) == "Succeeded"


def test_a_never_started_container_of_a_torn_down_pod_is_reported_lost() -> None:
    final = status.finalized(status.creating("c"), now=T0)

    assert isinstance(final.state, Terminated)
    assert (final.state.exit_code, final.state.reason) == (137, "ContainerStatusUnknown")
    assert status.pod_phase("Always", [final], terminal=True) == "Failed"


def test_a_running_pod_status_looks_like_a_kubelets() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T11:59:59Z"}

    body = status.pod_status(
        pod("c", conditions=[scheduled]), {"c": running("c")}, start_time=T0, now=T0, previous_conditions=[scheduled]
    )

    assert body["phase"] == "Running"
    assert (body["hostIP"], body["podIP"], body["startTime"]) == ("127.0.0.1", "127.0.0.1", "2025-01-01T12:00:00Z")
    conditions = {c["type"]: c["status"] for c in body["conditions"]}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    [container] = body["containerStatuses"]
    assert container == {
        "name": "c",
        "state": {"running": {"startedAt": "2025-01-01T12:00:00Z"}},
        "lastState": {},
        "ready": True,
        "restartCount": 0,
        "image": "img-c",
        "imageID": "local://img-c",
        "containerID": "local://7",
        "started": True,
    }


def test_an_unready_pod_names_its_unready_containers() -> None:
    body = status.pod_status(pod("a", "b"), {"a": running("a")}, start_time=T0, now=T0)

    ready = next(c for c in body["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert ready["message"] == "containers with unready status: [b]"
    assert body["containerStatuses"][1]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_an_unchanged_condition_keeps_its_transition_time_so_repeated_statuses_are_equal() -> None:
    first = status.pod_status(pod("c"), {"c": running("c")}, start_time=T0, now=T0)
    later = T0 + timedelta(minutes=5)

    again = status.pod_status(
        pod("c"), {"c": running("c")}, start_time=T0, now=later, previous_conditions=first["conditions"]
    )
    crashed = status.pod_status(
        pod("c"),
        {"c": ContainerObservation("c", exited(1))},
        start_time=T0,
        now=later,
        previous_conditions=first["conditions"],
    )

    assert again == first
    ready = next(c for c in crashed["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2025-01-01T12:05:00Z"


def test_a_terminated_state_carries_exit_code_reason_and_times() -> None:
    assert status.state_dict(exited(1)) == {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": "2025-01-01T12:00:00Z",
            "finishedAt": "2025-01-01T12:00:01Z",
            "containerID": "local://7",
        }
    }


def test_a_container_that_a_previous_agent_ran_is_restarted_as_lost() -> None:
    previous = {
        "name": "c",
        "state": {"running": {"startedAt": "2025-01-01T11:00:00Z"}},
        "restartCount": 2,
        "containerID": "local://5",
    }

    observation, run = status.adopted(previous, "Always", now=T0)

    assert run
    assert observation is not None
    assert observation.restart_count == 2
    assert isinstance(observation.state, Terminated)
    assert observation.state.reason == "ContainerStatusUnknown"
    assert status.started(observation, Running(T0), container_id=None).restart_count == 3


def test_a_completed_container_of_a_never_pod_is_not_rerun_after_an_agent_restart() -> None:
    previous = {"name": "c", "state": {"terminated": {"exitCode": 0, "finishedAt": "2025-01-01T11:00:00Z"}}}

    observation, run = status.adopted(previous, "Never", now=T0)

    assert not run
    assert observation is not None and observation.state == status.terminated(
        0, started_at=None, finished_at=datetime(2025, 1, 1, 11, tzinfo=UTC), container_id=None
    )


def test_a_crash_looping_container_keeps_its_restart_count_after_an_agent_restart() -> None:
    previous = {
        "name": "c",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 4, "finishedAt": "2025-01-01T11:00:00Z"}},
        "restartCount": 5,
    }

    observation, run = status.adopted(previous, "Always", now=T0)

    assert run and observation is not None
    assert status.started(observation, Running(T0), container_id=None).restart_count == 6


def test_a_container_that_never_started_just_starts_after_an_agent_restart() -> None:
    assert status.adopted({"name": "c", "state": {"waiting": {"reason": "X"}}}, "Never", now=T0) == (None, True)
    assert status.adopted(None, "Never", now=T0) == (None, True)
