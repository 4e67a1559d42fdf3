"""Pure decisions of the node agent: container states, restarts and the pod status they imply.

Everything here mirrors what a kubelet reports (``pkg/kubelet/kubelet_pods.go``: ``getPhase``
and ``generateAPIPodStatus``), so code written against real clusters (the operator, kubectl,
tests) sees the same phases, reasons and counters from our local processes. No I/O: the
effects layer (``container.py``, ``pod.py``) feeds observations in and patches the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tiktok_service_dev.node_agent.times import parse_time, rfc3339

HOST_IP = "127.0.0.1"
RESTART_POLICIES = ("Always", "OnFailure", "Never")
# Conditions the kubelet owns; any other type (PodScheduled, DisruptionTarget, readiness
# gates) belongs to someone else and is carried over untouched.
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
# Exit code containerd reports when it cannot start the process (e.g. executable not found).
START_ERROR_EXIT_CODE = 128
# Exit code and reason a kubelet reports for a container it lost track of (e.g. it restarted).
UNKNOWN_EXIT_CODE = 137


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str | None = None


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: datetime | None
    finished_at: datetime
    message: str | None = None
    container_id: str | None = None


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerObservation:
    """What the agent knows about one container right now."""

    name: str
    state: State
    last_state: Terminated | None = None
    restart_count: int = 0
    container_id: str | None = None

    @property
    def ready(self) -> bool:
        # No readiness probes are run: a running process is ready, as with a probe-less kubelet.
        return isinstance(self.state, Running)


def creating(name: str) -> ContainerObservation:
    return ContainerObservation(name=name, state=Waiting("ContainerCreating"))


# --------------------------------------------------------------------------------------
# Process outcomes and restarts
# --------------------------------------------------------------------------------------


def exit_code_of(returncode: int) -> int:
    """Popen's ``-N`` (killed by signal N) becomes the shell/runtime convention ``128 + N``."""
    return 128 - returncode if returncode < 0 else returncode


def terminated(
    exit_code: int,
    *,
    started_at: datetime | None,
    finished_at: datetime,
    container_id: str | None,
    reason: str | None = None,
    message: str | None = None,
) -> Terminated:
    """A terminated state with the kubelet's default reason for the exit code."""
    return Terminated(
        exit_code=exit_code,
        reason=reason or ("Completed" if exit_code == 0 else "Error"),
        started_at=started_at,
        finished_at=finished_at,
        message=message,
        container_id=container_id,
    )


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """``Always`` restarts every exit, ``OnFailure`` non-zero exits, ``Never`` none."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def crash_loop_delay(step: int, *, base: float, cap: float) -> float:
    """Seconds to wait before the ``step``-th restart (0-based) of a crashing container.

    Like the kubelet's ``flowcontrol.Backoff``: the first restart is immediate, then
    ``base`` doubling up to ``cap`` (10 s .. 300 s on a real node).
    """
    if step <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(step - 1, 32))))


def crash_loop_message(delay: float, container: str, pod_name: str, namespace: str, uid: str) -> str:
    return f"back-off {delay:g}s restarting failed container={container} pod={pod_name}_{namespace}({uid})"


# --------------------------------------------------------------------------------------
# Adopting pods that a previous agent incarnation ran
# --------------------------------------------------------------------------------------


def adopted(
    container_status: Mapping[str, Any] | None, restart_policy: str, *, now: datetime
) -> tuple[ContainerObservation | None, bool]:
    """Resume a container from its last reported status after an agent restart.

    Returns ``(observation, should_run)``. Processes never survive the agent, so a
    container reported running or terminated is gone: like a kubelet that lost its
    container, report it terminated with ``ContainerStatusUnknown`` and restart it only
    if the restart policy says so. A never-started container just starts.
    """
    if not container_status:
        return None, True
    state = container_status.get("state") or {}
    previous = state.get("terminated")
    if previous is None and state.get("waiting") is not None:
        previous = (container_status.get("lastState") or {}).get("terminated")  # was crash-looping
    if previous is None and state.get("running") is None:
        return None, True
    restarts = int(container_status.get("restartCount") or 0)
    if previous is not None:
        outcome = terminated(
            int(previous.get("exitCode") or 0),
            started_at=parse_time(previous.get("startedAt")),
            finished_at=parse_time(previous.get("finishedAt")) or now,
            container_id=previous.get("containerID"),
            reason=previous.get("reason"),
            message=previous.get("message"),
        )
    else:
        outcome = terminated(
            UNKNOWN_EXIT_CODE,
            started_at=parse_time(state["running"].get("startedAt")),
            finished_at=now,
            container_id=container_status.get("containerID"),
            reason="ContainerStatusUnknown",
            message="The container could not be located when the node agent restarted",
        )
    observation = ContainerObservation(name=str(container_status.get("name")), state=outcome, restart_count=restarts)
    return observation, should_restart(restart_policy, outcome.exit_code)


# --------------------------------------------------------------------------------------
# Pod status
# --------------------------------------------------------------------------------------


def pod_phase(restart_policy: str, observations: Sequence[ContainerObservation], *, terminal: bool) -> str:
    """The kubelet's ``getPhase`` for pods without init containers.

    ``terminal`` means the agent has finished with the pod (deleted and its processes
    gone): then it is Succeeded or Failed whatever the restart policy.
    """
    waiting = running = stopped = succeeded = 0
    for observation in observations:
        state = observation.state
        if isinstance(state, Running):
            running += 1
        elif isinstance(state, Terminated):
            stopped += 1
            succeeded += state.exit_code == 0
        elif observation.last_state is not None:
            stopped += 1  # waiting to restart after a crash
        else:
            waiting += 1
    if not observations or waiting:
        return "Pending"
    if running:
        return "Running"
    if terminal:
        return "Succeeded" if stopped == succeeded else "Failed"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def container_status(observation: ContainerObservation, image: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": observation.name,
        "state": state_dict(observation.state),
        "lastState": state_dict(observation.last_state) if observation.last_state else {},
        "ready": observation.ready,
        "restartCount": observation.restart_count,
        "image": image,
        "imageID": f"local://{image}",
        "started": isinstance(observation.state, Running),
    }
    if observation.container_id:
        status["containerID"] = observation.container_id
    return status


def state_dict(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        return {"waiting": _without_none({"reason": state.reason, "message": state.message})}
    if isinstance(state, Running):
        return {"running": {"startedAt": rfc3339(state.started_at)}}
    return {
        "terminated": _without_none(
            {
                "exitCode": state.exit_code,
                "reason": state.reason,
                "message": state.message,
                "startedAt": rfc3339(state.started_at) if state.started_at else None,
                "finishedAt": rfc3339(state.finished_at),
                "containerID": state.container_id,
            }
        )
    }


def pod_status(
    pod: Mapping[str, Any],
    observations: Mapping[str, ContainerObservation],
    *,
    start_time: datetime,
    now: datetime,
    terminal: bool = False,
    previous_conditions: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The full ``status`` a kubelet would write for ``pod`` given these observations.

    The result replaces the previous status wholesale (JSON merge patch replaces lists),
    so it carries over conditions owned by others and keeps ``lastTransitionTime`` of
    conditions whose status did not change, which also makes it stable: the same inputs
    give an equal dict, and the caller patches only when it differs from the last write.
    """
    spec = pod.get("spec") or {}
    restart_policy = spec.get("restartPolicy") or "Always"
    containers = spec.get("containers") or []
    ordered = [observations.get(c["name"]) or creating(c["name"]) for c in containers]
    phase = pod_phase(restart_policy, ordered, terminal=terminal)
    unready = [o.name for o in ordered if not o.ready]
    completed = phase == "Succeeded"
    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    ready_message = None if completed else f"containers with unready status: [{' '.join(unready)}]"
    desired = {
        "PodReadyToStartContainers": ("True", None, None),
        "Initialized": ("True", "PodCompleted" if completed else None, None),
        "Ready": ("False", ready_reason, ready_message) if unready else ("True", None, None),
        "ContainersReady": ("False", ready_reason, ready_message) if unready else ("True", None, None),
    }
    return {
        "phase": phase,
        "conditions": _conditions(desired, previous_conditions, now=now),
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": HOST_IP,
        "podIPs": [{"ip": HOST_IP}],
        "startTime": rfc3339(start_time),
        "containerStatuses": [
            container_status(o, str(c.get("image") or "")) for o, c in zip(ordered, containers, strict=True)
        ],
    }


def _conditions(
    desired: Mapping[str, tuple[str, str | None, str | None]],
    previous: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    by_type = {str(c.get("type")): dict(c) for c in previous}
    result: list[dict[str, Any]] = []
    for kind, (status, reason, message) in desired.items():
        before = by_type.get(kind)
        changed_at = before.get("lastTransitionTime") if before and before.get("status") == status else None
        result.append(
            _without_none(
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastProbeTime": None,
                    "lastTransitionTime": changed_at or rfc3339(now),
                }
            )
        )
    result.extend(c for kind, c in by_type.items() if kind not in OWNED_CONDITIONS)
    return result


def started(
    observation: ContainerObservation, state: Running | Terminated, *, container_id: str | None
) -> ContainerObservation:
    """The observation once a (new) process was started or failed to start.

    A container that ran before is being restarted: its previous termination becomes
    ``lastState`` and ``restartCount`` grows, as the kubelet counts restarts.
    """
    previous = observation.state
    last = previous if isinstance(previous, Terminated) else observation.last_state
    return replace(
        observation,
        state=state,
        last_state=last,
        restart_count=observation.restart_count + (1 if last is not None else 0),
        container_id=container_id,
    )


def waiting(observation: ContainerObservation, reason: str, message: str | None = None) -> ContainerObservation:
    """Waiting to (re)start; a termination just observed moves to ``lastState``."""
    previous = observation.state
    last = previous if isinstance(previous, Terminated) else observation.last_state
    return replace(observation, state=Waiting(reason, message), last_state=last)


def finalized(observation: ContainerObservation, *, now: datetime) -> ContainerObservation:
    """A container of a pod that is being torn down and never got (back) to running.

    The kubelet reports such containers terminated with 137 so a deleted pod's phase is
    terminal (``Failed``) rather than stuck in ``Pending``.
    """
    if isinstance(observation.state, Waiting):
        return replace(
            observation,
            state=terminated(
                UNKNOWN_EXIT_CODE,
                started_at=None,
                finished_at=now,
                container_id=None,
                reason="ContainerStatusUnknown",
                message="The container could not be located when the pod was terminated",
            ),
        )
    return observation


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
