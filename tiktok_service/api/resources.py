"""Livestream custom resources as the API sees them (pure: names, labels, bodies, views).

Workspaces map to labels in ONE namespace: the API's Role is namespaced, and a namespace
per workspace would need cluster-wide rights to create namespaces and bind roles. Every
Livestream the API creates carries its workspace twice: the label (so a list is one
label-selected request) and `spec.workspaceId` (which the operator copies into the
livestreams row). A resource is in a workspace only when both agree.

A Livestream's name is derived from (workspace, username), so two concurrent connects of
the same pair race on one name and Kubernetes lets exactly one create win: idempotency
without a lock. The name shows the username for `kubectl get ls`; the hash keeps
workspaces apart and stays within Kubernetes' name limits.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from tiktok_service.domain.livestream import API_VERSION, KIND, DesiredState, Phase

USERNAME_PATTERN: Final = r"^[A-Za-z0-9_.]{2,24}$"  # the CRD's pattern for spec.username
#: A workspace id is also a label value: alphanumeric at both ends, at most 63 characters.
WORKSPACE_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
#: The CRD's spec.connection.roomId: a positive 64-bit id, as a string.
ROOM_ID_PATTERN: Final = r"^[1-9][0-9]{0,18}$"
#: A Secret name (DNS-1123 label: the API names Secrets of one namespace, no dots needed).
SECRET_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?$"
#: The CRD's default for spec.connection.proxySecretRef.key, written out so that a connect again
#: compares equal to what Kubernetes stored.
DEFAULT_PROXY_SECRET_KEY: Final = "proxies"
LABEL_WORKSPACE: Final = "api.tiktok-service.io/workspace"
LABEL_USERNAME: Final = "api.tiktok-service.io/username-hash"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "tiktok-api"

#: Phases after which no more events come without a new spec (or that the user asked for).
FINISHED_PHASES: Final = frozenset({Phase.STOPPED, Phase.ENDED, Phase.FAILED})

_SLUG_DROP: Final = re.compile(r"[^a-z0-9]+")
_USERNAME: Final = re.compile(USERNAME_PATTERN)
_WORKSPACE: Final = re.compile(WORKSPACE_PATTERN)


def valid_username(username: str) -> bool:
    return _USERNAME.fullmatch(username) is not None


def valid_workspace(workspace_id: str) -> bool:
    return _WORKSPACE.fullmatch(workspace_id) is not None


def username_key(username: str) -> str:
    """TikTok unique ids are case-insensitive: `Foo` and `foo` are the same room."""
    return username.lower()


def livestream_name(workspace_id: str, username: str) -> str:
    """`<username slug>-<hash of workspace and username>`: deterministic, a valid DNS-1123 name."""
    key = username_key(username)
    slug = _SLUG_DROP.sub("-", key).strip("-") or "user"
    digest = hashlib.sha256(f"{workspace_id}\x00{key}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def username_label(username: str) -> str:
    return hashlib.sha256(username_key(username).encode()).hexdigest()[:32]


def workspace_selector(workspace_id: str, username: str | None = None) -> str:
    selector = f"{LABEL_WORKSPACE}={workspace_id}"
    if username is not None:
        selector += f",{LABEL_USERNAME}={username_label(username)}"
    return selector


#: Workspace ids that can own Secrets: lower-case alphanumeric words joined by single dashes.
#: Such an id never contains `--`, so `<id>--` starts the name of exactly one workspace's Secrets.
SECRET_OWNER_PATTERN: Final = r"^[a-z0-9]+(-[a-z0-9]+)*$"
SECRET_SEPARATOR: Final = "--"
_SECRET_OWNER: Final = re.compile(SECRET_OWNER_PATTERN)


def can_own_secrets(workspace_id: str) -> bool:
    """Whether `workspace_id` is its own Secret prefix, unchanged.

    A prefix derived by folding case or replacing `.`/`_` would map several workspaces
    (`acme.corp`, `acme_corp`, `Acme-Corp`) onto one, and each could use the others' Secrets;
    so an id that would need folding owns no Secrets at all.
    """
    return len(workspace_id) <= 63 and _SECRET_OWNER.fullmatch(workspace_id) is not None


def secret_prefix(workspace_id: str) -> str:
    """Secrets a workspace may reference through the API are named `<workspace id>--<name>`.

    Workspaces share the API's namespace, so a connect may only name Secrets its workspace's
    administrator created for it: otherwise one tenant could use another's proxies or TikTok
    account by guessing a name. The API never reads a Secret (it has no right to); it only
    checks the name. Ownership is exact because a workspace id that owns Secrets never contains
    the separator: `acme--x` is `acme`'s, `acme-corp--x` is `acme-corp`'s and never `acme`'s.
    """
    return workspace_id + SECRET_SEPARATOR


def secret_allowed(workspace_id: str, secret_name: str) -> bool:
    """`secret_name` is `<workspace_id>--<something>` and the workspace can own Secrets."""
    prefix = secret_prefix(workspace_id)
    return can_own_secrets(workspace_id) and secret_name.startswith(prefix) and len(secret_name) > len(prefix)


def secret_refusal(workspace_id: str, secret_name: str) -> str | None:
    """Why `workspace_id` may not reference `secret_name` (None when it may), for the 403's detail."""
    if not can_own_secrets(workspace_id):
        return (
            f"secret {secret_name!r}: workspace {workspace_id!r} cannot reference Secrets; only workspace ids of "
            "lower-case letters, digits and single dashes can (their Secrets are named '<workspace id>--<name>')"
        )
    if not secret_allowed(workspace_id, secret_name):
        return f"secret {secret_name!r}: this workspace's Secrets are named {secret_prefix(workspace_id)!r}..."
    return None


def connection_spec(
    *,
    room_id: str | None = None,
    proxy_secret: str | None = None,
    proxy_secret_key: str | None = None,
    session_secret: str | None = None,
    locale: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """`spec.connection` from a connect request's options (names of Secrets only, never their content)."""
    connection: dict[str, Any] = {}
    if room_id:
        connection["roomId"] = room_id
    if proxy_secret:
        connection["proxySecretRef"] = {"name": proxy_secret, "key": proxy_secret_key or DEFAULT_PROXY_SECRET_KEY}
    if session_secret:
        connection["sessionSecretRef"] = {"name": session_secret}
    chosen = {key: value for key, value in (locale or {}).items() if value}
    if chosen:
        connection["locale"] = chosen
    return connection


def connection_patch(existing: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning `spec.connection` `existing` into what a connect again `requested`.

    Each option the request carries replaces that option as a whole (a proxy Secret named
    without a key falls back to the default key, not to the old key); options it leaves out stay
    as they are, so connecting again without options never drops any. None when nothing changes.
    """
    patch: dict[str, Any] = {}
    for option, wanted in requested.items():
        current = existing.get(option)
        if current == wanted:
            continue
        if isinstance(wanted, Mapping) and isinstance(current, Mapping):
            patch[option] = {**{key: None for key in current if key not in wanted}, **wanted}
        else:
            patch[option] = wanted
    return patch or None


#: Connect options that are not connection options, by their spec key (the request's fields).
RECONNECT_OPTIONS: Final = {"waitForLive": "wait_for_live", "eventTypes": "event_types"}


def reconnect_patch(
    existing: Mapping[str, Any], desired: Mapping[str, Any], carried: Iterable[str]
) -> dict[str, Any] | None:
    """The spec merge patch for connecting again: `existing` spec, `desired` from the request.

    `carried` names the spec keys whose request fields the client set (`waitForLive`,
    `eventTypes`): those replace the existing values, the others stay, so a bare connect changes
    nothing but the state. Connection options follow `connection_patch`. None when nothing changes.
    """
    patch: dict[str, Any] = {}
    if (existing.get("state") or DesiredState.RUNNING.value) != DesiredState.RUNNING.value:
        patch["state"] = DesiredState.RUNNING.value
    carried = set(carried)
    if "waitForLive" in carried and bool(existing.get("waitForLive", False)) != bool(desired.get("waitForLive")):
        patch["waitForLive"] = bool(desired.get("waitForLive"))
    if "eventTypes" in carried and sorted(existing.get("eventTypes") or []) != sorted(desired.get("eventTypes") or []):
        patch["eventTypes"] = desired.get("eventTypes") or None  # None removes it: all types
    connection = connection_patch(existing.get("connection") or {}, desired.get("connection") or {})
    if connection is not None:
        patch["connection"] = connection
    return patch or None


def desired_livestream(
    *,
    namespace: str,
    workspace_id: str,
    username: str,
    wait_for_live: bool,
    event_types: Iterable[str] | None,
    connection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Livestream to create for a connect request (a plain dict, as the API server takes it)."""
    spec: dict[str, Any] = {
        "username": username,
        "workspaceId": workspace_id,
        "state": DesiredState.RUNNING.value,
        "waitForLive": wait_for_live,
    }
    if event_types:
        spec["eventTypes"] = sorted(set(event_types))
    if connection:
        spec["connection"] = dict(connection)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": livestream_name(workspace_id, username),
            "namespace": namespace,
            "labels": {
                LABEL_WORKSPACE: workspace_id,
                LABEL_USERNAME: username_label(username),
                LABEL_MANAGED_BY: MANAGER,
            },
        },
        "spec": spec,
    }


def in_workspace(livestream: Mapping[str, Any], workspace_id: str) -> bool:
    """True only when both the label and the spec say `workspace_id`."""
    labels = (livestream.get("metadata") or {}).get("labels") or {}
    spec = livestream.get("spec") or {}
    return labels.get(LABEL_WORKSPACE) == workspace_id and spec.get("workspaceId") == workspace_id


def uid(livestream: Mapping[str, Any]) -> str:
    return str(livestream["metadata"]["uid"])


def name(livestream: Mapping[str, Any]) -> str:
    return str(livestream["metadata"]["name"])


def desired_state(livestream: Mapping[str, Any]) -> str:
    return str((livestream.get("spec") or {}).get("state") or DesiredState.RUNNING.value)


def phase(livestream: Mapping[str, Any]) -> str | None:
    value = (livestream.get("status") or {}).get("phase")
    return str(value) if value else None


def is_finished(livestream: Mapping[str, Any]) -> bool:
    """No more events will come: stopped by the user, LIVE ended, or failed for good."""
    return phase(livestream) in FINISHED_PHASES


def is_active(livestream: Mapping[str, Any]) -> bool:
    """Wanted running and not finished (a new Livestream has no phase yet: it is active)."""
    return desired_state(livestream) == DesiredState.RUNNING.value and not is_finished(livestream)


# -- listing --------------------------------------------------------------------------------------


def sort_key(livestream: Mapping[str, Any]) -> tuple[str, str]:
    """Newest first is the reverse of this: (creationTimestamp, name)."""
    meta = livestream.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def encode_list_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}\n{key[1]}".encode()).decode().rstrip("=")


def decode_list_cursor(token: str) -> tuple[str, str]:
    """Inverse of `encode_list_cursor`; ValueError for a token we did not make."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    created, sep, resource_name = raw.partition("\n")
    if not sep or not resource_name:
        raise ValueError("invalid cursor")
    return created, resource_name


def select_page(
    livestreams: Iterable[Mapping[str, Any]],
    *,
    phases: set[str] | None,
    username: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> tuple[list[Mapping[str, Any]], tuple[str, str] | None]:
    """Filter, order newest first, and cut one page; returns it and the next page's key (or None)."""
    wanted = []
    for item in livestreams:
        if phases is None:
            if not is_active(item):
                continue
        elif (phase(item) or Phase.PENDING.value) not in phases:
            continue
        if username is not None and username_key(str(item["spec"]["username"])) != username_key(username):
            continue
        if after is not None and sort_key(item) >= after:
            continue
        wanted.append(item)
    wanted.sort(key=sort_key, reverse=True)
    page = wanted[:limit]
    return page, (sort_key(page[-1]) if len(wanted) > limit else None)


# -- views -----------------------------------------------------------------------------------------


def view(livestream: Mapping[str, Any], row: Any | None, *, detail: bool = False) -> dict[str, Any]:
    """Fields of the public representation: the CR (desired state, live status) and its row (history).

    The CR status is the fresher source for anything both have; the row adds when the
    livestream ended (and survives the CR).
    """
    meta, spec = livestream["metadata"], livestream.get("spec") or {}
    status = livestream.get("status") or {}
    fields: dict[str, Any] = {
        "id": meta["uid"],
        "name": meta["name"],
        "workspace_id": spec.get("workspaceId"),
        "username": spec["username"],
        "state": desired_state(livestream),
        "phase": status.get("phase") or Phase.PENDING.value,
        "reason": status.get("reason"),
        "message": status.get("message"),
        "room_id": status.get("roomId"),
        "viewer_count": status.get("viewerCount"),
        "event_counts": status.get("eventCounts") or {},
        "total_events": status.get("totalEvents") or 0,
        "restarts": status.get("restarts") or 0,
        "connected_at": status.get("connectedAt"),
        "disconnected_at": status.get("disconnectedAt"),
        "last_event_at": status.get("lastEventAt"),
        "next_retry_at": status.get("nextRetryAt"),
        "created_at": meta.get("creationTimestamp"),
        "ended_at": getattr(row, "ended_at", None),
        "wait_for_live": bool(spec.get("waitForLive", False)),
        "event_types": list(spec.get("eventTypes") or []),
        "connection": connection_view(spec.get("connection") or {}),
    }
    if row is not None and fields["room_id"] is None and row.room_id is not None:
        fields["room_id"] = str(row.room_id)
    if detail:
        fields["pod_name"] = status.get("podName")
        fields["observed_generation"] = status.get("observedGeneration")
        fields["conditions"] = list(status.get("conditions") or [])
    return fields


def connection_view(connection: Mapping[str, Any]) -> dict[str, Any]:
    """`spec.connection` as the API shows it: the options of a connect (Secret names, never content)."""
    view: dict[str, Any] = {}
    if connection.get("roomId"):
        view["room_id"] = str(connection["roomId"])
    if connection.get("proxySecretRef"):
        view["proxy_secret"] = connection["proxySecretRef"].get("name")
        view["proxy_secret_key"] = connection["proxySecretRef"].get("key")
    if connection.get("sessionSecretRef"):
        view["session_secret"] = connection["sessionSecretRef"].get("name")
    if connection.get("locale"):
        view["locale"] = dict(connection["locale"])
    return view


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
