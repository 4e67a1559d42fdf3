"""The operator's Kubernetes calls: pods, Livestream status, Events; and kopf's session.

Requests go through the shared `kube_rest` layer (responses are plain dicts: what `desired`
builds and `model.observe_pod` reads). kopf logs in with the same credentials
(`kopf_session`), so the watch streams and these calls share one identity and one set of
RBAC rules.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from tiktok_service.kube_rest import MERGE_PATCH, ApiError, Credentials, RestSession
from tiktok_service.operator import model

__all__ = ["ApiError", "Credentials", "KubeClient", "kopf_session"]

log = logging.getLogger(__name__)


def kopf_session(credentials: Credentials, *, max_connections: int) -> kopf.AiohttpSession:
    """kopf's own HTTP session (its watches, finalizer patches) with our identity and a bounded pool.

    kopf's built-in session has no limit: a burst of new Livestreams opens a TLS connection
    per concurrent finalizer patch (a handshake each, on both sides, and a 256 KiB read
    buffer each, kept alive after the burst). Call from the event loop; kopf closes it.
    """
    token = credentials.authorization()
    connector = aiohttp.TCPConnector(ssl=credentials.ssl_context(), limit=max_connections)
    session = aiohttp.ClientSession(connector=connector, headers={"Authorization": token} if token else None)
    return kopf.AiohttpSession(server=credentials.server, aiohttp_session=session)


class KubeClient(RestSession):
    """Pods, Livestream status and Events over one pooled HTTPS session."""

    def __init__(self, credentials: Credentials, *, timeout_s: float = 30.0, max_connections: int = 64) -> None:
        super().__init__(credentials, timeout_s=timeout_s, max_connections=max_connections)

    # -- pods --------------------------------------------------------------------------------

    async def create_pod(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create `pod`; None when a pod of that name already exists (idempotent create)."""
        namespace = pod["metadata"]["namespace"]
        try:
            return await self._request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete_pod(
        self, namespace: str, name: str, *, uid: str | None = None, grace_period_s: int | None = None
    ) -> bool:
        """Delete (only the pod with `uid`, when given); False when it is already gone or replaced."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        if grace_period_s is not None:
            options["gracePeriodSeconds"] = grace_period_s
        try:
            await self._request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=options)
        except ApiError as exc:
            if exc.status in {404, 409}:  # gone, or the name now belongs to a successor
                return False
            raise
        return True

    # -- livestreams -------------------------------------------------------------------------

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the Livestream's status subresource; None when the Livestream is gone."""
        path = f"/apis/{model.API_VERSION}/namespaces/{namespace}/{model.PLURAL}/{name}/status"
        try:
            return await self._request("PATCH", path, body={"status": dict(patch)}, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- events ------------------------------------------------------------------------------

    async def post_event(
        self, livestream: Mapping[str, Any], *, type_: str, reason: str, message: str, component: str
    ) -> None:
        """Record a Kubernetes Event on the Livestream (best effort: failures are only logged)."""
        meta = livestream["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name'][:200]}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": model.API_VERSION,
                "kind": model.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not post an event", extra={"reason": reason, "error": repr(exc)})
