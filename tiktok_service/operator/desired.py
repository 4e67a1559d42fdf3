"""The connector pod a Livestream should have, as a plain dict (pure: no API calls).

Decisions recorded here (see also the README of `deploy/`):

* **restartPolicy: Never.** The operator, not the kubelet, restarts connectors: it counts
  failures against the Livestream's `restartPolicy`, applies its backoff, reports
  `BackingOff`/`nextRetryAt` and gives up with `Failed`; a kubelet restart loop would hide
  all of that inside one pod.
* **safe-to-evict: "true"** (configurable). A connector holds no state worth protecting:
  everything it read is already in Redis, and on reconnect TikTok replays recent history,
  which the connector de-duplicates. An eviction costs a gap of a few seconds; "false" on
  1,000 long-lived pods would pin every node they run on and stop the cluster autoscaler
  from ever scaling down.
* **Spec hash.** The annotation hashes the Livestream's spec (minus `state`), so editing
  the spec replaces the pod; operator settings (image, URLs) reach pods on their next
  restart only, so upgrading the operator does not reconnect every room at once.
* **Grace period > drain timeout** so a stopped connector flushes its buffer before SIGKILL.
* **HTTP port** (`connector_http_port`): the connector's /healthz, probed by the kubelet.
  0 turns both off, for nodes whose pods share the host network, where every connector
  would compete for the same port; a hung connector is then caught by the operator's
  heartbeat check alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tiktok_service.operator import model
from tiktok_service.settings import OperatorSettings

_HASHED_OUT = frozenset({"state"})
_SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Stable hash of what the connector pod is built from (everything but `state`)."""
    relevant = {key: value for key, value in spec.items() if key not in _HASHED_OUT}
    return model.short_hash(json.dumps(relevant, sort_keys=True, separators=(",", ":")), 16)


def labels(livestream: Mapping[str, Any]) -> dict[str, str]:
    name = livestream["metadata"]["name"]
    return {
        model.LABEL_NAME: model.CONNECTOR_APP,
        model.LABEL_INSTANCE: model.label_value(name),
        model.LABEL_COMPONENT: "connector",
        model.LABEL_MANAGED_BY: model.MANAGER,
        model.LABEL_LIVESTREAM: model.label_value(name),
        model.LABEL_USERNAME: model.label_value(livestream["spec"]["username"]),
    }


def owner_reference(livestream: Mapping[str, Any]) -> dict[str, Any]:
    meta = livestream["metadata"]
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def connector_env(livestream: Mapping[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """`CONNECTOR_*` variables (see `ConnectorSettings`) from the spec and the operator's settings."""
    spec = livestream["spec"]
    retention = spec.get("retention") or {}
    secret = settings.connector_secret_name
    env: list[dict[str, Any]] = [
        {"name": "CONNECTOR_LIVESTREAM_ID", "value": livestream["metadata"]["uid"]},
        {"name": "CONNECTOR_USERNAME", "value": spec["username"]},
        {"name": "CONNECTOR_WAIT_FOR_LIVE", "value": "true" if spec.get("waitForLive") else "false"},
        {
            "name": "CONNECTOR_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": settings.connector_redis_url_key}},
        },
        {
            "name": "CONNECTOR_SIGN_API_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": secret, "key": settings.connector_sign_api_key_key, "optional": True}
            },
        },
        {"name": "CONNECTOR_DRAIN_TIMEOUT_S", "value": str(settings.connector_drain_timeout_s)},
        {"name": "CONNECTOR_HTTP_PORT", "value": str(settings.connector_http_port)},
    ]
    if spec.get("eventTypes"):
        env.append({"name": "CONNECTOR_EVENT_TYPES", "value": json.dumps(list(spec["eventTypes"]))})
    optional = {
        "CONNECTOR_TYPE_STREAM_MAXLEN": retention.get("typeStreamMaxLen"),
        "CONNECTOR_LIVESTREAM_STREAM_MAXLEN": retention.get("livestreamStreamMaxLen"),
        "CONNECTOR_LIVESTREAM_STREAM_TTL_S": retention.get("ttlSeconds"),
        "CONNECTOR_SIGN_API_URL": settings.sign_api_url,
        "CONNECTOR_TIKTOK_APP_URL": settings.tiktok_app_url,
        "CONNECTOR_TIKTOK_WEBCAST_URL": settings.tiktok_webcast_url,
    }
    env += [{"name": name, "value": str(value)} for name, value in optional.items() if value is not None]
    return env


def resources(settings: OperatorSettings) -> dict[str, Any]:
    return {
        "requests": {"cpu": settings.connector_cpu_request, "memory": settings.connector_memory_request},
        "limits": {"memory": settings.connector_memory_limit},
    }


def desired_pod(
    livestream: Mapping[str, Any], settings: OperatorSettings, *, restarts: int | None = None
) -> dict[str, Any]:
    """The connector pod for `livestream` (a CR body with metadata.name/namespace/uid and spec).

    `restarts` (default: `status.restarts`) is the number of consecutive failures before this
    pod; it is written on the pod so the failure count survives operator restarts.
    """
    meta, spec = livestream["metadata"], livestream["spec"]
    overrides = spec.get("connector") or {}
    if restarts is None:
        restarts = int((livestream.get("status") or {}).get("restarts") or 0)
    pod_labels = labels(livestream)
    container: dict[str, Any] = {
        "name": model.CONTAINER,
        "image": settings.connector_image,
        "imagePullPolicy": settings.connector_image_pull_policy,
        "command": ["tiktok-service", "connector"],
        "env": connector_env(livestream, settings),
        "resources": overrides.get("resources") or resources(settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.connector_http_port:
        container["ports"] = [{"name": "http", "containerPort": settings.connector_http_port, "protocol": "TCP"}]
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.connector_grace_period_s,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.connector_run_as_user,
            "runAsGroup": settings.connector_run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        "topologySpreadConstraints": [
            {
                "maxSkew": settings.connector_topology_max_skew,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {model.LABEL_NAME: model.CONNECTOR_APP}},
            }
        ],
    }
    if settings.connector_service_account:
        pod_spec["serviceAccountName"] = settings.connector_service_account
    if overrides.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(overrides["nodeSelector"])
    if overrides.get("tolerations"):
        pod_spec["tolerations"] = [dict(toleration) for toleration in overrides["tolerations"]]
    if overrides.get("priorityClassName"):
        pod_spec["priorityClassName"] = overrides["priorityClassName"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": model.pod_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": pod_labels,
            "annotations": {
                model.ANNOTATION_SPEC_HASH: spec_hash(spec),
                model.ANNOTATION_RESTARTS: str(restarts),
                model.ANNOTATION_USERNAME: spec["username"],
                _SAFE_TO_EVICT: "true" if settings.connector_safe_to_evict else "false",
            },
            "ownerReferences": [owner_reference(livestream)],
        },
        "spec": pod_spec,
    }
