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
* **Credentials by reference.** Proxies and a TikTok session reach the connector as
  environment variables from `secretKeyRef` (`spec.connection.proxySecretRef` /
  `sessionSecretRef`, or the operator's defaults): the kubelet resolves them, so the pod spec,
  the operator and its RBAC never see the values (the operator needs no access to Secrets).
  A missing Secret or key holds the pod in `CreateContainerConfigError`, which the status shows.
  A changed Secret reaches a connector at its next start (env is read once).
* **HTTP port** (`connector_http_port`): the connector's /healthz, probed by the kubelet.
  0 turns both off, for nodes whose pods share the host network, where every connector
  would compete for the same port; a hung connector is then caught by the operator's
  heartbeat check alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tiktok_service.operator import limits, model
from tiktok_service.settings import OperatorSettings

_HASHED_OUT = frozenset({"state"})
#: Keys of a session Secret (`spec.connection.sessionSecretRef`): TikTok's cookie names.
SESSION_ID_KEY = "sessionid"
TT_TARGET_IDC_KEY = "tt-target-idc"
_SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
#: Where the Redis CA bundle is mounted in the connector container (read-only).
REDIS_CA_DIR = "/etc/tiktok-service/redis-ca"
REDIS_CA_FILE = "ca.crt"
_REDIS_CA_VOLUME = "redis-ca"


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
        # Names this pod as the holder of the Livestream's fence (the epoch itself comes from Redis).
        {"name": "CONNECTOR_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
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
    env += connection_env(spec.get("connection") or {}, settings)
    optional = {
        "CONNECTOR_LIVESTREAM_STREAM_MAXLEN": retention.get("livestreamStreamMaxLen"),
        "CONNECTOR_LIVESTREAM_STREAM_TTL_S": retention.get("ttlSeconds"),
        "CONNECTOR_SIGN_API_URL": settings.sign_api_url,
        "CONNECTOR_TIKTOK_APP_URL": settings.tiktok_app_url,
        "CONNECTOR_TIKTOK_WEBCAST_URL": settings.tiktok_webcast_url,
        "CONNECTOR_REDIS_CA_FILE": f"{REDIS_CA_DIR}/{REDIS_CA_FILE}" if redis_ca_volume(settings) else None,
    }
    env += [{"name": name, "value": str(value)} for name, value in optional.items() if value is not None]
    return env


def redis_ca_volume(settings: OperatorSettings) -> dict[str, Any] | None:
    """The volume carrying the Redis CA bundle (its one key as `ca.crt`), or None.

    A CA bundle verifies Redis' certificate (`rediss://`): without one the connector trusts
    the image's system CAs, which know nothing of a private CA. The bundle is mounted, not
    put in the environment, because redis-py (ssl's `load_verify_locations`) reads a file.
    """
    items = [{"key": settings.connector_redis_ca_key, "path": REDIS_CA_FILE}]
    if settings.connector_redis_ca_configmap:
        return {"name": _REDIS_CA_VOLUME, "configMap": {"name": settings.connector_redis_ca_configmap, "items": items}}
    if settings.connector_redis_ca_secret:
        return {"name": _REDIS_CA_VOLUME, "secret": {"secretName": settings.connector_redis_ca_secret, "items": items}}
    return None


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def connection_env(connection: Mapping[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """`spec.connection` (room id, proxies, session, locale) over the operator's defaults, as connector env."""
    env: list[dict[str, Any]] = []
    if connection.get("roomId"):
        env.append({"name": "CONNECTOR_ROOM_ID", "value": str(connection["roomId"])})
    proxy_ref = connection.get("proxySecretRef") or {}
    proxy_secret = proxy_ref.get("name") or settings.default_proxy_secret_name
    if proxy_secret:
        key = proxy_ref.get("key") if proxy_ref.get("name") else None
        env.append(_from_secret("CONNECTOR_PROXIES", proxy_secret, key or settings.default_proxy_secret_key))
    session_secret = (connection.get("sessionSecretRef") or {}).get("name") or settings.default_session_secret_name
    if session_secret:
        env.append(_from_secret("CONNECTOR_SESSION_ID", session_secret, SESSION_ID_KEY))
        env.append(_from_secret("CONNECTOR_TT_TARGET_IDC", session_secret, TT_TARGET_IDC_KEY))
        if settings.session_sign_host:
            # TikTokLive's own consent switch for sending a session to the sign server.
            env.append({"name": "WHITELIST_AUTHENTICATED_SESSION_ID_HOST", "value": settings.session_sign_host})
    locale = connection.get("locale") or {}
    chosen = {
        "CONNECTOR_LANGUAGE": locale.get("language") or settings.connector_language,
        "CONNECTOR_REGION": locale.get("region") or settings.connector_region,
        "CONNECTOR_TIMEZONE": locale.get("timezone") or settings.connector_timezone,
    }
    env += [{"name": name, "value": value} for name, value in chosen.items() if value]
    return env


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
        "resources": limits.connector_resources(overrides.get("resources"), settings),
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
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    if (ca_volume := redis_ca_volume(settings)) is not None:
        volumes.append(ca_volume)
        container["volumeMounts"].append({"name": _REDIS_CA_VOLUME, "mountPath": REDIS_CA_DIR, "readOnly": True})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.connector_grace_period_s,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The connector must not be its PID namespace's init: the kernel drops every signal an
        # init has no handler for, so a SIGTERM arriving while Python still starts (before the
        # connector installs its handler) would be lost, and the pod would hang for the whole
        # grace period before its SIGKILL. With the sandbox as init, SIGTERM ends it at once.
        "shareProcessNamespace": True,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.connector_run_as_user,
            "runAsGroup": settings.connector_run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
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
