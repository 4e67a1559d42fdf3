"""The persister's side of the Redis streams: one consumer in the `persister` group.

A thin layer over redis-py: it knows the commands, the group and the dead-letter format,
and nothing about PostgreSQL. Errors propagate (the consumer loop decides about retries),
except NOGROUP, which means Redis lost the group (a restart without persistence, a stream
deleted by hand) and is repaired here by creating it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

from tiktok_service.domain import naming
from tiktok_service.persister import retention

log = logging.getLogger(__name__)

#: The dead-letter stream is for humans to inspect; bounded like every stream (~ = O(1) trim).
DEAD_LETTER_MAXLEN: Final = 10_000
#: New groups start at the beginning of the stream, not at `$`: a connector may publish
#: before the first persister ever ran, and those events must be stored too. The cost is a
#: one-off replay of what the stream retains, which the idempotent insert absorbs.
GROUP_START_ID: Final = "0"
#: XREADGROUP under a name redis-py registers no response callback for (a command name
#: may carry its first arguments, like "CONFIG GET"; redis-py splits it on spaces before
#: sending). The reply then comes back as hiredis parsed it, skipping redis-py's
#: conversion of every entry into a (id, dict) tuple: ~1.5 us per entry, a tenth of the
#: persister's Python time.
_XREADGROUP_RAW: Final = "XREADGROUP GROUP"


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: bytes
    fields: Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry: Entry
    category: str
    reason: str


class GroupConsumer:
    """Reads, acks and dead-letters entries of `streams` as `consumer` of `group`."""

    def __init__(self, redis: aioredis.Redis, *, streams: Sequence[str], group: str, consumer: str) -> None:
        self.redis = redis
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self._claim_cursors = dict.fromkeys(self.streams, "0-0")

    async def ensure_groups(self) -> None:
        """Create the group on every stream (and the stream if needed); existing is fine."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=GROUP_START_ID, mkstream=True)
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    async def read_new(self, *, count: int, block_ms: int | None) -> list[Entry]:
        """Entries never delivered to any consumer of the group (`>`), up to `count` per stream."""
        return await self._read(self._ids(">"), count=count, block_ms=block_ms)

    async def read_new_reply(self, *, count: int, block_ms: int | None) -> Any:
        """`read_new`, as the reply hiredis parsed (`batches.reply_streams` takes it apart)."""
        args: list[Any] = [self.group, self.consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", *self.streams, *(">" for _ in self.streams)]
        try:
            return await self.redis.execute_command(_XREADGROUP_RAW, *args)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.warning("consumer group missing; creating it again", extra={"error": str(exc)})
            await self.ensure_groups()
            return None

    async def read_own_pending(self, *, count: int) -> list[Entry]:
        """Entries delivered to this consumer name earlier and never acked (a previous life)."""
        return await self._read(self._ids("0"), count=count, block_ms=None)

    def _ids(self, start: str) -> dict[KeyT, StreamIdT]:
        return {stream: start for stream in self.streams}

    async def _read(self, ids: dict[KeyT, StreamIdT], *, count: int, block_ms: int | None) -> list[Entry]:
        try:
            response = await self.redis.xreadgroup(self.group, self.consumer, ids, count=count, block=block_ms)
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.warning("consumer group missing; creating it again", extra={"error": str(exc)})
            await self.ensure_groups()
            return []
        return list(_entries(response))

    async def claim_idle(self, *, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries pending longer than `min_idle_ms` under any consumer.

        One XAUTOCLAIM per stream per call, resuming where the previous call stopped, so a
        huge pending list is worked through over several rounds, never in one unbounded go.
        """
        claimed: list[Entry] = []
        for stream in self.streams:
            try:
                cursor, found, *rest = await self.redis.xautoclaim(
                    stream, self.group, self.consumer, min_idle_ms, self._claim_cursors[stream], count=count
                )
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                await self.ensure_groups()
                continue
            self._claim_cursors[stream] = _text(cursor)
            claimed.extend(Entry(stream, entry_id, fields or {}) for entry_id, fields in found)
            if rest and rest[0]:
                # Redis 7 drops pending entries whose data was trimmed away and lists them here.
                log.warning(
                    "pending entries were trimmed before being persisted",
                    extra={"stream": stream, "lost": len(rest[0])},
                )
        return claimed

    async def over_delivered(self, *, limit: int, count: int, min_idle_ms: int | None) -> list[tuple[Entry, int]]:
        """Take the pending entries delivered `limit` times or more, with their delivery count.

        `min_idle_ms` None: this consumer's own pending entries (a previous life under the
        same name); otherwise entries of any consumer idle that long. Each is claimed
        (XCLAIM counts one more delivery, included in the count returned), so the caller
        owns it; an entry trimmed meanwhile is dropped from the group by Redis and not
        returned. Two pipelined round trips for all streams.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xpending_range(
                    stream,
                    self.group,
                    min="-",
                    max="+",
                    count=count,
                    consumername=self.consumer if min_idle_ms is None else None,
                    idle=min_idle_ms,
                )
            replies = await pipe.execute(raise_on_error=False)
        wanted: dict[str, dict[bytes, int]] = {}
        for stream, reply in zip(self.streams, replies, strict=True):
            if isinstance(reply, ResponseError):  # NOGROUP: nothing pending there
                continue
            if isinstance(reply, Exception):
                raise reply
            over = retention.over_delivered(((r["message_id"], int(r["times_delivered"])) for r in reply), limit)
            if over:
                counts = {r["message_id"]: int(r["times_delivered"]) for r in reply}
                wanted[stream] = {entry_id: counts[entry_id] for entry_id in over}
        if not wanted:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in wanted.items():
                pipe.xclaim(stream, self.group, self.consumer, min_idle_ms or 0, list(ids))
            claimed = await pipe.execute()
        return [
            (Entry(stream, entry_id, fields or {}), wanted[stream][entry_id] + 1)
            for stream, found in zip(wanted, claimed, strict=True)
            for entry_id, fields in found
            if entry_id in wanted[stream]
        ]

    async def ack(self, by_stream: Mapping[str, Sequence[StreamIdT]]) -> None:
        """XACK entry ids, given per stream; one round trip."""
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()

    async def keep_claimed(self, by_stream: Mapping[str, Sequence[StreamIdT]]) -> None:
        """Reset the idle time of entries we still hold (XCLAIM JUSTID does not bump the
        delivery count), so other persisters do not reclaim a batch we are retrying."""
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, self.group, self.consumer, 0, list(ids), justid=True)
            await pipe.execute()

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Copy each entry with its reason to the dead-letter stream and ack it, atomically
        (MULTI), so an entry is never acked without its dead letter being written."""
        if not letters:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for letter in letters:
                entry = letter.entry
                pipe.xadd(
                    naming.DEAD_LETTER_STREAM,
                    {
                        "stream": entry.stream,
                        "entry_id": entry.id,
                        "category": letter.category,
                        "reason": letter.reason,
                        "consumer": self.consumer,
                        "raw": _raw(entry.fields),
                    },
                    maxlen=DEAD_LETTER_MAXLEN,
                    approximate=True,
                )
                pipe.xack(entry.stream, self.group, entry.id)
            await pipe.execute()


def _entries(response: Any) -> Iterable[Entry]:
    """Flatten an XREADGROUP reply (RESP2 list of pairs or RESP3 map) into entries."""
    if not response:
        return
    pairs = response.items() if isinstance(response, dict) else response
    for stream, found in pairs:
        name = _text(stream)
        for entry_id, fields in found:
            yield Entry(name, entry_id, fields or {})  # None/{}: the entry was trimmed away


def _raw(fields: Mapping[bytes, bytes]) -> bytes:
    """The envelope bytes if present, else every field, so nothing is lost for the post-mortem."""
    event = fields.get(naming.FIELD_EVENT)
    if event is not None:
        return event
    return b"\n".join(key + b"=" + value for key, value in fields.items())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
