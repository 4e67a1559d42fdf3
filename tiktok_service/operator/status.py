"""The Livestream status: built from an assessment and the connector's reports (pure).

`desired_status` is the whole status the Livestream should show; `status_patch` is the
merge patch from what it shows now (empty = patch nothing); `rate_limited` tells whether a
patch changes only the fast-moving counters, which are patched at a bounded rate;
`transition_events` are the Kubernetes Events a change deserves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiktok_service.operator import evictions, lifecycle, model, refusals
from tiktok_service.operator.model import Heartbeat, Phase, PodObservation
from tiktok_service.operator.refusals import POD_REFUSED, PodRefusal
from tiktok_service.settings import OperatorSettings

#: Fields that change with every comment or viewer update; alone they do not justify a patch.
VOLATILE_FIELDS: Final = frozenset({"viewerCount", "eventCounts", "totalEvents", "lastEventAt"})
#: Fields from the connector's reports: kept at their last values while there is no report.
_REPORTED_FIELDS: Final = (
    "roomId",
    "connectedAt",
    "disconnectedAt",
    "lastEventAt",
    "viewerCount",
    "eventCounts",
    "totalEvents",
)
_READY_PHASES: Final = frozenset({Phase.LIVE, Phase.WAITING_FOR_LIVE})


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def condition(
    previous: Mapping[str, Any] | None, type_: str, ok: bool, reason: str, message: str, generation: int, now: float
) -> dict[str, Any]:
    """A metav1.Condition whose lastTransitionTime moves only when its status does."""
    value = "True" if ok else "False"
    same = previous is not None and previous.get("status") == value and previous.get("lastTransitionTime")
    return {
        "type": type_,
        "status": value,
        "reason": reason or ("Ready" if ok else "NotReady"),
        "message": message,
        "lastTransitionTime": previous["lastTransitionTime"] if same and previous else model.format_time(now),
        "observedGeneration": generation,
    }


def desired_status(
    livestream: Mapping[str, Any],
    pod: PodObservation | None,
    heartbeat: Heartbeat | None,
    counts: Mapping[str, int] | None,
    now: float,
    settings: OperatorSettings,
    *,
    assessment: lifecycle.Assessment | None = None,
    refusal: PodRefusal | None = None,
) -> dict[str, Any]:
    """The full status for `livestream`; `counts`/`heartbeat` None keep the last reported values.

    `refusal`: the API server's refusals of the pod in a row, recorded while the reason is PodRefused.
    """
    found = assessment or lifecycle.assess(livestream, pod, heartbeat, now, settings)
    current: Mapping[str, Any] = livestream.get("status") or {}
    generation = int((livestream.get("metadata") or {}).get("generation") or 0)
    status: dict[str, Any] = {key: current[key] for key in _REPORTED_FIELDS if key in current}
    if heartbeat is not None and pod is not None and pod.phase == "Running":
        report = heartbeat.status
        if report.room_id is not None:
            status["roomId"] = str(report.room_id)
        if report.viewer_count is not None:
            status["viewerCount"] = report.viewer_count
        for key, value_ms in (
            ("connectedAt", report.connected_at_ms),
            ("disconnectedAt", report.disconnected_at_ms),
            ("lastEventAt", report.last_event_at_ms),
        ):
            if value_ms is not None:
                status[key] = model.format_time(value_ms / 1000)
    if counts is not None:
        status["eventCounts"] = dict(sorted(counts.items()))
        status["totalEvents"] = sum(counts.values())
    status.update(
        phase=found.phase.value,
        reason=found.reason,
        message=found.message,
        restarts=found.restarts,
        observedGeneration=generation,
    )
    if pod is not None:
        status["podName"] = pod.name
    if found.next_retry_at is not None:
        status["nextRetryAt"] = model.format_time(found.next_retry_at)
    status.update(refusals.status_fields(found.reason, refusal))
    status.update(_node_disruption_fields(found, current))
    previous = {c.get("type"): c for c in current.get("conditions") or []}
    ready = found.phase in _READY_PHASES
    live = found.phase is Phase.LIVE
    status["conditions"] = [
        condition(previous.get("Ready"), "Ready", ready, found.reason, found.message, generation, now),
        condition(previous.get("Connected"), "Connected", live, found.reason, found.message, generation, now),
    ]
    return status


def _node_disruption_fields(found: lifecycle.Assessment, current: Mapping[str, Any]) -> dict[str, Any]:
    """`nodeDisruptions`/`disruptedPod`: set by a disruption, kept until a pod goes Live."""
    if found.phase is Phase.LIVE:
        return {}
    fields = (lifecycle.NODE_DISRUPTIONS_FIELD, lifecycle.DISRUPTED_POD_FIELD)
    kept = {key: current[key] for key in fields if key in current}
    if found.node_disruptions is not None:
        kept[lifecycle.NODE_DISRUPTIONS_FIELD] = found.node_disruptions
    if found.disrupted_pod:
        kept[lifecycle.DISRUPTED_POD_FIELD] = found.disrupted_pod
    return kept


def status_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch of `status` turning `current` into `wanted` ({} when equal)."""
    patch: dict[str, Any] = {}
    for key in current.keys() - wanted.keys():
        patch[key] = None
    for key, value in wanted.items():
        old = current.get(key)
        if old == value:
            continue
        if isinstance(value, dict) and isinstance(old, dict):
            patch[key] = {**{gone: None for gone in old.keys() - value.keys()}, **value}
        else:
            patch[key] = value
    return patch


def rate_limited(patch: Mapping[str, Any]) -> bool:
    """True when the patch only moves counters (viewers, events): those wait for their turn."""
    return bool(patch) and patch.keys() <= VOLATILE_FIELDS


def transition_events(current: Mapping[str, Any], wanted: Mapping[str, Any], *, disruption: str = "") -> list[Event]:
    """Kubernetes Events for a status change: disruptions, connections, ends, restarts, pauses.

    Derived from the change itself (not from the pass that made it), so an Event is posted once
    per change, whichever operator replica writes it, and never for a status merely rewritten.
    `disruption` is the assessment's (an eviction behind a counted failure whose reason says
    Restarting or RestartLimitReached): every eviction gets its Event. A status naming the
    disrupted pod (`disruptedPod`) gets one per pod, so a replacement evicted right after its
    predecessor (same reason) gets its own; one without it, one per change of reason.
    """
    events: list[Event] = []
    reason, message = wanted.get("reason"), wanted.get("message") or ""
    disrupted_pod = wanted.get(lifecycle.DISRUPTED_POD_FIELD)
    if disrupted_pod is not None:
        new_disruption = disrupted_pod != current.get(lifecycle.DISRUPTED_POD_FIELD)
    else:
        new_disruption = reason != current.get("reason")
    if new_disruption:
        disrupted = str(reason) if reason in evictions.REASONS else disruption
        if disrupted:  # the pod was evicted, preempted, its node shut down: say why
            events.append(Event("Warning", disrupted, message))
    restarting = reason == lifecycle.RESTARTING and wanted.get("phase") == Phase.PENDING
    if reason != current.get("reason") and restarting and not _announced(current, wanted):
        events.append(Event("Warning", "RestartScheduled", f"{message}; next attempt now"))
    return events + _phase_events(current, wanted)


def _announced(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """A restart the BackingOff status already announced (its RestartScheduled Event is out)."""
    return current.get("phase") == Phase.BACKING_OFF and current.get("restarts") == wanted.get("restarts")


def _phase_events(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Event]:
    old, new = current.get("phase"), wanted.get("phase")
    events: list[Event] = []
    if old == new and not (new == Phase.BACKING_OFF and current.get("restarts") != wanted.get("restarts")):
        return events
    message = wanted.get("message") or ""
    if old in {Phase.PAUSED, Phase.STOPPED} and new not in {Phase.PAUSED, Phase.STOPPED}:
        events.append(Event("Normal", "Resumed", f"state is {new} again"))
    if new == Phase.LIVE:
        events.append(Event("Normal", "Connected", f"connected to room {wanted.get('roomId', '?')}"))
    elif new == Phase.ENDED:
        events.append(Event("Normal", wanted.get("reason") or "LiveEnded", message))
    elif new == Phase.BACKING_OFF and wanted.get("reason") != POD_REFUSED:  # its own Event, per refusal
        events.append(Event("Warning", "RestartScheduled", f"{message}; next attempt at {wanted.get('nextRetryAt')}"))
    elif new == Phase.FAILED:
        events.append(Event("Warning", wanted.get("reason") or "Failed", message))
    elif new in {Phase.PAUSED, Phase.STOPPED}:
        events.append(Event("Normal", str(new), "connector pod removed"))
    elif new == Phase.WAITING_FOR_LIVE:
        events.append(Event("Normal", "WaitingForLive", "the user is offline; the connector keeps polling"))
    return events
