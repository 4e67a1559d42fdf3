"""The persister loop: per-type streams (consumer group) -> PostgreSQL `events`, exactly once.

Delivery is at-least-once (an entry is acked only after the transaction that stored it
committed); storage is idempotent (deterministic event keys as primary key: a batch
meeting a stored event is merged with ON CONFLICT DO NOTHING instead of copied); together
they give every event exactly one row, whatever crashes, replays, reclaims or parallel
persisters happen in between.

Failure policy, in one place:
* PostgreSQL unreachable or failing: retry the SAME batch with full-jitter backoff
  (retry_base_s .. retry_cap_s) until it commits; nothing is acked meanwhile. The pool
  drops its connections so the next attempt reconnects.
* PostgreSQL refusing rows (data errors): split the batch to find the rows it refuses,
  store the rest, dead-letter the culprits. Retrying them would block the group forever.
* Undecodable entries: dead-lettered with the reason, then acked.
* Redis unreachable: retry the operation with the same backoff.
* Anything else is a bug: it propagates and the process exits non-zero. The entries it
  was storing are delivered again (to the restarted process or a peer); one delivered
  `max_deliveries` times is stored alone, and whatever fails then, for whatever reason,
  is dead-lettered with it; past SUSPECT_ATTEMPTS more deliveries (storing it alone kills
  the process) it is dead-lettered without another try. So no entry wedges the group.

Trimming of the shared streams and the lag of every consumer group: `trimming.py`, run
every `trim_interval_s` next to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiktok_service.database import events_repository, migrate
from tiktok_service.domain import naming
from tiktok_service.persister import batches, rows, trimming
from tiktok_service.persister.batches import Batch
from tiktok_service.persister.metrics import PersisterMetrics
from tiktok_service.persister.streams import DeadLetter, Entry, GroupConsumer
from tiktok_service.settings import PersisterSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a lost connection looks like from asyncpg (OSError covers refused and timed out).
#: `InternalClientError` is a connection whose protocol state a server shutdown left broken
#: ("cannot switch to state 21; another operation (2) is in progress", met by the chaos suite
#: after PostgreSQL was down for a minute): the connection is dropped and the batch retried.
DB_TRANSIENT: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
REDIS_TRANSIENT: Final = (RedisError, OSError)
#: Decoded batches waiting for the writer. 2 keeps the database busy while the reader
#: works ahead, and bounds memory to ~5 batches (queue + one being read + one being stored
#: + one being acked).
PIPELINE_DEPTH: Final = 2
_CANNOT_MIGRATE: Final = (
    "the schema is older than this persister and its login may not migrate it; "
    "waiting for `tiktok-service access` (or `migrate`) to run as the schema's owner"
)
#: Entries per stream per XREADGROUP. A reply is parsed in one go on the event loop, and
#: each stream's part is decoded in one go: small replies keep the writer responsive, and
#: batches are filled from several reads anyway. Larger reads cost more CPU per entry, not
#: less (measured: 1,000 per stream ~30% more than 250), the round trips saved being cheap.
READ_COUNT: Final = 250
#: After a batch that held events already stored (a replay, reclaimed entries), this many
#: batches are merged right away instead of first attempting a COPY that would fail: where
#: there is one duplicate, more usually follow.
MERGE_AFTER_DUPLICATES: Final = 8
#: Deliveries past `max_deliveries` during which an entry is still stored alone; after
#: them it is dead-lettered untried (storing it alone ended the process each time).
SUSPECT_ATTEMPTS: Final = 3


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
        self._merge_batches = 0  # batches left to merge right away (see MERGE_AFTER_DUPLICATES)
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
            try:
                applied = await migrate.apply_migrations(conn)
            except asyncpg.InsufficientPrivilegeError:
                # Its own login (README, "Credentials and least privilege"): retried until the owner migrates.
                log.warning(_CANNOT_MIGRATE)
                raise
        if applied:
            log.info("schema migrated", extra={"versions": applied})

    async def _drain_own_pending(self) -> None:
        """Finish what a previous process with our consumer name read but never acked."""
        await self._settle_over_delivered(min_idle_ms=None)
        while not self.stopping:  # each round acks or dead-letters what it read
            entries = await self._retry_redis(lambda: self.group.read_own_pending(count=self.settings.batch_size))
            if not entries:
                return
            batch = Batch()
            await self._dead_letter(batches.add_entries(batch, entries))
            while batch:
                head, batch = batch.split(self.settings.batch_size)
                await self._store_and_ack(head)

    async def _consume(self, *, burst: bool) -> None:
        """A reader (Redis -> decoded batches) and a writer (batches -> PostgreSQL -> acks)
        joined by a queue of PIPELINE_DEPTH batches: the Python work of reading and decoding
        overlaps the database work of storing, and memory stays bounded by a few batches."""
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        finished = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self._read_batches(queue, burst=burst), name="persister-reader")
            writer = tasks.create_task(self._write_batches(queue, reader), name="persister-writer")
            writer.add_done_callback(lambda _: finished.set())
            tasks.create_task(self._housekeep(finished), name="persister-housekeeping")

    async def _housekeep(self, finished: asyncio.Event) -> None:
        """Trim the shared streams and export the groups' lag every trim_interval_s, and
        once more when the loop ends (a drained burst leaves its streams trimmed)."""
        while not self.stopping:  # no last round on stop: Redis may be what is failing
            await self.housekeep_once()
            if finished.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=self.settings.trim_interval_s)

    async def housekeep_once(self) -> None:
        """One trimming and lag round; a failure is logged and waits for the next round."""
        try:
            await trimming.housekeep(
                self.group.redis,
                self.group.streams,
                metrics=self.metrics,
                retention_s=self.settings.stream_retention_s,
            )
        except REDIS_TRANSIENT as exc:
            log.warning("could not trim the streams or measure lag", extra={"error": repr(exc)})

    async def _read_batches(self, queue: asyncio.Queue[Batch | None], *, burst: bool) -> None:
        """Fill batches of up to batch_size rows from small reads, and hand them to the writer.

        Reads are small (READ_COUNT per stream) because parsing a reply blocks the event
        loop, and with it the writer; batches are large because that is what makes COPY
        cheap. A partial batch is handed over as soon as a read finds nothing more, so a
        quiet stream does not wait for a full batch.
        """
        batch = Batch()
        size = self.settings.batch_size
        claim_every_s = self.settings.claim_idle_ms / 2000
        next_claim = time.monotonic()
        try:
            while not self.stopping:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every_s
                    await self._dead_letter(batches.add_entries(batch, await self._claim_idle()))
                    drained = False
                else:
                    found = batches.reply_streams(await self._read_new(block=not batch))
                    for stream, entries in found:
                        await self._dead_letter(batches.add_found(batch, stream, entries))
                        await asyncio.sleep(0)  # decoding is CPU work: let the writer's COPY progress
                    drained = not found  # nothing new in any stream right now
                while len(batch) >= size or (drained and batch):
                    head, batch = batch.split(size)
                    await queue.put(head)
                if burst and drained:
                    break
        except Stopped:
            pass  # what is in `batch` stays pending on us and is reclaimed later
        await queue.put(None)  # the writer stores what is queued, then ends

    async def _write_batches(self, queue: asyncio.Queue[Batch | None], reader: asyncio.Task[None]) -> None:
        """Store the batches in order, each acked once committed. The ack of one batch (a
        Redis round trip) overlaps the COPY of the next, so PostgreSQL does not idle for it;
        one ack at most is in flight, and it is always awaited here."""
        acking: asyncio.Task[None] | None = None
        try:
            while (batch := await queue.get()) is not None:
                rejected = await self._store(batch)
                if acking is not None:
                    await acking
                acking = asyncio.create_task(self._acknowledge(batch, rejected), name="persister-ack")
            if acking is not None:
                await acking
        except Stopped:
            # Stopped while retrying: abandon the queued batches unacked (they are pending on
            # us and get reclaimed) and stop the reader, which may be blocked on a full queue.
            # A committed batch is still acked if Redis answers (its retries end on stop).
            reader.cancel()
            if acking is not None:
                with contextlib.suppress(Stopped):
                    await acking
        finally:
            if acking is not None and not acking.done():  # we are being cancelled
                acking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acking

    async def _read_new(self, *, block: bool) -> Any:
        """New entries, as the reply hiredis parsed (see batches.reply_streams)."""
        block_ms = self.settings.block_ms if block else None
        count = min(self.settings.batch_size, READ_COUNT)
        return await self._retry_redis(lambda: self.group.read_new_reply(count=count, block_ms=block_ms))

    async def _claim_idle(self) -> list[Entry]:
        """Entries idle longer than claim_idle_ms under any consumer (a dead persister's)."""
        await self._settle_over_delivered(min_idle_ms=self.settings.claim_idle_ms)
        claimed = await self._retry_redis(
            lambda: self.group.claim_idle(min_idle_ms=self.settings.claim_idle_ms, count=self.settings.batch_size)
        )
        if claimed:
            self.metrics.claimed.inc(len(claimed))
            log.info("reclaimed idle entries", extra={"count": len(claimed)})
        return claimed

    async def _settle_over_delivered(self, *, min_idle_ms: int | None) -> None:
        """Store alone, or dead-letter, the entries delivered max_deliveries times or more
        (own pending ones when `min_idle_ms` is None, else any consumer's idle ones)."""
        limit = self.settings.max_deliveries
        found = await self._retry_redis(
            lambda: self.group.over_delivered(limit=limit, count=self.settings.batch_size, min_idle_ms=min_idle_ms)
        )
        for entry, deliveries in found:
            if deliveries > limit + SUSPECT_ATTEMPTS:
                reason = f"delivered {deliveries} times without being stored (limit {limit}); not tried again"
                await self._dead_letter([DeadLetter(entry, "delivery_limit", reason)])
                continue
            log.warning(
                "entry delivered too often; storing it alone",
                extra={"stream": entry.stream, "entry_id": entry.id.decode(), "deliveries": deliveries},
            )
            batch = Batch()
            await self._dead_letter(batches.add_entries(batch, [entry]))
            if batch:
                await self._store_alone(batch, deliveries)

    async def _store_alone(self, batch: Batch, deliveries: int) -> None:
        """Store a batch of one suspect entry; whatever fails but a retryable outage (which
        `_store` retries) dead-letters it with the reason instead of ending the process."""
        try:
            rejected = await self._store(batch)
        except Stopped:
            raise
        except Exception as exc:  # the very failure that kept it from being acked: never again
            reason = f"delivered {deliveries} times; storing it alone failed: {exc!r}"[:500]
            log.exception("suspect entry could not be stored", extra={"entry_id": batch.ids[0].decode()})
            await self._dead_letter([DeadLetter(batch.entry(0), "delivery_limit", reason)])
            return
        await self._acknowledge(batch, rejected)

    async def _store_and_ack(self, batch: Batch) -> None:
        """Commit the batch, dead-letter what PostgreSQL refused, then (only then) ack."""
        await self._acknowledge(batch, await self._store(batch))

    async def _acknowledge(self, batch: Batch, rejected: Sequence[DeadLetter]) -> None:
        """Dead-letter what PostgreSQL refused of a committed batch, then ack the batch."""
        await self._dead_letter(rejected)
        await self._retry_redis(functools.partial(self.group.ack, batch.ids_by_stream()))

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

    async def _store(self, batch: Batch) -> list[DeadLetter]:
        """Commit `batch` (retrying until it commits); returns the entries PostgreSQL refused."""
        if not batch:
            return []
        started = time.perf_counter()
        expect_new = self._merge_batches == 0

        async def attempt() -> tuple[int, list[DeadLetter]]:
            nonlocal started
            started = time.perf_counter()
            async with self.pool.acquire() as conn:
                try:
                    return await _insert_or_split(conn, batch, expect_new=expect_new)
                except DB_TRANSIENT:
                    conn.terminate()  # never hand a connection an operation failed on to the next attempt
                    raise

        inserted, rejected = await self._retry_db(
            "store batch", attempt, on_retry=lambda: self.group.keep_claimed(batch.ids_by_stream())
        )
        duplicates = len(batch) - inserted - len(rejected)
        self._merge_batches = MERGE_AFTER_DUPLICATES if duplicates else max(self._merge_batches - 1, 0)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.rows_inserted.inc(inserted)
        self.metrics.duplicates_skipped.inc(duplicates)
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


async def _insert_or_split(conn: asyncpg.Connection, batch: Batch, *, expect_new: bool) -> tuple[int, list[DeadLetter]]:
    """Insert `batch`; if PostgreSQL refuses its data, bisect to find the refused rows.

    Recursion depth is log2(len(batch)); each half is its own transaction, and halves
    already stored are harmless to store again if a later transient error restarts us.
    """
    try:
        return await events_repository.insert_events(conn, batch.records, expect_new=expect_new), []
    except DB_TRANSIENT as exc:
        if not events_repository.is_data_error(exc):
            raise
        if len(batch) == 1:
            return 0, [DeadLetter(batch.entry(0), "rejected_by_database", f"{type(exc).__name__}: {exc}")]
    left, right = batch.split(len(batch) // 2)
    left_inserted, left_rejected = await _insert_or_split(conn, left, expect_new=expect_new)
    right_inserted, right_rejected = await _insert_or_split(conn, right, expect_new=expect_new)
    return left_inserted + right_inserted, left_rejected + right_rejected
