"""The Livestream CRD, served by a real API server: validation, defaults, printer columns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.cluster_support import started_control_plane

pytestmark = pytest.mark.slow

GROUP, VERSION, PLURAL = "tiktok.tiktok-service.io", "v1alpha1", "livestreams"


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    with (
        started_control_plane(wait_for_controllers=False) as cp,
        config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as api_client,
    ):
        yield api_client


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def livestream(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Livestream",
        "metadata": {"name": f"ls-{uuid.uuid4().hex[:8]}"},
        "spec": spec,
    }


def rejection(custom: client.CustomObjectsApi, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, livestream(spec))
    assert refused.value.status == 422
    return str(json.loads(refused.value.body)["message"])


def test_a_username_that_is_not_a_tiktok_handle_is_rejected_naming_the_field(custom: client.CustomObjectsApi) -> None:
    message = rejection(custom, {"username": "not a handle!"})

    assert "spec.username" in message
    assert "should match" in message


def test_an_unknown_state_is_rejected_with_the_supported_values(custom: client.CustomObjectsApi) -> None:
    message = rejection(custom, {"username": "streamer", "state": "Sleeping"})

    assert "spec.state" in message
    assert '"Running", "Paused", "Stopped"' in message


def test_a_negative_restart_limit_is_rejected_naming_the_field(custom: client.CustomObjectsApi) -> None:
    message = rejection(custom, {"username": "streamer", "restartPolicy": {"maxRestarts": -1}})

    assert "spec.restartPolicy.maxRestarts" in message
    assert "greater than or equal to 0" in message


def test_a_backoff_cap_below_its_base_is_rejected(custom: client.CustomObjectsApi) -> None:
    spec = {"username": "streamer", "restartPolicy": {"backoffBaseSeconds": 60, "backoffCapSeconds": 10}}

    message = rejection(custom, spec)

    assert "spec.restartPolicy.backoffCapSeconds" in message
    assert "backoffCapSeconds must be >= backoffBaseSeconds" in message


def test_an_unknown_event_type_is_rejected(custom: client.CustomObjectsApi) -> None:
    message = rejection(custom, {"username": "streamer", "eventTypes": ["tiktok.comment", "tiktok.dance"]})

    assert "spec.eventTypes[1]" in message


def test_a_username_alone_is_completed_with_the_defaults(custom: client.CustomObjectsApi) -> None:
    body = livestream({"username": "a.b_c"})

    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)

    assert created["spec"] == {
        "username": "a.b_c",
        "state": "Running",
        "waitForLive": False,
        "restartPolicy": {"maxRestarts": 10, "backoffBaseSeconds": 5, "backoffCapSeconds": 300},
    }


def test_status_is_a_subresource_that_accepts_the_operators_fields(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, livestream({"username": "abc"}))
    name = created["metadata"]["name"]
    status = {
        "phase": "Live",
        "roomId": "7312345678901234567",
        "viewerCount": 42,
        "eventCounts": {"tiktok.comment": 3},
        "totalEvents": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Live",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }

    patched = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name, {"status": status})

    assert patched["status"] == status
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]


def test_listing_as_a_table_shows_the_printer_columns(api: client.ApiClient, custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, livestream({"username": "tabled"}))

    method, url, headers, body, _ = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    table = json.loads(response.data)

    columns = [column["name"] for column in table["columnDefinitions"]]
    assert columns == [
        *("Name", "Username", "State", "Phase", "Room"),
        *("Viewers", "Events", "Last Event", "Restarts", "Age"),
    ]
