"""The operator's one Kubernetes client layer: pods, Livestream status, Events, credentials.

A thin async REST client on aiohttp rather than the `kubernetes` package's synchronous
client: 1,000 Livestreams reconcile concurrently in one event loop, and the responses
are used as plain dicts (what `desired` builds and `model.observe_pod` reads). kopf logs
in with the same credentials (`connection_info`), so the watch streams and these calls
share one identity and one set of RBAC rules.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import kopf
import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tiktok_service.operator import model

log = logging.getLogger(__name__)

_TOKEN_CACHE_S: Final = 60.0
_MERGE_PATCH: Final = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; `reason` is the Status reason (AlreadyExists, Conflict, NotFound...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@dataclass
class Credentials:
    """Where the API server is and how to authenticate; the token is re-read when it rotates."""

    server: str
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    verify: bool = True
    _configuration: k8s_client.Configuration | None = field(default=None, repr=False)
    _token: str | None = field(default=None, repr=False)
    _token_read_at: float = 0.0

    def authorization(self) -> str | None:
        """`Bearer <token>` (refreshed at most every minute: in-cluster tokens rotate), or None."""
        if self._configuration is None:
            return self._token
        if self._token is None or time.monotonic() - self._token_read_at > _TOKEN_CACHE_S:
            value = self._configuration.get_api_key_with_prefix("BearerToken")
            self._token, self._token_read_at = value, time.monotonic()
        return self._token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.verify:
            return False
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def kopf_session(self, *, max_connections: int) -> kopf.AiohttpSession:
        """kopf's own HTTP session (its watches, finalizer patches), with a bounded connection pool.

        kopf's built-in session has no limit: a burst of new Livestreams opens a TLS connection
        per concurrent finalizer patch (a handshake each, on both sides, and a 256 KiB read
        buffer each, kept alive after the burst). Call from the event loop; kopf closes it.
        """
        token = self.authorization()
        connector = aiohttp.TCPConnector(ssl=self.ssl_context(), limit=max_connections)
        session = aiohttp.ClientSession(connector=connector, headers={"Authorization": token} if token else None)
        return kopf.AiohttpSession(server=self.server, aiohttp_session=session)

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same identity for kopf's own watches (returned by the operator's login handler)."""
        token = self.authorization()
        return kopf.ConnectionInfo(
            server=self.server,
            ca_path=self.ca_path,
            insecure=not self.verify,
            scheme="Bearer" if token else None,
            token=token.split(" ", 1)[-1] if token else None,
            certificate_path=self.cert_path,
            private_key_path=self.key_path,
        )


def load_credentials(kubeconfig: Path | None) -> Credentials:
    """From a kubeconfig file, or in-cluster (service account) when `kubeconfig` is None."""
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


class KubeClient:
    """Pods, Livestream status and Events over one pooled HTTPS session."""

    def __init__(self, credentials: Credentials, *, timeout_s: float = 30.0, max_connections: int = 64) -> None:
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context(), limit=self._max_connections)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json", **params: str
    ) -> dict[str, Any]:
        assert self._session is not None, "use `async with KubeClient(...)`"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if token := self._credentials.authorization():
            headers["Authorization"] = token
        url = self._credentials.server.rstrip("/") + path
        data = orjson.dumps(body) if body is not None else None
        async with self._session.request(method, url, data=data, headers=headers, params=params or None) as response:
            raw = await response.read()
            if response.status >= 400:
                try:
                    payload = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:  # a proxy's text or HTML error page
                    payload = {"message": raw[:200].decode(errors="replace")}
                payload = payload if isinstance(payload, dict) else {}
                raise ApiError(response.status, str(payload.get("reason", "")), str(payload.get("message", "")))
            decoded: dict[str, Any] = orjson.loads(raw) if raw else {}
            return decoded

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
            return await self._request("PATCH", path, body={"status": dict(patch)}, content_type=_MERGE_PATCH)
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
