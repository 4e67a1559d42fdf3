"""/healthz and /metrics as a WSGI app (served by the standard library in processes)."""

from __future__ import annotations

import io
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from tiktok_service.health_server import health_app


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
