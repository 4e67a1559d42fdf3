"""`create_app(settings)`: the FastAPI application; every resource is made in its lifespan.

Errors of the services behind the API (PostgreSQL, Redis, the Kubernetes API) become 503
with what failed, never a stack trace; they are the only expected 5xx.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_service.api import deps, feeds, kube, livestreams, metrics
from tiktok_service.api.routes import events, health
from tiktok_service.api.routes import livestreams as livestream_routes
from tiktok_service.settings import ApiSettings

log = logging.getLogger(__name__)

_REDIS_POOL_TIMEOUT_S = 5.0


@dataclass
class Lifecycle:
    """Lets the server begin a shutdown in the app (close SSE streams) before it waits for them."""

    feeds: feeds.Feeds | None = None


def create_app(settings: ApiSettings, *, registry: CollectorRegistry | None = None) -> FastAPI:
    api_metrics = metrics.ApiMetrics(registry if registry is not None else CollectorRegistry())
    lifecycle = Lifecycle()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        credentials = kube.load_credentials(settings.kubeconfig)
        pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=settings.database_pool_size)
        redis_pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_pool_size, timeout=_REDIS_POOL_TIMEOUT_S
        )
        redis = aioredis.Redis(connection_pool=redis_pool)
        try:
            async with kube.LivestreamsApi(
                credentials, settings.namespace, timeout_s=settings.kube_timeout_s
            ) as kube_api:
                service = livestreams.LivestreamService(kube_api, pool)
                feed_settings = feeds.FeedSettings(
                    block_ms=settings.sse_block_ms,
                    batch=settings.sse_batch,
                    ring_size=settings.sse_ring_size,
                    ping_interval_s=settings.sse_ping_interval_s,
                    phase_check_s=settings.sse_phase_check_s,
                    retry_ms=settings.sse_retry_ms,
                    writes_per_s=settings.sse_writes_per_s,
                )
                all_feeds = feeds.Feeds(redis, feed_settings, end_check=service.end_reason, metrics=api_metrics)
                async with all_feeds.running():
                    lifecycle.feeds = all_feeds
                    resources = deps.Resources(settings, pool, redis, kube_api, service, all_feeds, api_metrics)
                    try:
                        yield {"api": resources}
                    finally:
                        lifecycle.feeds = None
        finally:
            await redis.aclose()
            await redis_pool.aclose()
            await pool.close()

    app = FastAPI(
        title="TikTok Service API",
        version="0.1.0",
        description="Livestreams of one workspace per API key: connect, follow live (SSE), read history.",
        lifespan=lifespan,
    )
    app.state.lifecycle = lifecycle
    app.include_router(livestream_routes.router)
    app.include_router(events.router)
    app.include_router(health.router)
    app.add_middleware(MetricsMiddleware, api_metrics=api_metrics)
    app.add_exception_handler(kube.ApiError, _kube_error)
    for unavailable in (
        aiohttp.ClientError,
        TimeoutError,
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        RedisConnectionError,
        RedisTimeoutError,
    ):
        app.add_exception_handler(unavailable, _unavailable)
    return app


def begin_shutdown(app: FastAPI) -> None:
    """Close every SSE stream now (the server calls this before waiting for open requests)."""
    lifecycle: Lifecycle = app.state.lifecycle
    if lifecycle.feeds is not None:
        lifecycle.feeds.close()


async def _kube_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, kube.ApiError)
    log.warning("kubernetes refused a request", extra={"status": exc.status, "reason": exc.reason})
    if exc.status == 409:
        return JSONResponse({"detail": exc.message}, status_code=status.HTTP_409_CONFLICT)
    return JSONResponse(
        {"detail": f"the Kubernetes API answered {exc.status} {exc.reason}"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("a backing service is unavailable", extra={"error": repr(exc)})
    return JSONResponse(
        {"detail": f"a backing service is unavailable ({type(exc).__name__})"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


class MetricsMiddleware:
    """Counts requests and the time to their response headers, by route template (never by id)."""

    def __init__(self, app: ASGIApp, api_metrics: metrics.ApiMetrics) -> None:
        self.app = app
        self.metrics = api_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(scope["method"], route, str(message["status"])).inc()
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_and_count)
