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
from tiktok_service.settings import LANGUAGE_PATTERN, REGION_PATTERN, SECRET_KEY_PATTERN, TIMEZONE_PATTERN

Username = Annotated[
    str,
    Field(pattern=resources.USERNAME_PATTERN, description="TikTok @unique_id without the @ (as the CRD allows)."),
]
WorkspaceId = Annotated[str, Field(pattern=resources.WORKSPACE_PATTERN, description="Tenant (a label value).")]
SecretName = Annotated[
    str,
    Field(
        pattern=resources.SECRET_NAME_PATTERN,
        max_length=253,
        description="Name of a Secret in the API's namespace, starting with the workspace id and two dashes "
        "(`acme--egress`): a workspace references only its own Secrets. The API never reads it.",
    ),
]


class Locale(BaseModel):
    """Language, region and time zone the connector's web client reports to TikTok."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN, description="ISO 639 code (de).")
    region: str | None = Field(default=None, pattern=REGION_PATTERN, description="ISO 3166 code (DE).")
    timezone: str | None = Field(
        default=None, pattern=TIMEZONE_PATTERN, max_length=64, description="IANA name (Europe/Berlin)."
    )


class ConnectionOptions(BaseModel):
    """How the connector reaches TikTok, as a Livestream's `spec.connection` holds it."""

    room_id: str | None = None
    proxy_secret: str | None = None
    proxy_secret_key: str | None = None
    session_secret: str | None = None
    locale: dict[str, str] | None = None


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
    room_id: str | None = Field(
        default=None,
        pattern=resources.ROOM_ID_PATTERN,
        description="Join this TikTok room directly, skipping the room lookup (a 64-bit id, as a string).",
    )
    proxy_secret: SecretName | None = Field(
        default=None,
        description="Secret with egress proxies, one URL per line (http://user:pass@host:port, socks5://...); "
        "absent = the operator's default.",
    )
    proxy_secret_key: str | None = Field(
        default=None,
        pattern=SECRET_KEY_PATTERN,
        max_length=253,
        description="Key of that Secret (default `proxies`).",
    )
    session_secret: SecretName | None = Field(
        default=None,
        description="Secret with a TikTok account's `sessionid` and `tt-target-idc` (logged-in session; it is also "
        "sent to the sign server: use a dedicated account); absent = the operator's default.",
    )
    locale: Locale | None = Field(default=None, description="Absent = the operator's default locale.")

    def connection_spec(self) -> dict[str, Any]:
        return resources.connection_spec(
            room_id=self.room_id,
            proxy_secret=self.proxy_secret,
            proxy_secret_key=self.proxy_secret_key,
            session_secret=self.session_secret,
            locale=self.locale.model_dump() if self.locale else None,
        )

    def secrets(self) -> list[str]:
        return [name for name in (self.proxy_secret, self.session_secret) if name]


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
    connection: ConnectionOptions = Field(
        default_factory=ConnectionOptions, description="Connection options (Secret names, never their content)."
    )


class LivestreamDetail(LivestreamPublic):
    """One Livestream with its full status."""

    pod_name: str | None = None
    observed_generation: int | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class LivestreamConnected(LivestreamDetail):
    """Answer to a connect: `created` is false when the workspace was already connected to that user."""

    created: bool
    resumed: bool = Field(default=False, description="An existing, disconnected Livestream was set Running again.")
    reconfigured: bool = Field(
        default=False,
        description="An existing Livestream took the options of this request (connection options, "
        "wait_for_live, event_types: those it carries replace its own; the connector restarts with them).",
    )


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
    reason: str | None = Field(
        default=None,
        description="Why not ready: `database_schema_outdated` (run `tiktok-service migrate`) "
        "or `dependency_unavailable`; null when ready.",
    )
