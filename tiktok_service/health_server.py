"""`/healthz` and `/metrics` for the long-running processes (connector, persister)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

HealthProbe = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """A tiny aiohttp app; `port=0` disables it (tests run many processes side by side)."""

    def __init__(self, *, host: str, port: int, probe: HealthProbe, registry: CollectorRegistry = REGISTRY) -> None:
        self._host = host
        self._port = port
        self._probe = probe
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self._port:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        healthy, details = self._probe()
        return web.json_response(details, status=200 if healthy else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
