"""Retry delays: exponential backoff with full jitter (AWS architecture blog's variant).

Full jitter spreads reconnects of many connectors after a shared outage, so they do not
hit the sign server or Redis in lockstep.
"""

from __future__ import annotations

import random


def ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest delay allowed for the `attempt`-th retry (1-based)."""
    if attempt < 1:
        return 0.0
    return float(min(cap, base * 2.0 ** min(attempt - 1, 32)))


def next_delay(attempt: int, *, base: float, cap: float, rng: random.Random, floor: float = 0.0) -> float:
    """A delay in [max(floor, ceiling/2)... ceiling]: half fixed, half jitter, never below `floor`.

    `floor` carries a server's explicit instruction (HTTP 429 `Retry-After`), which always wins
    over our own schedule.
    """
    top = ceiling(attempt, base=base, cap=cap)
    delay = top / 2 + rng.uniform(0, top / 2)
    return max(delay, floor)
