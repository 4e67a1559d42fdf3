"""The Kubernetes REST layer the operator and the API share: credentials, errors, one session.

A thin async client on aiohttp rather than the `kubernetes` package's synchronous client:
1,000 Livestreams reconcile concurrently in one event loop, and bodies are used as plain
dicts. The `kubernetes` package is used only to read a kubeconfig (or the in-cluster
service account). No kopf here: the API imports this without the operator's dependencies.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

MERGE_PATCH: Final = "application/merge-patch+json"
_TOKEN_CACHE_S: Final = 60.0


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


class RestSession:
    """JSON requests to the API server over one pooled HTTPS session (`async with`)."""

    def __init__(self, credentials: Credentials, *, timeout_s: float, max_connections: int) -> None:
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
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The answer's JSON object ({} for an empty or non-object answer); `ApiError` on >= 400."""
        assert self._session is not None, f"use `async with {type(self).__name__}(...)`"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if token := self._credentials.authorization():
            headers["Authorization"] = token
        url = self._credentials.server.rstrip("/") + path
        data = orjson.dumps(body) if body is not None else None
        async with self._session.request(method, url, data=data, headers=headers, params=params or None) as response:
            raw = await response.read()
        try:
            payload = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            if response.status < 400:
                raise
            payload = {"message": raw[:200].decode(errors="replace")}  # a proxy's text or HTML error page
        payload = payload if isinstance(payload, dict) else {}
        if response.status >= 400:
            raise ApiError(response.status, str(payload.get("reason", "")), str(payload.get("message", "")))
        return payload
