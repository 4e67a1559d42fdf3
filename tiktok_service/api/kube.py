"""The API's Kubernetes calls: Livestreams in one namespace, nothing else.

Built on the `kube_rest` layer the operator also uses (no kopf). Every call is one of the
verbs `deploy/api-rbac.yaml` grants: get, list, create, patch, delete on `livestreams`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from tiktok_service.domain.livestream import API_VERSION, PLURAL
from tiktok_service.kube_rest import MERGE_PATCH, ApiError, Credentials, RestSession, load_credentials

__all__ = ["ApiError", "Credentials", "LivestreamsApi", "load_credentials"]

log = logging.getLogger(__name__)

_LIST_CHUNK: Final = 500


class LivestreamsApi(RestSession):
    """Livestream resources of one namespace over one HTTPS session."""

    def __init__(self, credentials: Credentials, namespace: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(credentials, timeout_s=timeout_s, max_connections=32)
        self.namespace = namespace
        self._base = f"/apis/{API_VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}"

    async def _livestreams(
        self,
        method: str,
        path: str = "",
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return await self._request(method, self._base + path, body=body, content_type=content_type, params=params)

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create; raises ApiError(409, "AlreadyExists") when the name is taken."""
        return await self._livestreams("POST", body=body)

    async def get(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._livestreams("GET", "/" + quote(name, safe=""))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        """Every Livestream matching the selector (read in chunks, so a big list is not one huge answer)."""
        items: list[dict[str, Any]] = []
        params = {"labelSelector": label_selector, "limit": str(_LIST_CHUNK)}
        while True:
            answer = await self._livestreams("GET", params=params)
            items += answer.get("items") or []
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {**params, "continue": token}

    async def patch_spec(self, name: str, uid: str, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the spec of the Livestream `name` only if it is still `uid`; None when gone or replaced."""
        body = {"metadata": {"uid": uid}, "spec": dict(spec)}
        try:
            return await self._livestreams("PATCH", "/" + quote(name, safe=""), body=body, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status in {404, 409}:
                return None
            raise

    async def delete(self, name: str, uid: str) -> bool:
        """Delete the Livestream `name` only if it is still `uid`; False when it is already gone or replaced."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self._livestreams("DELETE", "/" + quote(name, safe=""), body=options)
        except ApiError as exc:
            if exc.status in {404, 409}:
                return False
            raise
        return True

    async def ping(self) -> None:
        """Raises unless the API server answers a one-item list (which also checks our RBAC)."""
        await self._livestreams("GET", params={"limit": "1"})
