"""Retry delays: exponential backoff with full jitter (AWS architecture blog's variant).

Full jitter spreads reconnects of many connectors after a shared outage, so they do not
hit the sign server or Redis in lockstep.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping


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


#: A `RateLimit-Reset` above this is a unix time, below it a number of seconds (the IETF
#: draft's delta-seconds): EulerStream's sign server and TikTokLive (`reset_time`) use unix
#: seconds, TikTok-Live-Connector reads `x-ratelimit-reset` as unix seconds too.
_EPOCH_THRESHOLD_S = 1_000_000_000


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def announced_reset(headers: Mapping[str, str], now: float) -> float | None:
    """When a rate-limited server says we may try again (unix seconds), or None if it did not say.

    Read in the order a server's intent is clearest: `Retry-After` (delta-seconds or an
    HTTP date, RFC 9110 §10.2.3), then `RateLimit-Reset` / `X-RateLimit-Reset` (unix time or
    delta-seconds), and last `RateLimit-Remaining`, which TikTokLive 7.0.1 reads as the seconds
    to wait (`SignatureRateLimitError.calculate_retry_after`); a remaining count of 0 says nothing.
    `headers` must look names up case-insensitively (httpx and aiohttp headers do).
    """
    retry_after = headers.get("Retry-After")
    delta = _number(retry_after)
    if delta is not None:
        return now + delta
    if (moment := _http_date(retry_after)) is not None:
        return max(now, moment)
    for name in ("RateLimit-Reset", "X-RateLimit-Reset"):
        value = _number(headers.get(name))
        if value is not None:
            return value if value >= _EPOCH_THRESHOLD_S else now + value
    remaining = _number(headers.get("RateLimit-Remaining"))
    if remaining:
        return now + remaining
    return None


def lived_long(lived_s: float | None, healthy_after_s: float) -> bool:
    """Whether a connection stayed up long enough to count as healthy (and reset the failure count).

    A socket that TikTok closes cleanly seconds after opening is a failure in disguise: treating
    it as healthy would reconnect at once, forever, and hammer the sign server.
    """
    return lived_s is not None and lived_s >= healthy_after_s
