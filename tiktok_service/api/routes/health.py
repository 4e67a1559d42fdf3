"""`/healthz` (the process serves), `/readyz` (its dependencies answer), `/metrics`.

Unauthenticated, for probes and Prometheus; they reveal nothing about any workspace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tiktok_service.api import deps, repository, schema_check, schemas

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S: Final = 2.0


@router.get("/healthz")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


_OUTDATED: Final = "schema_outdated"


@router.get(
    "/readyz",
    responses={
        503: {"model": schemas.Health, "description": "A dependency does not answer, or the schema is not migrated."}
    },
)
async def readyz(api: deps.ApiResources, response: Response) -> schemas.Health:
    """PostgreSQL (with the migrations this code needs), Redis and the Kubernetes API (a one-item list of
    Livestreams: our RBAC too)."""

    async def postgres() -> None:
        async with api.pool.acquire() as conn:
            await repository.ping(conn)
            await api.schema(conn)

    async def redis() -> None:
        await api.ready_redis.ping()  # its own connection: a full SSE pool does not make the API unready

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "postgresql": postgres,
        "redis": redis,
        "kubernetes": api.kube.ping,
    }
    results = await asyncio.gather(*(_check(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    ready = all(result == "ok" for result in results)
    if ready:
        return schemas.Health(status="ok", checks=report)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    reason = schema_check.SCHEMA_OUTDATED if _OUTDATED in results else "dependency_unavailable"
    return schemas.Health(status="unavailable", checks=report, reason=reason)


async def _check(check: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            await check()
    except schema_check.SchemaOutdatedError as exc:
        log.warning("not ready: the database schema is outdated", extra={"missing": exc.missing})
        return _OUTDATED
    except Exception as exc:  # any failure means "not ready"; what failed is logged, not answered
        log.warning("readiness check failed", extra={"check": getattr(check, "__name__", "?"), "error": repr(exc)})
        return "unavailable"
    return "ok"


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(api: deps.ApiResources) -> Response:
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)
