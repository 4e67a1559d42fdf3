"""A container's environment, resolved the way the kubelet does it (``kubelet_pods.go``).

Pure: the caller fetches the Secrets and ConfigMaps named by ``references`` and passes
their decoded data in; a missing non-optional source raises ``ConfigError``, which the
agent reports as ``waiting: CreateContainerConfigError`` and retries, like a kubelet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from tiktok_service_dev.node_agent.status import HOST_IP

# Data of a Secret or ConfigMap by name; None = it does not exist.
Sources = Mapping[str, Mapping[str, str] | None]

_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(ValueError):
    """The container cannot start until its configuration sources exist (retryable)."""


@dataclass(frozen=True)
class References:
    secrets: frozenset[str] = field(default_factory=frozenset)
    config_maps: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class NodeResources:
    """Node allocatable, which ``resourceFieldRef`` reports for unset limits."""

    cpu: str
    memory: str


def references(container: Mapping[str, Any]) -> References:
    """Names of the Secrets and ConfigMaps the container's env needs fetched."""
    secrets: set[str] = set()
    config_maps: set[str] = set()
    for source in container.get("envFrom") or []:
        if ref := source.get("secretRef"):
            secrets.add(ref["name"])
        if ref := source.get("configMapRef"):
            config_maps.add(ref["name"])
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        if ref := value_from.get("secretKeyRef"):
            secrets.add(ref["name"])
        if ref := value_from.get("configMapKeyRef"):
            config_maps.add(ref["name"])
    return References(frozenset(secrets), frozenset(config_maps))


def resolve(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secrets: Sources,
    config_maps: Sources,
    node: NodeResources,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (the agent's PATH etc.), then ``envFrom`` in order, then ``env`` in order.

    Later entries override earlier ones, and ``$(NAME)`` in a literal value expands to
    what is defined so far, exactly the kubelet's precedence.
    """
    result = dict(base or {})
    result.setdefault("HOSTNAME", str(pod["metadata"]["name"]))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if ref := source.get("configMapRef"):
            data = _source(config_maps, "configmap", ref)
        elif ref := source.get("secretRef"):
            data = _source(secrets, "secret", ref)
        else:
            continue
        result.update({prefix + key: value for key, value in (data or {}).items() if "=" not in prefix + key})
    for var in container.get("env") or []:
        name = str(var["name"])
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], secrets=secrets, config_maps=config_maps, node=node)
            if value is None:
                continue  # optional key that does not exist: the variable is left unset
        else:
            value = expand(str(var.get("value") or ""), result)
        result[name] = value
    return result


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names expand, others stay, ``$$`` is ``$``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(substitute, text)


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; empty when neither is given."""
    return [expand(str(part), env) for part in [*(container.get("command") or []), *(container.get("args") or [])]]


def _source(sources: Sources, kind: str, ref: Mapping[str, Any]) -> Mapping[str, str] | None:
    name = ref["name"]
    data = sources.get(name)
    if data is None and not ref.get("optional"):
        raise ConfigError(f'{kind} "{name}" not found')
    return data


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    value_from: Mapping[str, Any],
    *,
    secrets: Sources,
    config_maps: Sources,
    node: NodeResources,
) -> str | None:
    for key, sources, kind in (("secretKeyRef", secrets, "secret"), ("configMapKeyRef", config_maps, "configmap")):
        if ref := value_from.get(key):
            data = _source(sources, kind, ref)
            if data is None:
                return None
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                where = f"{kind.capitalize()} {pod_namespace(pod)}/{ref['name']}"
                raise ConfigError(f"couldn't find key {ref['key']} in {where}")
            return data[ref["key"]]
    if ref := value_from.get("fieldRef"):
        return field_value(pod, str(ref["fieldPath"]))
    if ref := value_from.get("resourceFieldRef"):
        return resource_value(pod, container, ref, node)
    raise ConfigError(f"unsupported valueFrom: {sorted(value_from)}")


def pod_namespace(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"].get("namespace") or "default")


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The downward API's ``fieldRef``; every IP is loopback, where our processes live."""
    metadata = pod["metadata"]
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": pod_namespace(pod),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": HOST_IP,
        "status.hostIPs": HOST_IP,
        "status.podIP": HOST_IP,
        "status.podIPs": HOST_IP,
    }
    if path in simple:
        return str(simple[path] or "")
    if match := _FIELD_SUBSCRIPT.match(path):
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(
    pod: Mapping[str, Any], container: Mapping[str, Any], ref: Mapping[str, Any], node: NodeResources
) -> str:
    """``resourceFieldRef``: ceil(quantity / divisor); unset limits fall back to node allocatable."""
    target = container
    if name := ref.get("containerName"):
        target = next((c for c in pod["spec"]["containers"] if c["name"] == name), container)
    resource = str(ref["resource"])
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    declared = ((target.get("resources") or {}).get(kind) or {}).get(what)
    if declared is None and kind == "limits":
        declared = {"cpu": node.cpu, "memory": node.memory}.get(what)
    quantity = _quantity(declared) if declared is not None else Decimal(0)
    divisor = _quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity / divisor))


def _quantity(text: object) -> Decimal:
    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value
