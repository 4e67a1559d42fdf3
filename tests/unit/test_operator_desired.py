"""desired_pod: the connector pod a Livestream asks for, as a plain dict."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tiktok_service.connector import redis_client
from tiktok_service.operator import desired, model
from tiktok_service.settings import ConnectorSettings, OperatorSettings

UID = "0b3f6a4e-8c1d-4d59-9a55-0c6b1f1f2a10"


def settings(**overrides: Any) -> OperatorSettings:
    return OperatorSettings.model_validate({"connector_image": "registry.local/tiktok-service:1.2.3", **overrides})


def livestream(name: str = "alice-live", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name, "namespace": "rooms", "uid": UID, "generation": 1},
        "spec": {"username": "alice.live_", "state": "Running", **spec},
    }


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in pod["spec"]["containers"][0]["env"]}


def test_the_pod_is_named_after_the_livestream_and_lives_in_its_namespace() -> None:
    pod = desired.desired_pod(livestream(), settings())

    assert pod["metadata"]["name"] == "ls-alice-live"
    assert pod["metadata"]["namespace"] == "rooms"


def test_a_long_livestream_name_gives_a_63_character_name_ending_in_a_hash() -> None:
    long_name = "x" * 70 + ".y"

    name = desired.desired_pod(livestream(long_name), settings())["metadata"]["name"]

    assert len(name) <= 63
    assert name.startswith("ls-xxx")
    assert name == model.pod_name(long_name)
    assert name != model.pod_name("x" * 70 + ".z")


def test_the_pod_is_controlled_by_its_livestream() -> None:
    (owner,) = desired.desired_pod(livestream(), settings())["metadata"]["ownerReferences"]

    assert owner == {
        "apiVersion": "tiktok.tiktok-service.io/v1alpha1",
        "kind": "Livestream",
        "name": "alice-live",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_labels_are_valid_label_values_even_for_usernames_ending_in_punctuation() -> None:
    labels = desired.desired_pod(livestream(), settings())["metadata"]["labels"]

    assert labels["app.kubernetes.io/name"] == "tiktok-connector"
    assert labels["app.kubernetes.io/instance"] == "alice-live"
    assert labels["tiktok-service.io/livestream"] == "alice-live"
    assert labels["tiktok-service.io/username"].startswith("alice.live-")
    assert labels["tiktok-service.io/username"][-1].isalnum()


def test_the_connector_gets_its_livestream_id_username_and_secrets_from_the_environment() -> None:
    env = env_of(desired.desired_pod(livestream(), settings(connector_secret_name="conn")))

    assert env["CONNECTOR_LIVESTREAM_ID"] == UID
    assert env["CONNECTOR_USERNAME"] == "alice.live_"
    assert env["CONNECTOR_WAIT_FOR_LIVE"] == "false"
    assert env["CONNECTOR_REDIS_URL"] == {"secretKeyRef": {"name": "conn", "key": "redis-url"}}
    assert env["CONNECTOR_SIGN_API_KEY"]["secretKeyRef"]["optional"] is True


def test_spec_options_become_connector_settings_the_connector_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {
        "waitForLive": True,
        "eventTypes": ["tiktok.comment", "tiktok.gift"],
        "retention": {"livestreamStreamMaxLen": 700, "ttlSeconds": 3600},
    }
    pod = desired.desired_pod(livestream(**spec), settings(sign_api_url="http://sign.local"))
    for name, value in env_of(pod).items():
        monkeypatch.setenv(name, value if isinstance(value, str) else "redis://redis:6379/0")

    parsed = ConnectorSettings()  # type: ignore[call-arg]

    assert parsed.wait_for_live is True
    assert [str(t) for t in parsed.event_types] == ["tiktok.comment", "tiktok.gift"]
    assert (parsed.livestream_stream_maxlen, parsed.livestream_stream_ttl_s) == (700, 3600)
    assert parsed.sign_api_url == "http://sign.local"
    assert parsed.drain_timeout_s < pod["spec"]["terminationGracePeriodSeconds"]


def test_the_container_runs_the_connector_command_with_the_configured_image() -> None:
    (container,) = desired.desired_pod(livestream(), settings())["spec"]["containers"]

    assert container["command"] == ["tiktok-service", "connector"]
    assert container["image"] == "registry.local/tiktok-service:1.2.3"


def test_the_connector_serves_health_on_its_http_port_and_the_kubelet_probes_it() -> None:
    pod = desired.desired_pod(livestream(), settings(connector_http_port=9100))
    (container,) = pod["spec"]["containers"]

    assert env_of(pod)["CONNECTOR_HTTP_PORT"] == "9100"
    assert container["ports"] == [{"name": "http", "containerPort": 9100, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_http_port_defaults_to_8080() -> None:
    (container,) = desired.desired_pod(livestream(), settings())["spec"]["containers"]

    assert container["ports"][0]["containerPort"] == 8080


def test_http_port_0_gives_a_connector_without_a_port_or_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    pod = desired.desired_pod(livestream(), settings(connector_http_port=0))
    (container,) = pod["spec"]["containers"]
    monkeypatch.setenv("CONNECTOR_REDIS_URL", "redis://redis:6379/0")
    for name, value in env_of(pod).items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)

    assert "ports" not in container
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & container.keys()
    assert ConnectorSettings().http_port == 0  # type: ignore[call-arg]


def test_resources_are_sized_from_the_measured_connector_memory_by_default() -> None:
    (container,) = desired.desired_pod(livestream(), settings())["spec"]["containers"]

    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "112Mi"}, "limits": {"memory": "256Mi"}}


def test_connector_overrides_in_the_spec_replace_the_defaults() -> None:
    overrides = {
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "nodeSelector": {"pool": "connectors"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tiktok", "effect": "NoSchedule"}],
        "priorityClassName": "live-ingest",
    }

    pod = desired.desired_pod(livestream(connector=overrides), settings())

    assert pod["spec"]["containers"][0]["resources"] == overrides["resources"]
    assert pod["spec"]["nodeSelector"] == {"pool": "connectors"}
    assert pod["spec"]["tolerations"] == overrides["tolerations"]
    assert pod["spec"]["priorityClassName"] == "live-ingest"


def test_the_pod_runs_locked_down() -> None:
    spec = desired.desired_pod(livestream(), settings())["spec"]
    container = spec["containers"][0]

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_connector_is_not_the_init_of_its_pid_namespace_so_no_sigterm_is_lost() -> None:
    """An init ignores signals it has no handler for: a SIGTERM during the connector's start
    would be dropped and the pod deleted only at the end of its grace period (SIGKILL)."""
    assert desired.desired_pod(livestream(), settings())["spec"]["shareProcessNamespace"] is True


def test_the_operator_owns_restarts_so_the_kubelet_never_restarts_the_connector() -> None:
    assert desired.desired_pod(livestream(), settings())["spec"]["restartPolicy"] == "Never"


def test_connectors_spread_softly_across_nodes_and_may_be_evicted_by_the_autoscaler() -> None:
    pod = desired.desired_pod(livestream(), settings())

    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"


def test_the_spec_hash_changes_with_the_spec_but_not_with_the_state() -> None:
    base = desired.desired_pod(livestream(), settings())["metadata"]["annotations"][model.ANNOTATION_SPEC_HASH]
    paused = desired.desired_pod(livestream(state="Paused"), settings())
    waiting = desired.desired_pod(livestream(waitForLive=True), settings())

    assert paused["metadata"]["annotations"][model.ANNOTATION_SPEC_HASH] == base
    assert waiting["metadata"]["annotations"][model.ANNOTATION_SPEC_HASH] != base


def test_the_failure_count_is_written_on_the_pod() -> None:
    body = livestream() | {"status": {"restarts": 2}}

    default = desired.desired_pod(body, settings())
    explicit = desired.desired_pod(body, settings(), restarts=3)

    assert default["metadata"]["annotations"][model.ANNOTATION_RESTARTS] == "2"
    assert explicit["metadata"]["annotations"][model.ANNOTATION_RESTARTS] == "3"


def test_the_same_livestream_always_gives_the_same_pod() -> None:
    first = json.dumps(desired.desired_pod(livestream(), settings()), sort_keys=True)

    assert json.dumps(desired.desired_pod(livestream(), settings()), sort_keys=True) == first


# -- connection options (spec.connection and the operator's defaults) ---------------------------


def container_env(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod["spec"]["containers"][0]["env"])


def test_no_connection_options_means_no_proxy_no_session_and_the_connectors_default_locale() -> None:
    env = env_of(desired.desired_pod(livestream(), settings()))

    for name in ("CONNECTOR_PROXIES", "CONNECTOR_SESSION_ID", "CONNECTOR_TT_TARGET_IDC", "CONNECTOR_ROOM_ID"):
        assert name not in env
    assert "CONNECTOR_LANGUAGE" not in env
    assert "WHITELIST_AUTHENTICATED_SESSION_ID_HOST" not in env


def test_proxies_and_session_come_from_secret_references_never_as_values() -> None:
    connection = {
        "proxySecretRef": {"name": "egress-eu", "key": "list"},
        "sessionSecretRef": {"name": "tiktok-account"},
        "roomId": "7300000000000000001",
    }
    pod = desired.desired_pod(livestream(connection=connection), settings(session_sign_host="api.eulerstream.com"))
    env = env_of(pod)

    assert env["CONNECTOR_PROXIES"] == {"secretKeyRef": {"name": "egress-eu", "key": "list"}}
    assert env["CONNECTOR_SESSION_ID"] == {"secretKeyRef": {"name": "tiktok-account", "key": "sessionid"}}
    assert env["CONNECTOR_TT_TARGET_IDC"] == {"secretKeyRef": {"name": "tiktok-account", "key": "tt-target-idc"}}
    assert env["WHITELIST_AUTHENTICATED_SESSION_ID_HOST"] == "api.eulerstream.com"
    assert env["CONNECTOR_ROOM_ID"] == "7300000000000000001"
    for item in container_env(pod):
        if item["name"] in {"CONNECTOR_PROXIES", "CONNECTOR_SESSION_ID", "CONNECTOR_TT_TARGET_IDC"}:
            assert "value" not in item
    # The pod's env names each variable once (the kubelet would take the last).
    names = [item["name"] for item in container_env(pod)]
    assert len(names) == len(set(names))


def test_the_operators_defaults_apply_when_the_livestream_names_no_secret() -> None:
    operator = settings(
        default_proxy_secret_name="egress-default",
        default_session_secret_name="tiktok-default",
        connector_language="de",
        connector_region="DE",
        connector_timezone="Europe/Berlin",
    )

    env = env_of(desired.desired_pod(livestream(), operator))

    assert env["CONNECTOR_PROXIES"] == {"secretKeyRef": {"name": "egress-default", "key": "proxies"}}
    assert env["CONNECTOR_SESSION_ID"] == {"secretKeyRef": {"name": "tiktok-default", "key": "sessionid"}}
    assert "WHITELIST_AUTHENTICATED_SESSION_ID_HOST" not in env, "no consent configured: the connector says so"
    assert (env["CONNECTOR_LANGUAGE"], env["CONNECTOR_REGION"], env["CONNECTOR_TIMEZONE"]) == (
        "de",
        "DE",
        "Europe/Berlin",
    )


def test_a_livestreams_own_references_and_locale_win_over_the_defaults() -> None:
    operator = settings(default_proxy_secret_name="egress-default", connector_language="de", connector_region="DE")
    connection = {"proxySecretRef": {"name": "egress-us"}, "locale": {"language": "en", "timezone": "America/Denver"}}

    env = env_of(desired.desired_pod(livestream(connection=connection), operator))

    assert env["CONNECTOR_PROXIES"] == {"secretKeyRef": {"name": "egress-us", "key": "proxies"}}
    assert (env["CONNECTOR_LANGUAGE"], env["CONNECTOR_REGION"], env["CONNECTOR_TIMEZONE"]) == (
        "en",
        "DE",
        "America/Denver",
    )


def test_the_connection_env_is_what_connector_settings_read() -> None:
    connection = {"roomId": "7300000000000000001", "locale": {"language": "fr", "region": "FR", "timezone": "UTC"}}
    env = env_of(desired.desired_pod(livestream(connection=connection), settings()))
    plain = {name: value for name, value in env.items() if isinstance(value, str)}

    connector = ConnectorSettings.model_validate(
        {name.removeprefix("CONNECTOR_").lower(): value for name, value in plain.items()}
    )

    assert connector.room_id == 7300000000000000001
    assert (connector.language, connector.region, connector.timezone) == ("fr", "FR", "UTC")


def test_changing_a_secret_reference_changes_the_spec_hash() -> None:
    before = desired.spec_hash(livestream()["spec"])
    after = desired.spec_hash(livestream(connection={"proxySecretRef": {"name": "egress-eu"}})["spec"])

    assert before != after


# -- the Redis CA bundle ----------------------------------------------------------------------


def test_without_a_redis_ca_setting_the_pod_mounts_nothing_and_the_connector_uses_the_system_cas() -> None:
    pod = desired.desired_pod(livestream(), settings())
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp"]
    assert "CONNECTOR_REDIS_CA_FILE" not in env_of(pod)


@pytest.mark.parametrize(
    ("setting", "source"),
    [
        ({"connector_redis_ca_configmap": "redis-ca"}, {"configMap": {"name": "redis-ca"}}),
        ({"connector_redis_ca_secret": "redis-tls"}, {"secret": {"secretName": "redis-tls"}}),
    ],
)
def test_a_redis_ca_bundle_is_mounted_read_only_and_named_to_the_connector(
    setting: dict[str, str], source: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = desired.desired_pod(livestream(), settings(connector_redis_ca_key="bundle.pem", **setting))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "redis-ca")
    kind, body = next((k, v) for k, v in volume.items() if k != "name")
    assert {kind: {k: v for k, v in body.items() if k != "items"}} == source
    assert body["items"] == [{"key": "bundle.pem", "path": "ca.crt"}]
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "redis-ca")
    assert mount == {"name": "redis-ca", "mountPath": desired.REDIS_CA_DIR, "readOnly": True}
    assert env_of(pod)["CONNECTOR_REDIS_CA_FILE"] == f"{desired.REDIS_CA_DIR}/ca.crt"
    # ... and the connector accepts it (with a TLS URL) and hands it to redis-py.
    for name, value in env_of(pod).items():
        monkeypatch.setenv(name, value if isinstance(value, str) else "rediss://redis:6380/0")
    parsed = ConnectorSettings()  # type: ignore[call-arg]
    assert redis_client.redis_options(parsed)["ssl_ca_certs"] == f"{desired.REDIS_CA_DIR}/ca.crt"


def test_a_redis_ca_is_named_once_and_a_connector_refuses_it_without_tls() -> None:
    with pytest.raises(ValueError, match="once"):
        settings(connector_redis_ca_configmap="a", connector_redis_ca_secret="b")
    with pytest.raises(ValueError, match="rediss"):
        ConnectorSettings(livestream_id="x", username="alice", redis_url="redis://r:6379/0", redis_ca_file="/ca.crt")
    plain = ConnectorSettings(livestream_id="x", username="alice", redis_url="redis://r:6379/0")
    assert "ssl_ca_certs" not in redis_client.redis_options(plain)
