"""`/healthz` and `/metrics` for the long-running processes (connector, persister).

A WSGI app on the standard library's server in a daemon thread: a connector pod runs one
of these per room, and an asyncio web framework would cost it ~10 MB of RSS for two URLs.
The probe only reads a snapshot the process keeps up to date, so thread safety is trivial.

The server cannot be wedged by a client: each connection is served by its own (daemon)
thread, so a connection that sends nothing never holds up the kubelet's probe, and a
connection idle for `read_timeout_s` is closed, so idle sockets cannot pile up threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

HealthProbe = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


#: Seconds a connection may stay silent before it is closed (probes send their request at once).
READ_TIMEOUT_S = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT_S  # socketserver applies it to the connection's socket

    def log_message(self, format: str, *args: Any) -> None:
        """Probes hit these URLs every few seconds; access logs would drown the JSON logs."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One daemon thread per connection: a slow or silent client delays only itself."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog (socketserver's default of 5 drops bursts of connects)


def health_app(
    probe: HealthProbe, registry: CollectorRegistry
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            healthy, details = probe()
            body = json.dumps(details, default=str).encode()
            start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        if environ.get("PATH_INFO") == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class HealthServer:
    """`port=0` disables it (tests run many processes side by side)."""

    def __init__(self, *, host: str, port: int, probe: HealthProbe, registry: CollectorRegistry = REGISTRY) -> None:
        self._host = host
        self._port = port
        self._app = health_app(probe, registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else 0

    async def start(self) -> None:
        if not self._port:
            return
        self._server = make_server(
            self._host, self._port, self._app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
