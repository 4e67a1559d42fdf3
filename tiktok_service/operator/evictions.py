"""Whose fault a pod's disruption was: the node's, or the connector's own (pure).

A connector pod can end without its process failing: the kubelet evicts it because the node
is short of memory or disk, a drain or the cluster autoscaler evicts it through the Eviction
API, the node shuts down. None of that is the connector's fault, and counting it toward
`maxRestarts` would turn a healthy Livestream `Failed` after a few pressure episodes. But the
kubelet also evicts a pod that went beyond its *own* limits (ephemeral storage, an emptyDir's
`sizeLimit`): that is the pod's failure, like `OOMKilled`, and it must count, or a pod that
fills its disk would be replaced forever.

The kubelet says which in the pod's status: `reason: Evicted` and a message built from fixed
formats (`pkg/kubelet/eviction/helpers.go` of Kubernetes v1.37):

* node pressure: ``The node was low on resource: %v. `` (+ threshold and usage details), and
  the pod gets the condition ``DisruptionTarget`` with reason ``TerminationByKubelet``;
* admission refused under pressure: ``The node had condition: %v. ``;
* the pod's own limits (no ``DisruptionTarget`` condition): ``Pod ephemeral local storage
  usage exceeds the total limit of containers %s. ``, ``Container %s exceeded its local
  ephemeral storage limit %q. ``, ``Usage of EmptyDir volume %q exceeds the limit %q. ``.

A graceful node shutdown sets `reason: Terminated` (`pkg/kubelet/nodeshutdown`), and a
kubelet that finds the node short of what the scheduler counted refuses the pod with
`OutOf<resource>` (`pkg/kubelet/lifecycle/predicate.go`); a pod the kubelet admits no more
because its node is shutting down gets `reason: NodeShutdown`, and one it evicts to admit a
critical pod `reason: Preempting` (both the node's doing). A node-pressure eviction whose
message names a container using more than its request (``Container %s was using %s, request
is %s, has larger consumption of %v. ``) was at least partly the pod's own doing: counted. An `Evicted` message matching
neither family counts as the pod's failure unless the kubelet marked it `TerminationByKubelet`:
a failure we cannot place is retried with backoff, never forever at once.

Since Kubernetes 1.27 the phase of a pod the kubelet stopped follows its containers' exit codes
(kubernetes/kubernetes#118310): a connector that drains and exits 0 on the eviction's SIGTERM
leaves a pod `Succeeded` with neither reason nor message (seen on a real v1.37 kubelet). Only
the ``DisruptionTarget`` condition still says what happened (reason ``TerminationByKubelet``,
the eviction or shutdown message), so that condition is read as well.

Pods deleted by others carry ``DisruptionTarget`` too (`deleted_disruption`): the Eviction API
(``EvictionByEvictionAPI``: `kubectl drain`, the cluster autoscaler, node upgrades), the
scheduler's preemption, the taint manager (``DeletionByTaintManager``: an unreachable node's
`NoExecute` taint) and the pod garbage collector (``DeletionByPodGC``: the node is gone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tiktok_service.domain.quantities import parse_quantity

EVICTED: Final = "Evicted"
PREEMPTED: Final = "Preempted"
NODE_SHUTDOWN: Final = "NodeShutdown"
NODE_SHORT: Final = "NodeResourcesShort"
#: The Livestream reasons that announce a disruption (each gets a Warning Event when it appears).
REASONS: Final = frozenset({EVICTED, PREEMPTED, NODE_SHUTDOWN, NODE_SHORT})

#: The kubelet's messages for a pod beyond its own limits (prefixes of its formats).
_OWN_LIMIT_MESSAGES: Final = (
    "Pod ephemeral local storage usage exceeds the total limit of containers",
    "Usage of EmptyDir volume",
)
_OWN_CONTAINER_LIMIT: Final = "exceeded its local ephemeral storage limit"
#: The kubelet's messages for a node under pressure.
_NODE_MESSAGES: Final = ("The node was low on resource:", "The node had condition:")
#: The kubelet's clause naming a container beyond its request (only written when usage > request):
#: ``Container %s was using %s, request is %s, has larger consumption of %v. ``
#: (before Kubernetes 1.28: ``Container %s was using %s, which exceeds its request of %s. ``).
_OVER_REQUEST: Final = re.compile(
    r"Container (?P<container>\S+) was using (?P<usage>[^\s,]+)"
    r"(?:, request is (?P<request>[^\s,]+), has larger consumption of [\w./-]+|"
    r", which exceeds its request of (?P<old_request>[^\s,]+?))\.(?:\s|$)"
)
_KUBELET_TERMINATION: Final = "TerminationByKubelet"
_NODE_SHUTDOWN_REASON: Final = "Terminated"
#: Admission refused while the node shuts down (`pkg/kubelet/nodeshutdown`):
#: "Pod was rejected as the node is shutting down."
_NODE_SHUTDOWN_REJECTED: Final = "NodeShutdown"
#: The kubelet evicting a pod to admit a critical one (`pkg/kubelet/preemption`).
_KUBELET_PREEMPTING: Final = "Preempting"
_NODE_SHUTDOWN_MESSAGE: Final = "Pod was terminated in response to imminent node shutdown"
_ADMISSION_SHORT_PREFIX: Final = "OutOf"

_DELETIONS: Final[dict[str, tuple[str, str]]] = {
    "EvictionByEvictionAPI": (EVICTED, "evicted through the Eviction API (a drain, the cluster autoscaler)"),
    "PreemptionByScheduler": (PREEMPTED, "preempted by the scheduler for a pod of higher priority"),
    "DeletionByTaintManager": (EVICTED, "evicted from its node by a NoExecute taint (node unreachable or not ready)"),
    "DeletionByPodGC": (EVICTED, "deleted by the pod garbage collector (its node is gone)"),
    _KUBELET_TERMINATION: (EVICTED, "terminated by the kubelet"),
}


class Fault(StrEnum):
    NODE = "node"  # replace at once, not counted toward maxRestarts
    OWN = "own"  # the pod's own failure: counted, restarted with backoff


@dataclass(frozen=True, slots=True)
class Disruption:
    fault: Fault
    reason: str  # the Livestream's reason
    why: str  # in our words, for the status message and the Event


def finished_disruption(
    reason: str, message: str, condition_reason: str = "", condition_message: str = ""
) -> Disruption | None:
    """Why a finished pod was ended by its node, if it was (None: its process simply exited).

    `reason`/`message` are the pod's status reason and message, `condition_reason` and
    `condition_message` those of its ``DisruptionTarget`` condition ("" when it has none).
    """
    kubelet_stopped = condition_reason == _KUBELET_TERMINATION
    if reason == EVICTED:
        if message.startswith(_OWN_LIMIT_MESSAGES) or _OWN_CONTAINER_LIMIT in message:
            return Disruption(Fault.OWN, EVICTED, f"evicted by the kubelet for exceeding its own limits: {message}")
        if message.startswith(_NODE_MESSAGES) or kubelet_stopped:
            if beyond_request(message):  # the pressure is (at least partly) its own doing
                why = f"evicted by the kubelet under node pressure while using more than it requested: {message}"
                return Disruption(Fault.OWN, EVICTED, why)
            return Disruption(Fault.NODE, EVICTED, f"evicted by the kubelet, its node was under pressure: {message}")
        return Disruption(Fault.OWN, EVICTED, f"evicted by the kubelet: {message}")
    if reason == _NODE_SHUTDOWN_REJECTED:
        return Disruption(Fault.NODE, NODE_SHUTDOWN, f"refused by the kubelet, its node is shutting down: {message}")
    if reason == _NODE_SHUTDOWN_REASON or (kubelet_stopped and condition_message.startswith(_NODE_SHUTDOWN_MESSAGE)):
        return Disruption(Fault.NODE, NODE_SHUTDOWN, f"stopped by its node's shutdown: {message or condition_message}")
    if reason == _KUBELET_PREEMPTING:
        why = f"preempted by the kubelet to admit a critical pod: {message or condition_message}"
        return Disruption(Fault.NODE, PREEMPTED, why)
    if reason.startswith(_ADMISSION_SHORT_PREFIX):
        return Disruption(Fault.NODE, NODE_SHORT, f"refused by the kubelet, its node lacked the resource: {message}")
    if kubelet_stopped:  # an eviction whose pod took its phase from an exit code: the condition is all that is left
        if beyond_request(condition_message):
            why = f"evicted by the kubelet under node pressure while using more than it requested: {condition_message}"
            return Disruption(Fault.OWN, EVICTED, why)
        why = f"evicted by the kubelet, its node was under pressure: {condition_message}"
        return Disruption(Fault.NODE, EVICTED, why)
    return None


def beyond_request(message: str) -> bool:
    """Whether a node-pressure eviction message names a container using more than it requested.

    The kubelet appends that clause only for such containers, but the quantities are compared
    anyway: a clause whose numbers do not parse, or do not show usage above the request, is not
    evidence against the pod (its eviction stays the node's fault).
    """
    for clause in _OVER_REQUEST.finditer(message):
        try:
            usage = parse_quantity(clause["usage"])
            request = parse_quantity(clause["request"] or clause["old_request"])
        except (ValueError, ArithmeticError):
            continue
        if usage > request:
            return True
    return False


def deleted_disruption(condition_reason: str, condition_message: str) -> Disruption | None:
    """Why a pod being deleted by someone else was deleted, from its ``DisruptionTarget`` condition."""
    if not condition_reason:
        return None
    reason, why = _DELETIONS.get(condition_reason, (EVICTED, f"disrupted ({condition_reason})"))
    detail = f": {condition_message}" if condition_message else ""
    return Disruption(Fault.NODE, reason, why + detail)
