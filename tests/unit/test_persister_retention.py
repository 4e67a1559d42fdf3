"""What the persister may trim from a shared stream, how lag is told, who is over-delivered (pure)."""

from __future__ import annotations

from tiktok_service.persister import retention
from tiktok_service.persister.retention import GroupState

NOW_MS = 1_800_000_000_000
HOUR_MS = 3_600_000


def group(
    last: tuple[int, int],
    *,
    pending: int = 0,
    undelivered: int | None = 0,
    oldest_pending: tuple[int, int] | None = None,
    first_undelivered: tuple[int, int] | None = None,
    name: str = "persister",
) -> GroupState:
    return GroupState(name, last, pending, undelivered, oldest_pending, first_undelivered)


def test_nothing_a_group_has_not_acknowledged_is_trimmed_whatever_the_retention() -> None:
    behind = group((NOW_MS - 5 * HOUR_MS, 0), pending=3, oldest_pending=(NOW_MS - 6 * HOUR_MS, 7))
    caught_up = group((NOW_MS, 0), name="analytics")

    point = retention.trim_point([behind, caught_up], now_ms=NOW_MS, retention_ms=0)

    assert point == (NOW_MS - 6 * HOUR_MS, 7)  # MINID keeps the oldest pending entry itself


def test_an_undelivered_tail_is_kept_from_the_entry_after_the_last_delivered_one() -> None:
    reader = group((NOW_MS - HOUR_MS, 4), undelivered=1000, first_undelivered=(NOW_MS - HOUR_MS, 5))

    assert retention.trim_point([reader], now_ms=NOW_MS, retention_ms=0) == (NOW_MS - HOUR_MS, 5)


def test_acknowledged_entries_stay_for_the_retention_window() -> None:
    caught_up = group((NOW_MS, 0))

    assert retention.trim_point([caught_up], now_ms=NOW_MS, retention_ms=HOUR_MS) == (NOW_MS - HOUR_MS, 0)


def test_a_stream_without_any_group_is_never_trimmed() -> None:
    assert retention.trim_point([], now_ms=NOW_MS, retention_ms=0) is None


def test_pending_entries_whose_oldest_is_unknown_stop_all_trimming() -> None:
    unknown = group((NOW_MS, 0), pending=2, oldest_pending=None)

    assert retention.trim_point([unknown], now_ms=NOW_MS, retention_ms=0) is None


def test_lag_counts_pending_and_undelivered_and_ages_the_oldest_of_them() -> None:
    lagging = group((NOW_MS - 10_000, 0), pending=5, undelivered=95, oldest_pending=(NOW_MS - 30_000, 0))

    lag = retention.lag(lagging, stream_length=500, now_ms=NOW_MS)

    assert (lag.entries, lag.seconds) == (100, 30.0)


def test_lag_of_an_undelivered_tail_is_the_age_of_its_first_entry() -> None:
    reader = group((NOW_MS - 60_000, 0), undelivered=10, first_undelivered=(NOW_MS - 45_000, 0))

    assert retention.lag(reader, stream_length=10, now_ms=NOW_MS) == retention.Lag(10, 45.0)


def test_lag_redis_cannot_count_is_bounded_by_the_stream_length_never_reported_low() -> None:
    reader = group((NOW_MS, 0), undelivered=None, first_undelivered=(NOW_MS - 1000, 0))

    assert retention.lag(reader, stream_length=42, now_ms=NOW_MS).entries == 42
    caught_up = group((NOW_MS, 0), undelivered=None, first_undelivered=None)
    assert retention.lag(caught_up, stream_length=42, now_ms=NOW_MS).entries == 0


def test_a_caught_up_group_has_no_lag() -> None:
    assert retention.lag(group((NOW_MS, 0)), stream_length=9, now_ms=NOW_MS) == retention.Lag(0, 0.0)


def test_entries_delivered_as_often_as_the_limit_are_over_delivered() -> None:
    deliveries = [(b"1-0", 1), (b"2-0", 5), (b"3-0", 9)]

    assert retention.over_delivered(deliveries, 5) == [b"2-0", b"3-0"]


def test_stream_ids_parse_and_order_like_redis_orders_them() -> None:
    assert retention.parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert retention.parse_id("5") == (5, 0)
    assert retention.successor((5, 2**64 - 1)) == (6, 0)
    assert retention.format_id((7, 1)) == "7-1"
