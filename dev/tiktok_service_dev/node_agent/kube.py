"""The agent's only door to the API server: JSON over httpx, objects as plain dicts.

Credentials and errors are the product's REST layer's (`tiktok_service.kube_rest`: the
kubeconfig parsed by the ``kubernetes`` package into a private ``Configuration``, the
token re-read as it rotates, `ApiError`). The transport is httpx rather than that layer's
aiohttp session because the agent must end a watch from another task at once
(``WatchHandle``): httpx exposes the open response's stream to close it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx

from tiktok_service.kube_rest import MERGE_PATCH, ApiError, Credentials, load_credentials

# Watches stay open up to their server-side timeout; reads may block that long plus slack.
_WATCH_READ_SLACK_S = 15.0


def api_error(code: int, body: Mapping[str, Any] | None) -> ApiError:
    """A non-2xx answer (or a watch's ``ERROR`` event). ``status`` 404/409/410 drive decisions."""
    body = body or {}
    return ApiError(int(body.get("code") or code), str(body.get("reason") or ""), str(body.get("message") or ""))


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
        credentials = load_credentials(path)
        http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=credentials.ssl_context(),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            event_hooks={"request": [_authorizer(credentials)]},
        )
        return cls(http)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body=body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

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
                raise api_error(response.status_code, _json(await response.aread()))
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
                        raise api_error(500, event.get("object"))
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
            raise api_error(response.status_code, payload)
        return payload or {}


def _authorizer(credentials: Credentials) -> Callable[[httpx.Request], Awaitable[None]]:
    """A request hook setting the bearer token (when the kubeconfig has one) on every request."""

    async def authorize(request: httpx.Request) -> None:
        if token := credentials.authorization():
            request.headers["Authorization"] = token

    return authorize


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")
