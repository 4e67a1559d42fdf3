"""The dev install — what `make kind-up` installs — on the control plane and a real node.

`scripts/dev-install.sh` (the Helm command `make kind-up` runs) installs the chart with
values-dev.yaml onto the control plane and a kubelet + containerd + runc node, with the images
under the names `kind load` gives them: the product image, the simulator image (Dockerfile.dev)
and `redis:7.4-alpine` / `postgres:16-alpine` (local stand-ins from Debian packages where no
registry is reachable: scripts/build-standins.sh). Redis, PostgreSQL and the simulator then run
in pods, and a Livestream goes `Live` with its events in the in-cluster PostgreSQL: every hop
between pods goes by Service name, as on kind.

What a cluster would provide and this node has not, supplied by the test (tests/cluster_services.py)
from the objects the API server holds, as CoreDNS and kube-proxy would: names of Services
(`redis` -> its cluster IP, the kubelet's `clusterDNS`) and Service routing (a relay per cluster IP
and port to a ready endpoint). NetworkPolicies are created but not enforced (bridge CNI).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from kubernetes import client

from tests.chart_node_support import (
    connector_pods,
    create_livestream,
    delete_livestream,
    pod_report,
    uninstall,
    wait_live,
)
from tests.cluster_services import ClusterDns, ServiceRouter, cluster_networking
from tests.cluster_support import started_control_plane
from tests.e2e_support import kubelet_node, stored_events, wait_for
from tests.helm_support import RELEASE, helm, helm_binary
from tests.kubelet_support import KubeletNode, node_prerequisites, qualified_image
from tiktok_service_dev.controlplane import ControlPlane

_UNAVAILABLE = node_prerequisites()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # the first setup may build four images
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "tiktok-service"
NODE = "dev-install"
DEADLINE_S = 240.0
#: Built here under test names, then named in the node as `kind load` names kind-up's images.
PRODUCT_BUILD, DEV_BUILD = "tiktok-service:dev-install-test", "tiktok-service-dev:dev-install-test"
PRODUCT, DEV = "tiktok-service:dev", "tiktok-service-dev:dev"
STANDINS = ("docker.io/library/redis:7.4-alpine", "docker.io/library/postgres:16-alpine")
#: The address the kubelet gives pods as their nameserver (a kube-dns Service holds it).
DNS_IP = "10.0.0.10"
DEPLOYMENTS = {
    "redis": 1,
    "postgres": 1,
    "tiktok-simulator": 1,
    "tiktok-operator": 1,
    "tiktok-api": 1,
    "tiktok-persister": 1,
}
#: Seconds each step took, printed at the end of the module (`-s`).
TIMINGS: dict[str, float] = {}


def _script(name: str, env: dict[str, str], timeout: float = 1500) -> None:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name)],
        env={**os.environ, "CONTAINER_ENGINE": "podman", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    TIMINGS[f"{name} {env.get('TARGET', '')}".strip()] = time.monotonic() - started


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """kind name -> podman name of each image the dev install runs (built or made as needed)."""
    _script("build-image.sh", {"IMAGE": PRODUCT_BUILD})
    _script("build-image.sh", {"TARGET": "dev", "IMAGE": DEV_BUILD, "PRODUCT_IMAGE": PRODUCT_BUILD})
    _script("build-standins.sh", {})
    return {
        f"docker.io/library/{PRODUCT}": qualified_image(PRODUCT_BUILD),
        f"docker.io/library/{DEV}": qualified_image(DEV_BUILD),
        **{name: name for name in STANDINS},
    }


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(crds=False, service_account_tokens=True) as cp:  # CRDs come from the chart
        yield cp


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane, admin: client.ApiClient, images: dict[str, str]) -> Iterator[KubeletNode]:
    # The cluster DNS address, held by a Service so that no other Service is given it.
    dns_service = client.V1Service(
        metadata=client.V1ObjectMeta(name="kube-dns", namespace="kube-system"),
        spec=client.V1ServiceSpec(
            cluster_ip=DNS_IP,
            ports=[client.V1ServicePort(name="dns", port=53, protocol="UDP")],
            selector={"k8s-app": "kube-dns"},
        ),
    )
    client.CoreV1Api(admin).create_namespaced_service("kube-system", dns_service)
    started = time.monotonic()
    with kubelet_node(control_plane, NODE, image=None, cluster_dns=DNS_IP) as running:  # its own images
        assert running.containerd is not None
        for kind_name, podman_name in images.items():
            running.containerd.import_from_podman(podman_name)
            if kind_name != podman_name:  # what `kind load docker-image` names it in the node
                running.containerd.ctr("images", "tag", "--force", podman_name, kind_name)
        TIMINGS["node start + image imports"] = time.monotonic() - started
        yield running


@pytest.fixture(scope="module")
def network(
    control_plane: ControlPlane, admin: client.ApiClient, node: KubeletNode
) -> Iterator[tuple[ServiceRouter, ClusterDns]]:
    target = urlsplit(control_plane.server_url)
    api_server = (str(target.hostname), int(target.port or 443))
    with cluster_networking(admin, node.bridge, DNS_IP, fixed={("default", "kubernetes"): api_server}) as both:
        yield both


def explain(node: KubeletNode, admin: client.ApiClient, router: ServiceRouter | None = None) -> str:
    """Pods with their phases and conditions, the tail of each container's log, routing errors."""
    lines = pod_report(node, admin, NAMESPACE)
    if router is not None:
        lines += [f"routing: {error}" for error in router.errors[-10:]]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane,
    admin: client.ApiClient,
    node: KubeletNode,
    network: tuple[ServiceRouter, ClusterDns],
) -> Iterator[None]:
    started = time.monotonic()
    home = Path(control_plane.kubeconfig_path).parent / "helm-home"
    env = {
        **os.environ,
        "HELM": str(helm_binary()),
        "IMAGE": PRODUCT,
        "IMAGE_DEV": DEV,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev-install.sh"), f"--kubeconfig={control_plane.kubeconfig_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    TIMINGS["dev-install.sh (helm upgrade --install --wait)"] = time.monotonic() - started
    try:
        assert result.returncode == 0, result.stderr + "\n" + explain(node, admin, network[0])
        yield
    finally:
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", kubeconfig=control_plane.kubeconfig_path)
        print("\n" + "\n".join(f"{step}: {seconds:.1f} s" for step, seconds in TIMINGS.items()))


def test_every_dev_deployment_is_ready_in_containers_of_the_images_kind_up_loads(
    installed: None, admin: client.ApiClient
) -> None:
    deployments = {d.metadata.name: d for d in client.AppsV1Api(admin).list_namespaced_deployment(NAMESPACE).items}
    assert {name: d.status.ready_replicas for name, d in deployments.items()} == DEPLOYMENTS
    expected = {
        "redis": "docker.io/library/redis:7.4-alpine",
        "postgres": "docker.io/library/postgres:16-alpine",
        "tiktok-simulator": f"docker.io/library/{DEV}",
        "tiktok-operator": f"docker.io/library/{PRODUCT}",
        "tiktok-api": f"docker.io/library/{PRODUCT}",
        "tiktok-persister": f"docker.io/library/{PRODUCT}",
    }
    pods = client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name").items
    running = {}
    for pod in pods:
        name = pod.metadata.labels["app.kubernetes.io/name"]
        if name in expected and pod.status.phase == "Running":
            status = pod.status.container_statuses[0]
            assert status.ready and status.container_id.startswith("containerd://"), pod.metadata.name
            running[name] = status.image
            # Redis and PostgreSQL run as the chart's users (the official images' uids).
            if name in ("redis", "postgres"):
                assert pod.spec.security_context.run_as_non_root
    assert running == expected
    job = client.BatchV1Api(admin).read_namespaced_job("tiktok-access-1", NAMESPACE)
    assert job.status.succeeded == 1


def test_pods_found_each_other_by_service_name_through_cluster_dns(
    installed: None, network: tuple[ServiceRouter, ClusterDns]
) -> None:
    router, dns_server = network
    asked = set(dns_server.questions)
    for service in ("redis", "postgres"):
        assert f"{service}.{NAMESPACE}.svc.cluster.local" in asked, sorted(asked)
        assert router.accepted(NAMESPACE, service) > 0
    assert not router.errors


def test_the_api_answers_through_its_service(installed: None, network: tuple[ServiceRouter, ClusterDns]) -> None:
    router, _ = network
    ip = router.services[(NAMESPACE, "tiktok-api")]
    answer = httpx.get(f"http://{ip}:8002/readyz", timeout=10)
    assert answer.status_code == 200, answer.text


def _postgres_url(router: ServiceRouter) -> str:
    """The dev values' superuser at the in-cluster PostgreSQL's Service address."""
    return f"postgresql://tiktok:tiktok-dev@{router.services[(NAMESPACE, 'postgres')]}:5432/tiktok"


def test_a_livestream_goes_live_from_the_in_cluster_simulator_and_is_stored_in_the_in_cluster_postgresql(
    installed: None, admin: client.ApiClient, node: KubeletNode, network: tuple[ServiceRouter, ClusterDns]
) -> None:
    router, dns_server = network
    name = "dev-install-streamer"
    started = time.monotonic()
    uid = create_livestream(admin, NAMESPACE, name, "dev_install_streamer", workspaceId="dev")
    try:
        wait_live(admin, NAMESPACE, name, timeout=DEADLINE_S, explain=lambda: explain(node, admin, router))
        TIMINGS["Livestream created -> Live"] = time.monotonic() - started
        stored = wait_for(
            lambda: asyncio.run(stored_events(_postgres_url(router), uid)),
            what="the persister to store the livestream's events in the in-cluster PostgreSQL",
            timeout=DEADLINE_S,
            explain=lambda: explain(node, admin, router),
        )
        TIMINGS["Livestream created -> first event in PostgreSQL"] = time.monotonic() - started
        assert stored
        # The connector pod reached the simulator by its Service name.
        assert f"tiktok-simulator.{NAMESPACE}.svc.cluster.local" in dns_server.questions
        assert router.accepted(NAMESPACE, "tiktok-simulator") > 0
        connector = connector_pods(admin, NAMESPACE)
        assert [p.spec.containers[0].image for p in connector] == [PRODUCT]
    finally:
        delete_livestream(admin, NAMESPACE, name, timeout=DEADLINE_S)


def test_helm_uninstall_removes_every_workload(
    installed: None, control_plane: ControlPlane, admin: client.ApiClient, node: KubeletNode
) -> None:
    started = time.monotonic()
    uninstall(control_plane, admin, node, NAMESPACE, timeout=DEADLINE_S)
    TIMINGS["helm uninstall -> no container left"] = time.monotonic() - started
