"""The Helm chart: lint, values schema, deploy/ rendered from it, and every values file accepted
by a real API server (server-side dry run of `helm template`'s output)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import helm_support
from tests.cluster_support import started_control_plane
from tests.helm_support import CHART, VALUES_FILES, helm, template
from tiktok_service_dev.controlplane import ControlPlane, binaries_dir

pytestmark = pytest.mark.slow

NAMESPACE = "tiktok-service"


def docs(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_the_chart_lints_clean(values: str) -> None:
    args = ["lint", str(CHART), "--strict"]
    if VALUES_FILES[values] is not None:
        args += ["--values", str(VALUES_FILES[values])]

    result = helm(*args)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("operator.replicas=-1", "'/operator/replicas': minimum"),
        ("operator.connector.maxResources.cpu=lots", "'/operator/connector/maxResources/cpu': 'lots' does not match"),
        ("operator.env.REDIS_URL=x", "'REDIS_URL' does not match pattern '^OPERATOR_"),
        ("api.redis.secretName=Not_A_Name", "'/api/redis/secretName': 'Not_A_Name' does not match"),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy': value must be one of"),
        ("operator.replica=2", "'/operator': additional properties 'replica' not allowed"),
    ],
)
def test_the_values_schema_refuses_bad_values_with_the_field_named(setting: str, complaint: str) -> None:
    result = helm("template", helm_support.RELEASE, str(CHART), "--set", setting)

    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_the_plain_manifests_in_deploy_are_rendered_from_the_chart() -> None:
    script = helm_support.render_manifests_script()
    rendered = script.render(helm_support.helm_binary())

    assert script.drift(rendered, script.DEPLOY) == [], "deploy/ differs from the chart: run `make manifests`"
    assert set(rendered) == {path.name for path in script.DEPLOY.glob("*.yaml")}


def test_the_drift_check_names_a_hand_edited_manifest(tmp_path: Path) -> None:
    script = helm_support.render_manifests_script()
    deploy = tmp_path / "deploy"
    shutil.copytree(script.DEPLOY, deploy)
    edited = deploy / "operator.yaml"
    edited.write_text(edited.read_text().replace("replicas: 2", "replicas: 3"))
    (deploy / "extra.yaml").write_text("kind: ConfigMap\n")

    diffs = script.drift(script.render(helm_support.helm_binary()), deploy)

    assert len(diffs) == 2
    assert "-  replicas: 3\n+  replicas: 2" in diffs[1]
    assert "deploy/extra.yaml" in diffs[0]


def test_the_chart_installs_the_product_crds_unchanged() -> None:
    for crd in (CHART / "crds").iterdir():
        assert crd.read_text() == (helm_support.REPO / "tiktok_service" / "crds" / crd.name).read_text()
    assert {path.name for path in (CHART / "crds").iterdir()} == {
        path.name for path in (helm_support.REPO / "tiktok_service" / "crds").glob("*.yaml")
    }


def test_the_operator_limits_and_each_components_secret_are_values() -> None:
    rendered = docs(
        template(
            None,
            "--set-json",
            'operator.connector.maxResources={"cpu": "1", "memory": "1Gi", "ephemeral-storage": null}',
            "--set-json",
            'operator.connector.allowedPriorityClasses=["tiktok-connectors"]',
            "--set",
            "persister.database.secretName=tiktok-persister-db",
            "--set",
            "api.redis.secretName=tiktok-api-redis",
            "--set",
            "operator.env.OPERATOR_CONNECTOR_MEMORY_LIMIT=300Mi",
        )
    )
    config = next(d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tiktok-operator")
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}

    def secret_refs(name: str) -> dict[str, str]:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        return {
            env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
            for env in container["env"]
            if "secretKeyRef" in env.get("valueFrom", {})
        }

    assert json.loads(config["data"]["OPERATOR_CONNECTOR_MAX_RESOURCES"]) == {"cpu": "1", "memory": "1Gi"}
    assert json.loads(config["data"]["OPERATOR_CONNECTOR_ALLOWED_PRIORITY_CLASSES"]) == ["tiktok-connectors"]
    assert config["data"]["OPERATOR_CONNECTOR_MEMORY_LIMIT"] == "300Mi"
    assert secret_refs("tiktok-persister")["PERSISTER_DATABASE_URL"] == "tiktok-persister-db"
    assert secret_refs("tiktok-persister")["PERSISTER_REDIS_URL"] == "tiktok-persister"
    assert secret_refs("tiktok-api")["API_REDIS_URL"] == "tiktok-api-redis"
    assert secret_refs("tiktok-operator") == {
        "OPERATOR_REDIS_URL": "tiktok-operator",
        "OPERATOR_DATABASE_URL": "tiktok-operator",
    }
    # The access Job sets each component's password from the very Secret key the component reads.
    (job,) = [d for d in rendered if d["kind"] == "Job"]
    job_refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
        for env in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert job_refs["ACCESS_PERSISTER_DATABASE_URL"] == "tiktok-persister-db"
    assert job_refs["ACCESS_API_REDIS_URL"] == "tiktok-api-redis"
    assert job_refs["ACCESS_REDIS_URL"] == job_refs["ACCESS_DATABASE_URL"] == "tiktok-admin"
    assert all("initContainers" not in d["spec"]["template"]["spec"] for d in deployments.values())


def test_without_the_access_job_persisters_and_the_api_migrate_in_an_init_container() -> None:
    rendered = docs(template(None, "--set", "access.enabled=false"))
    assert not [d for d in rendered if d["kind"] == "Job" or d["metadata"]["name"] == "tiktok-access"]
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    for name in ("tiktok-persister", "tiktok-api"):
        (init,) = deployments[name]["spec"]["template"]["spec"]["initContainers"]
        assert init["command"] == ["tiktok-service", "migrate"], name


def test_no_component_of_the_chart_is_the_init_of_its_pid_namespace() -> None:
    """An init's signals without a handler are dropped: a SIGTERM during start-up would be lost."""
    rendered = docs(template(None))
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert set(deployments) >= {"tiktok-api", "tiktok-operator", "tiktok-persister"}
    for name in ("tiktok-api", "tiktok-operator", "tiktok-persister"):
        assert deployments[name]["spec"]["template"]["spec"]["shareProcessNamespace"] is True, name


def test_the_prometheus_rule_carries_the_alert_rules_promtool_accepts(tmp_path: Path) -> None:
    rendered = docs(template(None, "--set", "monitoring.prometheusRule.enabled=true"))
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    source = yaml.safe_load((helm_support.REPO / "deploy" / "monitoring" / "alerts.yaml").read_text())
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `make deps` (Debian package prometheus)", pytrace=False)

    checked = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)

    assert rule["spec"]["groups"] == source["spec"]["groups"]
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- against a real API server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(wait_for_controllers=False) as cp:
        result = kubectl(cp, "apply", "-f", "-", stdin=MONITORING_CRDS)
        assert result.returncode == 0, result.stderr
        result = kubectl(cp, "wait", "--for=condition=Established", "--timeout=30s", "-f", "-", stdin=MONITORING_CRDS)
        assert result.returncode == 0, result.stderr
        for namespace in (NAMESPACE, "tiktok-dev"):
            result = kubectl(cp, "create", "namespace", namespace, "--save-config")
            assert result.returncode == 0, result.stderr
        yield cp


def kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(binaries_dir() / "kubectl"), f"--kubeconfig={cp.kubeconfig_path}", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)


MONITORING_VALUES = [
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.podMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
]


@pytest.mark.parametrize(
    ("values", "extra", "namespace"),
    [
        ("default", [], NAMESPACE),
        ("default", MONITORING_VALUES, NAMESPACE),
        ("manifests", [], NAMESPACE),
        ("dev", [], "tiktok-dev"),
    ],
    ids=["default", "default+monitoring", "manifests", "dev"],
)
def test_every_values_file_passes_a_server_side_dry_run(
    control_plane: ControlPlane, values: str, extra: list[str], namespace: str
) -> None:
    rendered = template(VALUES_FILES[values], *extra, namespace=namespace)

    result = kubectl(control_plane, "apply", "--dry-run=server", "-f", "-", stdin=rendered)

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    created = {line.split(" ")[0] for line in result.stdout.splitlines()}
    assert {
        "deployment.apps/tiktok-operator",
        "deployment.apps/tiktok-api",
        "deployment.apps/tiktok-persister",
        "kopfpeering.kopf.dev/tiktok-operator",
        "validatingadmissionpolicy.admissionregistration.k8s.io/livestream-admin-fields.tiktok-service.io",
        "networkpolicy.networking.k8s.io/tiktok-connector",
        "poddisruptionbudget.policy/tiktok-operator",
    } <= created
    if values == "dev":
        assert {"deployment.apps/redis", "deployment.apps/postgres", "deployment.apps/tiktok-simulator"} <= created
        assert {"secret/tiktok-connector", "secret/tiktok-persister", "secret/tiktok-admin"} <= created
        assert "job.batch/tiktok-access-1" in created
    if extra:
        assert {
            "servicemonitor.monitoring.coreos.com/tiktok-api",
            "podmonitor.monitoring.coreos.com/tiktok-service",
            "prometheusrule.monitoring.coreos.com/tiktok-service",
            "configmap/tiktok-service-dashboard",
        } <= created


def _stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    """prometheus-operator's CRD names with an open schema: this checks that the API server takes
    the objects (names, namespaces, apiVersion), not their fields against prometheus-operator's
    schema, which is not available offline."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


MONITORING_CRDS = yaml.safe_dump_all(
    [
        _stand_in_crd("ServiceMonitor", "servicemonitors"),
        _stand_in_crd("PodMonitor", "podmonitors"),
        _stand_in_crd("PrometheusRule", "prometheusrules"),
    ]
)


def test_every_served_namespace_gets_the_operators_role_peering_and_the_connector_policy() -> None:
    rendered = docs(template(None, "--set-json", 'operator.namespaces=["rooms-a", "rooms-b"]'))

    def namespaces_of(kind: str, name: str) -> set[str]:
        return {d["metadata"]["namespace"] for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name}

    config = next(d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tiktok-operator")
    assert json.loads(config["data"]["OPERATOR_NAMESPACES"]) == ["rooms-a", "rooms-b"]
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert namespaces_of(kind, "tiktok-operator") == {"rooms-a", "rooms-b"}, kind
    assert namespaces_of("NetworkPolicy", "tiktok-connector") == {"rooms-a", "rooms-b"}
    assert namespaces_of("Deployment", "tiktok-operator") == {NAMESPACE}  # the operator itself stays put
    (binding,) = [d for d in rendered if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "rooms-a"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tiktok-operator", "namespace": NAMESPACE}]
