"""`helm install` of the chart onto a real control plane, its pods run by the local node agent,
and a Livestream brought to `Live` by the operator the chart deployed.

Everything the chart creates is used as created: the CRDs from its `crds/`, the Secrets, the
operator's ConfigMap, RBAC and KopfPeering, the Deployments scheduled by the real scheduler and
run as `tiktok-service <command>` processes by the node agent (a kubelet stand-in: no images,
no init containers, no probes, one network namespace). What a process-based node needs is set
through the chart's values only: service-account kubeconfigs instead of mounted tokens (the
API server knows the service accounts' user names as static tokens, so the chart's RoleBindings
are what authorises them), one replica per component and free ports (all pods share the host),
and the simulator on loopback. The database is created empty: the chart's access Job migrates it
and makes each component's Redis user and database login from the Secrets, and every
component runs with its own.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
import yaml
from kubernetes import client

from tests.access_support import database_as, redis_as
from tests.cluster_support import started_control_plane
from tests.e2e_support import stored_events, wait_for
from tests.helm_support import CHART, RELEASE, helm
from tiktok_service.domain import access, naming
from tiktok_service.domain.access import Role
from tiktok_service.operator import model
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.node_agent import NodeAgent
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis

pytestmark = pytest.mark.slow

NAMESPACE = "tiktok-service"
OPERATOR_SA = f"system:serviceaccount:{NAMESPACE}:tiktok-operator"
API_SA = f"system:serviceaccount:{NAMESPACE}:tiktok-api"
NODE = "helm-node"
DEADLINE_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[OPERATOR_SA, API_SA], crds=False) as cp:  # the chart brings them
        yield cp


@pytest.fixture(scope="module")
def database(postgres_server: LocalPostgres) -> str:
    """A fresh, empty database: the chart's access Job migrates it."""
    if not postgres_server.running:
        postgres_server.start()
    name = f"helm_{uuid.uuid4().hex[:8]}"

    async def create() -> str:
        conn = await asyncpg.connect(postgres_server.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return postgres_server.dsn.rsplit("/", 1)[0] + "/" + name

    return asyncio.run(create())


@pytest.fixture(scope="module")
def redis_address(redis_server: LocalRedis) -> str:
    if not redis_server.running:
        redis_server.start()
    return redis_server.url


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("operator", "api", "persister", "simulator")}


def component_secrets(redis_address: str, database: str) -> dict[str, dict[str, str]]:
    """Each component's own Redis user and login (the session's passwords, which the access Job
    sets again), and the administrator's URLs for the Job."""
    data = {"tiktok-admin": {"redis-url": redis_address, "database-url": database}}
    data["tiktok-connector"] = {"redis-url": redis_as(redis_address, Role.CONNECTOR)}
    for role in access.DATABASE_ROLES:
        data[f"tiktok-{role}"] = {
            "redis-url": redis_as(redis_address, role),
            "database-url": database_as(database, role),
        }
    return data


@pytest.fixture(scope="module")
def values_file(
    control_plane: ControlPlane,
    redis_address: str,
    database: str,
    ports: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    simulator = f"http://127.0.0.1:{ports['simulator']}"
    folder = tmp_path_factory.mktemp("helm")
    kubeconfigs = {}
    for component, user in (("operator", OPERATOR_SA), ("api", API_SA)):
        # The client splits kubeconfig paths on ':' (KUBECONFIG lists), as in the user's name.
        kubeconfigs[component] = folder / f"{component}.kubeconfig"
        shutil.copyfile(control_plane.kubeconfig_for(user), kubeconfigs[component])
    values: dict[str, Any] = {
        "image": {"repository": "tiktok-service", "tag": "test", "pullPolicy": "Never"},
        "secrets": {"create": True, "data": component_secrets(redis_address, database)},
        "operator": {
            "replicas": 1,
            "httpPort": ports["operator"],
            "connector": {"httpPort": 0},  # connectors share the host: no fixed health port
            "env": {
                "OPERATOR_KUBECONFIG": str(kubeconfigs["operator"]),
                "OPERATOR_SIGN_API_URL": simulator,
                "OPERATOR_TIKTOK_APP_URL": simulator,
                "OPERATOR_TIKTOK_WEBCAST_URL": f"{simulator}/webcast",
            },
        },
        "api": {
            "replicas": 1,
            "port": ports["api"],
            "env": {"API_KUBECONFIG": str(kubeconfigs["api"]), "API_HOST": "127.0.0.1"},
        },
        "persister": {"replicas": 1, "httpPort": ports["persister"]},
        "dev": {"simulator": {"enabled": True, "host": "127.0.0.1", "port": ports["simulator"]}},
    }
    path = folder / "values-node-agent.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    agent = NodeAgent(
        control_plane.kubeconfig_path,
        NODE,
        work_dir=tmp_path_factory.mktemp(NODE),
        heartbeat_interval_s=2.0,
        stop_grace_s=5.0,
        crash_backoff_base_s=1.0,
    )
    with agent:
        yield agent


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane, values_file: Path, node: NodeAgent
) -> Iterator[subprocess.CompletedProcess[str]]:
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
        "--timeout=180s",
        kubeconfig=control_plane.kubeconfig_path,
    )
    yield result
    # Normally done by the last test already (then this reports "not found").
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", kubeconfig=control_plane.kubeconfig_path)


def explain(node: NodeAgent, admin: client.ApiClient) -> str:
    """Pods, their phases and the tail of each container's log (printed when a wait times out)."""
    lines = []
    for pod in client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE).items:
        lines.append(f"pod {pod.metadata.name}: {pod.status.phase} on {pod.spec.node_name}")
        for container in pod.spec.containers:
            path = node.log_path(NAMESPACE, pod.metadata.name, container.name)
            if path.exists():
                lines += ["    " + line for line in path.read_text(errors="replace").splitlines()[-15:]]
    return "\n".join(lines)


def test_helm_install_brings_every_deployment_up(
    installed: subprocess.CompletedProcess[str], admin: client.ApiClient, node: NodeAgent
) -> None:
    assert installed.returncode == 0, installed.stderr + "\n" + explain(node, admin)
    apps = client.AppsV1Api(admin)
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(NAMESPACE).items}

    assert set(deployments) == {"tiktok-operator", "tiktok-api", "tiktok-persister", "tiktok-simulator"}
    for name, deployment in deployments.items():
        assert deployment.status.available_replicas == 1, name
    crds = client.ApiextensionsV1Api(admin).list_custom_resource_definition().items
    assert {"livestreams.tiktok.tiktok-service.io", "kopfpeerings.kopf.dev"} <= {crd.metadata.name for crd in crds}


def test_the_access_job_migrates_and_sets_up_each_components_credentials(
    installed: subprocess.CompletedProcess[str], admin: client.ApiClient, node: NodeAgent, database: str
) -> None:
    assert installed.returncode == 0
    jobs = client.BatchV1Api(admin)

    def succeeded() -> bool:
        job = jobs.read_namespaced_job("tiktok-access-1", NAMESPACE)
        return bool(job.status.succeeded)

    wait_for(succeeded, what="the access Job to succeed", timeout=DEADLINE_S, explain=lambda: explain(node, admin))

    async def versions() -> set[str]:
        conn = await asyncpg.connect(database_as(database, Role.API))  # the API's own login
        try:
            return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        finally:
            await conn.close()

    assert {"0001_initial", "0002_api_keys", "0003_roles"} <= asyncio.run(versions())


def test_the_installed_api_answers_ready(
    installed: subprocess.CompletedProcess[str], ports: dict[str, int], admin: client.ApiClient, node: NodeAgent
) -> None:
    """The node agent runs no probes: the test asks /readyz itself (Redis, PostgreSQL, the API server)."""
    assert installed.returncode == 0

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{ports['api']}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, what="the API's /readyz", timeout=DEADLINE_S, explain=lambda: explain(node, admin))


def test_a_livestream_goes_live_and_its_events_reach_redis_and_postgresql(
    installed: subprocess.CompletedProcess[str],
    admin: client.ApiClient,
    node: NodeAgent,
    redis_address: str,
    database: str,
) -> None:
    assert installed.returncode == 0
    custom = client.CustomObjectsApi(admin)
    body = {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": "helm-streamer"},
        "spec": {"username": "helm_streamer", "workspaceId": "helm"},
    }
    created = custom.create_namespaced_custom_object(model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, body)
    uid = created["metadata"]["uid"]

    def phase() -> str | None:
        found = custom.get_namespaced_custom_object(
            model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, "helm-streamer"
        )
        return (found.get("status") or {}).get("phase")

    try:
        wait_for(
            lambda: phase() == "Live",
            what="the Livestream to be Live",
            timeout=DEADLINE_S,
            explain=lambda: f"phase {phase()}\n{explain(node, admin)}",
        )
        reader = redis.Redis.from_url(redis_address)
        try:
            wait_for(lambda: reader.xlen(naming.livestream_stream(uid)) > 0, what="events in the livestream's stream")
        finally:
            reader.close()
        wait_for(
            lambda: asyncio.run(stored_events(database, uid)),
            what="the installed persister to store the livestream's events",
            explain=lambda: explain(node, admin),
        )
    finally:
        custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, "helm-streamer")
        wait_for(
            lambda: (
                not client.CoreV1Api(admin)
                .list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=tiktok-connector")
                .items
            ),
            what="the connector pod to be deleted",
        )


def test_helm_uninstall_removes_every_pod_and_keeps_the_crds(
    installed: subprocess.CompletedProcess[str], control_plane: ControlPlane, admin: client.ApiClient
) -> None:
    assert installed.returncode == 0

    result = helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", kubeconfig=control_plane.kubeconfig_path)

    assert result.returncode == 0, result.stderr
    wait_for(lambda: not client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE).items, what="every pod to be gone")
    crds = client.ApiextensionsV1Api(admin).list_custom_resource_definition().items
    assert "livestreams.tiktok.tiktok-service.io" in {crd.metadata.name for crd in crds}  # Helm never deletes CRDs
