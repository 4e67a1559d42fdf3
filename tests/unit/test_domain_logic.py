"""Pure decisions: duplicate filter, backoff, gift streak folding."""

from __future__ import annotations

import random

from tiktok_service.domain import backoff
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.streaks import GiftStreaks, StreakStep


def test_recent_ids_reports_duplicates_and_forgets_the_oldest() -> None:
    seen = RecentIds(3, ["a"])
    assert seen.add("b") and seen.add("c")
    assert not seen.add("a")
    assert seen.add("d")  # evicts "a"
    assert "a" not in seen and len(seen) == 3
    assert seen.add("a")


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    rng = random.Random(1)
    for attempt, top in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0), (100, 30.0)]:
        for _ in range(50):
            delay = backoff.next_delay(attempt, base=1.0, cap=30.0, rng=rng)
            assert top / 2 <= delay <= top


def test_backoff_never_undercuts_the_servers_retry_after() -> None:
    assert backoff.next_delay(1, base=1.0, cap=30.0, rng=random.Random(0), floor=45.0) == 45.0


def step(
    msg: int, count: int, end: bool, *, key: tuple[int, int, int] = (1, 5655, 9), streakable: bool = True
) -> StreakStep:
    return StreakStep(key=key, msg_id=str(msg), repeat_count=count, repeat_end=end, streakable=streakable, time_ms=msg)


def test_a_streak_becomes_one_gift_with_the_final_count() -> None:
    streaks = GiftStreaks()
    assert streaks.observe(step(1, 1, False), 0) is None
    assert streaks.observe(step(2, 2, False), 0) is None
    closed = streaks.observe(step(3, 3, True), 0)
    assert closed is not None
    assert (closed.msg_id, closed.repeat_count, closed.complete) == ("3", 3, True)
    assert len(streaks) == 0


def test_a_gift_that_cannot_streak_is_one_event_at_once() -> None:
    closed = GiftStreaks().observe(step(1, 1, False, streakable=False), 0)
    assert closed is not None and closed.repeat_count == 1 and closed.complete


def test_a_streak_without_end_closes_as_incomplete_after_the_timeout_and_its_late_end_is_swallowed() -> None:
    streaks = GiftStreaks()
    streaks.observe(step(1, 4, False), now=0)
    assert streaks.expire(now=10, timeout=60) == []
    [closed] = streaks.expire(now=61, timeout=60)
    assert (closed.msg_id, closed.repeat_count, closed.complete) == ("1", 4, False)
    assert streaks.observe(step(2, 5, False), now=62) is None
    assert streaks.observe(step(3, 6, True), now=63) is None


def test_streaks_of_different_users_do_not_mix() -> None:
    streaks = GiftStreaks()
    streaks.observe(step(1, 1, False, key=(1, 5655, 9)), 0)
    streaks.observe(step(2, 7, False, key=(2, 5655, 9)), 0)
    closed = streaks.observe(step(3, 2, True, key=(1, 5655, 9)), 0)
    assert closed is not None and closed.repeat_count == 2
    assert [c.repeat_count for c in streaks.close_all()] == [7]
