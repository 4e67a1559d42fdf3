"""Retry delays: exponential growth, a hard cap, full jitter, reproducible with a seed."""

from __future__ import annotations

import random

import pytest

from tiktok_service.persister.rows import next_delay


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 100, 5000])
def test_a_delay_is_never_negative_nor_above_the_exponential_ceiling_or_the_cap(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(30.0, 0.5 * 2 ** min(attempt, 62))
    for _ in range(200):
        assert 0.0 <= next_delay(attempt, 0.5, 30.0, rng) <= ceiling


def test_delays_spread_over_the_whole_window_rather_than_clustering_at_the_ceiling() -> None:
    rng = random.Random(7)
    samples = [next_delay(10, 1.0, 8.0, rng) for _ in range(1000)]
    assert min(samples) < 1.0
    assert max(samples) > 7.0


def test_the_window_doubles_with_each_attempt_until_the_cap() -> None:
    rng = random.Random(1)
    maxima = [max(next_delay(attempt, 1.0, 10.0, rng) for _ in range(2000)) for attempt in range(6)]
    assert maxima[0] <= 1.0 < maxima[1] <= 2.0 < maxima[2] <= 4.0 < maxima[3] <= 8.0
    assert maxima[4] <= 10.0
    assert maxima[5] <= 10.0


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [next_delay(n, 0.5, 30.0, random.Random(3)) for n in range(5)]
    second = [next_delay(n, 0.5, 30.0, random.Random(3)) for n in range(5)]
    assert first == second


def test_a_negative_attempt_is_treated_as_the_first() -> None:
    assert next_delay(-3, 1.0, 10.0, random.Random(0)) <= 1.0
