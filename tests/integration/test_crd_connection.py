"""`spec.connection` of the Livestream CRD, served by a real API server: references and locale validated."""

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
def custom() -> Iterator[client.CustomObjectsApi]:
    with (
        started_control_plane(wait_for_controllers=False) as cp,
        config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as api_client,
    ):
        yield client.CustomObjectsApi(api_client)


def create(custom: client.CustomObjectsApi, connection: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Livestream",
        "metadata": {"name": f"ls-{uuid.uuid4().hex[:8]}"},
        "spec": {"username": "streamer", "connection": connection},
    }
    created: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    return created


def rejection(custom: client.CustomObjectsApi, connection: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as refused:
        create(custom, connection)
    assert refused.value.status == 422
    return str(json.loads(refused.value.body)["message"])


def test_secret_references_room_id_and_locale_are_accepted_and_the_proxy_key_defaulted(
    custom: client.CustomObjectsApi,
) -> None:
    connection = {
        "roomId": "7300000000000000001",
        "proxySecretRef": {"name": "egress.eu-1"},
        "sessionSecretRef": {"name": "tiktok-account"},
        "locale": {"language": "de", "region": "AT", "timezone": "Europe/Vienna"},
    }

    created = create(custom, connection)

    assert created["spec"]["connection"] == {**connection, "proxySecretRef": {"name": "egress.eu-1", "key": "proxies"}}


@pytest.mark.parametrize(
    ("connection", "field"),
    [
        ({"proxySecretRef": {"name": "Egress_EU"}}, "spec.connection.proxySecretRef.name"),
        ({"proxySecretRef": {"key": "proxies"}}, "spec.connection.proxySecretRef.name"),
        ({"proxySecretRef": {"name": "egress", "key": "a/b"}}, "spec.connection.proxySecretRef.key"),
        ({"sessionSecretRef": {"name": "-account"}}, "spec.connection.sessionSecretRef.name"),
        ({"roomId": "0123"}, "spec.connection.roomId"),
        ({"roomId": "99999999999999999999"}, "spec.connection.roomId"),
        ({"locale": {"language": "German"}}, "spec.connection.locale.language"),
        ({"locale": {"region": "de"}}, "spec.connection.locale.region"),
        ({"locale": {"timezone": "Europe/../../etc"}}, "spec.connection.locale.timezone"),
    ],
)
def test_bad_connection_options_are_rejected_naming_the_field(
    custom: client.CustomObjectsApi, connection: dict[str, Any], field: str
) -> None:
    assert field in rejection(custom, connection)
