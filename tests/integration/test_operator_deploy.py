"""Everything in deploy/ and examples/ is accepted by a real API server (server-side dry run)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.cluster_support import started_control_plane
from tiktok_service.operator import desired, model
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane, binaries_dir

pytestmark = pytest.mark.slow

NAMESPACE = "tiktok-service"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(wait_for_controllers=False) as cp:
        created = kubectl(cp, "apply", "-f", str(operator_harness.DEPLOY_DIR / "namespace.yaml"))  # dry runs need it
        assert created.returncode == 0, created.stderr
        yield cp


def kubectl(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(binaries_dir() / "kubectl"), f"--kubeconfig={cp.kubeconfig_path}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_every_deploy_manifest_passes_a_server_side_dry_run(control_plane: ControlPlane) -> None:
    result = kubectl(control_plane, "apply", "--dry-run=server", "-f", str(operator_harness.DEPLOY_DIR))

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    kinds = {line.split("/")[0] for line in result.stdout.splitlines()}
    assert {"serviceaccount", "role.rbac.authorization.k8s.io", "rolebinding.rbac.authorization.k8s.io"} <= kinds
    assert {"deployment.apps", "kopfpeering.kopf.dev", "secret", "configmap"} <= kinds
    assert {
        "networkpolicy.networking.k8s.io",
        "poddisruptionbudget.policy",
        "clusterrole.rbac.authorization.k8s.io",
        "validatingadmissionpolicy.admissionregistration.k8s.io",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io",
    } <= kinds


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_every_deployment_has_a_network_policy_and_a_disruption_budget() -> None:
    docs = operator_harness.manifests(operator_harness.DEPLOY_DIR)
    policies = [doc["spec"]["podSelector"] for doc in docs if doc["kind"] == "NetworkPolicy"]
    budgets = [doc["spec"]["selector"] for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]

    assert {doc["metadata"]["name"] for doc in deployments} == {"tiktok-api", "tiktok-operator", "tiktok-persister"}
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert sum(selects(policy, labels) for policy in policies) == 1, deployment["metadata"]["name"]
        assert sum(selects(budget, labels) for budget in budgets) == 1, deployment["metadata"]["name"]


def test_connector_pods_carry_the_labels_their_network_policy_selects() -> None:
    livestream = operator_harness.manifests(operator_harness.EXAMPLES_DIR / "livestream.yaml")[0]
    livestream["metadata"]["uid"] = "6f1c3c50-8a4e-4c1e-9d7e-2a1b3c4d5e6f"
    pod_labels = desired.desired_pod(livestream, OperatorSettings())["metadata"]["labels"]
    policies = [
        doc for doc in operator_harness.manifests(operator_harness.DEPLOY_DIR) if doc["kind"] == "NetworkPolicy"
    ]

    chosen = [policy["metadata"]["name"] for policy in policies if selects(policy["spec"]["podSelector"], pod_labels)]

    assert chosen == ["tiktok-connector"]


def test_the_example_livestream_passes_a_server_side_dry_run(control_plane: ControlPlane) -> None:
    result = kubectl(control_plane, "apply", "--dry-run=server", "-f", str(operator_harness.EXAMPLES_DIR))

    assert result.returncode == 0, result.stderr
    assert "livestream.tiktok.tiktok-service.io/example-streamer created (server dry run)" in result.stdout


def test_the_connector_pod_is_admitted_in_a_namespace_enforcing_the_restricted_pod_security_standard(
    control_plane: ControlPlane,
) -> None:
    livestream = operator_harness.manifests(operator_harness.EXAMPLES_DIR / "livestream.yaml")[0]
    livestream["metadata"]["uid"] = "6f1c3c50-8a4e-4c1e-9d7e-2a1b3c4d5e6f"
    pod = desired.desired_pod(livestream, OperatorSettings())
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))

    with api:
        created = client.CoreV1Api(api).create_namespaced_pod(NAMESPACE, pod, dry_run="All")

    assert created.metadata.name == model.pod_name("example-streamer")
    assert created.spec.containers[0].security_context.read_only_root_filesystem is True


def secrets_read_by(doc: dict[str, Any]) -> set[str]:
    """Names of the Secrets a workload's pod template reads (env, envFrom, volumes)."""
    spec = doc["spec"]["template"]["spec"]
    names = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        for item in container.get("env", []):
            if ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                names.add(ref["name"])
        names |= {source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source}
    names |= {volume["secret"]["secretName"] for volume in spec.get("volumes", []) if "secret" in volume}
    return names


def test_each_component_reads_only_its_own_credentials_and_only_the_setup_job_the_administrators() -> None:
    docs = operator_harness.manifests(operator_harness.DEPLOY_DIR)
    workloads = {doc["metadata"]["name"]: secrets_read_by(doc) for doc in docs if doc["kind"] in {"Deployment", "Job"}}
    assert workloads == {
        "tiktok-persister": {"tiktok-persister"},
        "tiktok-api": {"tiktok-api"},
        "tiktok-operator": {"tiktok-operator"},
        "tiktok-access-1": {"tiktok-admin", "tiktok-connector", "tiktok-persister", "tiktok-api", "tiktok-operator"},
    }
    operator_config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tiktok-operator")
    assert operator_config["data"]["OPERATOR_CONNECTOR_SECRET_NAME"] == "tiktok-connector"  # connectors' own
    urls = {doc["metadata"]["name"]: doc["stringData"] for doc in docs if doc["kind"] == "Secret"}
    for component, user, login in (
        ("tiktok-connector", "tiktok-connector", None),
        ("tiktok-persister", "tiktok-persister", "tiktok_persister_login"),
        ("tiktok-api", "tiktok-api", "tiktok_api_login"),
        ("tiktok-operator", "tiktok-operator", "tiktok_operator_login"),
    ):
        assert urls[component]["redis-url"].startswith(f"redis://{user}:"), component
        if login is not None:
            assert urls[component]["database-url"].startswith(f"postgresql://{login}:"), component


def test_a_connector_pod_with_a_redis_ca_bundle_is_admitted_under_the_restricted_standard(
    control_plane: ControlPlane,
) -> None:
    livestream = operator_harness.manifests(operator_harness.EXAMPLES_DIR / "livestream.yaml")[0]
    livestream["metadata"]["uid"] = "6f1c3c50-8a4e-4c1e-9d7e-2a1b3c4d5e6f"
    pod = desired.desired_pod(livestream, OperatorSettings(connector_redis_ca_configmap="tiktok-redis-ca"))
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))

    with api:
        created = client.CoreV1Api(api).create_namespaced_pod(NAMESPACE, pod, dry_run="All")

    mounts = {m.name: m for m in created.spec.containers[0].volume_mounts}
    assert mounts["redis-ca"].read_only is True
    assert {v.name: v.config_map.name for v in created.spec.volumes if v.config_map} == {"redis-ca": "tiktok-redis-ca"}
