"""Live events of livestreams, read once from Redis and fanned out to every SSE subscriber.

One `Feed` per livestream that has subscribers in this process: its reader does a
bounded blocking `XREAD COUNT n BLOCK t` on the per-livestream stream and keeps the last
`ring_size` entries, already encoded for the wire. A subscriber is only a position in
that stream; it never owns a queue. Each loop it takes at most `batch` entries after its
position from the ring, or, when it has fallen behind the ring (a slow client, or a
resume from an old Last-Event-ID), reads them from Redis itself with a bounded `XRANGE`.
So a slow client costs one chunk in flight and its socket buffer, never an unbounded
backlog, and a thousand subscribers of one room cost one blocking Redis connection.
A write costs far more than the bytes in it (a trip through the ASGI stack and a
syscall), so wake-ups are paced to a budget of `writes_per_s` per feed: a room with a few
subscribers is sent event by event, a room with a thousand gets a few events per write.

A feed ends when its livestream does: the Livestream's phase (re-read every
`phase_check_s`) is Stopped, Ended or Failed, or the resource is gone; the reader then
drains what is left (until a read comes back empty) and marks the feed ended, and each
subscriber sends what it has not sent yet, then an `end` event. Readers are owned by
`Feeds.running()`'s task group; `close()` ends every stream at once (at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tiktok_service.api import metrics as api_metrics
from tiktok_service.api import sse
from tiktok_service.domain import naming

log = logging.getLogger(__name__)

#: Why a feed ended, sent in the final `end` event.
STOPPED: Final = "stopped"
ENDED: Final = "ended"
FAILED: Final = "failed"
DELETED: Final = "deleted"
LIVE_END: Final = "live_end"
_RETRY_BASE_S: Final = 0.2
_RETRY_CAP_S: Final = 5.0

#: Given a livestream id, why it is over (one of the reasons above) or None while it goes on
#: (also when that cannot be known now: the API server is unreachable).
EndCheck = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class FeedSettings:
    block_ms: int
    batch: int
    ring_size: int
    ping_interval_s: float
    phase_check_s: float
    retry_ms: int
    writes_per_s: int
    #: Livestreams read at once: each reader holds one pool connection in its blocking XREAD.
    max_readers: int = 1_000_000


class Feed:
    """The recent entries of one livestream's stream and who is reading them."""

    def __init__(self, livestream_id: str, ring_size: int) -> None:
        self.livestream_id = livestream_id
        self.key = naming.livestream_stream(livestream_id)
        self.ring: deque[sse.Entry] = deque(maxlen=ring_size)
        #: Every entry after `floor` up to `last` is in the ring.
        self.floor: sse.StreamId = sse.ORIGIN
        self.last: sse.StreamId = sse.ORIGIN
        self.ended: str | None = None
        self.failed = False
        self.subscribers = 0
        self.started = asyncio.Event()
        self.notified_at = time.monotonic()
        self._changed = asyncio.Event()

    def start_at(self, position: sse.StreamId) -> None:
        self.floor = self.last = position
        self.started.set()

    def append(self, entries: list[sse.Entry]) -> None:
        ring = self.ring
        for entry in entries:
            if len(ring) == ring.maxlen:
                self.floor = ring[0].position
            ring.append(entry)
        self.last = entries[-1].position
        self.notify()

    def finish(self, reason: str | None, *, failed: bool = False) -> None:
        self.ended, self.failed = reason, failed
        self.started.set()
        self.notify()

    @property
    def over(self) -> bool:
        return self.ended is not None or self.failed

    def notify(self) -> None:
        """Wake every waiting subscriber (the reader also does this when idle, for keepalives)."""
        self.notified_at = time.monotonic()
        waking, self._changed = self._changed, asyncio.Event()
        waking.set()

    async def wait(self, after: sse.StreamId) -> None:
        """Until there may be something after `after`, the feed is over, or a keepalive is due."""
        if self.last > after or self.over:
            return
        await self._changed.wait()


def _decode(reply: Any) -> list[sse.Entry]:
    """XREAD/XRANGE entries -> wire entries (field names from `naming`)."""
    return [
        sse.encode_entry(entry_id.decode(), fields[naming.FIELD_TYPE].decode(), fields[naming.FIELD_EVENT].decode())
        for entry_id, fields in reply
    ]


class Feeds:
    """Every feed of this process; `subscribe()` joins one, `events()` streams it."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: FeedSettings,
        *,
        end_check: EndCheck,
        metrics: api_metrics.ApiMetrics,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._end_check = end_check
        self._metrics = metrics
        self._feeds: dict[str, Feed] = {}
        self._group: asyncio.TaskGroup | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self.closing = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Feeds]:
        """Owns the readers: they all stop (cancelled) when this block exits."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                yield self
            finally:
                self.close()
                for task in self._readers:
                    task.cancel()
                self._group = None

    def close(self) -> None:
        """Shutdown: every subscriber returns at its next wake-up, which this triggers now."""
        self.closing = True
        for feed in list(self._feeds.values()):
            feed.notify()

    def admits(self, livestream_id: str) -> bool:
        """Whether a new subscriber of `livestream_id` can be served: it is read already, or a reader is free.

        Refusing the one stream that would need a reader beyond `max_readers` keeps the Redis
        pool from running dry, which would stall every other stream and readiness with it.
        """
        return livestream_id in self._feeds or len(self._feeds) < self._settings.max_readers

    @contextlib.asynccontextmanager
    async def subscribe(self, livestream_id: str) -> AsyncIterator[Feed]:
        if self._group is None or self.closing:
            raise RuntimeError("feeds are not running")
        feed = self._feeds.get(livestream_id)
        if feed is None:
            feed = self._feeds[livestream_id] = Feed(livestream_id, self._settings.ring_size)
            task = self._group.create_task(self._read(feed), name=f"feed {livestream_id}")
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)
        feed.subscribers += 1
        self._metrics.sse_subscribers.inc()
        try:
            await feed.started.wait()
            yield feed
        finally:
            feed.subscribers -= 1
            self._metrics.sse_subscribers.dec()

    # -- the reader ---------------------------------------------------------------------------

    async def _read(self, feed: Feed) -> None:
        self._metrics.sse_feeds.inc()
        try:
            await self._follow(feed)
        except asyncio.CancelledError:
            feed.finish(None, failed=True)
            raise
        except Exception:  # a bug: end this feed (its subscribers reconnect), keep the process
            log.exception("feed reader failed", extra={"livestream_id": feed.livestream_id})
            feed.finish(None, failed=True)
        finally:
            if self._feeds.get(feed.livestream_id) is feed:
                del self._feeds[feed.livestream_id]
            self._metrics.sse_feeds.dec()

    async def _follow(self, feed: Feed) -> None:
        settings, attempt = self._settings, 0
        next_check, ending = 0.0, None
        while not self.closing:
            try:
                if not feed.started.is_set():
                    latest: Any = await self._redis.xrevrange(feed.key, count=1)
                    feed.start_at(sse.parse_id(latest[0][0].decode()) if latest else sse.ORIGIN)
                if feed.subscribers == 0:
                    return  # `_read` forgets the feed before any await: a newcomer starts a new one
                if ending is None and time.monotonic() >= next_check:
                    next_check = time.monotonic() + settings.phase_check_s
                    ending = await self._end_check(feed.livestream_id)
                block = None if ending is not None else settings.block_ms
                reply: Any = await self._redis.xread(
                    {feed.key: sse.format_id(feed.last)}, count=settings.batch, block=block
                )
                attempt = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                attempt += 1
                log.warning("redis read failed; retrying", extra={"key": feed.key, "error": repr(exc)})
                await asyncio.sleep(min(_RETRY_CAP_S, _RETRY_BASE_S * 2**attempt))
                continue
            entries = _decode(reply[0][1]) if reply else []
            if entries:
                feed.append(entries)
                self._metrics.sse_entries_read.inc(len(entries))
                # Pace the wake-ups to the write budget; what arrives meanwhile goes out with the next.
                await asyncio.sleep(feed.subscribers / settings.writes_per_s)
            elif ending is not None:
                feed.finish(ending)  # drained: nothing came after the livestream was over
                return
            elif time.monotonic() - feed.notified_at >= settings.ping_interval_s:
                feed.notify()  # idle: subscribers send a keepalive

    # -- a subscriber ---------------------------------------------------------------------------

    async def stream(
        self, livestream_id: str, after: sse.StreamId | None, types: Collection[str] | None
    ) -> AsyncGenerator[bytes, None]:
        """The SSE bytes for one subscriber of a livestream, from after `after` (None: from now on)."""
        settings = self._settings
        async with self.subscribe(livestream_id) as feed:
            position = feed.last if after is None else after
            yield sse.hello(settings.retry_ms)
            written = time.monotonic()
            while not self.closing:
                if position < feed.floor:
                    chunk = await self._catch_up(feed, position, types)
                else:
                    chunk = sse.select(sse.newer(feed.ring, position), position, types, settings.batch)
                if chunk.position > position:
                    position = chunk.position
                    if chunk.wire:
                        self._metrics.sse_bytes_sent.inc(len(chunk.wire))
                        yield chunk.wire
                        written = time.monotonic()
                    if chunk.live_ended:
                        yield sse.end_event(LIVE_END)
                        return
                    continue
                if feed.over and position >= feed.last:
                    if feed.ended is not None:
                        yield sse.end_event(feed.ended)
                    return  # failed: the client reconnects with its Last-Event-ID
                if time.monotonic() - written >= settings.ping_interval_s:
                    yield sse.KEEPALIVE
                    written = time.monotonic()
                await feed.wait(position)

    async def _catch_up(self, feed: Feed, after: sse.StreamId, types: Collection[str] | None) -> sse.Chunk:
        """Entries between `after` and the ring, read from Redis (bounded), for a subscriber
        behind the ring; preceded by a gap event when some of them are no longer held."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(feed.key, min="(" + sse.format_id(after), max="+", count=self._settings.batch)
            pipe.xinfo_stream(feed.key)
            reply, info = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if not reply:  # trimmed or expired in the meantime: the ring is all there is
            resume = feed.ring[0].position if feed.ring else feed.floor
            gap = sse.gap_event(after, resume) if after < feed.floor else b""
            self._count_gap(gap)
            return sse.Chunk(gap, max(after, feed.floor), False)
        first_held, removed = _front(info)
        gap = sse.gap_event(after, first_held) if first_held and sse.missed(after, first_held, removed) else b""
        self._count_gap(gap)
        chunk = sse.select(_decode(reply), after, types, self._settings.batch)
        return sse.Chunk(gap + chunk.wire, chunk.position, chunk.live_ended) if gap else chunk

    def _count_gap(self, gap: bytes) -> None:
        if gap:
            self._metrics.sse_gaps.inc()


def _front(info: Any) -> tuple[sse.StreamId | None, bool]:
    """(the oldest entry a stream still holds, whether entries were removed from it), from
    XINFO STREAM; (None, False) when that cannot be told (no such stream, an error)."""
    if not isinstance(info, dict) or not info.get("first-entry"):
        return None, False
    first = sse.parse_id(info["first-entry"][0].decode())
    added = info.get("entries-added")
    return first, added is not None and int(added) > int(info["length"])
