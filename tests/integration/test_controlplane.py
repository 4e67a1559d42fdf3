"""The local control plane is a real Kubernetes API: CRUD, scheduling and RBAC all work.

Needs the binaries from `make controlplane`. If they are missing these tests fail (they
do not skip) with a message saying so: a silently skipped integration suite is how
regressions slip through.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.cluster_support import started_control_plane
from tiktok_service_dev.controlplane import ControlPlane, binaries_dir

pytestmark = pytest.mark.slow

UNPRIVILEGED_USER = "no-rbac-user"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[UNPRIVILEGED_USER], crds=False) as cp:
        yield cp


@pytest.fixture(scope="module")
def core(control_plane: ControlPlane) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))
    with api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ready_node(name: str) -> client.V1Node:
    now = datetime.now(UTC)
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name}),
        status=client.V1NodeStatus(
            capacity=capacity,
            allocatable=capacity,
            conditions=[
                client.V1NodeCondition(
                    type="Ready",
                    status="True",
                    reason="KubeletReady",
                    message="fake node for tests",
                    last_heartbeat_time=now,
                    last_transition_time=now,
                )
            ],
        ),
    )


def test_the_control_plane_binaries_have_been_built() -> None:
    # Fails (not skips) with "Run `make controlplane`" when the cache is empty.
    assert (binaries_dir() / "kube-apiserver").exists()


def test_api_server_accepts_a_namespace_from_the_generated_admin_kubeconfig(
    core: client.CoreV1Api,
) -> None:
    name = f"created-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    assert core.read_namespace(name).status.phase == "Active"
    core.delete_namespace(name)


def test_scheduler_binds_a_pod_to_a_registered_ready_node(core: client.CoreV1Api, namespace: str) -> None:
    node_name = f"fake-node-{uuid.uuid4().hex[:8]}"
    core.create_node(ready_node(node_name))
    try:
        core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="pause"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="pause", image="pause:3.10")]),
            ),
        )

        wait_until(
            lambda: core.read_namespaced_pod("pause", namespace).spec.node_name is not None,
            timeout=30,
            what="the scheduler to bind the pod",
        )

        assert core.read_namespaced_pod("pause", namespace).spec.node_name == node_name
    finally:
        core.delete_node(node_name)


def test_a_user_without_rbac_bindings_is_forbidden_from_listing_pods(control_plane: ControlPlane) -> None:
    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig_for(UNPRIVILEGED_USER)))
    with api_client, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api_client).list_namespaced_pod("default")

    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert f'User "{UNPRIVILEGED_USER}" cannot list resource "pods"' in message


def test_stopping_the_control_plane_terminates_every_process_and_removes_its_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    parent = tmp_path_factory.mktemp("cp")
    cp = ControlPlane(work_dir_parent=parent, wait_for_controllers=False).start()
    pids = cp.pids
    work_dir = cp.work_dir
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

    cp.stop()

    assert [name for name, pid in pids.items() if process_exists(pid)] == []
    assert not work_dir.exists()
