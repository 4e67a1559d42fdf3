"""`create_app(settings)`: the FastAPI application; every resource is made in its lifespan.

Errors of the services behind the API (PostgreSQL, Redis, the Kubernetes API) become 503
with a reason code of our own (`api.errors`), never their text nor a stack trace; they are
the only expected 5xx besides a stream refused for capacity.

Redis is used through three pools, so that one use cannot starve another: the SSE pool
(one blocking read per streamed livestream, plus catch-up reads; new livestreams beyond
`sse_max_livestreams` are refused one by one), the control pool (rate limits, stream
leases, id lookups: short commands) and one connection for `/readyz`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_service.api import deps, errors, feeds, kube, livestreams, metrics, ratelimit, stream_guard
from tiktok_service.api.routes import events, health
from tiktok_service.api.routes import livestreams as livestream_routes
from tiktok_service.settings import ApiSettings

log = logging.getLogger(__name__)

_REDIS_POOL_TIMEOUT_S = 5.0
_CONTROL_POOL_TIMEOUT_S = 2.0
_READY_POOL_TIMEOUT_S = 1.0


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
        control_pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_control_pool_size, timeout=_CONTROL_POOL_TIMEOUT_S
        )
        ready_pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=1, timeout=_READY_POOL_TIMEOUT_S
        )
        redis = aioredis.Redis(connection_pool=redis_pool)
        control = aioredis.Redis(connection_pool=control_pool)
        ready = aioredis.Redis(connection_pool=ready_pool)
        try:
            async with kube.LivestreamsApi(
                credentials, settings.namespace, timeout_s=settings.kube_timeout_s
            ) as kube_api:
                service = livestreams.LivestreamService(
                    kube_api, pool, control, max_livestreams=settings.max_livestreams_per_workspace
                )
                feed_settings = feeds.FeedSettings(
                    block_ms=settings.sse_block_ms,
                    batch=settings.sse_batch,
                    ring_size=settings.sse_ring_size,
                    ping_interval_s=settings.sse_ping_interval_s,
                    phase_check_s=settings.sse_phase_check_s,
                    retry_ms=settings.sse_retry_ms,
                    writes_per_s=settings.sse_writes_per_s,
                    max_readers=settings.sse_reader_cap,
                )
                all_feeds = feeds.Feeds(redis, feed_settings, end_check=service.end_reason, metrics=api_metrics)
                limiter = ratelimit.RateLimiter(settings.redis_url, control_pool, settings.rate_limit, api_metrics)
                guard = stream_guard.StreamGuard(
                    control,
                    pool,
                    workspace_limit=settings.max_streams_per_workspace,
                    key_limit=settings.max_streams_per_key,
                    lease_s=settings.stream_lease_s,
                    recheck_s=settings.key_recheck_s,
                    metrics=api_metrics,
                )
                async with all_feeds.running(), guard.running():
                    lifecycle.feeds = all_feeds
                    resources = deps.Resources(
                        settings, pool, redis, kube_api, service, all_feeds, api_metrics, limiter, guard, ready
                    )
                    try:
                        yield {"api": resources}
                    finally:
                        lifecycle.feeds = None
        finally:
            for client in (redis, control, ready):
                await client.aclose()
            for redis_connections in (redis_pool, control_pool, ready_pool):
                await redis_connections.aclose()
            await pool.close()

    app = FastAPI(
        title="TikTok Service API",
        version="0.1.0",
        description="Livestreams of one workspace per API key: connect, follow live (SSE), read history.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.lifecycle = lifecycle
    app.include_router(livestream_routes.router)
    app.include_router(events.router)
    app.include_router(health.router)
    app.add_middleware(MetricsMiddleware, api_metrics=api_metrics)
    errors.install(app, api_metrics)
    return app


def begin_shutdown(app: FastAPI) -> None:
    """Close every SSE stream now (the server calls this before waiting for open requests)."""
    lifecycle: Lifecycle = app.state.lifecycle
    if lifecycle.feeds is not None:
        lifecycle.feeds.close()


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
