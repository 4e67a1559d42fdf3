"""The product on a real node: kubelet + containerd + runc run connector pods from the product image.

The control plane of `tests/cluster_support.py`, one node from `tests/kubelet_support.py` (its
own bridge, containerd and kubelet), the operator with a token bound to the deploy/ Role and
`OPERATOR_CONNECTOR_IMAGE` set to the image `scripts/build-image.sh` builds (imported into
containerd, `imagePullPolicy: Never`). Redis and the simulator listen on the node's address,
where the pods reach them through the bridge; the persister writes to PostgreSQL.

What the node agent cannot show is checked here: the pod's securityContext is enforced by the
runtime, the kubelet probes the connector's health port, logs and exec work through the API
server, and a killed container is a real exit the operator acts on.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import redis
from kubernetes import client

from tests import e2e_support
from tests.cluster_support import started_control_plane
from tests.e2e_support import (
    Cluster,
    Livestreams,
    Services,
    container_status,
    kubelet_node,
    prepared_namespace,
    product_image,
    services_on_node,
    unique,
    wait_for,
    without_markers,
)
from tests.kubelet_support import KubeletNode, node_prerequisites
from tests.support import expected_events
from tiktok_service.domain import naming
from tiktok_service.operator import model
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.simulator.scenario import Scenario

_UNAVAILABLE = node_prerequisites()
pytestmark = [
    pytest.mark.slow,
    # The first setup builds the product image if needed (cached layers: seconds; cold: minutes).
    pytest.mark.timeout(1500),
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

OPERATOR_USER = "operator"
NODE = "e2e-kubelet"


# -- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[OPERATOR_USER]) as cp:
        yield cp


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane) -> Iterator[KubeletNode]:
    """The node, with the product image (`e2e_support.product_image`) imported."""
    with kubelet_node(control_plane, NODE) as running:
        yield running


@pytest.fixture(scope="module")
def services(node: KubeletNode, postgres_server: LocalPostgres) -> Iterator[Services]:
    """Redis and the simulator on the node's address (reachable from pods), the persister, a database."""
    with services_on_node(node, postgres_server) as running:
        yield running


@pytest.fixture(scope="module")
def namespace(admin: client.ApiClient, services: Services) -> str:
    return prepared_namespace(admin, prefix="kubelet", operator_user=OPERATOR_USER, redis_url=services.redis_url)


@pytest.fixture(scope="module")
def operator_settings(control_plane: ControlPlane, namespace: str, services: Services) -> OperatorSettings:
    base_url = services.simulator.base_url
    return operator_harness.quick_settings(
        kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
        namespace=namespace,
        redis_url=services.redis_url,
        database_url=services.database_url,
        sign_api_url=base_url,
        tiktok_app_url=base_url,
        tiktok_webcast_url=base_url + "/webcast",
        connector_image=product_image(),
        connector_image_pull_policy="Never",
    )


@pytest.fixture(scope="module")
def cluster(
    admin: client.ApiClient, namespace: str, node: KubeletNode, operator_settings: OperatorSettings
) -> Iterator[Cluster]:
    with operator_harness.OperatorThread(operator_settings):
        yield Cluster(admin, namespace, [node])


# -- helpers -------------------------------------------------------------------------------------

#: A pod on a real node takes longer to start (sandbox, image, probes) than a node agent's process.
wait_phase = partial(e2e_support.wait_phase, timeout=90.0)


def stream_events(reader: redis.Redis, uid: str) -> dict[str, str]:
    entries = reader.xrange(naming.livestream_stream(uid))
    return without_markers((f[naming.FIELD_ID].decode(), f[naming.FIELD_TYPE].decode()) for _, f in entries)


def running_container(cluster: Cluster, name: str, *, other_than: str | None = None) -> client.V1Pod:
    return wait_for(
        partial(cluster.running_pod, name, other_than=other_than),
        what=f"the connector container of {name} to run",
        timeout=90,
        explain=cluster.explain(name),
    )


def proc_status(pid: int) -> dict[str, str]:
    lines = (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: value.strip() for key, _, value in lines}


# -- tests ---------------------------------------------------------------------------------------


def test_a_livestream_goes_live_in_a_container_of_the_product_image_and_streams_every_event(
    node: KubeletNode,
    cluster: Cluster,
    services: Services,
    livestreams: Livestreams,
    redis_reader: redis.Redis,
) -> None:
    name, username = "contained", unique("contained_")
    mix = {"comment": 40, "like": 20, "join": 15, "follow": 5, "share": 5, "viewer": 10, "unknown": 5}
    services.add_room(username, Scenario(seed=5, rate=100, total=200, mix=mix))

    uid = livestreams.create(name, username)["metadata"]["uid"]

    pod = running_container(cluster, name)
    state = container_status(pod)
    assert state is not None and state.container_id.startswith("containerd://")
    assert state.image == product_image()
    assert pod.spec.node_name == NODE
    assert pod.status.pod_ip != node.ip and node.address is not None
    assert pod.status.pod_ip in {str(host) for host in node.address.network.hosts()}  # its own network namespace
    status = wait_phase(cluster, name, "Live")
    assert status["roomId"] == str(services.room_id(username))
    wait_for(lambda: services.events_sent(username) == 200, what="the room's 200 events", explain=cluster.explain(name))
    expected = expected_events(services.sent(username))
    wait_for(
        lambda: stream_events(redis_reader, uid) == expected, what="every event in Redis", explain=cluster.explain(name)
    )
    logs = node.kubectl("logs", "-n", cluster.namespace, pod.metadata.name).stdout  # through the API server
    assert username in logs


def test_the_runtime_enforces_the_pod_security_context(
    node: KubeletNode, cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "confined", unique("confined_")
    services.add_room(username, Scenario(rate=10))
    livestreams.create(name, username)
    wait_phase(cluster, name, "Live")
    pod = running_container(cluster, name)
    state = container_status(pod)
    assert state is not None

    process = proc_status(node.host_pid(state.container_id))
    assert process["Uid"].split()[:2] == ["10001", "10001"]
    assert process["Gid"].split()[:2] == ["10001", "10001"]
    assert process["CapEff"] == "0000000000000000"
    assert process["NoNewPrivs"] == "1"
    assert process["Seccomp"] == "2"  # RuntimeDefault: a filter is installed
    # Not its PID namespace's init (the sandbox is): an init's signals without a handler are
    # dropped, so a SIGTERM while the connector starts would wait out the grace period.
    assert process["NSpid"].split()[-1] != "1", process["NSpid"]
    exec_ = ("exec", "-n", cluster.namespace, pod.metadata.name, "--")
    root = node.kubectl(*exec_, "sh", "-c", "touch /probe 2>&1; echo rc=$?", check=False)
    assert "Read-only file system" in root.stdout and "rc=1" in root.stdout, root
    scratch = node.kubectl(*exec_, "sh", "-c", "touch /tmp/probe && echo ok")
    assert scratch.stdout.strip() == "ok"  # the memory-backed emptyDir is the only writable path


def test_the_kubelet_probes_the_connectors_health_port(
    node: KubeletNode, cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "probed", unique("probed_")
    services.add_room(username, Scenario(rate=10))
    livestreams.create(name, username)
    pod = running_container(cluster, name)
    probe = pod.spec.containers[0].liveness_probe
    assert probe is not None and probe.http_get.path == "/healthz"

    def probed_ok() -> bool:
        metrics = node.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/probes").stdout
        return any(
            line.startswith("prober_probe_total{")
            and 'probe_type="Liveness"' in line
            and f'pod="{pod.metadata.name}"' in line
            and 'result="successful"' in line
            and float(line.rsplit(" ", 1)[1]) >= 1
            for line in metrics.splitlines()
        )

    wait_for(probed_ok, what="a successful liveness probe of the connector", timeout=90, explain=cluster.explain(name))
    wait_phase(cluster, name, "Live")
    ready = {condition.type: condition.status for condition in cluster.pod(name).status.conditions}  # type: ignore[union-attr]
    assert ready["Ready"] == "True"


def test_a_killed_connector_container_is_restarted_by_the_operator_and_goes_live_again(
    node: KubeletNode, cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "killed", unique("killed_")
    services.add_room(username, Scenario(rate=10))
    livestreams.create(name, username, restartPolicy={"maxRestarts": 3, "backoffBaseSeconds": 10})
    wait_phase(cluster, name, "Live")
    first = running_container(cluster, name)
    state = container_status(first)
    assert state is not None

    os.kill(node.host_pid(state.container_id), signal.SIGKILL)  # as the OOM killer would

    wait_phase(cluster, name, "BackingOff", restarts=1)
    killed = cluster.pod(name)
    assert killed is not None and killed.metadata.uid == first.metadata.uid  # kept until the retry is due
    terminated = container_status(killed).state.terminated  # type: ignore[union-attr]
    assert terminated.exit_code == 128 + signal.SIGKILL
    assert "RestartScheduled" in cluster.events(name)
    second = running_container(cluster, name, other_than=first.metadata.uid)
    assert second.metadata.annotations[model.ANNOTATION_RESTARTS] == "1"
    wait_phase(cluster, name, "Live", restarts=1)


def test_deleting_a_livestream_removes_its_pod_and_its_containers(
    node: KubeletNode, cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "removed", unique("removed_")
    services.add_room(username, Scenario(rate=10))
    livestreams.create(name, username)
    wait_phase(cluster, name, "Live")
    state = container_status(running_container(cluster, name))
    assert state is not None
    container = state.container_id.removeprefix("containerd://")
    assert node.containerd is not None and container in node.containerd.task_pids()

    cluster.delete(name)

    wait_for(partial(cluster.gone, name), what="the pod and the Livestream to be gone", explain=cluster.explain(name))
    wait_for(lambda: container not in node.containerd.task_pids(), what="the container to stop")  # type: ignore[union-attr]
