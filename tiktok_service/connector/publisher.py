"""Buffered, exactly-once publishing of envelopes to Redis Streams.

The socket reader must never wait for Redis, so `offer()` only appends to a bounded
in-memory buffer; a flusher task drains it in order. While Redis is unreachable events
accumulate up to `buffer_size`; beyond that new events are dropped, counted and logged
(the buffered prefix stays contiguous and in order).

Retries are idempotent: each batch carries the sequence number of its first event, and a
Lua script (atomic in Redis) skips events at or below the livestream's last published
sequence, XADDs the rest to their per-type stream and to the per-livestream stream, bumps
the per-type counters and records the new sequence. A batch whose reply was lost in a
disconnect can therefore be sent again without doubling anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any

from tiktok_service.connector import metrics
from tiktok_service.connector.redis_client import RedisClient, RedisConnectionError, RedisError, RedisTimeoutError
from tiktok_service.domain import backoff, naming
from tiktok_service.domain.events import Envelope

log = logging.getLogger(__name__)

# KEYS: seq key, livestream stream, counts hash.
# ARGV: first seq, type maxlen, livestream maxlen, ttl seconds, then (type, id, event) triples.
_PUBLISH_LUA = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = tonumber(ARGV[1])
local published = 0
local seq = first
for i = 5, #ARGV, 3 do
  if seq > last then
    redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[i], 'id', ARGV[i+1], 'event', ARGV[i+2])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[i], 'id', ARGV[i+1], 'event', ARGV[i+2])
    redis.call('HINCRBY', KEYS[3], ARGV[i], 1)
    published = published + 1
  end
  seq = seq + 1
end
if seq - 1 > last then
  redis.call('SET', KEYS[1], seq - 1, 'EX', ARGV[4])
else
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return published
"""

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)

Entry = tuple[str, str, bytes]


class Publisher:
    """Owns the buffer and the flusher task of one connector."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        livestream_id: str,
        buffer_size: int,
        batch_size: int,
        type_maxlen: int,
        livestream_maxlen: int,
        ttl_s: int,
        retry_base_s: float = 0.1,
        retry_cap_s: float = 5.0,
    ) -> None:
        self._redis = redis
        # Entries are encoded on arrival: (type, id, JSON). Holding bytes instead of envelope
        # objects keeps a backlog compact and lets the message objects be freed at once.
        self._buffer: deque[Entry] = deque()
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._keys = [
            naming.publish_seq_key(livestream_id),
            naming.livestream_stream(livestream_id),
            naming.event_counts_key(livestream_id),
        ]
        self._limits = [str(type_maxlen), str(livestream_maxlen), str(ttl_s)]
        self._script = redis.register_script(_PUBLISH_LUA)
        self._wakeup = asyncio.Event()
        self._closing = False
        self._abandoned = False
        self._last_seq: int | None = None
        self._inflight: list[Entry] = []
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._rng = random.Random()
        self.published = 0
        self.dropped = 0
        self.redis_up = True

    def offer(self, envelope: Envelope) -> bool:
        """Queue an envelope without blocking; False (counted) when the buffer is full."""
        if len(self._buffer) >= self._buffer_size:
            self.dropped += 1
            metrics.EVENTS_DROPPED.labels(reason="buffer_full").inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("publish buffer full, dropping events", extra={"dropped": self.dropped})
            return False
        # A copy of exactly the JSON's size: orjson returns its 8 KiB working buffer with the
        # JSON at its start, and a burst's backlog of those (~0.8 KB events) weighed 10x its size.
        self._buffer.append((envelope.type.value, envelope.id, memoryview(envelope.encode()).tobytes()))
        self._wakeup.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._inflight)

    async def run(self) -> None:
        """Flush until `close()`; then drain what is left (bounded by the caller's timeout)."""
        attempt = 0
        while not self._abandoned:
            if not self._inflight and not self._buffer:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self._flush_once()
                attempt = 0
                if not self.redis_up:
                    log.info("redis reachable again", extra={"buffered": self.pending})
                self.redis_up = True
            except _RETRYABLE as exc:
                attempt += 1
                if self.redis_up:
                    log.warning("redis unreachable, buffering", extra={"error": repr(exc)})
                self.redis_up = False
                metrics.PUBLISH_ERRORS.inc()
                delay = backoff.next_delay(attempt, base=self._retry_base_s, cap=self._retry_cap_s, rng=self._rng)
                await asyncio.sleep(delay)

    async def _flush_once(self) -> None:
        if self._last_seq is None:
            raw = await self._redis.get(self._keys[0])
            self._last_seq = int(raw or 0)
        if not self._inflight:
            take = min(self._batch_size, len(self._buffer))
            self._inflight = [self._buffer.popleft() for _ in range(take)]
        batch = self._inflight
        args: list[Any] = [self._last_seq + 1, *self._limits]
        for entry in batch:
            args.extend(entry)
        await self._script(keys=self._keys, args=args)
        self._last_seq += len(batch)
        self._inflight = []
        self.published += len(batch)
        per_type: dict[str, int] = {}
        for event_type, _, _ in batch:
            per_type[event_type] = per_type.get(event_type, 0) + 1
        for event_type, count in per_type.items():
            metrics.published.inc(event_type, count)

    def close(self) -> None:
        """Ask the flusher to drain and stop."""
        self._closing = True
        self._wakeup.set()

    def abandon(self) -> None:
        """Stop flushing after the batch in progress, with events still buffered (drain timed out).

        The caller also cancels the task; this flag ends the loop even if that cancel is lost
        (see `StatusReporter.stop`: redis-py's writes can swallow a cancel on Python 3.11).
        """
        self._abandoned = True
        self._wakeup.set()


#: Entries read per XREVRANGE when seeding the duplicate filter: each entry comes with its whole
#: event, so reading a 5,000-id window at once briefly held ~8 MB at start-up.
RECENT_IDS_PAGE = 500


async def recent_ids(redis: RedisClient, livestream_id: str, count: int, page: int = RECENT_IDS_PAGE) -> list[str]:
    """Ids of the newest entries of the livestream's stream, oldest first.

    A restarted connector seeds its duplicate filter with these, so TikTok's history replay
    after a restart is not published twice. Read newest first in pages, keeping only the ids.
    """
    stream = naming.livestream_stream(livestream_id)
    newest_first: list[str] = []
    upper = "+"
    try:
        while len(newest_first) < count:
            rows = await redis.xrevrange(stream, max=upper, count=min(page, count - len(newest_first)))
            for entry_id, fields in rows:
                if naming.FIELD_ID in fields:
                    newest_first.append(fields[naming.FIELD_ID].decode())
                upper = "(" + entry_id.decode()  # exclusive: the next page starts below this entry
            if len(rows) < page:
                break
    except RedisError as exc:
        log.warning("could not read recent ids; duplicates of replayed history possible", extra={"error": repr(exc)})
        return []
    newest_first.reverse()
    return newest_first
