"""Garbage-collector settings for the long-running processes (process-wide: entry points only)."""

from __future__ import annotations

import gc

#: Allocations between young-generation collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000
#: The connector's: each TikTok message decodes into a graph of pydantic-validated objects, and
#: at 50,000 the garbage of a burst stays alive long enough to raise the pod's peak RSS by
#: ~11 MB (measured: 50,000-message burst, realistic mix, peak 117 MB at 50,000 vs 106 MB at
#: 5,000, CPU within run-to-run noise). Memory is what a connector pod is sized by.
CONNECTOR_YOUNG_THRESHOLD = 5_000


def tune_for_throughput(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze what is alive now (modules, settings) and collect the young generation less often.

    A process that decodes thousands of messages or watch events a second makes a graph of
    short-lived objects per message; with CPython's default thresholds the cyclic collector
    runs hundreds of times a second and rescans everything young each time. Objects alive at
    start-up are frozen out of collections entirely, and generation 0 collects every
    `young_threshold` allocations: CPU falls, memory stays bounded (cycles are still
    collected, in larger batches). Call once, from a process entry point, after imports.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 20)
