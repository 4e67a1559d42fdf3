"""`/healthz` and `/metrics` of a persister pod.

Liveness says "the loop is alive", not "PostgreSQL is up": restarting a persister does
not fix a database outage, and the retry state is visible in the body and the metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def create_app(*, registry: CollectorRegistry, state: Callable[[], str]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        current = state()
        return web.json_response({"state": current}, status=503 if current == "stopped" else 200)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


@contextlib.asynccontextmanager
async def serve(
    *,
    port: int,
    registry: CollectorRegistry,
    state: Callable[[], str],
    host: str = "0.0.0.0",  # all interfaces: kubelet probes come from the node
) -> AsyncIterator[int | None]:
    """Serve the probes while the block runs; yields the bound port (None when port is 0 = off)."""
    if port == 0:
        yield None
        return
    runner = web.AppRunner(create_app(registry=registry, state=state), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield port
    finally:
        await runner.cleanup()
