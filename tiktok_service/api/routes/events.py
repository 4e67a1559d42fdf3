"""`/api/livestreams/{id}/events`: live (SSE from Redis) and stored (pages from PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.sse import EventSourceResponse
from starlette.responses import StreamingResponse

from tiktok_service.api import deps, errors, schemas, sse, stream_guard
from tiktok_service.api.routes import common
from tiktok_service.domain.events import EventType

router = APIRouter(prefix="/api/livestreams", tags=["events"], responses=common.AUTH_RESPONSES)

Types = Annotated[list[EventType] | None, Query(description="Only these event types (repeatable); absent = all.")]
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_CAPACITY_RETRY_S = 5


class _EventStream(StreamingResponse):
    """Documents the route as `text/event-stream` in OpenAPI.

    The route returns FastAPI's `EventSourceResponse` itself: declaring that class as the
    route's response class would switch FastAPI to its one-item-per-event generator mode,
    which formats and sends each event to each subscriber separately; here every event is
    encoded once and a subscriber's batch goes out in one write (see `api.sse`).
    """

    media_type = "text/event-stream"


_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `id` (stream entry id), `event` (type), `data` (CloudEvent JSON).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **common.NOT_FOUND_RESPONSES,
    429: {"description": "`rate_limited`, or `stream_quota`: the workspace or key has its most open streams."},
    503: {"description": "`stream_capacity`: this server streams its most livestreams; retry after Retry-After."},
}


@router.get("/{livestream_id}/events", response_class=_EventStream, responses=_SSE_RESPONSES)
async def stream_events(
    livestream_id: uuid.UUID,
    caller: deps.CurrentCaller,
    service: deps.Livestreams,
    all_feeds: deps.Feeds,
    guard: deps.Streams,
    types: Types = None,
    last_event_id: Annotated[
        str | None,
        Query(pattern=sse.LAST_EVENT_ID_PATTERN, description="Resume after this id (`0` = from the start)."),
    ] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=sse.LAST_EVENT_ID_PATTERN, include_in_schema=False)
    ] = None,
) -> EventSourceResponse:
    """Server-sent events of the livestream as they happen.

    Each event's `id` is its Redis stream entry id, `event` its type and `data` the CloudEvent.
    Reconnect with `Last-Event-ID` (header, as EventSource does, or the `last_event_id`
    query parameter) to continue exactly after that event; without one the stream starts
    with the next event. Comment lines keep idle streams open. The stream ends with an
    `end` event (`{"reason": "live_end" | "stopped" | "ended" | "failed" | "deleted"}`) when
    the livestream does; it closes without one at server shutdown (reconnect then). When the
    API key is revoked the stream ends within seconds with an `end` event of reason `revoked`.
    """
    if await service.find(caller.workspace_id, livestream_id) is None:
        raise common.not_found()
    if all_feeds.closing:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "shutting down", headers={"Retry-After": "1"})
    resume = last_event_id_header or last_event_id
    try:
        after = sse.parse_id(resume) if resume is not None else None
    except ValueError as exc:
        raise common.unprocessable(str(exc), ("header", "Last-Event-ID")) from exc
    if not all_feeds.admits(str(livestream_id)):
        raise errors.Refusal(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            errors.STREAM_CAPACITY,
            "this server streams as many livestreams as it can; retry later",
            retry_after_s=_CAPACITY_RETRY_S,
        )
    ticket = await guard.admit(caller.workspace_id, caller.key_digest)
    wanted = frozenset(t.value for t in types) if types else None
    return stream_guard.GuardedEventStream(
        all_feeds.stream(str(livestream_id), after, wanted), guard=guard, ticket=ticket, headers=_SSE_HEADERS
    )


@router.get("/{livestream_id}/events/history", responses=common.NOT_FOUND_RESPONSES)
async def events_history(
    livestream_id: uuid.UUID,
    workspace_id: deps.CurrentWorkspace,
    service: deps.Livestreams,
    settings: deps.Settings,
    types: Types = None,
    since: Annotated[dt.datetime | None, Query(description="Events at or after this time (inclusive).")] = None,
    until: Annotated[dt.datetime | None, Query(description="Events before this time (exclusive).")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=common.PAGE_LIMIT_MAX)] = None,
) -> schemas.EventsPage:
    """Stored events in time order, one page at a time (times without a zone are UTC)."""
    if not await service.owns_history(workspace_id, livestream_id):
        raise common.not_found()
    try:
        return await service.history(
            livestream_id,
            cursor=cursor,
            limit=limit or settings.page_size,
            types=[t.value for t in types] if types else None,
            since=_utc(since),
            until=_utc(until),
        )
    except ValueError as exc:
        raise common.unprocessable(str(exc), ("query", "cursor")) from exc


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment
