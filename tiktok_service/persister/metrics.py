"""Prometheus metrics of one persister, registered on a registry the caller owns.

Not the global registry: tests and benchmarks run several persisters in one process, and
each must count its own work.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: From one small COPY (a few ms) to a batch stuck behind a slow disk (tens of seconds).
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class PersisterMetrics:
    rows_inserted: Counter
    duplicates_skipped: Counter
    batches: Counter
    batch_seconds: Histogram
    dead_lettered: Counter
    db_retries: Counter
    redis_retries: Counter
    claimed: Counter
    last_commit: Gauge
    lag_entries: Gauge
    lag_seconds: Gauge
    stream_length: Gauge
    trimmed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PersisterMetrics:
        return cls(
            rows_inserted=Counter(
                "tiktok_persister_rows_inserted",
                "Events stored in PostgreSQL (new rows).",
                registry=registry,
            ),
            duplicates_skipped=Counter(
                "tiktok_persister_duplicates_skipped",
                "Entries whose event was already stored (replays, reclaims, racing persisters).",
                registry=registry,
            ),
            batches=Counter(
                "tiktok_persister_batches",
                "Batches committed to PostgreSQL.",
                registry=registry,
            ),
            batch_seconds=Histogram(
                "tiktok_persister_batch_seconds",
                "Time to store one batch (COPY + merge + commit), retries excluded.",
                buckets=BATCH_SECONDS_BUCKETS,
                registry=registry,
            ),
            dead_lettered=Counter(
                "tiktok_persister_dead_lettered",
                "Entries moved to the dead-letter stream, by reason category.",
                ["reason"],
                registry=registry,
            ),
            db_retries=Counter(
                "tiktok_persister_db_retries",
                "Failed attempts to store a batch that will be retried.",
                registry=registry,
            ),
            redis_retries=Counter(
                "tiktok_persister_redis_retries",
                "Failed Redis operations that will be retried.",
                registry=registry,
            ),
            claimed=Counter(
                "tiktok_persister_claimed",
                "Pending entries taken over from idle consumers (XAUTOCLAIM).",
                registry=registry,
            ),
            last_commit=Gauge(
                "tiktok_persister_last_commit_timestamp_seconds",
                "Unix time of the last committed batch (alert when it stops moving under load).",
                registry=registry,
            ),
            lag_entries=Gauge(
                "tiktok_persister_stream_lag_entries",
                "Entries of a shared stream a consumer group has not acknowledged yet (pending + undelivered).",
                ["stream", "group"],
                registry=registry,
            ),
            lag_seconds=Gauge(
                "tiktok_persister_stream_lag_seconds",
                "Age of the oldest entry of a shared stream a consumer group has not acknowledged (0: none).",
                ["stream", "group"],
                registry=registry,
            ),
            stream_length=Gauge(
                "tiktok_persister_stream_length",
                "Entries a shared stream holds in Redis (acknowledged ones within retention, and the rest).",
                ["stream"],
                registry=registry,
            ),
            trimmed=Counter(
                "tiktok_persister_stream_trimmed_entries",
                "Entries trimmed from a shared stream after every consumer group acknowledged them.",
                ["stream"],
                registry=registry,
            ),
        )
