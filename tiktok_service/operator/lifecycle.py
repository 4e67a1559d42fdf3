"""What a Livestream should look like now, and what to do about its pod (pure decisions).

`assess` reads the Livestream (spec + last status), its pod and the clock, and settles
the phase and the one action to take; `next_action` and `desired_status` are its two
halves for callers that need only one. Everything durable lives in the cluster, so the
decisions are idempotent across operator restarts:

* the consecutive-failure count is written on each pod (`tiktok-service.io/restarts`),
  so a failed pod says which failure it is, however often it is looked at;
* the retry time is the pod's finish time plus the backoff, not "now plus" anything;
* Ended/Failed are left only by a spec change (a new generation) or a pause/resume.

Connector exits (the README's failure table): 10 live ended -> Ended; 12 offline
(waitForLive=false) -> Ended; 2 config / 11 no such user / 13 blocked / 15 age-restricted ->
Failed at once (a restart would not help; the connector already retried 11 and 13 itself);
16 sign quota -> BackingOff until the reset the sign server announced (the connector's final
status carries it), not counted as a failure; 14 captcha / 17 proxy / anything else (1,
OOMKilled, evicted for exceeding its own limits, SIGKILL...) -> restart with backoff, Failed
after `maxRestarts` consecutive failures. A deleted pod is recreated at once and is not a
failure; nor is 18 (fenced: a connector the operator does not know, e.g. of a force-deleted pod,
claimed the Livestream after ours): the pod is recreated at once and its new claim stops the
other one. Nor is a pod its node ended (`evictions`: node-pressure eviction, node shutdown, a
drain): replaced at once, the Livestream saying why. With `waitForLive` the connector itself
keeps waiting (same pod) instead of exiting.

Every restart is announced once: a scheduled one by its `BackingOff` status (and the Event
that status change deserves); one already due when the operator first sees the exit (a kubelet
that reported it late) by a `Restarting` status written on the pass that recreates the pod
(`Assessment.news`), so `kubectl describe` shows each restart and why.

While the connector runs, its own reason (why it is reconnecting) becomes the Livestream's,
in CamelCase (`REASONS`), so a room that keeps hitting captchas says so before it exits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from tiktok_service.domain import backoff
from tiktok_service.domain.connector_status import ConnectorPhase
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.operator import desired, evictions, limits, model, reasons
from tiktok_service.operator.model import Heartbeat, Phase, PodObservation
from tiktok_service.operator.reasons import REASONS as REASONS
from tiktok_service.operator.reasons import RESTARTING as RESTARTING
from tiktok_service.operator.refusals import POD_REFUSED, PodRefusal, refusal_delay
from tiktok_service.settings import OperatorSettings

#: Status fields: pods ended by their node in a row since the last Live one, and the last one's uid.
NODE_DISRUPTIONS_FIELD = "nodeDisruptions"
DISRUPTED_POD_FIELD = "disruptedPod"
#: A heartbeat older than the pod's start (minus clock skew) is the previous pod's.
_HEARTBEAT_SKEW_S = 5.0
#: Exit 16 without an announced reset (none in the final status, none recorded): wait this long.
_QUOTA_FALLBACK_S = 3600.0


class Do(StrEnum):
    NOTHING = "nothing"
    CREATE_POD = "create_pod"
    DELETE_POD = "delete_pod"
    RECREATE_POD = "recreate_pod"  # delete the finished pod (by uid), then create its successor


@dataclass(frozen=True, slots=True)
class Action:
    do: Do = Do.NOTHING
    pod_uid: str | None = None  # delete precondition: never delete a successor by name
    restarts: int = 0  # written on a created pod
    requeue_after: float | None = None  # look again after this many seconds (a scheduled retry)


@dataclass(frozen=True, slots=True)
class Assessment:
    phase: Phase
    reason: str
    message: str = ""
    restarts: int = 0
    next_retry_at: float | None = None
    action: Action = Action()
    #: The scheduler has not decided on the pod yet: news follows within moments (bound, or Unschedulable).
    awaiting_scheduler: bool = False
    #: A pass that creates a pod normally writes no status ("creating" is not news); this one is
    #: (an eviction, a restart nothing announced yet): written at once.
    news: bool = False
    #: The disruption behind a counted failure (`evictions`: "Evicted" for a pod beyond its own
    #: limits) when the reason shows something else (Restarting, RestartLimitReached).
    disruption: str = ""
    #: Pods their node ended in a row (`status.nodeDisruptions`); None: unchanged.
    node_disruptions: int | None = None
    #: The uid of the disrupted pod this assessment reports (`status.disruptedPod`): one Event per pod.
    disrupted_pod: str = ""


def _spec(livestream: Mapping[str, Any]) -> Mapping[str, Any]:
    return livestream.get("spec") or {}


def _status(livestream: Mapping[str, Any]) -> Mapping[str, Any]:
    return livestream.get("status") or {}


def restart_delay(failures: int, policy: model.RestartPolicy) -> float:
    """Backoff before restart number `failures` (1-based): base * 2^(failures-1), capped."""
    return backoff.ceiling(failures, base=policy.backoff_base_s, cap=policy.backoff_cap_s)


def assess(
    livestream: Mapping[str, Any],
    pod: PodObservation | None,
    heartbeat: Heartbeat | None,
    now: float,
    settings: OperatorSettings,
) -> Assessment:
    """The phase and the one action; a pod the operator's limits refuse (`limits`) is never created."""
    found = _assess(livestream, pod, heartbeat, now, settings)
    if found.action.do in {Do.CREATE_POD, Do.RECREATE_POD}:
        refused = limits.refusal(_spec(livestream), settings)
        if refused is not None:
            return Assessment(Phase.FAILED, refused.reason, refused.message, found.restarts)
    return found


def refused_create(found: Assessment, refusal: PodRefusal, livestream: Mapping[str, Any], now: float) -> Assessment:
    """`found` after the API server refused the pod it created: BackingOff until the next attempt.

    Not counted against `maxRestarts` (no connector ran); the delay doubles with each refusal
    in a row, within the Livestream's own backoff bounds (`refusal_delay`).
    """
    policy = model.RestartPolicy.from_spec(_spec(livestream))
    retry_at = now + refusal_delay(refusal.attempts, policy)
    message = (
        f"the API server refused the connector pod ({refusal.status} {refusal.api_reason}): {refusal.message}; "
        f"attempt {refusal.attempts}, next at {model.format_time(retry_at)}"
    )
    return Assessment(
        Phase.BACKING_OFF, POD_REFUSED, message, found.restarts, retry_at, Action(requeue_after=retry_at - now)
    )


def _assess(
    livestream: Mapping[str, Any],
    pod: PodObservation | None,
    heartbeat: Heartbeat | None,
    now: float,
    settings: OperatorSettings,
) -> Assessment:
    spec, status = _spec(livestream), _status(livestream)
    state = model.DesiredState(spec.get("state", model.DesiredState.RUNNING))
    generation = (livestream.get("metadata") or {}).get("generation")
    previous = Phase(status["phase"]) if status.get("phase") else None
    settled = previous in model.TERMINAL_PHASES and status.get("observedGeneration") == generation
    restarts = int(status.get("restarts") or 0)

    if state is not model.DesiredState.RUNNING:
        phase = Phase.PAUSED if state is model.DesiredState.PAUSED else Phase.STOPPED
        if pod is not None and not pod.deleting:
            return Assessment(phase, state.value, "removing the connector pod", 0, None, Action(Do.DELETE_POD, pod.uid))
        return Assessment(phase, state.value, "connector pod is terminating" if pod else "")

    if pod is None:
        if settled:
            assert previous is not None
            return Assessment(previous, status.get("reason", ""), status.get("message", ""), restarts)
        # A refused create is retried at once after a spec change (the fix may be in the spec).
        refused_earlier = status.get("reason") == POD_REFUSED and status.get("observedGeneration") != generation
        waiting = previous is Phase.BACKING_OFF and not refused_earlier
        retry_at = model.parse_time(status.get("nextRetryAt")) if waiting else None
        if retry_at is not None and now < retry_at:
            message = status.get("message", "")
            return Assessment(
                Phase.BACKING_OFF,
                status.get("reason", ""),
                message,
                restarts,
                retry_at,
                Action(requeue_after=retry_at - now),
            )
        fresh = previous in {None, Phase.PAUSED, Phase.STOPPED, *model.TERMINAL_PHASES}
        restarts = 0 if fresh else restarts
        return Assessment(
            Phase.PENDING,
            "Creating",
            "creating the connector pod",
            restarts,
            None,
            Action(Do.CREATE_POD, restarts=restarts),
        )

    if pod.deleting:
        gone = evictions.deleted_disruption(pod.disruption, pod.disruption_message)
        if gone is not None:
            message = f"pod {pod.name} {gone.why}; replaced once it has stopped, not counted toward maxRestarts"
            return Assessment(Phase.PENDING, gone.reason, message, pod.restarts, disrupted_pod=pod.uid)
        return Assessment(Phase.PENDING, "PodTerminating", f"waiting for pod {pod.name} to terminate", pod.restarts)

    if pod.spec_hash != desired.spec_hash(spec):
        return Assessment(
            Phase.PENDING,
            "SpecChanged",
            f"replacing pod {pod.name} after a spec change",
            0,
            None,
            Action(Do.DELETE_POD, pod.uid),
        )

    if pod.terminated:
        policy = model.RestartPolicy.from_spec(spec)
        if pod.exit_code == ExitCode.SIGN_QUOTA:
            return _assess_quota(pod, status, previous, _own(heartbeat, pod), now, settings)
        return _assess_finished(pod, status, previous, now, settings, policy)

    ran_long = pod.started_at is not None and now - pod.started_at >= settings.restart_reset_after_s
    restarts = 0 if ran_long else pod.restarts
    if pod.phase == "Running":
        return _assess_running(pod, heartbeat, now, settings, restarts)
    if pod.phase == "Pending":
        undecided = not pod.reason and not pod.node_name
        reason = pod.reason or ("ContainerCreating" if pod.node_name else "Scheduling")
        return Assessment(Phase.PENDING, reason, pod.message, restarts, awaiting_scheduler=undecided)
    return Assessment(previous or Phase.PENDING, "PodUnknown", f"pod {pod.name} is in phase {pod.phase}", restarts)


def _assess_finished(
    pod: PodObservation,
    status: Mapping[str, Any],
    previous: Phase | None,
    now: float,
    settings: OperatorSettings,
    policy: model.RestartPolicy,
) -> Assessment:
    if pod.exit_code == ExitCode.FENCED:
        message = f"another connector claimed the Livestream (exit code {pod.exit_code}); replacing pod {pod.name}"
        return Assessment(
            Phase.PENDING, "Superseded", message, pod.restarts, None, Action(Do.RECREATE_POD, pod.uid, pod.restarts)
        )
    ran = (pod.finished_at or now) - (pod.started_at or now)
    ran_long = ran >= settings.restart_reset_after_s
    disrupted = evictions.finished_disruption(pod.reason, pod.message, pod.disruption, pod.disruption_message)
    if disrupted is not None and disrupted.fault is evictions.Fault.NODE:
        return _node_disrupted(pod, disrupted, status, previous, now, policy, 0 if ran_long else pod.restarts)
    if pod.exit_code in reasons.FINAL_EXITS and disrupted is None:
        phase, reason, message = reasons.FINAL_EXITS[pod.exit_code]
        return Assessment(phase, reason, message, pod.restarts)
    failures = 1 if ran_long else pod.restarts + 1
    cause = pod.reason or "Error"
    detail = f"exit code {pod.exit_code}" if pod.exit_code is not None else cause
    own = disrupted.reason if disrupted is not None else ""
    own_uid = pod.uid if disrupted is not None else ""
    if disrupted is not None:
        cause, detail = disrupted.reason, disrupted.why
    elif pod.exit_code == ExitCode.STOPPED:
        cause, detail = reasons.STOPPED_BY_NODE
    elif pod.exit_code in reasons.RESTART_REASONS:
        cause, why = reasons.RESTART_REASONS[pod.exit_code]
        detail = f"{why}, exit code {pod.exit_code}"
    if failures > policy.max_restarts:
        message = f"connector failed {failures} times in a row ({detail}); restart limit is {policy.max_restarts}"
        return Assessment(
            Phase.FAILED, "RestartLimitReached", message, failures - 1, disruption=own, disrupted_pod=own_uid
        )
    known = model.parse_time(status.get("nextRetryAt"))
    announced = previous is Phase.BACKING_OFF and int(status.get("restarts") or 0) == failures
    scheduled = (pod.finished_at or now) + restart_delay(failures, policy)
    retry_at = known if announced and known is not None else scheduled
    if now < retry_at:
        message = f"connector stopped ({detail}); restart {failures} of {policy.max_restarts} scheduled"
        return Assessment(
            Phase.BACKING_OFF,
            cause,
            message,
            failures,
            retry_at,
            Action(requeue_after=retry_at - now),
            disruption=own,
            disrupted_pod=own_uid,
        )
    # Due already: announced by the BackingOff status, or (an exit reported late) by this one.
    return Assessment(
        Phase.PENDING,
        RESTARTING,
        f"connector stopped ({detail}); restart {failures} of {policy.max_restarts}",
        failures,
        None,
        Action(Do.RECREATE_POD, pod.uid, failures),
        news=not announced,
        disruption=own,
        disrupted_pod=own_uid,
    )


def _node_disrupted(
    pod: PodObservation,
    disrupted: evictions.Disruption,
    status: Mapping[str, Any],
    previous: Phase | None,
    now: float,
    policy: model.RestartPolicy,
    restarts: int,
) -> Assessment:
    """A pod its node ended: replaced at once the first time in a row, then after the refusal backoff.

    A node that keeps ending pods (sustained pressure, a kubelet refusing with `OutOf<resource>`
    again and again) would otherwise have the operator create and lose pods in a tight loop. The
    count in a row (`status.nodeDisruptions`, reset once a pod goes Live) never counts toward
    `maxRestarts`; the pod's uid (`status.disruptedPod`) makes each pod count once however
    often it is looked at.
    """
    in_a_row = node_disruptions_in_a_row(status)
    if status.get(DISRUPTED_POD_FIELD) != pod.uid or in_a_row == 0:  # this pod not counted yet
        in_a_row += 1
    delay = node_disruption_delay(in_a_row, policy)
    retry_at = (pod.finished_at or now) + delay
    tail = "not counted toward maxRestarts"
    if now < retry_at:
        message = (
            f"pod {pod.name} {disrupted.why}; its node ended {in_a_row} pods in a row, "
            f"replacement at {model.format_time(retry_at)}, {tail}"
        )
        return Assessment(
            Phase.BACKING_OFF,
            disrupted.reason,
            message,
            restarts,
            retry_at,
            Action(requeue_after=retry_at - now),
            node_disruptions=in_a_row,
            disrupted_pod=pod.uid,
        )
    at_once = "replaced at once" if delay == 0 else f"replaced ({in_a_row} in a row)"
    return Assessment(
        Phase.PENDING,
        disrupted.reason,
        f"pod {pod.name} {disrupted.why}; {at_once}, {tail}",
        restarts,
        None,
        Action(Do.RECREATE_POD, pod.uid, restarts),
        news=previous is not Phase.BACKING_OFF or status.get("reason") != disrupted.reason,
        node_disruptions=in_a_row,
        disrupted_pod=pod.uid,
    )


def node_disruptions_in_a_row(status: Mapping[str, Any]) -> int:
    """Node disruptions in a row the status records (0 once a pod went Live, or if unreadable)."""
    if status.get("phase") == Phase.LIVE:
        return 0
    try:
        return max(int(status.get(NODE_DISRUPTIONS_FIELD) or 0), 0)
    except (TypeError, ValueError):
        return 0


def node_disruption_delay(in_a_row: int, policy: model.RestartPolicy) -> float:
    """Seconds before replacing the `in_a_row`-th pod its node ended: none for the first, then as refusals."""
    return 0.0 if in_a_row <= 1 else refusal_delay(in_a_row - 1, policy)


def _own(heartbeat: Heartbeat | None, pod: PodObservation) -> Heartbeat | None:
    """The heartbeat if `pod` wrote it (not the final status of the pod before it)."""
    started = pod.started_at
    if heartbeat is None or started is None or heartbeat.updated_at_ms / 1000 < started - _HEARTBEAT_SKEW_S:
        return None
    return heartbeat


def _assess_quota(
    pod: PodObservation,
    status: Mapping[str, Any],
    previous: Phase | None,
    heartbeat: Heartbeat | None,
    now: float,
    settings: OperatorSettings,
) -> Assessment:
    """Exit 16: wait until the reset the sign server announced; that is no failure of ours.

    The reset comes from the connector's final status (`next_retry_at_ms`); once that is
    gone (expired), from the status we wrote; without either, an hour (a sign server that
    says nothing about its reset is not to be hammered).
    """
    ran = (pod.finished_at or now) - (pod.started_at or now)
    restarts = 0 if ran >= settings.restart_reset_after_s else pod.restarts
    known = model.parse_time(status.get("nextRetryAt")) if previous is Phase.BACKING_OFF else None
    if heartbeat is not None and heartbeat.status.next_retry_at_ms:
        retry_at = heartbeat.status.next_retry_at_ms / 1000
    elif known is not None:
        retry_at = known
    else:
        retry_at = (pod.finished_at or now) + _QUOTA_FALLBACK_S
    if now < retry_at:
        message = f"the sign server's quota is spent until {model.format_time(retry_at)}; the connector restarts then"
        return Assessment(
            Phase.BACKING_OFF, reasons.QUOTA_REASON, message, restarts, retry_at, Action(requeue_after=retry_at - now)
        )
    return Assessment(
        Phase.PENDING,
        RESTARTING,
        "the sign server's quota reset has passed",
        restarts,
        None,
        Action(Do.RECREATE_POD, pod.uid, restarts),
    )


def _assess_running(
    pod: PodObservation, heartbeat: Heartbeat | None, now: float, settings: OperatorSettings, restarts: int
) -> Assessment:
    started = pod.started_at or now
    heartbeat = _own(heartbeat, replace(pod, started_at=started))
    if heartbeat is None:
        if now - started > settings.heartbeat_grace_s:
            message = f"no heartbeat from the connector for {settings.heartbeat_grace_s:.0f}s"
            return Assessment(Phase.CONNECTING, "NoHeartbeat", message, restarts)
        return Assessment(Phase.CONNECTING, "Starting", "waiting for the connector's first heartbeat", restarts)
    report = heartbeat.status
    phase, reason = reasons.FROM_CONNECTOR[report.phase]
    retry_at: float | None = None
    if report.phase in (ConnectorPhase.WAITING, ConnectorPhase.RECONNECTING):
        reason = REASONS.get(report.reason, reason)
        retry_at = report.next_retry_at_ms / 1000 if report.next_retry_at_ms else None
    message = report.last_error if phase is not Phase.LIVE else ""
    return Assessment(phase, reason, message, restarts, retry_at)


def next_action(
    livestream: Mapping[str, Any], pod: PodObservation | None, now: float, settings: OperatorSettings
) -> Action:
    """What to do about the pod (the status half of `assess` ignored)."""
    return assess(livestream, pod, None, now, settings).action
