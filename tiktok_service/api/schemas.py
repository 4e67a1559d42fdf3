"""What the API takes (`*Create`) and gives (`*Public`): split by direction, validated at the edge.

Inputs reject unknown fields and anything the CRD would reject, so a bad request gets a
422 naming the field instead of a Kubernetes error, and nothing unchecked reaches
Kubernetes, Redis or SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tiktok_service.api import resources
from tiktok_service.domain.events import EventType

Username = Annotated[
    str,
    Field(pattern=resources.USERNAME_PATTERN, description="TikTok @unique_id without the @ (as the CRD allows)."),
]
WorkspaceId = Annotated[str, Field(pattern=resources.WORKSPACE_PATTERN, description="Tenant (a label value).")]


class LivestreamCreate(BaseModel):
    """`POST /api/livestreams/connect`."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    workspace_id: WorkspaceId | None = Field(
        default=None, description="Optional; must be the API key's workspace (403 otherwise)."
    )
    wait_for_live: bool = Field(default=False, description="Keep waiting while offline and after the LIVE ends.")
    event_types: list[EventType] | None = Field(
        default=None, max_length=128, description="Ingest only these event types (absent or empty = all)."
    )


class LivestreamPublic(BaseModel):
    """A Livestream: its desired state, live status (from the CR) and history (from the database row)."""

    id: uuid.UUID = Field(description="The Livestream resource's uid; also the id of its events.")
    name: str = Field(description="The Livestream resource's name in the API's namespace.")
    workspace_id: str | None
    username: str
    state: str = Field(description="Desired state: Running, Paused or Stopped.")
    phase: str = Field(description="Observed phase (the CRD's status.phase; Pending until first observed).")
    reason: str | None = None
    message: str | None = None
    room_id: str | None = None
    viewer_count: int | None = None
    event_counts: dict[str, int] = Field(default_factory=dict)
    total_events: int = 0
    restarts: int = 0
    connected_at: dt.datetime | None = None
    disconnected_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None
    next_retry_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    wait_for_live: bool = False
    event_types: list[str] = Field(default_factory=list)


class LivestreamDetail(LivestreamPublic):
    """One Livestream with its full status."""

    pod_name: str | None = None
    observed_generation: int | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class LivestreamConnected(LivestreamDetail):
    """Answer to a connect: `created` is false when the workspace was already connected to that user."""

    created: bool
    resumed: bool = Field(default=False, description="An existing, disconnected Livestream was set Running again.")


class LivestreamsPage(BaseModel):
    items: list[LivestreamPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EventPublic(BaseModel):
    """One stored event; `event` is the CloudEvent exactly as the SSE stream sent it."""

    id: str = Field(description="The event's id (CloudEvents `id`).")
    type: str
    timestamp: dt.datetime
    received_at: dt.datetime
    event: dict[str, Any]


class EventsPage(BaseModel):
    items: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
