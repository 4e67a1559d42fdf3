"""What the chart's installs on a real node share (`test_helm_install_kubelet.py`, the values a
test writes; `test_dev_install_kubelet.py`, what `make kind-up` installs): a Livestream's phase,
its removal, the pods' story when something is stuck, and the chart's uninstall down to the last
container."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Final

from kubernetes import client

from tests.e2e_support import livestream, wait_for
from tests.helm_support import RELEASE, helm
from tests.kubelet_support import KubeletNode
from tiktok_service.operator import model
from tiktok_service_dev.controlplane import ControlPlane

CONNECTOR_PODS: Final = "app.kubernetes.io/name=tiktok-connector"
_LOG_TAIL_LINES: Final = 15


def pod_report(node: KubeletNode, admin: client.ApiClient, namespace: str) -> list[str]:
    """Pods of `namespace` with their phases and conditions, and the tail of each container's log."""
    lines = []
    for pod in client.CoreV1Api(admin).list_namespaced_pod(namespace).items:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        lines.append(f"pod {pod.metadata.name}: {pod.status.phase} {conditions}")
        for status in pod.status.container_statuses or []:
            last = status.last_state.terminated if status.last_state else None
            ended = f" last exit {last.exit_code} {last.reason}" if last else ""
            lines.append(f"  {status.name}: ready={status.ready} restarts={status.restart_count}{ended}")
            path = node.log_path(namespace, pod.metadata.name, status.name)
            if path.exists():
                lines += ["    " + line for line in path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]]
    return lines


def create_livestream(admin: client.ApiClient, namespace: str, name: str, username: str, **spec: Any) -> str:
    """Create the Livestream `name` for `username` (with `spec`'s other fields); its uid."""
    created = client.CustomObjectsApi(admin).create_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, livestream(name, username, **spec)
    )
    return str(created["metadata"]["uid"])


def livestream_phase(admin: client.ApiClient, namespace: str, name: str) -> str | None:
    found = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, name
    )
    phase: str | None = (found.get("status") or {}).get("phase")
    return phase


def wait_live(
    admin: client.ApiClient, namespace: str, name: str, *, timeout: float, explain: Callable[[], str]
) -> None:
    """Wait for the Livestream `name` to be `Live`; at the deadline fail with its phase and `explain()`."""
    phase = partial(livestream_phase, admin, namespace, name)
    wait_for(
        lambda: phase() == "Live",
        what="the Livestream to be Live",
        timeout=timeout,
        explain=lambda: f"phase {phase()}\n{explain()}",
    )


def connector_pods(admin: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(admin).list_namespaced_pod(namespace, label_selector=CONNECTOR_PODS).items)


def delete_livestream(admin: client.ApiClient, namespace: str, name: str, *, timeout: float) -> None:
    """Delete the Livestream `name` and wait until no connector pod is left in `namespace`."""
    client.CustomObjectsApi(admin).delete_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, name
    )
    wait_for(lambda: not connector_pods(admin, namespace), what="the connector pod to be deleted", timeout=timeout)


def uninstall(
    control_plane: ControlPlane, admin: client.ApiClient, node: KubeletNode, namespace: str, *, timeout: float
) -> None:
    """`helm uninstall --wait` of the release, which must succeed; then wait until no pod is left in
    `namespace` and no container runs on the node."""
    result = helm("uninstall", RELEASE, "--namespace", namespace, "--wait", kubeconfig=control_plane.kubeconfig_path)

    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: not client.CoreV1Api(admin).list_namespaced_pod(namespace).items,
        what="every pod to be gone",
        timeout=timeout,
    )
    containerd = node.containerd
    assert containerd is not None
    wait_for(lambda: not containerd.task_pids(), what="every container to stop", timeout=timeout)
