"""Persister: the per-type Redis streams (consumer group `persister`) -> PostgreSQL `events`.

Layers, from pure to effectful:
  rows.py                   entry -> row, deterministic keys, poison rules, cursors, backoff (pure)
  batches.py                stream replies -> batches of rows + where each came from (pure)
  migrate.py, migrations/   versioned schema, applied once under an advisory lock
  events_repository.py      all SQL on `events` (COPY, merge when duplicates, keyset pages)
  livestreams_repository.py all SQL on `livestreams` (written by the operator, not the persister)
  streams.py                the group's Redis commands (read, claim, ack, dead-letter)
  consumer.py               the Persister loop: batching, retries, exactly-once acking
  metrics.py                its Prometheus metrics, on a registry the caller owns
  runner.py, main.py        process wiring: clients, signals, /healthz and /metrics
"""
