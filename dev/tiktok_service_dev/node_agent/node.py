"""Pure builders for the agent's ``Node`` and ``Lease`` objects, and flag parsing.

The node-lifecycle controller decides a node is alive from two signals: the Lease in
``kube-node-lease`` (renewed every 10 s by a kubelet) and the Ready condition's
``lastHeartbeatTime``. The agent refreshes both, so the node never goes NotReady while
the agent runs, and goes NotReady ~40 s after it dies, as a crashed kubelet's would.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tiktok_service_dev.node_agent.status import HOST_IP
from tiktok_service_dev.node_agent.times import micro_time, rfc3339

LEASE_NAMESPACE = "kube-node-lease"
# Taints the control plane puts on nodes that are not (yet, or no longer) Ready.
LIFECYCLE_TAINT_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class NodeShape:
    """What the node offers the scheduler; requests are enforced only by scheduling."""

    name: str
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()
    kubelet_version: str = "v0.0.0-node-agent"


def architecture() -> str:
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)


def node_labels(shape: NodeShape) -> dict[str, str]:
    """Well-known labels a kubelet sets, then the caller's (which may override them)."""
    return {
        "kubernetes.io/hostname": shape.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": architecture(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": architecture(),
        "node.kubernetes.io/instance-type": "local",
        **shape.labels,
    }


def node_object(shape: NodeShape, *, now: datetime) -> dict[str, Any]:
    """The Node to create; status is accepted on create for nodes, so it starts Ready."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": shape.name, "labels": node_labels(shape)},
        "spec": {"taints": [dict(t) for t in shape.taints]} if shape.taints else {},
        "status": node_status(shape, now=now, ready_since=now),
    }
    return body


def missing_taints(shape: NodeShape, existing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Taints to set on a node that already existed: the existing ones plus ours.

    Existing taints are kept because the node-lifecycle controller owns some of them
    (``node.kubernetes.io/unreachable``) and removes them itself once we are Ready.
    """
    have = {(t.get("key"), t.get("effect")) for t in existing}
    return [dict(t) for t in existing] + [dict(t) for t in shape.taints if (t.get("key"), t.get("effect")) not in have]


def lifecycle_taints(taints: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The taints that still keep pods off a node we have just declared Ready."""
    return [t for t in taints if t.get("key") in LIFECYCLE_TAINT_KEYS]


def node_status(
    shape: NodeShape,
    *,
    now: datetime,
    ready_since: datetime,
    ready: bool = True,
    message: str = "local node agent is posting ready status",
) -> dict[str, Any]:
    """Full node status: capacity, addresses, the Ready heartbeat and quiet pressure conditions."""
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}

    def condition(kind: str, status: str, reason: str, text: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": text,
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(ready_since),
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": shape.name}],
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "sufficient PID available"),
            condition("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady", message),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": shape.name,
            "systemUUID": shape.name,
            "bootID": shape.name,
            "kernelVersion": platform.release(),
            "osImage": "tiktok-service local node agent",
            "containerRuntimeVersion": "local://processes",
            "kubeletVersion": shape.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": architecture(),
        },
    }


def lease_object(node_name: str, node_uid: str, *, now: datetime, duration_s: int) -> dict[str, Any]:
    """The node's Lease, owned by the Node so deleting the node deletes it (as for kubelets)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": lease_spec(node_name, now=now, duration_s=duration_s),
    }


def lease_spec(node_name: str, *, now: datetime, duration_s: int) -> dict[str, Any]:
    return {"holderIdentity": node_name, "leaseDurationSeconds": duration_s, "renewTime": micro_time(now)}


def parse_label(text: str) -> tuple[str, str]:
    """``key=value`` (value may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"label must look like key=value, got {text!r}")
    return key, value


def parse_taint(text: str) -> dict[str, str]:
    """``key[=value]:Effect``, the ``kubectl taint`` syntax."""
    spec, sep, effect = text.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        raise ValueError(f"taint must look like key[=value]:{'|'.join(TAINT_EFFECTS)}, got {text!r}")
    key, _, value = spec.partition("=")
    if not key:
        raise ValueError(f"taint has no key: {text!r}")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
