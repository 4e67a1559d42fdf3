"""`/api/livestreams`: connect, list, read, disconnect, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from tiktok_service.api import deps, livestreams, resources, schemas
from tiktok_service.api.routes import common
from tiktok_service.domain.livestream import Phase

router = APIRouter(prefix="/api/livestreams", tags=["livestreams"], responses=common.AUTH_RESPONSES)


@router.post(
    "/connect",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": schemas.LivestreamConnected, "description": "The workspace was already connected to that user."},
        403: {
            "description": "`workspace_id` is not the API key's workspace, or a Secret named is not its own "
            "(`<workspace id>--<name>`; workspace ids other than lower-case words joined by dashes own none); "
            "or `livestream_quota`: the workspace has its most active livestreams (`reason` says which)."
        },
    },
)
async def connect(
    body: schemas.LivestreamCreate, workspace_id: deps.CurrentWorkspace, service: deps.Livestreams, response: Response
) -> schemas.LivestreamConnected:
    """Create the Livestream resource (the operator starts its connector); idempotent per workspace and user.

    An existing Livestream of the same workspace and user (usernames match case-insensitively)
    is returned with `created: false` and status 200; if it was disconnected (Stopped or
    Paused) it is set Running again (`resumed: true`). Options the request carries (connection
    options, `wait_for_live`, `event_types`) replace the existing ones, each option whole
    (`reconfigured: true`; the connector restarts with them); options it leaves out stay.
    """
    try:
        connected = await service.connect(workspace_id, body)
    except livestreams.WrongWorkspace as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except livestreams.Invalid as exc:
        raise common.unprocessable(str(exc), ("body",)) from exc
    if not connected.created:
        response.status_code = status.HTTP_200_OK
    return connected


@router.get("")
async def list_livestreams(
    workspace_id: deps.CurrentWorkspace,
    service: deps.Livestreams,
    settings: deps.Settings,
    phase: Annotated[
        list[Phase] | None, Query(description="Only these phases (repeatable); absent = active livestreams only.")
    ] = None,
    username: Annotated[str | None, Query(pattern=resources.USERNAME_PATTERN)] = None,
    cursor: Annotated[str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=common.PAGE_LIMIT_MAX)] = None,
) -> schemas.LivestreamsPage:
    """The workspace's livestreams, newest first.

    Active means wanted Running and not Stopped, Ended or Failed; pass `phase` (e.g.
    `phase=Stopped&phase=Ended`) to see others.
    """
    try:
        return await service.page(
            workspace_id,
            phases={p.value for p in phase} if phase else None,
            username=username,
            cursor=cursor,
            limit=limit or settings.page_size,
        )
    except ValueError as exc:
        raise common.unprocessable(str(exc), ("query", "cursor")) from exc


@router.get("/{livestream_id}", responses=common.NOT_FOUND_RESPONSES)
async def get_livestream(
    livestream_id: uuid.UUID, workspace_id: deps.CurrentWorkspace, service: deps.Livestreams
) -> schemas.LivestreamDetail:
    """One livestream with its full status."""
    found = await service.get(workspace_id, livestream_id)
    if found is None:
        raise common.not_found()
    return found


@router.post("/{livestream_id}/disconnect", responses=common.NOT_FOUND_RESPONSES)
async def disconnect(
    livestream_id: uuid.UUID, workspace_id: deps.CurrentWorkspace, service: deps.Livestreams
) -> schemas.LivestreamDetail:
    """Set the Livestream Stopped: its connector goes away; the resource, its status and its events stay."""
    stopped = await service.disconnect(workspace_id, livestream_id)
    if stopped is None:
        raise common.not_found()
    return stopped


@router.delete("/{livestream_id}", status_code=status.HTTP_204_NO_CONTENT, responses=common.NOT_FOUND_RESPONSES)
async def delete_livestream(
    livestream_id: uuid.UUID, workspace_id: deps.CurrentWorkspace, service: deps.Livestreams
) -> Response:
    """Delete the Livestream resource (its stored events stay available through the history)."""
    if not await service.delete(workspace_id, livestream_id):
        raise common.not_found()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
