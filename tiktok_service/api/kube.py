"""The API's one Kubernetes client layer: Livestreams in one namespace, nothing else.

Mirrors the operator's `k8s` layer (aiohttp, plain dicts, one pooled session) without
importing kopf. Every call is one of the verbs `deploy/api-rbac.yaml` grants: get, list,
create, patch, delete on `livestreams`.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tiktok_service.operator import model

log = logging.getLogger(__name__)

_TOKEN_CACHE_S: Final = 60.0
_MERGE_PATCH: Final = "application/merge-patch+json"
_LIST_CHUNK: Final = 500


class KubeError(Exception):
    """A non-2xx answer; `reason` is the Status reason (AlreadyExists, Conflict, NotFound...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@dataclass
class Credentials:
    server: str
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    verify: bool = True
    _configuration: k8s_client.Configuration | None = field(default=None, repr=False)
    _token: str | None = field(default=None, repr=False)
    _token_read_at: float = 0.0

    def authorization(self) -> str | None:
        """`Bearer <token>`, re-read at most every minute (in-cluster tokens rotate)."""
        if self._configuration is None:
            return self._token
        if self._token is None or time.monotonic() - self._token_read_at > _TOKEN_CACHE_S:
            self._token = self._configuration.get_api_key_with_prefix("BearerToken")
            self._token_read_at = time.monotonic()
        return self._token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.verify:
            return False
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context


def load_credentials(kubeconfig: Path | None) -> Credentials:
    """From a kubeconfig file, or in-cluster (the pod's service account) when `kubeconfig` is None."""
    configuration = k8s_client.Configuration()
    if kubeconfig is not None:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return Credentials(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        cert_path=configuration.cert_file,
        key_path=configuration.key_file,
        verify=bool(configuration.verify_ssl),
        _configuration=configuration,
    )


class LivestreamsApi:
    """Livestream resources of one namespace over one HTTPS session."""

    def __init__(self, credentials: Credentials, namespace: str, *, timeout_s: float = 10.0) -> None:
        self._credentials = credentials
        self.namespace = namespace
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._base = f"/apis/{model.API_VERSION}/namespaces/{quote(namespace, safe='')}/{model.PLURAL}"

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context(), limit=32)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str = "",
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        assert self._session is not None, "use `async with LivestreamsApi(...)`"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if token := self._credentials.authorization():
            headers["Authorization"] = token
        url = self._credentials.server.rstrip("/") + self._base + path
        async with self._session.request(method, url, json=body, headers=headers, params=params) as response:
            payload: Any = await response.json(content_type=None) if response.content_length != 0 else {}
            if response.status >= 400:
                payload = payload if isinstance(payload, dict) else {}
                raise KubeError(response.status, str(payload.get("reason", "")), str(payload.get("message", "")))
            return payload if isinstance(payload, dict) else {}

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create; raises KubeError(409, "AlreadyExists") when the name is taken."""
        return await self._request("POST", body=body)

    async def get(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", "/" + quote(name, safe=""))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        """Every Livestream matching the selector (read in chunks, so a big list is not one huge answer)."""
        items: list[dict[str, Any]] = []
        params = {"labelSelector": label_selector, "limit": str(_LIST_CHUNK)}
        while True:
            answer = await self._request("GET", params=params)
            items += answer.get("items") or []
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {**params, "continue": token}

    async def patch_spec(self, name: str, uid: str, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the spec of the Livestream `name` only if it is still `uid`; None when gone or replaced."""
        body = {"metadata": {"uid": uid}, "spec": dict(spec)}
        try:
            return await self._request("PATCH", "/" + quote(name, safe=""), body=body, content_type=_MERGE_PATCH)
        except KubeError as exc:
            if exc.status in {404, 409}:
                return None
            raise

    async def delete(self, name: str, uid: str) -> bool:
        """Delete the Livestream `name` only if it is still `uid`; False when it is already gone or replaced."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self._request("DELETE", "/" + quote(name, safe=""), body=options)
        except KubeError as exc:
            if exc.status in {404, 409}:
                return False
            raise
        return True

    async def ping(self) -> None:
        """Raises unless the API server answers a one-item list (which also checks our RBAC)."""
        await self._request("GET", params={"limit": "1"})
