"""/healthz and /metrics as a WSGI app (served by the standard library in processes)."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from tiktok_service.health_server import HealthServer, health_app


def call(app: Any, path: str) -> tuple[str, bytes]:
    status: list[str] = []
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
        "SERVER_NAME": "x",
        "SERVER_PORT": "1",
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], body


def test_healthz_reports_the_probe_and_its_verdict() -> None:
    registry = CollectorRegistry()
    assert call(health_app(lambda: (True, {"phase": "live"}), registry), "/healthz") == ("200 OK", b'{"phase": "live"}')
    status, _ = call(health_app(lambda: (False, {}), registry), "/healthz")
    assert status.startswith("503")


def test_metrics_exposes_the_given_registry_and_other_paths_are_404() -> None:
    registry = CollectorRegistry()
    Counter("things", "things counted", registry=registry).inc(3)
    status, body = call(health_app(lambda: (True, {}), registry), "/metrics")
    assert status == "200 OK" and b"things_total 3.0" in body
    assert call(health_app(lambda: (True, {}), registry), "/nope")[0].startswith("404")


async def test_healthz_answers_at_once_while_200_idle_connections_stay_open() -> None:
    server = HealthServer(host="127.0.0.1", port=_free_port(), probe=lambda: (True, {"phase": "live"}))
    await server.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        async with httpx.AsyncClient(timeout=1.0) as client:
            for _ in range(3):
                response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
                assert response.status_code == 200 and response.json() == {"phase": "live"}
    finally:
        for sock in idle:
            sock.close()
        await server.stop()


async def test_a_silent_connection_is_closed_after_the_read_timeout(monkeypatch: Any) -> None:
    from tiktok_service import health_server

    monkeypatch.setattr(health_server._QuietHandler, "timeout", 0.2)
    server = HealthServer(host="127.0.0.1", port=_free_port(), probe=lambda: (True, {}))
    await server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.settimeout(5)
        # The server closes the silent connection: recv returns EOF instead of timing out.
        assert await asyncio.to_thread(sock.recv, 1) == b""
        sock.close()
    finally:
        await server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
