"""Operator limits on `spec.connector`: defaults merged in, maxima, PriorityClasses, tolerations."""

from __future__ import annotations

from typing import Any

import pytest

from tiktok_service.operator import desired, lifecycle, limits
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.model import Phase
from tiktok_service.settings import OperatorSettings

SETTINGS = OperatorSettings.model_validate(
    {
        "connector_max_resources": {"cpu": "1", "memory": "1Gi"},
        "connector_allowed_priority_classes": ["tiktok-connectors"],
        "connector_allowed_toleration_keys": ["dedicated"],
    }
)
CONTROL_PLANE = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}


def spec(**connector: Any) -> dict[str, Any]:
    return {"username": "alice", "connector": connector}


def test_a_livestream_without_resources_gets_the_operators_defaults() -> None:
    assert limits.connector_resources(None, SETTINGS) == {
        "requests": {"cpu": "50m", "memory": "112Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert limits.refusal({"username": "alice"}, SETTINGS) is None


def test_resources_are_merged_over_the_defaults_so_the_memory_limit_stays() -> None:
    merged = limits.connector_resources({"requests": {"cpu": "200m"}}, SETTINGS)

    assert merged == {"requests": {"cpu": "200m", "memory": "112Mi"}, "limits": {"memory": "256Mi"}}


def test_a_request_above_the_default_limit_raises_that_limit_unless_a_limit_is_given() -> None:
    raised = limits.connector_resources({"requests": {"memory": "512Mi"}}, SETTINGS)
    given = limits.connector_resources({"requests": {"memory": "512Mi"}, "limits": {"memory": "768Mi"}}, SETTINGS)

    assert raised["limits"] == {"memory": "512Mi"}
    assert given["limits"] == {"memory": "768Mi"}


def test_the_pod_carries_the_merged_resources() -> None:
    body = {
        "metadata": {"name": "alice", "namespace": "rooms", "uid": "u-1"},
        "spec": spec(resources={"limits": {"memory": "300Mi"}}),
    }

    container = desired.desired_pod(body, SETTINGS)["spec"]["containers"][0]

    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "112Mi"}, "limits": {"memory": "300Mi"}}


@pytest.mark.parametrize(
    ("resources", "detail"),
    [
        ({"requests": {"cpu": "1500m"}}, "requests.cpu 1500m is above the maximum 1"),
        ({"limits": {"memory": "2Gi"}}, "limits.memory 2Gi is above the maximum 1Gi"),
        ({"requests": {"memory": 2_000_000_000}}, "requests.memory 2000000000 is above the maximum 1Gi"),
        ({"limits": {"nvidia.com/gpu": "1"}}, "limits.nvidia.com/gpu may not be asked for (allowed: cpu, memory)"),
    ],
)
def test_resources_above_the_maximum_are_refused_naming_the_field_and_the_maximum(
    resources: dict[str, Any], detail: str
) -> None:
    refused = limits.refusal(spec(resources=resources), SETTINGS)

    assert refused is not None
    assert refused.reason == limits.RESOURCES_ABOVE_LIMIT
    assert detail in refused.message


def test_resources_at_the_maximum_are_allowed() -> None:
    assert limits.refusal(spec(resources={"requests": {"cpu": 1}, "limits": {"memory": "1Gi"}}), SETTINGS) is None


def test_a_value_that_is_no_quantity_is_refused_as_invalid() -> None:
    refused = limits.refusal(spec(resources={"requests": {"cpu": "lots"}}), SETTINGS)

    assert refused is not None
    assert refused.reason == limits.INVALID_RESOURCES
    assert "requests.cpu 'lots' is not a Kubernetes quantity" in refused.message


def test_only_allowed_priority_classes_pass() -> None:
    assert limits.refusal(spec(priorityClassName="tiktok-connectors"), SETTINGS) is None
    refused = limits.refusal(spec(priorityClassName="system-cluster-critical"), SETTINGS)

    assert refused is not None
    assert refused.reason == limits.PRIORITY_CLASS_NOT_ALLOWED
    assert "'system-cluster-critical' (allowed: tiktok-connectors)" in refused.message


def test_no_priority_class_is_allowed_by_default() -> None:
    refused = limits.refusal(spec(priorityClassName="tiktok-connectors"), OperatorSettings())

    assert refused is not None
    assert "(allowed: none)" in refused.message


def test_control_plane_taints_and_keyless_tolerations_are_refused_unless_named() -> None:
    assert limits.refusal(spec(tolerations=[{"key": "dedicated", "value": "tiktok"}]), SETTINGS) is None
    control_plane = limits.refusal(spec(tolerations=[CONTROL_PLANE]), SETTINGS)
    everything = limits.refusal(spec(tolerations=[{"operator": "Exists"}]), SETTINGS)
    allowed = OperatorSettings.model_validate({"connector_allowed_toleration_keys": [CONTROL_PLANE["key"]]})

    assert control_plane is not None and everything is not None
    assert control_plane.reason == everything.reason == limits.TOLERATION_NOT_ALLOWED
    assert "node-role.kubernetes.io/control-plane" in control_plane.message
    assert "without a key" in everything.message
    assert limits.refusal(spec(tolerations=[CONTROL_PLANE]), allowed) is None


def test_every_problem_is_listed_and_the_first_gives_the_reason() -> None:
    refused = limits.refusal(
        spec(resources={"limits": {"cpu": "4"}}, priorityClassName="high", tolerations=[{"operator": "Exists"}]),
        SETTINGS,
    )

    assert refused is not None
    assert refused.reason == limits.RESOURCES_ABOVE_LIMIT
    assert refused.message.count(";") == 2


def test_a_livestream_beyond_the_limits_fails_without_a_pod_until_its_spec_changes() -> None:
    body = {
        "metadata": {"name": "alice", "namespace": "rooms", "uid": "u-1", "generation": 1},
        "spec": spec(priorityClassName="system-node-critical"),
    }

    found = lifecycle.assess(body, None, None, 1_800_000_000.0, SETTINGS)

    assert (found.phase, found.reason, found.action.do) == (
        Phase.FAILED,
        limits.PRIORITY_CLASS_NOT_ALLOWED,
        Do.NOTHING,
    )
    settled = {**body, "status": {"phase": "Failed", "reason": found.reason, "observedGeneration": 1}}
    assert lifecycle.assess(settled, None, None, 1_800_000_000.0, SETTINGS).action.do is Do.NOTHING
    fixed = {**settled, "metadata": {**body["metadata"], "generation": 2}, "spec": spec(priorityClassName=None)}
    assert lifecycle.assess(fixed, None, None, 1_800_000_000.0, SETTINGS).action.do is Do.CREATE_POD
