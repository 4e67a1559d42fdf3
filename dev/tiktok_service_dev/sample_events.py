"""Synthetic events published the way a connector publishes them (tests, benchmarks, dev).

The connector is the real writer; this module reproduces only its wire format (entry
fields `type`, `id`, `event` on the per-type and the per-livestream stream), so persister
tests do not depend on the connector package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import redis.asyncio as aioredis

from tiktok_service.domain import events, naming

#: 2026-01-01T00:00:00Z; sample events are spaced 1 ms apart from here.
BASE_TIME_MS: Final = 1_767_225_600_000
_TYPES: Final = (events.EventType.COMMENT, events.EventType.LIKE, events.EventType.GIFT, events.EventType.JOIN)
PIPELINE_SIZE: Final = 1_000


def sample_envelope(
    n: int,
    *,
    livestream_id: str,
    event_type: events.EventType | None = None,
    room_id: int = 7_000_000_000_000_000_001,
) -> events.Envelope:
    """Event number `n` of a livestream: deterministic, so publishing it again is a replay."""
    chosen = event_type or _TYPES[n % len(_TYPES)]
    return events.Envelope(
        id=str(7_400_000_000_000_000_000 + n),
        type=chosen,
        livestream_id=livestream_id,
        room_id=room_id,
        time_ms=BASE_TIME_MS + n,
        user=events.User(id=6_800_000_000_000_000_000 + n % 997, unique_id=f"viewer_{n % 997}", nickname="V"),
        data=_sample_data(chosen, n),
    )


def _sample_data(event_type: events.EventType, n: int) -> dict[str, object]:
    """Data valid for its type's JSON Schema (tests validate every event they publish)."""
    if event_type is events.EventType.COMMENT:
        return {"text": f"hello {n}"}
    if event_type is events.EventType.LIKE:
        return {"count": 1, "total": n + 1}
    if event_type is events.EventType.GIFT:
        return {"gift_id": 5655, "gift_name": "Rose", "diamond_count": 1, "streakable": True, "group_id": 0,
                "repeat_count": 1, "total_diamonds": 1, "streak_complete": True}  # fmt: skip
    if event_type is events.EventType.JOIN:
        return {"member_count": n}
    return {}


def entry_fields(envelope: events.Envelope) -> dict[bytes, bytes]:
    return {
        naming.FIELD_TYPE: envelope.type.value.encode(),
        naming.FIELD_ID: envelope.id.encode(),
        naming.FIELD_EVENT: envelope.encode(),
    }


async def publish(redis: aioredis.Redis, envelopes: Iterable[events.Envelope], *, per_livestream: bool = True) -> int:
    """XADD each envelope to its per-type stream (and its per-livestream stream); returns the count."""
    published = 0
    batch: list[events.Envelope] = []
    for envelope in envelopes:
        batch.append(envelope)
        if len(batch) >= PIPELINE_SIZE:
            published += await _publish_batch(redis, batch, per_livestream=per_livestream)
            batch = []
    if batch:
        published += await _publish_batch(redis, batch, per_livestream=per_livestream)
    return published


async def _publish_batch(redis: aioredis.Redis, batch: Sequence[events.Envelope], *, per_livestream: bool) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for envelope in batch:
            fields = entry_fields(envelope)
            pipe.xadd(naming.type_stream(envelope.type), fields)  # type: ignore[arg-type]
            if per_livestream:
                pipe.xadd(naming.livestream_stream(envelope.livestream_id), fields)  # type: ignore[arg-type]
        await pipe.execute()
    return len(batch)
