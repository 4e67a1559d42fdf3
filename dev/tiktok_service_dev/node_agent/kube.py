"""The agent's only door to the API server: JSON over httpx, objects as plain dicts.

Why not the ``kubernetes`` client: its calls block a thread, and a blocked watch cannot
be interrupted, so ``NodeAgent.stop()`` would wait out a watch timeout. Async httpx is
cancelled instantly. The kubeconfig is still parsed by the ``kubernetes`` package (into
a private ``Configuration``, never the global one), so every kubeconfig it accepts works.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import kubernetes

_MERGE_PATCH = "application/merge-patch+json"
# Watches stay open up to their server-side timeout; reads may block that long plus slack.
_WATCH_READ_SLACK_S = 15.0


class ApiError(Exception):
    """A non-2xx answer. ``status`` 404/409/410 drive decisions; the rest are retried."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, code: int, body: Mapping[str, Any] | None) -> ApiError:
        body = body or {}
        return cls(int(body.get("code") or code), str(body.get("reason") or ""), str(body.get("message") or ""))


class WatchHandle:
    """Ends a watch from another task without cancelling the task that reads it.

    Cancelling a task inside an httpx request can leak its socket (httpcore does not close a
    connection cancelled during its TLS handshake, nor a TLS stream whose close is cancelled).
    ``abort()`` instead closes the open response's connection at once, so the reader gets a
    ``httpx.ReadError``, or makes a watch not yet open return as soon as it opens.
    """

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.aborted = False

    async def abort(self) -> None:
        self.aborted = True
        if self.response is not None and (stream := self.response.extensions.get("network_stream")) is not None:
            await anyio.aclose_forcefully(stream)


class KubeApi:
    """Minimal async REST client: get, create, merge-patch, delete and watch."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @classmethod
    def from_kubeconfig(cls, path: Path, *, timeout_s: float = 10.0) -> KubeApi:
        """Client for the kubeconfig's current context (token or client-certificate auth)."""
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        headers = {"Accept": "application/json"}
        for key in ("BearerToken", "authorization"):
            if token := configuration.api_key.get(key):
                headers["Authorization"] = token
                break
        http = httpx.AsyncClient(
            base_url=configuration.host, verify=context, headers=headers, timeout=httpx.Timeout(timeout_s)
        )
        return cls(http)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body=body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, body=body, content_type=_MERGE_PATCH)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._call("DELETE", path, body=body)

    async def watch(
        self, path: str, params: Mapping[str, str], *, timeout_s: int, handle: WatchHandle | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events (``{"type", "object"}``) until the server ends the watch.

        Bounded by ``timeoutSeconds``; the caller reconnects from the last resourceVersion
        and relists on ``410 Gone`` (raised as ``ApiError``, whether as HTTP status or as
        an ``ERROR`` event). ``handle`` lets another task end the watch (``WatchHandle.abort``).
        """
        query = {**params, "watch": "true", "timeoutSeconds": str(timeout_s), "allowWatchBookmarks": "true"}
        timeout = httpx.Timeout(10.0, read=timeout_s + _WATCH_READ_SLACK_S)
        async with self._http.stream("GET", path, params=query, timeout=timeout) as response:
            if response.status_code != 200:
                raise ApiError.from_status(response.status_code, _json(await response.aread()))
            if handle is not None:
                if handle.aborted:
                    return
                handle.response = response
            try:
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise ApiError.from_status(500, event.get("object"))
                    yield event
            finally:
                if handle is not None:
                    handle.response = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        response = await self._http.request(method, path, params=params, content=content, headers=headers)
        payload = _json(response.content)
        if response.status_code >= 300:
            raise ApiError.from_status(response.status_code, payload)
        return payload or {}


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")
