"""Persister: the per-type Redis streams (consumer group `persister`) -> PostgreSQL `events`.

Layers, from pure to effectful:
  rows.py                   entry -> row, deterministic keys, poison rules, backoff (pure)
  batches.py                stream replies -> batches of rows + where each came from (pure)
  streams.py                the group's Redis commands (read, claim, ack, dead-letter)
  retention.py              what may be trimmed from a shared stream, group lag (pure)
  trimming.py               XTRIM MINID below what every group acknowledged, lag metrics
  consumer.py               the Persister loop: batching, retries, exactly-once acking
  metrics.py                its Prometheus metrics, on a registry the caller owns
  runner.py, main.py        process wiring: clients, signals, /healthz and /metrics

The schema (migrations) and all SQL on `events` are `tiktok_service.database`'s: the API
reads the same table.
"""
