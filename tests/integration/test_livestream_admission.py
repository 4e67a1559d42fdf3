"""The control boundary, on a real API server: admin-only `spec.connector`/`spec.retention`
(the ValidatingAdmissionPolicy in deploy/) and an immutable `spec.workspaceId` (the CRD's CEL rules).

The tenant holds exactly the API's Role from deploy/ (Livestream rights, nothing else), the
Livestream administrator the ClusterRole the policy names, bound in the namespace only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.cluster_support import started_control_plane
from tiktok_service.operator import model
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane

pytestmark = pytest.mark.slow

TENANT, LIVESTREAM_ADMIN = "tenant", "livestream-admin"
NAMESPACE = "rooms"
POLICY_FILE = operator_harness.DEPLOY_DIR / "livestream-admission.yaml"
RESOURCES = {"requests": {"cpu": "4"}, "limits": {"memory": "64Gi"}}


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[TENANT, LIVESTREAM_ADMIN], wait_for_controllers=False) as cp:
        with config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as admin:
            client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
            api_role = [
                d
                for d in operator_harness.manifests(operator_harness.DEPLOY_DIR / "api-rbac.yaml")
                if d["kind"] == "Role"
            ]
            operator_harness.apply(admin, api_role, namespace=NAMESPACE)
            operator_harness.apply(admin, operator_harness.manifests(POLICY_FILE))
            operator_harness.apply(
                admin,
                [
                    binding(TENANT, kind="Role", role="tiktok-api"),
                    binding(LIVESTREAM_ADMIN, kind="ClusterRole", role="tiktok-livestream-admin"),
                ],
                namespace=NAMESPACE,
            )
        with config.new_client_from_config(config_file=str(cp.kubeconfig_for(TENANT))) as tenant:
            # The API server loads policies asynchronously: wait until this one refuses.
            operator_harness.wait_for(lambda: refused_dry_run(tenant), what="the admission policy to take effect")
        yield cp


def binding(user: str, *, kind: str, role: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def refused_dry_run(api: client.ApiClient) -> bool:
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            model.GROUP,
            model.VERSION,
            NAMESPACE,
            model.PLURAL,
            livestream(connector={"resources": RESOURCES}),
            dry_run="All",
        )
    except ApiException as exc:
        return exc.status == 403
    return False


@pytest.fixture(scope="module")
def tenant(control_plane: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_for(TENANT))) as api:
        yield client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def administrator(control_plane: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_for(LIVESTREAM_ADMIN))) as api:
        yield client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def cluster_admin(control_plane: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as api:
        yield client.CustomObjectsApi(api)


def livestream(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": f"ls-{uuid.uuid4().hex[:8]}"},
        "spec": {"username": "streamer", **spec},
    }


def create(api: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    return api.create_namespaced_custom_object(  # type: ignore[no-any-return]
        model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, body
    )


def patch(api: client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return api.patch_namespaced_custom_object(  # type: ignore[no-any-return]
        model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, name, {"spec": spec}
    )


def refusal(call: Any, status: int) -> str:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == status, refused.value.body
    return str(json.loads(refused.value.body)["message"])


@pytest.mark.parametrize(
    "connector",
    [
        {"resources": RESOURCES},
        {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
        {"nodeSelector": {"kubernetes.io/hostname": "control-plane-1"}},
        {"priorityClassName": "system-node-critical"},
    ],
)
def test_a_user_with_only_livestream_rights_cannot_place_or_size_the_connector_pod(
    tenant: client.CustomObjectsApi, connector: dict[str, Any]
) -> None:
    message = refusal(lambda: create(tenant, livestream(connector=connector)), 403)

    assert "spec.connector" in message
    assert 'may be set or changed only by a Livestream administrator (RBAC verb "override"' in message
    assert f"{TENANT} is not one" in message


def test_a_user_with_only_livestream_rights_cannot_set_retention(tenant: client.CustomObjectsApi) -> None:
    message = refusal(lambda: create(tenant, livestream(retention={"ttlSeconds": 3600})), 403)

    assert "spec.retention may be set or changed only by a Livestream administrator" in message


def test_a_user_with_only_livestream_rights_creates_and_changes_everything_else(
    tenant: client.CustomObjectsApi,
) -> None:
    name = create(tenant, livestream(waitForLive=True))["metadata"]["name"]

    patched = patch(tenant, name, {"state": "Paused", "eventTypes": ["tiktok.comment"]})

    assert patched["spec"]["state"] == "Paused"
    message = refusal(lambda: patch(tenant, name, {"connector": {"resources": RESOURCES}}), 403)
    assert "spec.connector" in message


def test_a_livestream_administrator_may_set_them_and_the_user_may_not_change_them_after(
    tenant: client.CustomObjectsApi, administrator: client.CustomObjectsApi
) -> None:
    connector = {"resources": RESOURCES, "priorityClassName": "tiktok-connectors"}
    name = create(administrator, livestream(connector=connector, retention={"ttlSeconds": 3600}))["metadata"]["name"]

    paused = patch(tenant, name, {"state": "Paused"})  # the fields an administrator set, left as they are

    assert paused["spec"]["connector"]["priorityClassName"] == "tiktok-connectors"
    refusal(lambda: patch(tenant, name, {"connector": {"priorityClassName": None}}), 403)  # removing is changing
    refusal(lambda: patch(tenant, name, {"connector": None}), 403)
    refusal(lambda: patch(tenant, name, {"retention": {"ttlSeconds": 60}}), 403)
    assert patch(administrator, name, {"connector": None})["spec"].get("connector") is None


def test_a_cluster_admin_may_set_them(cluster_admin: client.CustomObjectsApi) -> None:
    created = create(cluster_admin, livestream(connector={"nodeSelector": {"pool": "tiktok"}}))

    assert created["spec"]["connector"] == {"nodeSelector": {"pool": "tiktok"}}


def test_the_workspace_of_a_livestream_cannot_be_changed(cluster_admin: client.CustomObjectsApi) -> None:
    name = create(cluster_admin, livestream(workspaceId="acme"))["metadata"]["name"]

    changed = refusal(lambda: patch(cluster_admin, name, {"workspaceId": "globex"}), 422)
    removed = refusal(lambda: patch(cluster_admin, name, {"workspaceId": None}), 422)

    assert "spec.workspaceId" in changed and "workspaceId is immutable" in changed
    assert "cannot be added or removed" in removed


def test_a_workspace_cannot_be_added_to_a_livestream_created_without_one(
    cluster_admin: client.CustomObjectsApi,
) -> None:
    name = create(cluster_admin, livestream())["metadata"]["name"]

    message = refusal(lambda: patch(cluster_admin, name, {"workspaceId": "acme"}), 422)

    assert "spec.workspaceId" in message and "cannot be added or removed" in message


def test_the_policy_type_checks_against_the_crd_schema_without_warnings(control_plane: ControlPlane) -> None:
    name = operator_harness.manifests(POLICY_FILE)[1]["metadata"]["name"]
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as admin:
        policies = client.AdmissionregistrationV1Api(admin)

        def checked() -> bool:
            return policies.read_validating_admission_policy(name).status.observed_generation is not None

        operator_harness.wait_for(checked, what="the policy's type check")
        status = policies.read_validating_admission_policy(name).status

    assert not (status.type_checking and status.type_checking.expression_warnings)
