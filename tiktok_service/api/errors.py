"""Refusals with a stable reason code, and the handlers that keep upstream error text out of answers.

A client gets `{"detail": <our own words>, "reason": <code>}`: the code is what a program
branches on, the words are for people. What the Kubernetes API server, Redis or PostgreSQL
said goes to the log only: their messages name internal hosts, resources and roles, and
they change between versions (a client must not parse them).
"""

from __future__ import annotations

import logging
from typing import Final

import aiohttp
import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tiktok_service.api import kube
from tiktok_service.api import metrics as api_metrics

log = logging.getLogger(__name__)

# Reason codes (documented in the README's REST API section).
RATE_LIMITED: Final = "rate_limited"
LIVESTREAM_QUOTA: Final = "livestream_quota"
STREAM_QUOTA: Final = "stream_quota"
STREAM_CAPACITY: Final = "stream_capacity"
INVALID_LIVESTREAM: Final = "invalid_livestream"
CONFLICT: Final = "conflict"
KUBERNETES_UNAVAILABLE: Final = "kubernetes_unavailable"
REDIS_UNAVAILABLE: Final = "redis_unavailable"
DATABASE_UNAVAILABLE: Final = "database_unavailable"
UNAVAILABLE: Final = "unavailable"

_UNAVAILABLE_WORDS: Final = {
    KUBERNETES_UNAVAILABLE: "the Kubernetes API is unavailable; retry later",
    REDIS_UNAVAILABLE: "the event store (Redis) is unavailable; retry later",
    DATABASE_UNAVAILABLE: "the database is unavailable; retry later",
    UNAVAILABLE: "a service the API depends on is unavailable; retry later",
}
#: Exceptions that mean "a backing service did not answer": 503, never a stack trace. (Other
#: errors are bugs: a bare 500 without their text.)
UNAVAILABLE_ERRORS: Final = (
    aiohttp.ClientError,
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)


class Refusal(Exception):
    """A request the API refuses for a reason of its own (quota, rate, capacity, invalid spec)."""

    def __init__(self, status_code: int, reason: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status_code, self.reason, self.message, self.retry_after_s = status_code, reason, message, retry_after_s


def unavailable_reason(exc: BaseException) -> str:
    """Which backing service an exception comes from (pure: decided by its type)."""
    if isinstance(exc, RedisError):
        return REDIS_UNAVAILABLE
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return DATABASE_UNAVAILABLE
    if isinstance(exc, aiohttp.ClientError | kube.ApiError):
        return KUBERNETES_UNAVAILABLE
    return UNAVAILABLE


def answer(status_code: int, reason: str, message: str, *, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse({"detail": message, "reason": reason}, status_code=status_code, headers=headers)


def install(app: FastAPI, metrics: api_metrics.ApiMetrics) -> None:
    """Register the handlers on `app`; each refusal is counted by its reason."""

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        metrics.refusals.labels(exc.reason).inc()
        return answer(exc.status_code, exc.reason, exc.message, retry_after_s=exc.retry_after_s)

    async def kube_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, kube.ApiError)
        log.warning(
            "kubernetes refused a request",
            extra={"status": exc.status, "reason": exc.reason, "error": exc.message, "path": request.url.path},
        )
        if exc.status == 409:
            metrics.refusals.labels(CONFLICT).inc()
            return answer(
                status.HTTP_409_CONFLICT, CONFLICT, "the livestream changed while this request ran; try again"
            )
        metrics.refusals.labels(KUBERNETES_UNAVAILABLE).inc()
        return answer(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            KUBERNETES_UNAVAILABLE,
            _UNAVAILABLE_WORDS[KUBERNETES_UNAVAILABLE],
            retry_after_s=1,
        )

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        reason = unavailable_reason(exc)
        log.warning(
            "a backing service is unavailable", extra={"reason": reason, "error": repr(exc), "path": request.url.path}
        )
        metrics.refusals.labels(reason).inc()
        return answer(status.HTTP_503_SERVICE_UNAVAILABLE, reason, _UNAVAILABLE_WORDS[reason], retry_after_s=1)

    app.add_exception_handler(Refusal, refused)
    app.add_exception_handler(kube.ApiError, kube_error)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, unavailable)
