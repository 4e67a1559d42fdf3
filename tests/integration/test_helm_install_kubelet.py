"""`helm install` of the chart onto the control plane and a real node (kubelet + containerd + runc),
with the product image, and a Livestream brought to `Live` by the operator the chart deployed.

Every workload runs as the chart writes it: containers of the product image (`imagePullPolicy:
Never`, imported into containerd), the pod and container securityContext enforced by runc, the
real liveness/readiness probes run by the kubelet, the operator and the API authenticated by the
projected service-account tokens the kubelet mounts (the control plane keeps the ServiceAccount
admission plugin for this module), authorised by the chart's RBAC. Redis, PostgreSQL and the
simulator listen on the node's bridge address; the Secrets hold each component's own URL there.

What a cluster would provide and this node has not, supplied by the test and nothing else:
- kube-proxy for the `kubernetes` Service: the API server listens on loopback, so the test puts
  the Service's cluster IP on the node's bridge and relays its port there (tests/tcp_relay.py);
  pods use the in-cluster configuration unchanged (the API server's certificate names that IP).
- cluster DNS: every URL is an IP (Secrets, `OPERATOR_SIGN_API_URL`...); the API is reached at
  its pod IP, not through its Service (no Service routing either).
- NetworkPolicies are created but not enforced (the bridge CNI has no policy support).
- one replica of the API and the persister (two cores for everything); the operator keeps its
  two replicas and kopf peering.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import yaml
from kubernetes import client

from tests.access_support import database_as, redis_as
from tests.chart_node_support import (
    connector_pods,
    create_livestream,
    delete_livestream,
    pod_report,
    uninstall,
    wait_live,
)
from tests.cluster_support import started_control_plane
from tests.e2e_support import BackgroundLoop, kubelet_node, stored_events, wait_for
from tests.helm_support import CHART, RELEASE, helm
from tests.kubelet_support import KubeletNode, node_prerequisites
from tests.tcp_relay import TcpRelay, service_relay
from tiktok_service.domain import access
from tiktok_service.domain.access import Role
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

_UNAVAILABLE = node_prerequisites()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # the first setup may build the product image
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

NAMESPACE = "tiktok-service"
NODE = "helm-kubelet"
IMAGE = "tiktok-service:test"
DEADLINE_S = 180.0
DEPLOYMENTS = {"tiktok-operator": 2, "tiktok-api": 1, "tiktok-persister": 1}
#: Seconds each step took, printed at the end of the module (`-s`) and kept as test properties.
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(crds=False, service_account_tokens=True) as cp:  # CRDs come from the chart
        yield cp


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane) -> Iterator[KubeletNode]:
    with kubelet_node(control_plane, NODE, image=IMAGE) as running:
        yield running


@pytest.fixture(scope="module")
def api_server_relay(control_plane: ControlPlane, admin: client.ApiClient, node: KubeletNode) -> Iterator[TcpRelay]:
    """The `kubernetes` Service's cluster IP and port on the node, relayed to the API server."""
    service = client.CoreV1Api(admin).read_namespaced_service("kubernetes", "default")
    listen = (service.spec.cluster_ip, service.spec.ports[0].port)
    target = urlsplit(control_plane.server_url)
    with service_relay(node.bridge, listen, (str(target.hostname), int(target.port or 443))) as relay:
        yield relay


@pytest.fixture(scope="module")
def redis_server(node: KubeletNode) -> Iterator[LocalRedis]:
    with LocalRedis(host=node.ip) as server:
        yield server


@pytest.fixture(scope="module")
def postgres(node: KubeletNode) -> Iterator[LocalPostgres]:
    server = LocalPostgres(host=node.ip)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def databases(postgres: LocalPostgres, node: KubeletNode) -> tuple[str, str]:
    """(the owner's URL on loopback for the test, the owner's URL on the bridge for the access Job)
    of a fresh, empty database: the Job migrates it. From the bridge the owner proves a password."""
    name, password = f"helm_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)

    async def create() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.execute(f"ALTER ROLE CURRENT_USER PASSWORD '{password}'")
        finally:
            await conn.close()

    asyncio.run(create())
    owner = urlsplit(postgres.dsn).username
    return (
        postgres.dsn.rsplit("/", 1)[0] + "/" + name,
        f"postgresql://{owner}:{password}@{node.ip}:{postgres.port}/{name}",
    )


@pytest.fixture(scope="module")
def simulator(node: KubeletNode) -> Iterator[SimulatorServer]:
    """Rooms for any username, on the node's address."""
    loop = BackgroundLoop()
    server = SimulatorServer(
        SimulatorConfig(host=node.ip, port=0, auto_create_rooms=True, default_scenario=Scenario(rate=20))
    )
    loop.run(server.start())
    try:
        yield server
    finally:
        loop.run(server.stop())
        loop.close()


def component_secrets(redis_url: str, database_url: str) -> dict[str, dict[str, str]]:
    """Each component's own Redis user and login (set by the access Job), and the owner's for the Job."""
    data = {"tiktok-admin": {"redis-url": redis_url, "database-url": database_url}}
    data["tiktok-connector"] = {"redis-url": redis_as(redis_url, Role.CONNECTOR)}
    for role in access.DATABASE_ROLES:
        data[f"tiktok-{role}"] = {
            "redis-url": redis_as(redis_url, role),
            "database-url": database_as(database_url, role),
        }
    return data


@pytest.fixture(scope="module")
def values_file(
    redis_server: LocalRedis,
    databases: tuple[str, str],
    simulator: SimulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    base = simulator.base_url
    values: dict[str, Any] = {
        "image": {"repository": "localhost/tiktok-service", "tag": "test", "pullPolicy": "Never"},
        "secrets": {"create": True, "data": component_secrets(redis_server.url, databases[1])},
        "operator": {
            "replicas": DEPLOYMENTS["tiktok-operator"],
            "env": {
                "OPERATOR_SIGN_API_URL": base,
                "OPERATOR_TIKTOK_APP_URL": base,
                "OPERATOR_TIKTOK_WEBCAST_URL": f"{base}/webcast",
            },
        },
        "api": {"replicas": DEPLOYMENTS["tiktok-api"]},
        "persister": {"replicas": DEPLOYMENTS["tiktok-persister"]},
        "networkPolicies": {"redisPort": redis_server.port, "postgresPort": urlsplit(databases[1]).port},
    }
    path = tmp_path_factory.mktemp("helm") / "values-kubelet.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def explain(node: KubeletNode, admin: client.ApiClient) -> str:
    """Pods with their phases and conditions, and the tail of each container's log."""
    return "\n".join(pod_report(node, admin, NAMESPACE))


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane,
    admin: client.ApiClient,
    node: KubeletNode,
    api_server_relay: TcpRelay,
    values_file: Path,
) -> Iterator[None]:
    started = time.monotonic()
    result = helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--values",
        str(values_file),
        "--wait=watcher",
        "--wait-for-jobs",
        "--timeout=240s",
        kubeconfig=control_plane.kubeconfig_path,
        timeout=420,
    )
    TIMINGS["helm install --wait"] = time.monotonic() - started
    try:
        assert result.returncode == 0, result.stderr + "\n" + explain(node, admin)
        yield
    finally:
        # Normally done by the last test already (then this reports "not found").
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", kubeconfig=control_plane.kubeconfig_path)
        print("\n" + "\n".join(f"{step}: {seconds:.1f} s" for step, seconds in TIMINGS.items()))


def test_every_deployment_is_ready_by_its_probes_in_containers_of_the_product_image(
    installed: None, admin: client.ApiClient, node: KubeletNode, record_property: Any
) -> None:
    deployments = {d.metadata.name: d for d in client.AppsV1Api(admin).list_namespaced_deployment(NAMESPACE).items}
    assert {name: d.status.ready_replicas for name, d in deployments.items()} == DEPLOYMENTS
    pods = client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name").items
    for pod in pods:
        if pod.metadata.labels["app.kubernetes.io/name"] not in DEPLOYMENTS:
            continue
        assert pod.spec.node_name == NODE
        status = pod.status.container_statuses[0]
        assert status.ready and status.container_id.startswith("containerd://"), pod.metadata.name
        assert status.image == "localhost/tiktok-service:test"
    api = next(p for p in pods if p.metadata.labels["app.kubernetes.io/name"] == "tiktok-api")
    assert api.spec.containers[0].readiness_probe is not None  # /readyz: Redis, PostgreSQL, the API server
    # The operator and the API reached the API server with their own mounted tokens.
    operator = next(p for p in pods if p.metadata.labels["app.kubernetes.io/name"] == "tiktok-operator")
    assert any(v.projected for v in operator.spec.volumes), "no projected service-account token"
    record_property("helm_install_s", round(TIMINGS["helm install --wait"], 1))


def test_the_access_job_completed_and_each_component_logs_in_as_itself(
    installed: None, admin: client.ApiClient, databases: tuple[str, str]
) -> None:
    job = client.BatchV1Api(admin).read_namespaced_job("tiktok-access-1", NAMESPACE)
    assert job.status.succeeded == 1

    async def logins() -> set[str]:
        conn = await asyncpg.connect(databases[0])
        try:
            rows = await conn.fetch("SELECT usename FROM pg_stat_activity WHERE datname = current_database()")
            return {row["usename"] for row in rows}
        finally:
            await conn.close()

    expected = {access.database_login(role) for role in (Role.API, Role.PERSISTER)}
    wait_for(lambda: expected <= asyncio.run(logins()), what=f"{expected} connected", timeout=DEADLINE_S)


def test_the_api_answers_at_its_pod_address(installed: None, admin: client.ApiClient) -> None:
    pods = client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=tiktok-api")
    pod = pods.items[0]
    port = pod.spec.containers[0].ports[0].container_port
    answer = httpx.get(f"http://{pod.status.pod_ip}:{port}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_livestream_goes_live_and_its_events_are_stored_in_postgresql(
    installed: None, admin: client.ApiClient, node: KubeletNode, databases: tuple[str, str]
) -> None:
    name = "helm-kubelet-streamer"
    started = time.monotonic()
    uid = create_livestream(admin, NAMESPACE, name, "helm_kubelet_streamer", workspaceId="helm")
    try:
        wait_live(admin, NAMESPACE, name, timeout=DEADLINE_S, explain=lambda: explain(node, admin))
        TIMINGS["Livestream created -> Live"] = time.monotonic() - started
        wait_for(
            lambda: asyncio.run(stored_events(databases[0], uid)),
            what="the installed persister to store the livestream's events",
            timeout=DEADLINE_S,
            explain=lambda: explain(node, admin),
        )
        TIMINGS["Livestream created -> first event in PostgreSQL"] = time.monotonic() - started
        connector = connector_pods(admin, NAMESPACE)
        assert [p.spec.containers[0].image for p in connector] == ["localhost/tiktok-service:test"]
    finally:
        delete_livestream(admin, NAMESPACE, name, timeout=DEADLINE_S)


def test_helm_uninstall_removes_every_workload(
    installed: None, control_plane: ControlPlane, admin: client.ApiClient, node: KubeletNode
) -> None:
    started = time.monotonic()
    uninstall(control_plane, admin, node, NAMESPACE, timeout=DEADLINE_S)
    TIMINGS["helm uninstall -> no container left"] = time.monotonic() - started
    assert not client.AppsV1Api(admin).list_namespaced_deployment(NAMESPACE).items
    assert not client.BatchV1Api(admin).list_namespaced_job(NAMESPACE).items
