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

The script's answer is always read (`read_answer`), never ignored:

* `fenced`: a newer connector claimed the Livestream (`fencing`); nothing was written, the
  publisher stops and what it still holds is dropped and counted (`reason="fenced"`);
* `gap`: Redis holds fewer of this connector's events than it acknowledged (a failover to a
  replica that had not received them, a restart without persistence). Nothing was written; the
  publisher sends the missing events again from its replay window (the last `replay_window`
  events it published) ahead of the batch, and counts those the window no longer holds as lost;
* `ok`: events of a resent batch that Redis already had are counted, not written twice.

With `wait_replicas` set, each batch is followed by `WAIT` on the same connection: a batch no
replica confirmed within the timeout is counted; a confirmed one empties the replay window
(a failover to a confirming replica cannot lose it).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tiktok_service.connector import fencing, metrics
from tiktok_service.connector.redis_client import (
    NoScriptError,
    RedisClient,
    RedisConnectionError,
    RedisOutOfMemoryError,
    RedisTimeoutError,
)
from tiktok_service.domain import backoff, naming
from tiktok_service.domain.events import Envelope

log = logging.getLogger(__name__)

# KEYS: seq key, livestream stream, counts hash, fence hash.
# ARGV: first seq, livestream maxlen, ttl seconds, epoch, owner, then (type, id, event) triples.
# Answers {'fenced', epoch, owner} or {'gap', last} (nothing written), or {'ok', last, published}.
# The shared per-type streams are never trimmed here: the persister trims them below what
# every consumer group has acknowledged (a MAXLEN here would drop entries nobody read yet).
_PUBLISH_LUA = (
    fencing.check_lua("KEYS[4]", "ARGV[4]", "ARGV[5]", "ARGV[3]")
    + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = tonumber(ARGV[1])
if last < first - 1 then
  return {'gap', last}
end
local published = 0
local seq = first
for i = 6, #ARGV, 3 do
  if seq > last then
    redis.call('XADD', ARGV[i], '*', 'type', ARGV[i], 'id', ARGV[i+1], 'event', ARGV[i+2])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[i], 'id', ARGV[i+1], 'event', ARGV[i+2])
    redis.call('HINCRBY', KEYS[3], ARGV[i], 1)
    published = published + 1
  end
  seq = seq + 1
end
if seq - 1 > last then
  redis.call('SET', KEYS[1], seq - 1, 'EX', ARGV[3])
else
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {'ok', last, published}
"""
)

#: A full Redis (maxmemory, noeviction) refuses the script before its first write, so a
#: refused batch is retried like a lost connection: nobody trims the shared streams for
#: room, the persister's trimming makes it once they are acknowledged.
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, RedisOutOfMemoryError, OSError)

Entry = tuple[str, str, bytes]


class Verdict(StrEnum):
    OK = "ok"
    FENCED = "fenced"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Answer:
    """The publish script's answer to a batch of `count` events numbered from `first`."""

    verdict: Verdict
    last: int = 0  # the livestream's sequence in Redis before this batch
    published: int = 0  # events this call wrote
    already: int = 0  # events of the batch Redis already had (a resent batch)
    ahead: int = 0  # Redis's sequence is past the whole batch: numbers nobody here handed out
    holder: fencing.Holder | None = None


class UnexpectedAnswer(RuntimeError):
    """The publish script answered something it never answers."""


def read_answer(reply: Any, first: int, count: int) -> Answer:
    """What the publish script's `reply` says about the batch (pure)."""
    holder = fencing.holder(reply)
    if holder is not None:
        return Answer(Verdict.FENCED, holder=holder)
    if not isinstance(reply, list) or len(reply) < 2:
        raise UnexpectedAnswer(f"publish script answered {reply!r}")
    if reply[0] == b"gap":
        return Answer(Verdict.GAP, last=int(reply[1]))
    if reply[0] != b"ok" or len(reply) < 3:
        raise UnexpectedAnswer(f"publish script answered {reply!r}")
    last, published = int(reply[1]), int(reply[2])
    already = min(count, max(0, last - first + 1))
    if published != count - already:
        raise UnexpectedAnswer(f"publish script wrote {published} of {count} events after sequence {last}")
    ahead = max(0, last - (first + count - 1))
    return Answer(Verdict.OK, last=last, published=published, already=already, ahead=ahead)


class Publisher:
    """Owns the buffer and the flusher task of one connector."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        livestream_id: str,
        buffer_size: int,
        batch_size: int,
        livestream_maxlen: int,
        ttl_s: int,
        retry_base_s: float = 0.1,
        retry_cap_s: float = 5.0,
        fence: fencing.Fence | None = None,
        replay_window: int = 0,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        handover_ids: int = 0,
    ) -> None:
        self._redis = redis
        self._fence = fence or fencing.Fence(redis, livestream_id, owner=fencing.new_owner(None), ttl_s=ttl_s)
        # (sequence, entry) of the newest published events, sent again if Redis loses them.
        self._retained: deque[tuple[int, Entry]] = deque(maxlen=replay_window)
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._inflight_replayed = 0  # the first events of `_inflight` are replays (already counted)
        self._handover_ids = handover_ids
        #: Told the newest ids of the livestream stream when this connector takes the livestream over.
        self.on_take_over: Callable[[list[str]], None] | None = None
        # Entries are encoded on arrival: (type, id, JSON). Holding bytes instead of envelope
        # objects keeps a backlog compact and lets the message objects be freed at once.
        self._buffer: deque[Entry] = deque()
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._keys = [
            naming.publish_seq_key(livestream_id),
            naming.livestream_stream(livestream_id),
            naming.event_counts_key(livestream_id),
            self._fence.key,
        ]
        self._limits = [str(livestream_maxlen), str(ttl_s)]
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
        self.fenced = False  # a newer connector claimed the livestream: nothing more is published

    def offer(self, envelope: Envelope) -> bool:
        """Queue an envelope without blocking; False (counted) when the buffer is full or the fence lost."""
        if self.fenced:
            self._drop_unpublishable(1)
            return False
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

    @property
    def buffered(self) -> int:
        """Events not yet sent to Redis (the batch being sent excluded)."""
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        """Events of the batch being sent: Redis may have written them already."""
        return len(self._inflight)

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
        if self._fence.lost is not None:  # the heartbeat met the newer claim first
            self._stop_fenced()
            return
        last_seq = self._last_seq if self._last_seq is not None else await self._take_over()
        if not self._inflight:
            take = min(self._batch_size, len(self._buffer))
            self._inflight = [self._buffer.popleft() for _ in range(take)]
        batch = self._inflight
        first = last_seq + 1
        args: list[Any] = [first, *self._limits, *self._fence.args()]
        for entry in batch:
            args.extend(entry)
        reply, replicas = await self._send(args)
        answer = read_answer(reply, first, len(batch))
        if answer.verdict is Verdict.FENCED:
            assert answer.holder is not None
            self._fence.refused(answer.holder)
            self._stop_fenced()
            return
        if answer.verdict is Verdict.GAP:
            self._rewind(answer.last, first)
            return
        if answer.ahead:
            # Redis's sequence is past the whole batch, so nothing of it was written: numbers
            # this connector never handed out (a writer outside the fence). It is sent again
            # after them instead of being skipped.
            log.error("livestream sequence ahead of this connector", extra={"last": answer.last, "first": first})
            self._last_seq = answer.last
            return
        self._last_seq = first + len(batch) - 1
        replayed = self._inflight_replayed
        for offset, entry in enumerate(batch):
            self._retained.append((first + offset, entry))
        self._inflight = []
        self._inflight_replayed = 0
        fresh = batch[replayed:]
        self.published += len(fresh)
        if replayed:
            metrics.EVENTS_REPLAYED.inc(replayed)
        if answer.already:
            metrics.EVENTS_ALREADY_PUBLISHED.inc(answer.already)
        per_type: dict[str, int] = {}
        for event_type, _, _ in fresh:
            per_type[event_type] = per_type.get(event_type, 0) + 1
        for event_type, count in per_type.items():
            metrics.published.inc(event_type, count)
        if replicas is not None:
            self._confirmed(replicas, len(batch))

    async def _take_over(self) -> int:
        """Claim the livestream, then learn what was published before: the sequence and the newest ids.

        Read after the claim, so no older connector adds to them any more. Buffered events a
        predecessor already published (both sockets received them, or TikTok replayed them on
        connect) are dropped as duplicates and their ids handed to the duplicate filter.
        """
        await self._fence.claim()
        raw = await self._redis.get(self._keys[0])
        seen = await newest_ids(self._redis, self._keys[1], self._handover_ids) if self._handover_ids else []
        self._last_seq = int(raw or 0)
        if seen:
            known = set(seen)
            kept = deque(entry for entry in self._buffer if entry[1] not in known)
            if len(kept) < len(self._buffer):
                metrics.EVENTS_DROPPED.labels(reason="duplicate").inc(len(self._buffer) - len(kept))
                self._buffer = kept
        if self.on_take_over is not None:
            self.on_take_over(seen)
        return self._last_seq

    async def _send(self, args: list[Any]) -> tuple[Any, int | None]:
        """Run the publish script; with `wait_replicas`, WAIT on the same connection (one round trip)."""
        if not self._wait_replicas:
            return await self._script(keys=self._keys, args=args), None
        wait = ("WAIT", self._wait_replicas, self._wait_timeout_ms)
        try:
            reply, replicas = await self._redis.pipeline(self._script.command(self._keys, args), wait)
        except NoScriptError:
            # A new connection to a failover's new primary, whose script cache is empty: the
            # script did not run (WAIT waited for nothing). It is loaded and the pair sent again.
            await self._script.load()
            reply, replicas = await self._redis.pipeline(self._script.command(self._keys, args), wait)
        return reply, int(replicas)

    def _confirmed(self, replicas: int, count: int) -> None:
        if replicas >= self._wait_replicas:
            self._retained.clear()  # on the replicas: a failover to one of them keeps it
            return
        metrics.REPLICATION_UNCONFIRMED.inc(count)
        log.warning(
            "batch not confirmed by replicas in time",
            extra={"replicas": replicas, "wanted": self._wait_replicas, "events": count},
        )

    def _rewind(self, last: int, first: int) -> None:
        """Redis acknowledged events up to `first - 1` but holds only up to `last`: send the tail again."""
        missing = first - 1 - last
        replay = [entry for seq, entry in self._retained if seq > last]
        lost = missing - len(replay)
        self._retained.clear()
        self._inflight = replay + self._inflight
        self._inflight_replayed += len(replay)
        self._last_seq = last
        if lost > 0:
            metrics.EVENTS_LOST.labels(reason="redis_lost_acknowledged").inc(lost)
        log.error(
            "redis lost acknowledged events (failover or restart without persistence)",
            extra={"missing": missing, "replaying": len(replay), "lost": max(lost, 0), "sequence": last},
        )

    def _stop_fenced(self) -> None:
        """A newer connector holds the livestream: publish nothing more, count what is left."""
        self._drop_unpublishable(len(self._inflight) + len(self._buffer))
        self._inflight = []
        self._inflight_replayed = 0
        self._buffer.clear()
        self.fenced = True
        self._abandoned = True

    def _drop_unpublishable(self, count: int) -> None:
        if count > 0:
            self.dropped += count
            metrics.EVENTS_DROPPED.labels(reason="fenced").inc(count)

    def close(self) -> None:
        """Ask the flusher to drain and stop."""
        self._closing = True
        self._wakeup.set()

    def abandon(self) -> None:
        """Stop flushing after the batch in progress, with events still buffered (drain timed out).

        The caller also cancels the task; this flag ends the loop even if that cancel is lost
        (see `StatusReporter.stop`: a cancel can be lost on Python 3.11).
        """
        self._abandoned = True
        self._wakeup.set()


#: Entries read per XREVRANGE when learning the newest ids: each entry comes with its whole
#: event, so reading a 5,000-id window at once briefly held ~8 MB at take-over.
NEWEST_IDS_PAGE = 500


async def newest_ids(redis: RedisClient, stream: str, count: int, page: int = NEWEST_IDS_PAGE) -> list[str]:
    """Ids of the newest `count` entries of `stream`, oldest first (raises when Redis fails).

    Read newest first in pages of `page` entries, keeping only the ids.
    """
    newest_first: list[str] = []
    upper = "+"
    while len(newest_first) < count:
        rows = await redis.xrevrange(stream, max=upper, count=min(page, count - len(newest_first)))
        for entry_id, fields in rows:
            if naming.FIELD_ID in fields:
                newest_first.append(fields[naming.FIELD_ID].decode())
            upper = "(" + entry_id.decode()  # exclusive: the next page starts below this entry
        if len(rows) < page:
            break
    newest_first.reverse()
    return newest_first
