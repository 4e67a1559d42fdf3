"""When a rate-limited server says we may try again, and when a connection counts as healthy."""

from __future__ import annotations

import httpx

from tiktok_service.domain import backoff

NOW = 1_800_000_000.0


def reset(**headers: str) -> float | None:
    return backoff.announced_reset(httpx.Headers({k.replace("_", "-"): v for k, v in headers.items()}), NOW)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert reset(Retry_After="30") == NOW + 30
    later = reset(Retry_After="Sat, 16 Jan 2027 08:00:00 GMT")
    assert later == NOW + 86_400  # NOW is 2027-01-15T08:00:00Z
    assert reset(Retry_After="Thu, 01 Jan 2026 00:00:00 GMT") == NOW  # a past date: now


def test_ratelimit_reset_as_unix_time_or_as_seconds() -> None:
    assert reset(RateLimit_Reset=str(int(NOW) + 7200)) == NOW + 7200
    assert reset(RateLimit_Reset="90") == NOW + 90
    assert reset(X_RateLimit_Reset=str(int(NOW) + 60)) == NOW + 60


def test_retry_after_wins_over_the_window_reset() -> None:
    assert reset(Retry_After="5", RateLimit_Reset=str(int(NOW) + 7200)) == NOW + 5


def test_tiktoklives_reading_of_ratelimit_remaining_is_the_last_resort() -> None:
    assert reset(RateLimit_Remaining="42") == NOW + 42
    assert reset(RateLimit_Remaining="0") is None
    assert reset() is None
    assert reset(Retry_After="soon") is None


def test_a_connection_is_healthy_once_it_lived_long_enough() -> None:
    assert backoff.lived_long(30, 30) and not backoff.lived_long(29.9, 30) and not backoff.lived_long(None, 30)
