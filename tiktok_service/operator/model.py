"""The operator's vocabulary: names, phases, and what it observes about a pod (pure).

Nothing here does I/O. `observe_pod` reduces a pod body to the few fields decisions need,
which is also what the operator keeps in memory per pod (a small frozen object instead of
a 5-10 KB dict: 1,000 rooms must fit in the operator's memory budget).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiktok_service.domain.connector_status import ConnectorStatus

# The resource's names, phases and labels are the domain's (the API uses them too); the
# operator's modules keep reaching them as `model.<name>`.
from tiktok_service.domain.livestream import API_VERSION as API_VERSION
from tiktok_service.domain.livestream import CONNECTOR_APP as CONNECTOR_APP
from tiktok_service.domain.livestream import CONTAINER as CONTAINER
from tiktok_service.domain.livestream import GROUP as GROUP
from tiktok_service.domain.livestream import KIND as KIND
from tiktok_service.domain.livestream import LABEL_COMPONENT as LABEL_COMPONENT
from tiktok_service.domain.livestream import LABEL_INSTANCE as LABEL_INSTANCE
from tiktok_service.domain.livestream import LABEL_LIVESTREAM as LABEL_LIVESTREAM
from tiktok_service.domain.livestream import LABEL_MANAGED_BY as LABEL_MANAGED_BY
from tiktok_service.domain.livestream import LABEL_NAME as LABEL_NAME
from tiktok_service.domain.livestream import LABEL_USERNAME as LABEL_USERNAME
from tiktok_service.domain.livestream import PLURAL as PLURAL
from tiktok_service.domain.livestream import TERMINAL_PHASES as TERMINAL_PHASES
from tiktok_service.domain.livestream import VERSION as VERSION
from tiktok_service.domain.livestream import DesiredState as DesiredState
from tiktok_service.domain.livestream import Phase as Phase

ANNOTATION_SPEC_HASH: Final = "tiktok-service.io/spec-hash"
ANNOTATION_RESTARTS: Final = "tiktok-service.io/restarts"
ANNOTATION_USERNAME: Final = "tiktok-service.io/username"
MANAGER: Final = "tiktok-operator"
#: kopf's finalizer on every served Livestream (kopf's default name would be kopf.zalando.org/KopfFinalizerMarker).
FINALIZER: Final = "tiktok-service.io/finalizer"

_MAX_NAME: Final = 63
_LABEL_VALUE_EDGES: Final = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bounded_name(prefix: str, name: str, limit: int = _MAX_NAME) -> str:
    """`prefix + name`, or a truncation ending in a hash of `name` when that is too long.

    Deterministic: the same Livestream always maps to the same pod, which is what makes
    "create" idempotent across operator restarts.
    """
    full = prefix + name
    if len(full) <= limit:
        return full
    digest = short_hash(name)
    head = full[: limit - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}"


def label_value(value: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends) derived from `value`."""
    cleaned = _LABEL_VALUE_EDGES.sub("", value)
    if cleaned == value and len(value) <= _MAX_NAME:
        return value
    return bounded_name("", cleaned or "x", _MAX_NAME - 9) + "-" + short_hash(value)


def pod_name(livestream_name: str) -> str:
    return bounded_name("ls-", livestream_name)


def parse_time(value: str | None) -> float | None:
    """RFC 3339 (as Kubernetes writes it) to epoch seconds."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def format_time(epoch_s: float | None) -> str | None:
    """Epoch seconds to RFC 3339 with second precision (metav1.Time's resolution)."""
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(int(epoch_s), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class PodObservation:
    """What the operator needs to know about a connector pod."""

    name: str
    uid: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    deleting: bool = False
    spec_hash: str = ""
    restarts: int = 0
    node_name: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""  # Evicted, OOMKilled, Unschedulable, CreateContainerConfigError, ...
    message: str = ""
    #: Reason of the pod's `DisruptionTarget` condition: who ended it (EvictionByEvictionAPI, TerminationByKubelet...).
    disruption: str = ""
    disruption_message: str = ""

    @property
    def terminated(self) -> bool:
        return self.phase in {"Succeeded", "Failed"}


def observe_pod(pod: Mapping[str, Any]) -> PodObservation:
    """Reduce a pod body (as the API returns it) to a `PodObservation`."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    disruption = disruption_message = ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            message = str(condition.get("message") or "")
        elif condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            disruption = str(condition.get("reason") or "")
            disruption_message = str(condition.get("message") or "")[:500]
    exit_code: int | None = None
    finished_at: float | None = None
    started_at = parse_time(status.get("startTime"))
    for container in status.get("containerStatuses") or []:
        if container.get("name") != CONTAINER:
            continue
        state = container.get("state") or {}
        if terminated := state.get("terminated"):
            exit_code = terminated.get("exitCode")
            finished_at = parse_time(terminated.get("finishedAt"))
            started_at = parse_time(terminated.get("startedAt")) or started_at
            reason = reason or str(terminated.get("reason") or "")
            message = message or str(terminated.get("message") or "")
        elif waiting := state.get("waiting"):
            reason = reason or str(waiting.get("reason") or "")
            message = message or str(waiting.get("message") or "")
        elif running := state.get("running"):
            started_at = parse_time(running.get("startedAt")) or started_at
    try:
        restarts = int(annotations.get(ANNOTATION_RESTARTS) or 0)
    except ValueError:
        restarts = 0
    return PodObservation(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        phase=str(status.get("phase") or "Pending"),
        deleting=meta.get("deletionTimestamp") is not None,
        spec_hash=str(annotations.get(ANNOTATION_SPEC_HASH) or ""),
        restarts=restarts,
        node_name=(pod.get("spec") or {}).get("nodeName"),
        started_at=started_at,
        finished_at=finished_at,
        exit_code=exit_code,
        reason=reason,
        message=message[:500],
        disruption=disruption,
        disruption_message=disruption_message,
    )


def expected_pod(
    indexed: PodObservation | None, *, created: PodObservation | None, deleted_uid: str | None
) -> PodObservation | None:
    """The pod as decisions should see it: the index, corrected by writes its watch has not shown yet.

    The index lags the operator's own writes by a watch event. A pass in between (a requeue,
    a heartbeat resync) would otherwise act on the stale view again: create the pod a second
    time, or delete it again. `created` is a pod this loop created, `deleted_uid` one it deleted.
    """
    if created is not None and (indexed is None or indexed.uid != created.uid):
        return created
    if indexed is not None and indexed.uid == deleted_uid and not indexed.deleting:
        return dataclasses.replace(indexed, deleting=True)
    return indexed


def owner_key(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, Livestream name) of the Livestream controlling this pod, if any."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        ours = owner.get("kind") == KIND and str(owner.get("apiVersion", "")).startswith(GROUP + "/")
        if ours and owner.get("controller"):
            return str(meta.get("namespace", "")), str(owner["name"])
    return None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A connector's self-reported status and when it wrote it."""

    status: ConnectorStatus
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 10
    backoff_base_s: float = 5.0
    backoff_cap_s: float = 300.0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RestartPolicy:
        """The CRD defaults these fields; the fallbacks repeat its defaults for bodies built by hand."""
        policy = spec.get("restartPolicy") or {}
        return cls(
            max_restarts=int(policy.get("maxRestarts", 10)),
            backoff_base_s=float(policy.get("backoffBaseSeconds", 5)),
            backoff_cap_s=float(policy.get("backoffCapSeconds", 300)),
        )
