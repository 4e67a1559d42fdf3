"""The normalised event envelope: one shape for every TikTok LIVE event we publish.

Envelopes are CloudEvents 1.0 in structured JSON mode. The same bytes go to the Redis
streams, the PostgreSQL `events.payload` column and the SSE stream, so consumers parse one
format everywhere. The schema is versioned with the `schemaversion` extension attribute;
additive changes keep the version, anything else bumps it.

This module is pure: no I/O, no TikTok library, so it can be tested and reused anywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

SCHEMA_VERSION: Final = 1
SPEC_VERSION: Final = "1.0"
SOURCE_PREFIX: Final = "/tiktok-service/livestreams/"


class EventType(StrEnum):
    """CloudEvents `type` of every event; also the name of its per-type Redis stream."""

    COMMENT = "tiktok.comment"
    GIFT = "tiktok.gift"
    GIFT_PROGRESS = "tiktok.gift.progress"
    LIKE = "tiktok.like"
    JOIN = "tiktok.join"
    FOLLOW = "tiktok.follow"
    SHARE = "tiktok.share"
    VIEWER = "tiktok.viewer"
    LIVE_END = "tiktok.live_end"
    CONNECT = "tiktok.connect"
    DISCONNECT = "tiktok.disconnect"
    UNKNOWN = "tiktok.unknown"


EVENT_TYPES: Final = frozenset(EventType)


class MalformedEnvelope(ValueError):
    """Bytes that do not decode into a valid envelope (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class User:
    """The TikTok user who caused an event (commenter, gifter, joiner...)."""

    id: int
    unique_id: str
    nickname: str

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "unique_id": self.unique_id, "nickname": self.nickname}


@dataclass(slots=True)
class Envelope:
    """One normalised event.

    `id` is TikTok's `msg_id` as a decimal string for events that come from TikTok (so a
    replayed message keeps its id and is recognised as a duplicate), or a locally unique id
    for events the connector makes itself (connect/disconnect).
    """

    id: str
    type: EventType
    livestream_id: str
    room_id: int
    time_ms: int
    user: User | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.livestream_id

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvent (a JSON object)."""
        data: dict[str, Any] = {"user": self.user.to_json() if self.user else None}
        data.update(self.data)
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type.value,
            "time": format_time(self.time_ms),
            "datacontenttype": "application/json",
            "schemaversion": SCHEMA_VERSION,
            "livestreamid": self.livestream_id,
            "roomid": str(self.room_id),
            "data": data,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_cloudevent())


@functools.lru_cache(maxsize=64)
def _second_prefix(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def format_time(time_ms: int) -> str:
    """RFC 3339 UTC with millisecond precision, as CloudEvents `time` requires.

    Events arrive in bursts within the same second, so the date part is cached.
    """
    seconds, millis = divmod(time_ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


def parse_time(value: str) -> int:
    """Inverse of `format_time`; accepts any RFC 3339 timestamp."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1000)


def decode(raw: bytes | str) -> Envelope:
    """Parse and validate an encoded envelope; raises `MalformedEnvelope` with the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEnvelope(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEnvelope("not a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        raise MalformedEnvelope(f"unsupported specversion {doc.get('specversion')!r}")
    if doc.get("schemaversion") != SCHEMA_VERSION:
        raise MalformedEnvelope(f"unsupported schemaversion {doc.get('schemaversion')!r}")
    try:
        event_type = EventType(doc["type"])
        data = dict(doc["data"])
        user_doc = data.pop("user", None)
        user = User(int(user_doc["id"]), str(user_doc["unique_id"]), str(user_doc["nickname"])) if user_doc else None
        event_id = doc["id"]
        livestream_id = doc["livestreamid"]
        if not isinstance(event_id, str) or not event_id:
            raise MalformedEnvelope("id must be a non-empty string")
        if not isinstance(livestream_id, str) or not livestream_id:
            raise MalformedEnvelope("livestreamid must be a non-empty string")
        return Envelope(
            id=event_id,
            type=event_type,
            livestream_id=livestream_id,
            room_id=int(doc["roomid"]),
            time_ms=parse_time(doc["time"]),
            user=user,
            data=data,
        )
    except MalformedEnvelope:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEnvelope(f"invalid envelope: {exc!r}") from exc
