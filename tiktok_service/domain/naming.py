"""Names shared by every component: Redis keys and stream entry fields.

Kept in one place so the connector (writer), the persister and the API (readers) and the
operator (status reader) can never disagree on a key.
"""

from __future__ import annotations

from typing import Final

from tiktok_service.domain.events import EVENT_TYPES, EventType

#: Fields of every stream entry. `type` and `id` are duplicated out of the JSON so
#: readers can filter and deduplicate without parsing the envelope.
FIELD_TYPE: Final = b"type"
FIELD_ID: Final = b"id"
FIELD_EVENT: Final = b"event"

#: Consumer group of the persisters on the per-type streams.
PERSISTER_GROUP: Final = "persister"
#: Every key the API keeps (rate limits, stream leases, connect locks, id -> name) starts with this.
API_KEY_PREFIX: Final = "tiktok.api."
#: Where entries that cannot be decoded go, with the reason, instead of blocking the group.
DEAD_LETTER_STREAM: Final = "tiktok.deadletter"


def type_stream(event_type: EventType) -> str:
    """Per-type stream: one type across all rooms (`tiktok.comment`, ...)."""
    return event_type.value


def all_type_streams() -> list[str]:
    return sorted(type_stream(t) for t in EVENT_TYPES)


def livestream_stream(livestream_id: str) -> str:
    """Per-livestream stream: every event of one livestream, in order (SSE reads this)."""
    return f"tiktok.livestream.{livestream_id}"


def connector_status_key(livestream_id: str) -> str:
    """Redis hash where a connector reports its state; expires when heartbeats stop."""
    return f"tiktok.connector.{livestream_id}"


def event_counts_key(livestream_id: str) -> str:
    """Redis hash of published events per type; incremented atomically with each publish."""
    return f"tiktok.counts.{livestream_id}"


def publish_seq_key(livestream_id: str) -> str:
    """Sequence number of the last event batch a connector published (makes retries idempotent)."""
    return f"tiktok.seq.{livestream_id}"


def connector_fence_key(livestream_id: str) -> str:
    """Redis hash of the livestream's fence: the epoch counter and the owner of the newest claim.

    Only the connector that holds the newest claim may publish or report (see `connector/fencing.py`).
    """
    return f"tiktok.fence.{livestream_id}"
