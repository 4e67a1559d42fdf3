"""Whose fault a disruption was, from the kubelet's own status reasons and messages (Kubernetes v1.37 formats)."""

from __future__ import annotations

import pytest

from tiktok_service.operator import evictions, model, status
from tiktok_service.operator.evictions import Fault

# What `evictionMessage` writes for a node short of memory (helpers.go), and the admission refusal.
NODE_MEMORY = (
    "The node was low on resource: memory. Threshold quantity: 7838Mi, available: 3010124Ki. "
    "Container connector was using 61020Ki, request is 112Mi, has larger consumption of memory. "
)
NODE_CONDITION = "The node had condition: [DiskPressure]. "
OWN_POD_STORAGE = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
OWN_CONTAINER_STORAGE = 'Container connector exceeded its local ephemeral storage limit "1Mi". '
OWN_EMPTY_DIR = 'Usage of EmptyDir volume "tmp" exceeds the limit "64Mi". '


@pytest.mark.parametrize("message", [NODE_MEMORY, NODE_CONDITION])
def test_an_eviction_for_node_pressure_is_the_nodes_fault(message: str) -> None:
    found = evictions.finished_disruption("Evicted", message, "TerminationByKubelet")

    assert found is not None and (found.fault, found.reason) == (Fault.NODE, "Evicted")
    assert message in found.why


@pytest.mark.parametrize("message", [OWN_POD_STORAGE, OWN_CONTAINER_STORAGE, OWN_EMPTY_DIR])
def test_an_eviction_for_the_pods_own_limits_is_its_own_failure(message: str) -> None:
    found = evictions.finished_disruption("Evicted", message)

    assert found is not None and (found.fault, found.reason) == (Fault.OWN, "Evicted")
    assert "its own limits" in found.why and message in found.why


def test_an_eviction_message_nobody_knows_counts_unless_the_kubelet_marked_it_a_node_termination() -> None:
    unknown = evictions.finished_disruption("Evicted", "something new")
    marked = evictions.finished_disruption("Evicted", "something new", "TerminationByKubelet")

    assert unknown is not None and unknown.fault is Fault.OWN
    assert marked is not None and marked.fault is Fault.NODE


def test_a_node_shutdown_and_a_kubelet_short_of_resources_are_the_nodes_fault() -> None:
    shutdown = evictions.finished_disruption("Terminated", "Pod was terminated in response to imminent node shutdown.")
    short = evictions.finished_disruption("OutOfmemory", "Node didn't have enough resource: memory")

    assert shutdown is not None and (shutdown.fault, shutdown.reason) == (Fault.NODE, "NodeShutdown")
    assert short is not None and (short.fault, short.reason) == (Fault.NODE, "NodeResourcesShort")


@pytest.mark.parametrize("reason", ["", "Error", "OOMKilled", "Completed"])
def test_a_process_that_simply_exited_was_not_disrupted(reason: str) -> None:
    assert evictions.finished_disruption(reason, "") is None


def test_a_pod_deleted_through_the_eviction_api_says_so() -> None:
    found = evictions.deleted_disruption("EvictionByEvictionAPI", "Eviction API: evicting")

    assert found is not None and (found.fault, found.reason) == (Fault.NODE, "Evicted")
    assert "Eviction API" in found.why and "drain" in found.why


def test_preemption_and_unknown_disruptions_are_named() -> None:
    preempted = evictions.deleted_disruption("PreemptionByScheduler", "")
    other = evictions.deleted_disruption("SomethingNew", "detail")

    assert preempted is not None and preempted.reason == "Preempted"
    assert other is not None and other.reason == "Evicted" and "SomethingNew" in other.why
    assert evictions.deleted_disruption("", "") is None


def test_the_pod_observation_keeps_the_disruption_condition() -> None:
    body = {
        "metadata": {"name": "ls-alice", "uid": "p-1"},
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": NODE_MEMORY,
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": "m"},
            ],
        },
    }

    observed = model.observe_pod(body)

    assert (observed.reason, observed.message, observed.disruption) == ("Evicted", NODE_MEMORY, "TerminationByKubelet")


# -- the Events a disruption deserves --------------------------------------------------------


def test_an_eviction_posts_a_warning_saying_why_once() -> None:
    wanted = {"phase": "Pending", "reason": "Evicted", "message": "pod ls-a evicted: The node was low on resource"}

    events = status.transition_events({"phase": "Live", "reason": "Connected"}, wanted)
    again = status.transition_events(wanted, {**wanted, "viewerCount": 3})

    assert [(e.type, e.reason, e.message) for e in events] == [("Warning", "Evicted", wanted["message"])]
    assert again == []


def test_an_eviction_counted_as_a_failure_posts_the_eviction_and_the_scheduled_restart() -> None:
    wanted = {"phase": "BackingOff", "reason": "Evicted", "message": "m", "restarts": 1, "nextRetryAt": "t"}

    events = status.transition_events({"phase": "Live", "reason": "Connected"}, wanted)

    assert [e.reason for e in events] == ["Evicted", "RestartScheduled"]


def test_an_eviction_that_left_only_its_condition_is_still_the_nodes_fault() -> None:
    """Seen on a real kubelet: the connector exited 0 on SIGTERM, so the pod is Succeeded with no reason."""
    message = "The node was low on resource: memory. Threshold quantity: 24421628Ki, available: 18103160Ki. "

    found = evictions.finished_disruption("Completed", "", "TerminationByKubelet", message)
    shutdown = evictions.finished_disruption(
        "Completed", "", "TerminationByKubelet", "Pod was terminated in response to imminent node shutdown."
    )

    assert found is not None and (found.fault, found.reason) == (Fault.NODE, "Evicted") and message in found.why
    assert shutdown is not None and shutdown.reason == "NodeShutdown"


# What `evictionMessage` writes when a container used more than it requested (helpers.go since
# Kubernetes 1.28, and the older wording), and the node-shutdown and critical-pod rejections.
OVER_REQUEST = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
    "Container connector was using 301248Ki, request is 112Mi, has larger consumption of memory. "
)
OVER_REQUEST_OLD = (
    "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 10Mi. "
    "Container connector was using 2Gi, which exceeds its request of 0. "
)
SHUTDOWN_REJECTED = "Pod was rejected: Pod was rejected as the node is shutting down."


@pytest.mark.parametrize("message", [OVER_REQUEST, OVER_REQUEST_OLD])
def test_node_pressure_from_a_connector_beyond_its_request_is_its_own_failure(message: str) -> None:
    found = evictions.finished_disruption("Evicted", message, "TerminationByKubelet")
    only_condition = evictions.finished_disruption("Completed", "", "TerminationByKubelet", message)

    assert found is not None and (found.fault, found.reason) == (Fault.OWN, "Evicted")
    assert "more than it requested" in found.why and message in found.why
    assert only_condition is not None and only_condition.fault is Fault.OWN


@pytest.mark.parametrize(
    "message",
    [
        NODE_MEMORY,  # the clause, but usage (61020Ki) below the request (112Mi)
        "The node was low on resource: memory. Container connector was using lots, request is 1Mi, "
        "has larger consumption of memory. ",  # a quantity that does not parse
        "The node was low on resource: memory. Container connector was using 3Mi, request is 3Mi, "
        "has larger consumption of memory. ",
    ],
)
def test_a_request_clause_that_does_not_show_usage_above_the_request_leaves_it_the_nodes_fault(message: str) -> None:
    found = evictions.finished_disruption("Evicted", message, "TerminationByKubelet")

    assert found is not None and found.fault is Fault.NODE and not evictions.beyond_request(message)


def test_a_pod_refused_because_its_node_is_shutting_down_is_the_nodes_fault() -> None:
    found = evictions.finished_disruption("NodeShutdown", SHUTDOWN_REJECTED)

    assert found is not None and (found.fault, found.reason) == (Fault.NODE, "NodeShutdown")
    assert "shutting down" in found.why and SHUTDOWN_REJECTED in found.why


def test_a_pod_the_kubelet_preempted_for_a_critical_pod_is_the_nodes_fault_and_says_so() -> None:
    found = evictions.finished_disruption(
        "Preempting",
        "Preempted in order to admit critical pod",
        "TerminationByKubelet",
        "Pod was preempted by Kubelet to accommodate a critical pod.",
    )

    assert found is not None and (found.fault, found.reason) == (Fault.NODE, "Preempted")
    assert "critical pod" in found.why and "pressure" not in found.why
