"""Node agent, pure decisions: a container's environment, node objects and flag parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tiktok_service_dev.node_agent import env, node
from tiktok_service_dev.node_agent.agent import host_environment

NODE = env.NodeResources(cpu="4", memory="8Gi")
POD: dict[str, Any] = {
    "metadata": {
        "name": "conn-1",
        "namespace": "live",
        "uid": "uid-1",
        "labels": {"app": "connector"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "node-a", "containers": []},
}


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "image": "ignored", **fields}


def resolve(
    c: dict[str, Any], *, secrets: env.Sources | None = None, config_maps: env.Sources | None = None
) -> dict[str, str]:
    return env.resolve(
        POD, c, secrets=secrets or {}, config_maps=config_maps or {}, node=NODE, base={"PATH": "/venv/bin"}
    )


def test_references_name_every_secret_and_config_map_the_env_needs() -> None:
    c = container(
        envFrom=[{"secretRef": {"name": "s1"}}, {"configMapRef": {"name": "cm1"}}],
        env=[
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}},
        ],
    )

    assert env.references(c) == env.References(frozenset({"s1", "s2"}), frozenset({"cm1", "cm2"}))


def test_env_overrides_env_from_which_overrides_the_base_and_values_expand_earlier_names() -> None:
    c = container(
        envFrom=[{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "s"}}],
        env=[
            {"name": "TOKEN", "value": "literal"},
            {"name": "URL", "value": "redis://$(CM_HOST):6379/$(UNDEFINED)/$$(CM_HOST)"},
        ],
    )

    result = resolve(c, secrets={"s": {"TOKEN": "secret", "PATH": "/x"}}, config_maps={"cm": {"HOST": "h"}})

    assert result == {
        "PATH": "/x",
        "HOSTNAME": "conn-1",
        "CM_HOST": "h",
        "TOKEN": "literal",
        "URL": "redis://h:6379/$(UNDEFINED)/$(CM_HOST)",
    }


def test_key_refs_read_secrets_and_config_maps_and_skip_optional_missing_keys() -> None:
    c = container(
        env=[
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}}},
            {"name": "NOCM", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
        envFrom=[{"secretRef": {"name": "absent", "optional": True}}],
    )

    result = resolve(c, secrets={"s": {"k": "sv"}}, config_maps={"cm": {"k": "cv"}, "absent": None})

    assert (result["S"], result["C"]) == ("sv", "cv")
    assert "GONE" not in result and "NOCM" not in result


@pytest.mark.parametrize(
    ("c", "message"),
    [
        (container(envFrom=[{"secretRef": {"name": "s"}}]), 'secret "s" not found'),
        (
            container(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
            'configmap "cm" not found',
        ),
        (
            container(env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "here", "key": "k"}}}]),
            "couldn't find key k in Secret live/here",
        ),
    ],
    ids=["missing-secret", "missing-configmap", "missing-key"],
)
def test_a_missing_required_source_is_a_config_error(c: dict[str, Any], message: str) -> None:
    with pytest.raises(env.ConfigError, match=message):
        resolve(c, secrets={"s": None, "here": {}}, config_maps={"cm": None})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "conn-1"),
        ("metadata.namespace", "live"),
        ("metadata.uid", "uid-1"),
        ("metadata.labels['app']", "connector"),
        ("metadata.annotations['note']", "hi"),
        ("metadata.labels['missing']", ""),
        ("spec.nodeName", "node-a"),
        ("status.podIP", "127.0.0.1"),
        ("status.hostIP", "127.0.0.1"),
    ],
)
def test_the_downward_api_reports_pod_fields_and_loopback_ips(path: str, value: str) -> None:
    assert env.field_value(POD, path) == value


@pytest.mark.parametrize(
    ("resource", "divisor", "value"),
    [
        ("limits.cpu", None, "1"),  # 500m rounds up to whole cores
        ("limits.cpu", "1m", "500"),
        ("requests.cpu", "1m", "250"),
        ("limits.memory", "1Mi", "256"),
        ("requests.memory", None, "0"),  # unset request
    ],
)
def test_resource_field_refs_report_ceil_quantity_over_divisor(resource: str, divisor: str | None, value: str) -> None:
    c = container(resources={"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m"}})
    ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}

    assert env.resource_value(POD, c, ref, NODE) == value


def test_an_unset_limit_reports_the_node_allocatable() -> None:
    assert env.resource_value(POD, container(), {"resource": "limits.memory", "divisor": "1Gi"}, NODE) == "8"


def test_the_command_line_is_command_then_args_with_references_expanded() -> None:
    c = container(command=["tiktok-service", "connector"], args=["--username", "$(USER_NAME)"])

    assert env.command_line(c, {"USER_NAME": "alice"}) == ["tiktok-service", "connector", "--username", "alice"]


def test_processes_get_the_venv_bin_first_on_path_and_no_other_host_settings() -> None:
    host = {"PATH": "/usr/bin", "HOME": "/home/me", "CONNECTOR_USERNAME": "leak"}

    assert host_environment(Path("/venv/bin"), host) == {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/home/me",
    }


def test_a_node_starts_ready_with_its_capacity_labels_and_taints() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    shape = node.NodeShape(
        name="n1", cpu="2", memory="1Gi", pods=3, labels={"pool": "small"}, taints=[node.parse_taint("a=b:NoSchedule")]
    )

    obj = node.node_object(shape, now=now)

    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert obj["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "local"
    assert obj["metadata"]["labels"]["pool"] == "small"
    assert obj["spec"]["taints"] == [{"key": "a", "value": "b", "effect": "NoSchedule"}]
    assert obj["status"]["allocatable"] == {"cpu": "2", "memory": "1Gi", "pods": "3"}
    ready = obj["status"]["conditions"][-1]
    assert (ready["type"], ready["status"], ready["lastHeartbeatTime"]) == ("Ready", "True", "2025-01-01T00:00:00Z")


def test_a_lease_renew_time_has_microseconds_as_the_api_requires() -> None:
    spec = node.lease_spec("n1", now=datetime(2025, 1, 1, 0, 0, 0, 5, tzinfo=UTC), duration_s=40)

    assert spec == {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2025-01-01T00:00:00.000005Z"}


def test_re_registering_keeps_existing_taints_and_adds_missing_ones() -> None:
    shape = node.NodeShape(name="n1", taints=[{"key": "mine", "effect": "NoSchedule"}])
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}

    assert node.missing_taints(shape, [unreachable]) == [unreachable, {"key": "mine", "effect": "NoSchedule"}]
    assert node.missing_taints(shape, [{"key": "mine", "effect": "NoSchedule"}]) == [
        {"key": "mine", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("text", ["novalue", "k=v", "k=v:Sometimes", ":NoSchedule"])
def test_malformed_taints_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="taint"):
        node.parse_taint(text)


def test_taints_and_labels_parse_from_kubectl_syntax() -> None:
    assert node.parse_taint("dedicated:NoExecute") == {"key": "dedicated", "effect": "NoExecute"}
    assert node.parse_label("pool=") == ("pool", "")
    with pytest.raises(ValueError, match="key=value"):
        node.parse_label("pool")
