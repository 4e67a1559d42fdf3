"""What routes declare they need, by type: `Annotated[..., Depends(...)]` aliases.

Everything comes from the lifespan's state (`request.state.api`); nothing is global.
`CurrentWorkspace` authenticates the request: a well-formed, known, unrevoked API key,
checked before any other input of the route is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tiktok_service.api import feeds, keys, kube, livestreams, metrics, repository
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


async def current_workspace(
    api: ApiResources, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The workspace of the request's API key; 401 for a missing, malformed, unknown or revoked key."""
    if credentials is None or not keys.well_formed(credentials.credentials):
        api.metrics.auth_failures.inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API key is required", headers=_UNAUTHORIZED)
    async with api.pool.acquire() as conn:
        workspace_id = await repository.workspace_of_key(conn, keys.digest(credentials.credentials))
    if workspace_id is None:
        api.metrics.auth_failures.inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers=_UNAUTHORIZED)
    return workspace_id


def livestream_service(api: ApiResources) -> livestreams.LivestreamService:
    return api.livestreams


def feeds_of(api: ApiResources) -> feeds.Feeds:
    return api.feeds


def settings_of(api: ApiResources) -> ApiSettings:
    return api.settings


CurrentWorkspace = Annotated[str, Depends(current_workspace)]
Livestreams = Annotated[livestreams.LivestreamService, Depends(livestream_service)]
Feeds = Annotated[feeds.Feeds, Depends(feeds_of)]
Settings = Annotated[ApiSettings, Depends(settings_of)]
