"""Trimming of the shared per-type streams, and the lag of every consumer group on them.

Every `trim_interval_s` a persister reads the state of every consumer group on every
shared stream (three pipelined round trips for all streams together), exports each
group's lag, and trims each stream with `XTRIM MINID ~` below what every group has
acknowledged and below the retention window (`retention.trim_point`). Each persister
replica does this: the trims are idempotent, and the gauges agree (alert on their max).

A group is "registered" when it exists on the stream (XINFO GROUPS): an analytics group
someone created and forgot holds trimming back for every stream it is on, and its lag
alert says which one. Destroy such a group (XGROUP DESTROY) rather than letting Redis grow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tiktok_service.persister import retention
from tiktok_service.persister.metrics import PersisterMetrics
from tiktok_service.persister.retention import GroupState, StreamId

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamState:
    """A shared stream: its length and its groups (an absent stream has neither)."""

    name: str
    length: int = 0
    groups: list[GroupState] = field(default_factory=list)


async def read_states(redis: aioredis.Redis, streams: Sequence[str]) -> list[StreamState]:
    """The group states of `streams`, in three round trips whatever their number."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
    states: list[StreamState] = []
    raw_groups: list[list[dict[str, Any]]] = []
    for position, stream in enumerate(streams):
        length, groups = replies[2 * position], replies[2 * position + 1]
        if isinstance(groups, ResponseError):  # no such key: nothing published yet
            groups = []
        elif isinstance(groups, Exception):
            raise groups
        if isinstance(length, Exception):
            raise length
        states.append(StreamState(stream, int(length)))
        raw_groups.append(groups)

    # The oldest pending id of each group that has any, and the first undelivered entry of
    # each group that has delivered less than everything: one more round trip for all.
    async with redis.pipeline(transaction=False) as pipe:
        asked: list[tuple[int, dict[str, Any], bool, bool]] = []
        for position, groups in enumerate(raw_groups):
            for info in groups:
                name, pending = _text(info["name"]), int(info["pending"])
                last = _text(info["last-delivered-id"])
                lag = info.get("lag")
                wants_pending = pending > 0
                wants_next = lag is None or int(lag) > 0
                if wants_pending:
                    pipe.xpending(states[position].name, name)
                if wants_next:
                    pipe.xrange(states[position].name, min="(" + last, max="+", count=1)
                asked.append((position, info, wants_pending, wants_next))
        replies = await pipe.execute(raise_on_error=False) if asked else []
    answers = iter(replies)
    for position, info, wants_pending, wants_next in asked:
        oldest_pending = first_undelivered = None
        pending = int(info["pending"])
        if wants_pending:
            summary = next(answers)
            if not isinstance(summary, Exception):  # fresher than XINFO's count (acks go on)
                pending = int(summary["pending"])
                oldest_pending = retention.parse_id(summary["min"]) if summary["min"] is not None else None
        if wants_next:
            found = next(answers)
            if not isinstance(found, Exception) and found:
                first_undelivered = retention.parse_id(found[0][0])
        lag = info.get("lag")
        states[position].groups.append(
            GroupState(
                name=_text(info["name"]),
                last_delivered=retention.parse_id(info["last-delivered-id"]),
                pending=pending,
                undelivered=None if lag is None else int(lag),
                oldest_pending=oldest_pending,
                first_undelivered=first_undelivered,
            )
        )
    return states


async def trim(redis: aioredis.Redis, points: dict[str, StreamId]) -> dict[str, int]:
    """`XTRIM stream MINID ~ point` for each stream; entries removed, per stream.

    `~`: Redis removes whole nodes only (O(1) per node), so a few entries just below the
    point may stay until the next round; never one at or above it.
    """
    if not points:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for stream, point in points.items():
            pipe.xtrim(stream, minid=retention.format_id(point), approximate=True)
        removed = await pipe.execute()
    return {stream: int(count) for stream, count in zip(points, removed, strict=True)}


async def housekeep(
    redis: aioredis.Redis,
    streams: Sequence[str],
    *,
    metrics: PersisterMetrics,
    retention_s: float,
    now_ms: int | None = None,
) -> dict[str, int]:
    """One round: read every group's state, export the lag, trim what is safe. Returns the
    entries trimmed per stream."""
    states = await read_states(redis, streams)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    points: dict[str, StreamId] = {}
    for state in states:
        metrics.stream_length.labels(state.name).set(state.length)
        for group in state.groups:
            lag = retention.lag(group, stream_length=state.length, now_ms=now_ms)
            metrics.lag_entries.labels(state.name, group.name).set(lag.entries)
            metrics.lag_seconds.labels(state.name, group.name).set(lag.seconds)
        point = retention.trim_point(state.groups, now_ms=now_ms, retention_ms=int(retention_s * 1000))
        if point is not None and state.length:
            points[state.name] = point
    removed = await trim(redis, points)
    for stream, count in removed.items():
        if count:
            metrics.trimmed.labels(stream).inc(count)
    if any(removed.values()):
        log.debug("trimmed acknowledged entries", extra={"removed": sum(removed.values())})
    return removed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
