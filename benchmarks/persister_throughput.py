"""Persister throughput against the best PostgreSQL can do: one raw COPY of the same rows.

    python -m benchmarks.persister_throughput [--events 200000] [--batch-size 2000]

Starts its own PostgreSQL and Redis, publishes N events to the per-type streams (not
timed), then times (1) a persister draining them in burst mode: XREADGROUP, decode, COPY
into `events` in batches (the staging-table merge is only taken by batches holding
duplicates, and there are none here), XACK, with trimming of the streams, lag metrics and
the delivery-count check running every second; and (2) a single asyncpg
`copy_records_to_table` of the same rows into an identical table (same columns and
indexes). Prints one line: persister_rows_per_s=... baseline_copy_rows_per_s=... ratio=...

The persister runs in this process with the garbage collector configured as in its own
(`runner.configure_gc`), and none of the benchmark's own data alive while it is timed:
200k sample envelopes are a million objects that every full collection would scan, a
cost the real process does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Iterator

import asyncpg
import redis.asyncio as aioredis

from tiktok_service.database import migrate
from tiktok_service.domain import events as domain_events
from tiktok_service.domain import naming
from tiktok_service.persister import rows, runner
from tiktok_service.settings import PersisterSettings
from tiktok_service_dev import persister_harness, sample_events
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis

LIVESTREAM_ID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"
BASELINE_TABLE = "events_baseline"


async def measure(pg: LocalPostgres, rd: LocalRedis, *, events: int, batch_size: int) -> tuple[float, float]:
    admin = await asyncpg.connect(pg.dsn)
    await admin.execute("CREATE DATABASE bench")
    await admin.close()
    database_url = pg.dsn.rsplit("/", 1)[0] + "/bench"
    await migrate.migrate(database_url)

    redis = aioredis.from_url(rd.url)
    try:
        await sample_events.publish(redis, _envelopes(events), per_livestream=False)
    finally:
        await redis.aclose()

    runner.configure_gc()
    # Trimming runs while it drains (every second, more often than the 5 s default, and with
    # no retention: everything acknowledged goes), and so does the claim round with its
    # delivery-count check, at the production idle time (a shorter one would reclaim the
    # persister's own batches in flight, a cost production does not have).
    settings = persister_harness.quick_settings(
        rd.url,
        database_url,
        batch_size=batch_size,
        block_ms=100,
        stream_retention_s=0,
        trim_interval_s=1,
        claim_idle_ms=PersisterSettings.model_fields["claim_idle_ms"].default,
    )
    started = time.perf_counter()
    registry = await persister_harness.run_burst(settings, within_s=3600)
    persister_s = time.perf_counter() - started
    stored = persister_harness.metric(registry, "rows_inserted_total")
    if stored != events:
        raise RuntimeError(f"persister stored {stored:.0f} rows, expected {events}")
    trimmed = sum(
        persister_harness.metric(registry, "stream_trimmed_entries_total", stream=stream)
        for stream in naming.all_type_streams()
    )
    if not trimmed:
        raise RuntimeError("the persister trimmed nothing: the benchmark would not measure trimming")
    if duplicates := persister_harness.metric(registry, "duplicates_skipped_total"):
        raise RuntimeError(f"{duplicates:.0f} entries were stored twice: the persister reclaimed its own batches")

    records = [rows.record_from_envelope(e, e.encode()) for e in _envelopes(events)]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE events_baseline (LIKE events INCLUDING ALL)")
        started = time.perf_counter()
        await conn.copy_records_to_table(BASELINE_TABLE, records=records, columns=rows.COLUMNS)
        baseline_s = time.perf_counter() - started
    finally:
        await conn.close()
    return events / persister_s, events / baseline_s


def _envelopes(events: int) -> Iterator[domain_events.Envelope]:
    return (sample_events.sample_envelope(i, livestream_id=LIVESTREAM_ID) for i in range(events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with LocalPostgres() as pg, LocalRedis() as rd:
        persister, baseline = asyncio.run(measure(pg, rd, events=args.events, batch_size=args.batch_size))
    # The load average shows whether other processes competed for the CPUs: the persister
    # needs Python, Redis and PostgreSQL busy at once, the baseline mostly PostgreSQL.
    print(
        f"persister_rows_per_s={persister:.0f} baseline_copy_rows_per_s={baseline:.0f} "
        f"ratio={persister / baseline:.2f} (target >= 0.6) events={args.events} batch_size={args.batch_size} "
        f"cpus={os.cpu_count()} load1_before={load_before:.2f}"
    )


if __name__ == "__main__":
    main()
