"""What routes declare they need, by type: `Annotated[..., Depends(...)]` aliases.

Everything comes from the lifespan's state (`request.state.api`); nothing is global.
`CurrentWorkspace` authenticates the request: a well-formed, known, unrevoked API key,
checked before any other input of the route is looked at. The key's request rate is counted
before it is looked up (429 with Retry-After beyond `API_RATE_LIMIT`), so a flood with one
key never reaches PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tiktok_service.api import (
    errors,
    feeds,
    keys,
    kube,
    livestreams,
    metrics,
    quotas,
    ratelimit,
    repository,
    schema_check,
    stream_guard,
)
from tiktok_service.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class Resources:
    """What the lifespan built; one per app."""

    settings: ApiSettings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    kube: kube.LivestreamsApi
    livestreams: livestreams.LivestreamService
    feeds: feeds.Feeds
    metrics: metrics.ApiMetrics
    rate_limiter: ratelimit.RateLimiter
    streams: stream_guard.StreamGuard
    #: A connection of its own for /readyz: streams cannot take it away.
    ready_redis: aioredis.Redis
    #: For /readyz: the database holds the migrations this code needs (kept once true).
    schema: schema_check.SchemaCheck = field(default_factory=schema_check.SchemaCheck)


def resources(request: Request) -> Resources:
    found: Resources = request.state.api
    return found


ApiResources = Annotated[Resources, Depends(resources)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`tsk_...`) made with `tiktok-service api-keys create`; it is scoped to one workspace.",
)
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the workspace, and the key's SHA-256 (what stream quotas and revocation follow)."""

    workspace_id: str
    key_digest: bytes


async def current_caller(
    api: ApiResources, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The request's API key and its workspace; 401 for a missing, malformed, unknown or revoked key, 429 too fast."""
    if credentials is None or not keys.well_formed(credentials.credentials):
        api.metrics.auth_failures.inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API key is required", headers=_UNAUTHORIZED)
    digest = keys.digest(credentials.credentials)
    retry_after = await api.rate_limiter.retry_after(quotas.key_id(digest))
    if retry_after is not None:
        raise errors.Refusal(
            status.HTTP_429_TOO_MANY_REQUESTS,
            errors.RATE_LIMITED,
            f"too many requests with this API key (limit {api.settings.rate_limit}); retry in {retry_after} s",
            retry_after_s=retry_after,
        )
    async with api.pool.acquire() as conn:
        workspace_id = await repository.workspace_of_key(conn, digest)
    if workspace_id is None:
        api.metrics.auth_failures.inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers=_UNAUTHORIZED)
    return Caller(workspace_id, digest)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def current_workspace(caller: CurrentCaller) -> str:
    """The workspace of the request's API key (see `current_caller`)."""
    return caller.workspace_id


def livestream_service(api: ApiResources) -> livestreams.LivestreamService:
    return api.livestreams


def feeds_of(api: ApiResources) -> feeds.Feeds:
    return api.feeds


def settings_of(api: ApiResources) -> ApiSettings:
    return api.settings


def streams_of(api: ApiResources) -> stream_guard.StreamGuard:
    return api.streams


CurrentWorkspace = Annotated[str, Depends(current_workspace)]
Livestreams = Annotated[livestreams.LivestreamService, Depends(livestream_service)]
Feeds = Annotated[feeds.Feeds, Depends(feeds_of)]
Settings = Annotated[ApiSettings, Depends(settings_of)]
Streams = Annotated[stream_guard.StreamGuard, Depends(streams_of)]
