"""The Kubernetes REST layer the operator and the API share: credentials, errors, one session.

A thin async client on aiohttp rather than the `kubernetes` package's synchronous client:
1,000 Livestreams reconcile concurrently in one event loop, and bodies are used as plain
dicts. Credentials come from `kubeconfig` (a kubeconfig file, or the in-cluster service
account). No kopf here: the API imports this without the operator's dependencies.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import orjson

from tiktok_service import kubeconfig
from tiktok_service.kubeconfig import Access, ExecCredential, KubeconfigError

__all__ = ["MERGE_PATCH", "ApiError", "Credentials", "KubeconfigError", "RestSession", "load_credentials"]

MERGE_PATCH: Final = "application/merge-patch+json"
_TOKEN_CACHE_S: Final = 60.0
# An exec plugin's credential is renewed this long before it expires (clock skew, request time).
_EXEC_MARGIN: Final = timedelta(seconds=30)


class ApiError(Exception):
    """A non-2xx answer; `reason` is the Status reason (AlreadyExists, Conflict, NotFound...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    """A path `SSLContext.load_cert_chain` can read, backed by memory (the root filesystem is read-only).

    Outside Linux (a developer's laptop) a private temporary file, removed once loaded.
    """
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "client.pem"
            path.write_bytes(data)
            yield str(path)
        return
    fd = os.memfd_create("kube-client-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@dataclass
class Credentials:
    """Where the API server is and how to authenticate; tokens are re-read when they rotate."""

    access: Access
    run_plugin: Callable[[kubeconfig.ExecPlugin], ExecCredential] = field(
        default=kubeconfig.run_exec_plugin, repr=False
    )
    _token: str | None = field(default=None, repr=False)
    _token_read_at: float = 0.0
    _exec: ExecCredential | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        return self.access.server

    def _exec_credential(self) -> ExecCredential:
        plugin = self.access.exec_plugin
        assert plugin is not None
        expires = self._exec.expires_at if self._exec is not None else None
        if self._exec is None or (expires is not None and datetime.now(UTC) + _EXEC_MARGIN >= expires):
            self._exec = self.run_plugin(plugin)
        return self._exec

    def forget_token(self) -> None:
        """Re-read a token file at the next `authorization()` (after the API server refused the token)."""
        self._token = None

    def authorization(self) -> str | None:
        """The Authorization header's value (token files re-read at most every minute), or None."""
        access = self.access
        if access.token_path is not None:
            if self._token is None or time.monotonic() - self._token_read_at > _TOKEN_CACHE_S:
                text = Path(access.token_path).read_text(encoding="utf-8").strip()
                self._token, self._token_read_at = f"Bearer {text}", time.monotonic()
            return self._token
        if access.token:
            return f"Bearer {access.token}"
        if access.exec_plugin is not None and (issued := self._exec_credential().token):
            return f"Bearer {issued}"
        if access.basic is not None:
            return "Basic " + base64.b64encode(":".join(access.basic).encode()).decode()
        return None

    def ssl_context(self) -> ssl.SSLContext | bool:
        access = self.access
        if not access.server.startswith("https:"):
            return False
        if not access.verify:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        else:
            cadata = access.ca_pem.decode() if access.ca_pem else None
            context = ssl.create_default_context(cafile=access.ca_path, cadata=cadata)
        cert_pem, key_pem = access.cert_pem, access.key_pem
        if access.exec_plugin is not None and not (access.cert_path or cert_pem):
            issued = self._exec_credential()
            cert_pem, key_pem = issued.cert_pem, issued.key_pem
        if access.cert_path:
            context.load_cert_chain(access.cert_path, access.key_path)
        elif cert_pem:
            with contextlib.ExitStack() as files:
                cert = files.enter_context(_pem_file(cert_pem))
                key = files.enter_context(_pem_file(key_pem)) if key_pem else None
                context.load_cert_chain(cert, key)
        return context


def load_credentials(path: Path | None) -> Credentials:
    """From a kubeconfig file, or in-cluster (service account) when `path` is None.

    Raises `KubeconfigError` with the reason when neither says how to reach the API server.
    """
    return Credentials(kubeconfig.from_file(path) if path is not None else kubeconfig.in_cluster())


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
