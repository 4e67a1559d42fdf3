"""The persister loop: per-type streams (consumer group) -> PostgreSQL `events`, exactly once.

Delivery is at-least-once (an entry is acked only after the transaction that stored it
committed); storage is idempotent (deterministic event keys + ON CONFLICT DO NOTHING);
together they give every event exactly one row, whatever crashes, replays, reclaims or
parallel persisters happen in between.

Failure policy, in one place:
* PostgreSQL unreachable or failing: retry the SAME batch with full-jitter backoff
  (retry_base_s .. retry_cap_s) until it commits; nothing is acked meanwhile. The pool
  drops its connections so the next attempt reconnects.
* PostgreSQL refusing rows (data errors): split the batch to find the rows it refuses,
  store the rest, dead-letter the culprits. Retrying them would block the group forever.
* Undecodable entries: dead-lettered with the reason, then acked.
* Redis unreachable: retry the operation with the same backoff.
* Anything else is a bug: it propagates and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Final, TypeVar

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiktok_service.domain import naming
from tiktok_service.persister import events_repository, migrate, rows
from tiktok_service.persister.metrics import PersisterMetrics
from tiktok_service.persister.streams import DeadLetter, Entry, GroupConsumer
from tiktok_service.settings import PersisterSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = tuple[Entry, rows.Record]

#: What a lost connection looks like from asyncpg (OSError covers refused and timed out).
DB_TRANSIENT: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
REDIS_TRANSIENT: Final = (RedisError, OSError)
#: Decoded batches waiting for the writer. 2 keeps the database busy while the reader
#: works ahead, and bounds memory to ~4 batches (queue + one being read + one being stored).
PIPELINE_DEPTH: Final = 2
#: Entries per stream per XREADGROUP. A reply is parsed in one go on the event loop; small
#: replies keep the writer responsive, and batches are filled from several reads anyway.
READ_COUNT: Final = 250
#: Entries decoded between two yields to the event loop. Decoding is CPU work on the loop
#: thread; long uninterrupted runs would leave PostgreSQL idle waiting for the writer.
DECODE_SLICE: Final = 200


class Stopped(Exception):
    """Raised inside the loop when stop() interrupts a wait; run() turns it into a return."""


class Persister:
    """One consumer of the persister group. Use `run()` until `stop()` (or `run(burst=True)`
    to return once the streams are drained, for tests and benchmarks)."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        settings: PersisterSettings,
        consumer_name: str,
        metrics: PersisterMetrics,
        streams: Sequence[str] | None = None,
        rng: random.Random | None = None,
        migrate_on_start: bool = True,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.group = GroupConsumer(
            redis,
            streams=streams if streams is not None else naming.all_type_streams(),
            group=naming.PERSISTER_GROUP,
            consumer=consumer_name,
        )
        self._rng = rng or random.Random()
        self._migrate_on_start = migrate_on_start
        self._stopping = asyncio.Event()
        self.state = "created"  # created, starting, running, retrying_db, retrying_redis, stopped

    def stop(self) -> None:
        """Ask the loop to finish: the batch being stored is completed if it can be in one
        attempt, otherwise abandoned unacked (another consumer reclaims it later)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, burst: bool = False) -> None:
        try:
            self.state = "starting"
            if self._migrate_on_start:
                await self._retry_db("migrate", self._migrate)
            await self._retry_redis(self.group.ensure_groups)
            await self._drain_own_pending()
            await self._consume(burst=burst)
        except Stopped:
            pass
        finally:
            self.state = "stopped"

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn:
            applied = await migrate.apply_migrations(conn)
        if applied:
            log.info("schema migrated", extra={"versions": applied})

    async def _drain_own_pending(self) -> None:
        """Finish what a previous process with our consumer name read but never acked."""
        while not self.stopping:  # each round acks or dead-letters what it read
            entries = await self._retry_redis(lambda: self.group.read_own_pending(count=self.settings.batch_size))
            if not entries:
                return
            for chunk in self._chunks(entries):
                await self._store_and_ack(await self._decode(chunk))

    async def _consume(self, *, burst: bool) -> None:
        """A reader (Redis -> decoded batches) and a writer (batches -> PostgreSQL -> acks)
        joined by a queue of PIPELINE_DEPTH batches: the Python work of reading and decoding
        overlaps the database work of storing, and memory stays bounded by a few batches."""
        queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self._read_batches(queue, burst=burst), name="persister-reader")
            tasks.create_task(self._write_batches(queue, reader), name="persister-writer")

    async def _read_batches(self, queue: asyncio.Queue[list[Item] | None], *, burst: bool) -> None:
        """Fill batches of up to batch_size rows from small reads, and hand them to the writer.

        Reads are small (READ_COUNT per stream) because parsing a reply blocks the event
        loop, and with it the writer; batches are large because that is what makes COPY
        cheap. A partial batch is handed over as soon as a read finds nothing more, so a
        quiet stream does not wait for a full batch.
        """
        batch: list[Item] = []
        size = self.settings.batch_size
        claim_every_s = self.settings.claim_idle_ms / 2000
        next_claim = time.monotonic()
        try:
            while not self.stopping:
                claiming = time.monotonic() >= next_claim
                if claiming:
                    next_claim = time.monotonic() + claim_every_s
                    entries = await self._claim_idle()
                else:
                    entries = await self._read_new(block=not batch)
                batch.extend(await self._decode(entries))
                drained = not claiming and not entries  # nothing new in any stream right now
                while len(batch) >= size or (drained and batch):
                    await queue.put(batch[:size])
                    batch = batch[size:]
                if burst and drained:
                    break
        except Stopped:
            pass  # what is in `batch` stays pending on us and is reclaimed later
        await queue.put(None)  # the writer stores what is queued, then ends

    async def _write_batches(self, queue: asyncio.Queue[list[Item] | None], reader: asyncio.Task[None]) -> None:
        try:
            while (batch := await queue.get()) is not None:
                await self._store_and_ack(batch)
        except Stopped:
            # Stopped while retrying: abandon the queued batches unacked (they are pending on
            # us and get reclaimed) and stop the reader, which may be blocked on a full queue.
            reader.cancel()

    async def _read_new(self, *, block: bool) -> list[Entry]:
        block_ms = self.settings.block_ms if block else None
        count = min(self.settings.batch_size, READ_COUNT)
        return await self._retry_redis(lambda: self.group.read_new(count=count, block_ms=block_ms))

    async def _claim_idle(self) -> list[Entry]:
        """Entries idle longer than claim_idle_ms under any consumer (a dead persister's)."""
        claimed = await self._retry_redis(
            lambda: self.group.claim_idle(min_idle_ms=self.settings.claim_idle_ms, count=self.settings.batch_size)
        )
        if claimed:
            self.metrics.claimed.inc(len(claimed))
            log.info("reclaimed idle entries", extra={"count": len(claimed)})
        return claimed

    def _chunks(self, entries: Sequence[Entry]) -> Iterator[Sequence[Entry]]:
        size = self.settings.batch_size
        for start in range(0, len(entries), size):
            yield entries[start : start + size]

    async def _decode(self, entries: Sequence[Entry]) -> list[Item]:
        """Map entries to rows; poison entries are dead-lettered (and acked) right away."""
        items: list[Item] = []
        letters: list[DeadLetter] = []
        for position, entry in enumerate(entries, start=1):
            try:
                items.append((entry, rows.record_from_fields(entry.fields)))
            except rows.PoisonEntry as exc:
                letters.append(DeadLetter(entry, exc.category, exc.reason))
            if position % DECODE_SLICE == 0:
                await asyncio.sleep(0)  # let the writer's COPY make progress meanwhile
        await self._dead_letter(letters)
        return items

    async def _store_and_ack(self, batch: Sequence[Item]) -> None:
        """Commit the batch, dead-letter what PostgreSQL refused, then (only then) ack."""
        if not batch:
            return
        rejected = await self._store(batch)
        await self._dead_letter(rejected)
        await self._retry_redis(functools.partial(self.group.ack, [entry for entry, _ in batch]))

    async def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        await self._retry_redis(lambda: self.group.dead_letter(letters))
        for letter in letters:
            self.metrics.dead_lettered.labels(letter.category).inc()
            log.warning(
                "entry dead-lettered",
                extra={"stream": letter.entry.stream, "entry_id": letter.entry.id.decode(), "reason": letter.reason},
            )

    async def _store(self, batch: Sequence[Item]) -> list[DeadLetter]:
        """Commit `batch` (retrying until it commits); returns the entries PostgreSQL refused."""
        started = time.perf_counter()

        async def attempt() -> tuple[int, list[DeadLetter]]:
            nonlocal started
            started = time.perf_counter()
            async with self.pool.acquire() as conn:
                return await _insert_or_split(conn, batch)

        inserted, rejected = await self._retry_db(
            "store batch", attempt, on_retry=lambda: self.group.keep_claimed(e for e, _ in batch)
        )
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.rows_inserted.inc(inserted)
        self.metrics.duplicates_skipped.inc(len(batch) - inserted - len(rejected))
        self.metrics.last_commit.set_to_current_time()
        return rejected

    async def _retry_db(
        self, what: str, operation: Callable[[], Awaitable[T]], on_retry: Callable[[], Awaitable[None]] | None = None
    ) -> T:
        for attempt in itertools.count():  # ends on success, or on stop() during the backoff
            try:
                result = await operation()
            except DB_TRANSIENT as exc:
                self.state = "retrying_db"
                self.metrics.db_retries.inc()
                await self.pool.expire_connections()  # reconnect on the next acquire
                await self._back_off("postgresql", what, attempt, exc)
                if on_retry is not None:
                    await self._best_effort(on_retry)
                continue
            self.state = "running"
            return result
        raise AssertionError("itertools.count() is endless")

    async def _retry_redis(self, operation: Callable[[], Awaitable[T]]) -> T:
        for attempt in itertools.count():  # ends on success, or on stop() during the backoff
            try:
                result = await operation()
            except REDIS_TRANSIENT as exc:
                self.state = "retrying_redis"
                self.metrics.redis_retries.inc()
                await self._back_off("redis", "redis operation", attempt, exc)
                continue
            self.state = "running"
            return result
        raise AssertionError("itertools.count() is endless")

    async def _back_off(self, service: str, what: str, attempt: int, exc: BaseException) -> None:
        if self.stopping:
            raise Stopped
        delay = rows.next_delay(attempt, self.settings.retry_base_s, self.settings.retry_cap_s, self._rng)
        log.warning(
            f"{service} failed; retrying",
            extra={"operation": what, "attempt": attempt + 1, "delay_s": round(delay, 3), "error": repr(exc)},
        )
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            return
        raise Stopped

    async def _best_effort(self, operation: Callable[[], Awaitable[None]]) -> None:
        try:
            await operation()
        except REDIS_TRANSIENT as exc:
            log.info("could not refresh claimed entries", extra={"error": repr(exc)})


async def _insert_or_split(conn: asyncpg.Connection, batch: Sequence[Item]) -> tuple[int, list[DeadLetter]]:
    """Insert `batch`; if PostgreSQL refuses its data, bisect to find the refused rows.

    Recursion depth is log2(len(batch)); each half is its own transaction, and halves
    already stored are harmless to store again if a later transient error restarts us.
    """
    try:
        return await events_repository.insert_events(conn, [record for _, record in batch]), []
    except DB_TRANSIENT as exc:
        if not events_repository.is_data_error(exc):
            raise
        if len(batch) == 1:
            return 0, [DeadLetter(batch[0][0], "rejected_by_database", f"{type(exc).__name__}: {exc}")]
    middle = len(batch) // 2
    left_inserted, left_rejected = await _insert_or_split(conn, batch[:middle])
    right_inserted, right_rejected = await _insert_or_split(conn, batch[middle:])
    return left_inserted + right_inserted, left_rejected + right_rejected
