"""What a Livestream's `spec.connector` may ask of the cluster, by the operator's settings (pure).

In the cluster, only Livestream administrators may set `spec.connector` at all (the
ValidatingAdmissionPolicy in `deploy/livestream-admission.yaml`); these limits hold even for
them, and in clusters without that policy:

* **Resources** are merged over the operator's defaults per resource name, so a Livestream
  that sets only a CPU request keeps the default memory request and limit (a pod without a
  memory limit could take a node's memory). A request above the default limit of the same
  resource raises that limit to the request, so the pod stays valid.
* **Maximum per resource** (`connector_max_resources`): every request and limit must be at most
  the maximum of its resource name, and a resource not named there (GPUs, hugepages) may not be
  asked for. Beyond them the Livestream is **refused, not clamped**: a clamped pod is not what its
  author asked for and would fail later in ways that are harder to read (OOM at the clamped
  limit); a refusal says which field and which maximum, at once.
* **PriorityClasses** (`connector_allowed_priority_classes`): a connector may preempt other
  pods only with a class named there.
* **Tolerations** (`connector_allowed_toleration_keys`): each toleration must name an allowed
  taint key; a keyless toleration (`operator: Exists` without key tolerates every taint,
  control-plane ones included) is never allowed.

`refusal` is checked right before a pod is created (`lifecycle.assess`): a refused Livestream
is `Failed` with the reason below and keeps no pod until its spec changes. Operator settings
reach running connectors only on their next start, like every other setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from tiktok_service.domain.quantities import parse_quantity
from tiktok_service.settings import OperatorSettings

INVALID_RESOURCES: Final = "InvalidResources"
RESOURCES_ABOVE_LIMIT: Final = "ResourcesAboveLimit"
PRIORITY_CLASS_NOT_ALLOWED: Final = "PriorityClassNotAllowed"
TOLERATION_NOT_ALLOWED: Final = "TolerationNotAllowed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a Livestream's connector pod is not created: the first reason, every problem in the message."""

    reason: str
    message: str


def quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity ("50m", "1Gi", 2) as a number; None when it is not one."""
    try:
        return parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return None


def default_resources(settings: OperatorSettings) -> dict[str, dict[str, str]]:
    """The requests and limits of a connector whose Livestream sets none (no CPU limit: see settings)."""
    return {
        "requests": {"cpu": settings.connector_cpu_request, "memory": settings.connector_memory_request},
        "limits": {"memory": settings.connector_memory_limit},
    }


def connector_resources(overrides: Mapping[str, Any] | None, settings: OperatorSettings) -> dict[str, dict[str, Any]]:
    """`spec.connector.resources` merged over the defaults, per resource name (see the module doc)."""
    merged = default_resources(settings)
    overrides = overrides or {}
    requests: dict[str, Any] = {**merged["requests"], **(overrides.get("requests") or {})}
    limits: dict[str, Any] = {**merged["limits"], **(overrides.get("limits") or {})}
    asked_limits = overrides.get("limits") or {}
    for name, limit in merged["limits"].items():
        request = quantity(requests.get(name))
        default_limit = quantity(limit)
        if name not in asked_limits and request is not None and default_limit is not None and request > default_limit:
            limits[name] = requests[name]
    return {"requests": requests, "limits": limits}


def _resource_problems(resources: Mapping[str, Mapping[str, Any]], maximum: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for kind in ("requests", "limits"):
        for name, value in sorted((resources.get(kind) or {}).items()):
            asked = quantity(value)
            if asked is None or asked < 0:
                problems.append((INVALID_RESOURCES, f"{kind}.{name} {value!r} is not a Kubernetes quantity"))
            elif name not in maximum:
                problems.append(
                    (
                        RESOURCES_ABOVE_LIMIT,
                        f"{kind}.{name} may not be asked for (allowed: {', '.join(sorted(maximum)) or 'none'})",
                    )
                )
            elif (top := quantity(maximum[name])) is not None and asked > top:
                problems.append((RESOURCES_ABOVE_LIMIT, f"{kind}.{name} {value} is above the maximum {maximum[name]}"))
    return problems


def _toleration_problems(tolerations: Sequence[Mapping[str, Any]], allowed: Sequence[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for toleration in tolerations:
        key = toleration.get("key")
        if not key:
            problems.append((TOLERATION_NOT_ALLOWED, "a toleration without a key (it tolerates every taint)"))
        elif key not in allowed:
            problems.append(
                (TOLERATION_NOT_ALLOWED, f"toleration of taint {key!r} (allowed: {', '.join(allowed) or 'none'})")
            )
    return problems


def refusal(spec: Mapping[str, Any], settings: OperatorSettings) -> Refusal | None:
    """None when the operator may create the connector pod `spec` asks for; else why not."""
    connector = spec.get("connector") or {}
    problems = _resource_problems(
        connector_resources(connector.get("resources"), settings), settings.connector_max_resources
    )
    priority_class = connector.get("priorityClassName")
    if priority_class and priority_class not in settings.connector_allowed_priority_classes:
        allowed = ", ".join(settings.connector_allowed_priority_classes) or "none"
        problems.append((PRIORITY_CLASS_NOT_ALLOWED, f"priorityClassName {priority_class!r} (allowed: {allowed})"))
    problems += _toleration_problems(connector.get("tolerations") or (), settings.connector_allowed_toleration_keys)
    if not problems:
        return None
    details = "; ".join(detail for _, detail in problems)
    return Refusal(problems[0][0], f"spec.connector is beyond the operator's limits: {details}")
